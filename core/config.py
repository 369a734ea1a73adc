"""Experiment files, command-line overrides and their validation.

An experiment is a YAML file (read with ``yaml.safe_load``) validated against
:class:`ExperimentConfig`; a component's own options are validated against the pydantic model
its plugin registered. Every problem becomes one :class:`ConfigError` that names the key, what
is allowed and the closest match.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from forgelab.core.errors import ConfigError, closest, unknown_name_message

EXPERIMENTS_ENV = "FORGELAB_EXPERIMENTS"
# torch threads per job. Measured (README, "Threads"): on a 2-core machine with other jobs
# running, one thread was 5-17x faster in wall time than torch's default of one per core, for
# every family, because networks this small spend more time synchronising threads than
# computing; on idle cores of a 16-core host, at most 13% slower for a fraction of the CPU time.
DEFAULT_THREADS = 1
NAME_MAX = 100
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # NAME_MAX characters
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _a(word: str) -> str:
    """``word`` with its indefinite article: "an agent", "a model", "an 'env'"."""
    return f"{'an' if word.strip(chr(39))[:1].lower() in 'aeiou' else 'a'} {word}"


class StrictModel(BaseModel):
    """Base for every config schema: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainSpec(StrictModel):
    """Length and schedule of training. Agents count env steps, generative models epochs."""

    total_steps: PositiveInt | None = Field(None, description="env steps (agents)")
    epochs: PositiveInt | None = Field(None, description="passes over the data (models)")
    eval_every: PositiveInt | None = Field(None, description="steps (agents) or epochs (models)")
    eval_episodes: PositiveInt = 10
    eval_envs: PositiveInt = Field(16, description="agents: evaluation episodes played at once "
                                   "(1: one at a time, for envs that cannot run in copies)")
    video_every: PositiveInt | None = Field(None, description="env steps between rollout videos")
    checkpoint_every: PositiveInt | None = Field(None, description="steps or epochs")
    log_every: PositiveInt = Field(1000, description="agents: env steps between train/ rows "
                                   "(generative models have their own log_every, in batches)")


class TrackingSpec(StrictModel):
    """Weights & Biases settings; a local metrics.jsonl is written whatever the mode."""

    project: str = "forgelab"
    entity: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    group: str | None = Field(None, description="default: the experiment name")
    tags: list[str] = Field(default_factory=list)
    log_checkpoints: bool = Field(True, description="upload checkpoints as W&B artifacts")


class ExperimentConfig(StrictModel):
    """What every experiment has, whatever its family. Each family's experiment class
    (registered with its :class:`~forgelab.core.family.Family`) subclasses this and adds its own
    keys: the component (``agent:``, ``model:``), its options and what it trains on (``env:``,
    ``dataset:``). :func:`validate_experiment` picks the class by the component key a file sets.
    """

    #: the experiment key naming the component (set by each family's subclass)
    component_key: ClassVar[str] = ""
    #: the keys a family's experiment must set -> an example shown when one is missing
    required_inputs: ClassVar[dict[str, str]] = {}

    name: str = "experiment"
    seed: NonNegativeInt = 0
    device: str = "auto"
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    output_dir: str = Field("runs", description="where run directories are created")
    threads: PositiveInt | None = Field(
        DEFAULT_THREADS, description="CPU threads torch uses in this job (null: torch's default, "
        "one per core); small networks run fastest on 1")

    @model_validator(mode="before")
    @classmethod
    def _torch_threads_alias(cls, data: Any) -> Any:
        # Experiment files written before `threads` existed set <component>_options.torch_threads.
        if isinstance(data, dict):
            for key in [k for k in data if isinstance(k, str) and k.endswith("_options")]:
                options = data.get(key)
                if isinstance(options, dict) and "torch_threads" in options:
                    data = {**data, key: {k: v for k, v in options.items()
                                          if k != "torch_threads"}}
                    data.setdefault("threads", options["torch_threads"])
        return data

    @model_validator(mode="before")
    @classmethod
    def _required_inputs(cls, data: Any) -> Any:
        # "an agent needs an 'env', e.g. env: {id: CartPole-v1}" rather than pydantic's
        # "Field required": what to add, with an example.
        if isinstance(data, dict):
            for key, example in cls.required_inputs.items():
                if data.get(key) is None:
                    raise ValueError(f"{_a(cls.component_key)} needs {_a(repr(key))}, "
                                     f"e.g. {example}")
        return data

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        # The name is a folder under output_dir and part of the W&B artifact name: checked
        # before anything is created, so `../x`, `/abs` or `my exp` never make a run.
        if not NAME_RE.fullmatch(value):
            raise ValueError(f"must be 1-{NAME_MAX} characters: letters, digits, '.', '_' or "
                             "'-', starting with a letter or digit (e.g. cartpole-ppo-lr3)")
        return value

    @field_validator("device")
    @classmethod
    def _device_pattern(cls, value: str) -> str:
        if not DEVICE_RE.match(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @property
    def kind(self) -> str:
        """The component key this experiment sets (``agent``, ``model``, ...)."""
        return type(self).component_key

    @property
    def component(self) -> str:
        """The component's registered name."""
        return str(getattr(self, self.kind))

    @property
    def component_options(self) -> dict[str, Any]:
        return dict(getattr(self, f"{self.kind}_options", None) or {})


# ------------------------------------------------------------------ experiment files
def experiment_dirs() -> list[Path]:
    """Where `forgelab run NAME` looks for NAME.yaml, in order."""
    dirs = [Path.cwd() / "experiments"]
    if os.environ.get(EXPERIMENTS_ENV):
        dirs.insert(0, Path(os.environ[EXPERIMENTS_ENV]))
    # forgelab's own files: experiments/ beside core/ in a checkout, and the package data
    # forgelab/experiments/ beside forgelab/core/ in an installed wheel (the same relative path).
    repo_experiments = Path(__file__).resolve().parent.parent / "experiments"
    if repo_experiments not in dirs:
        dirs.append(repo_experiments)
    return [d for d in dirs if d.is_dir()]


def available_experiments() -> list[str]:
    names = {p.stem for d in experiment_dirs() for p in d.glob("*.yaml")}
    return sorted(names | set(plugin_experiments()))


def plugin_experiments() -> dict[str, Any]:
    """Experiment files that plugins ship (``register_experiments``): name -> ExperimentFile
    (``.path``, ``.source``). Searched after the folders of :func:`experiment_dirs`."""
    from forgelab.core.pluginhost import get_host

    return dict(get_host().experiments)


def find_experiment(ref: str) -> Path:
    """Resolve a YAML path or the name of a file in an experiments folder."""
    path = Path(ref).expanduser()
    if path.suffix in {".yaml", ".yml"} or os.sep in ref:
        if path.is_file():
            return path
        raise ConfigError(f"experiment file not found: {path}",
                          hint="give a path to a YAML file or the name of one in experiments/")
    for directory in experiment_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    shipped = plugin_experiments().get(ref)
    if shipped is not None:
        return shipped.path
    raise ConfigError(unknown_name_message("experiment", ref, available_experiments()),
                      hint="give a path to a YAML file, or a name from experiments/")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                          f"offset {exc.start})", hint="save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file must be a mapping of keys to values, "
                          f"not {type(data).__name__}")
    return data


# ------------------------------------------------------------------------ overrides
def parse_value(text: str) -> Any:
    """Parse an override value the way YAML would, plus `1e-3` as a float."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if re.fullmatch(r"[-+]?\d*\.?\d+[eE][-+]?\d+", value) else value
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["seed=3", "agent.learning_rate=1e-3"]`` -> ``[("seed", 3), (...)]``."""
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or key.startswith("-"):
            raise ConfigError(
                f"cannot read override {item!r}: overrides are dotted.key=value with no dashes",
                hint="for example: forgelab run cartpole-dqn seed=3 agent.learning_rate=1e-3",
            )
        parsed.append((key, parse_value(raw)))
    return parsed


def option_prefixes() -> dict[str, str]:
    """``agent.lr=...`` on the command line is short for ``agent_options.lr=...``: every key
    ``X`` of a family's experiment class that has an ``X_options`` twin."""
    out = {}
    for family in _families().values():
        fields = family.load_experiment().model_fields
        out.update({key: f"{key}_options" for key in fields if f"{key}_options" in fields})
    return out


def apply_overrides(data: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``data`` with the overrides applied.

    Changing the component (``agent=ppo``) drops the file's options for the old component, since
    they were written for it; options given on the same command line still apply.
    """
    data = copy.deepcopy(data)
    prefixes = option_prefixes()
    # Switching the component first, so `agent.lr=... agent=ppo` keeps lr whatever the order.
    overrides = sorted(overrides, key=lambda item: item[0] not in prefixes)
    for key, value in overrides:
        parts = key.split(".")
        if parts[0] in prefixes and len(parts) > 1:
            parts[0] = prefixes[parts[0]]
        if len(parts) == 1 and parts[0] in prefixes and data.get(parts[0]) != value:
            data[prefixes[parts[0]]] = {}
        section = data.get(parts[0])
        if len(parts) == 1 and isinstance(value, str) and isinstance(section, dict) \
                and "id" in section:
            parts = [parts[0], "id"]  # `env=Pendulum-v1` replaces the env's id
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set {key!r}: {'.'.join(parts[: i + 1])!r} is "
                                  f"{child!r}, not a mapping")
            node = child
        node[parts[-1]] = value
    return data


# ----------------------------------------------------------------------- validation
def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (sub)model at ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            break
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            break
        current = nested[0]
    return sorted(getattr(current, "model_fields", {}))


def format_validation_error(exc: ValidationError, model: type[BaseModel],
                            prefix: str = "", source: str = "") -> ConfigError:
    """One readable message for all problems of a pydantic ValidationError."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            guess = closest(str(loc[-1]), allowed)
            line = f"unknown key {key!r}"
            if guess:
                line += f"; did you mean {guess!r}?"
            line += f" Allowed keys here: {', '.join(allowed)}"
        else:
            message = err["msg"].removeprefix("Value error, ")  # a validator's own words
            if err["type"] == "literal_error":
                message = message.replace("Input should be", "must be")
            shown = err.get("input")
            if loc:
                line = f"{key}: {message}"
                if not isinstance(shown, dict):
                    line += f" (got {shown!r})"
            else:
                line = f"{message.removeprefix('Value error, ')}"
        lines.append(line)
    where = f"{source}: " if source else ""
    if len(lines) == 1:
        return ConfigError(where + lines[0])
    return ConfigError(where + "invalid configuration:\n  - " + "\n  - ".join(lines))


def _families() -> dict[str, Any]:
    from forgelab.core.pluginhost import get_host

    return get_host().families()


def experiment_class(data: dict[str, Any], source: str = "") -> tuple[Any, type[ExperimentConfig]]:
    """The family of an experiment mapping (by the one component key it sets) and that
    family's experiment class."""
    where = f"{source}: " if source else ""
    families = list(_families().values())
    chosen = [f for f in families if isinstance(data, dict) and data.get(f.component_key)
              is not None]
    if len(chosen) != 1:
        keys = " or ".join(f"{f.component_key!r} ({f.name})" for f in families) or "none"
        raise ConfigError(where + f"set exactly one of {keys}",
                          hint="e.g. agent: ppo with env: CartPole-v1, or model: vae with "
                          "dataset: digits")
    return chosen[0], chosen[0].load_experiment()


def validate_experiment(data: dict[str, Any], source: str = "") -> ExperimentConfig:
    """Validate an experiment mapping against its family's experiment class; every problem is
    one :class:`ConfigError` naming the key."""
    family, model = experiment_class(data, source)
    where = f"{source}: " if source else ""
    name = data[family.component_key]
    data = dict(data)
    for key in [k for k in data if k not in model.model_fields]:
        for other in _families().values():
            if other is family or key not in other.load_experiment().model_fields:
                continue
            if data[key] in (None, {}, []):  # an older config.yaml listed every family's keys
                del data[key]
                break
            raise ConfigError(where + f"{key!r} is for {other.name} experiments "
                              f"({other.component_key}: ...); {family.component_key} {name!r} "
                              f"does not use it (remove {key})")
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, model, source=source) from None
    if getattr(config.train, family.budget_key) is None:
        raise ConfigError(where + f"{_a(family.component_key)} needs "
                          f"'train.{family.budget_key}'")
    return config


def validate_options(schema: type[BaseModel] | None, options: dict[str, Any], key: str,
                     component: str, experiment: ExperimentConfig | None = None
                     ) -> BaseModel | dict[str, Any]:
    """Validate a component's options against the schema its plugin registered.

    Validators of the schema see the whole experiment as ``info.context["experiment"]`` (e.g. to
    check a batch size against ``env.num_envs``).
    """
    if schema is None:
        if options:
            raise ConfigError(f"{key}: {component!r} takes no options (got {sorted(options)})")
        return {}
    try:
        validated = schema.model_validate(options, context={"experiment": experiment})
    except ValidationError as exc:
        raise format_validation_error(exc, schema, prefix=key) from None
    bad = _nonfinite(validated.model_dump())
    if bad is not None:
        path, value = bad
        raise ConfigError(f"{key}.{path}: must be a finite number (got {value})",
                          hint="inf and nan are never valid option values")
    return validated


def _nonfinite(tree: Any, path: str = "") -> tuple[str, float] | None:
    """The first NaN or infinite float in a (nested) options dump, as (dotted path, value)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return path, tree
    items = (tree.items() if isinstance(tree, dict) else
             enumerate(tree) if isinstance(tree, (list, tuple)) else ())
    for key, value in items:
        found = _nonfinite(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def load_experiment(ref: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Find, read, override and validate an experiment (component options are checked later)."""
    path = find_experiment(str(ref))
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data = apply_overrides(data, parse_overrides(list(overrides or [])))
    return validate_experiment(data, source=str(path))


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
