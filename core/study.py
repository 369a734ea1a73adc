"""Studies: the trials of a sweep, their parsing, and the study file that records them.

A study is many ordinary runs of one experiment. Its *configurations* are the combinations of the
swept values (grid axes times random samples); its *seeds* are replicates of every
configuration, so a trial is one (configuration, seed) pair and the seeds of a configuration are
always launched together (nothing stops single seeds early).

Command-line axes (``forgelab sweep EXPERIMENT ITEMS...``)::

    key=value                 a fixed override for every trial
    key=v1,v2,v3              a grid axis
    key=0:10  key=0:10:2      an integer range axis (start:stop[:step], stop excluded)
    seed=0:5  seed=0,3,7      the seeds (replicates) of every configuration
    key=[64,64],[128,128]     values are split at commas *outside* brackets, braces and quotes,
    key='a,b'                 so lists, mappings and quoted strings with commas are one value

A sweep file (YAML) says the same, plus random sampling::

    experiment: cartpole-ppo        # a name in experiments/ or a path (relative to this file)
    name: ppo-lr                    # the study directory's name (default: the file's stem)
    overrides: {train.total_steps: 20000}
    grid: {agent.n_steps: [32, 64], agent.batch_size: {range: [128, 384, 128]}}
    random:
      count: 8                      # configurations drawn (times the grid's)
      seed: 0                       # the sampler's seed: the same file draws the same values
      params:
        agent.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
        agent.gamma: {uniform: [0.9, 0.999]}
        agent.n_epochs: {randint: [4, 20]}       # high excluded
        agent.batch_size: {choice: [64, 128]}
    seeds: 0:5                      # or [0, 1, 2], or {start: 0, count: 5}
    launcher: local                 # or ray
    workers: 2
    retries: 1
    search: {method: optuna, trials: 20, metric: eval/return_mean}   # optional: Bayesian

The study directory ``<output_dir>/<study>/`` holds ``study.json`` (every trial's overrides, seed,
status, exit code, attempts, run directory and error) and one folder per trial, in which the
trial's ``forgelab run`` makes its normal run directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgelab.core.errors import ConfigError

STUDY_FILE = "study.json"
RANGE_RE = re.compile(r"^(-?\d+):(-?\d+)(?::(-?\d+))?$")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "normal")
FINISHED, FAILED, INTERRUPTED, PENDING, RUNNING = (
    "finished", "failed", "interrupted", "pending", "running")
SWEEP_KEYS = {"experiment", "name", "overrides", "grid", "random", "seeds", "launcher",
              "workers", "retries", "output_dir", "address", "gpus_per_trial", "search"}
# Keys of a sweep file that no experiment has: a YAML with them is a sweep file
SWEEP_ONLY_KEYS = SWEEP_KEYS - {"experiment", "name", "output_dir"}


# ----------------------------------------------------------------------------- parsing
def split_values(text: str) -> list[str]:
    """Split ``a,b,[1,2],{x: 1, y: 2},'c,d'`` at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or depth:
        raise ConfigError(f"unbalanced brackets or quotes in {text!r}",
                          hint="lists are written key=[64,64],[128,128]; quote strings "
                          "with commas: key='a,b'")
    parts.append("".join(current))
    return parts


def int_range(text: str, key: str) -> list[int] | None:
    """``0:10`` -> ``[0..9]``, ``0:10:2`` -> ``[0, 2, ..., 8]``; None when ``text`` is no range."""
    match = RANGE_RE.match(text.strip())
    if not match:
        return None
    start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
    values = list(range(start, stop, step)) if step else []
    if not values:
        raise ConfigError(f"{key}={text} is an empty range (start:stop[:step], stop excluded)",
                          hint=f"for example {key}=0:5 for 0, 1, 2, 3, 4")
    return values


def parse_item(item: str) -> tuple[str, list[Any]]:
    """``key=v1,v2`` -> ``(key, [v1, v2])``; a single value is a fixed override."""
    from forgelab.core.config import parse_value  # pydantic: not for `forgelab --help`

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or key.startswith("-"):
        raise ConfigError(f"cannot read {item!r}: sweep axes are key=v1,v2 or key=start:stop",
                          hint="for example: forgelab sweep cartpole-ppo seed=0:5 "
                          "agent.learning_rate=1e-3,3e-4")
    values = int_range(raw, key)
    if values is None:
        values = [parse_value(part.strip()) for part in split_values(raw)]
    return key, values


def parse_seeds(value: Any) -> list[int]:
    """Seeds from ``"0:5"``, ``"0,3"``, ``[0, 3]``, ``{start: 0, count: 5}`` or ``3``."""
    if isinstance(value, dict):
        unknown = set(value) - {"start", "count"}
        if unknown or "count" not in value:
            raise ConfigError(f"seeds: {value!r}: write {{start: 0, count: 5}}")
        seeds: Any = list(range(int(value.get("start", 0)),
                                int(value.get("start", 0)) + int(value["count"])))
    elif isinstance(value, str):
        seeds = parse_item(f"seed={value}")[1]
    elif isinstance(value, list):
        seeds = value
    else:
        seeds = [value]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                            for s in seeds):
        raise ConfigError(f"seeds must be non-negative integers (got {value!r})",
                          hint="for example seed=0:5 or seeds: [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds repeat: {seeds}")
    return list(seeds)


def grid_values(key: str, spec: Any) -> list[Any]:
    """An axis of a sweep file: a list, ``{range: [start, stop, step]}``, ``{linspace: [a, b,
    n]}``, ``{logspace: [a, b, n]}`` (n values from a to b evenly on a log scale) or a string
    in the command-line syntax."""
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, str):
        values = parse_item(f"{key}={spec}")[1]
    elif isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        try:
            if kind == "range":
                values = list(range(*[int(a) for a in args]))
            elif kind in ("linspace", "logspace"):
                low, high, n = float(args[0]), float(args[1]), int(args[2])
                if kind == "logspace":
                    low, high = math.log(low), math.log(high)
                values = [low + (high - low) * i / max(n - 1, 1) for i in range(n)]
                values = [float(f"{(math.exp(v) if kind == 'logspace' else v):.6g}")
                          for v in values]
            else:
                raise ConfigError(f"grid.{key}: unknown kind {kind!r}; use a list, range, "
                                  "linspace or logspace")
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"grid.{key}: cannot read {spec!r}",
                              hint="range: [start, stop, step]; linspace/logspace: [a, b, n]"
                              ) from None
    else:
        values = [spec]
    if not values:
        raise ConfigError(f"grid.{key} has no values")
    return list(values)


def sample(spec: Any, rng: random.Random, key: str) -> Any:
    """Draw one value from ``{distribution: args}`` (see :data:`DISTRIBUTIONS`)."""
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
        raise ConfigError(f"random.params.{key}: {spec!r} is not a distribution",
                          hint="write e.g. {loguniform: [1.0e-4, 1.0e-2]}; one of "
                          + ", ".join(DISTRIBUTIONS))
    (kind, args), = spec.items()
    try:
        if kind == "choice":
            return rng.choice(list(args))
        low, high = float(args[0]), float(args[1])
        if kind != "normal" and low > high:  # normal: [mu, sigma]
            raise ConfigError(f"random.params.{key}: {kind} bounds [{args[0]}, {args[1]}] are "
                              "reversed: the low bound comes first",
                              hint=f"write {{{kind}: [{args[1]}, {args[0]}]}}")
        if kind != "normal" and low == high:
            raise ConfigError(f"random.params.{key}: {kind} bounds [{args[0]}, {args[1]}] are "
                              "one value", hint=f"for one value, set {key} under overrides")
        if kind == "normal" and high < 0:
            raise ConfigError(f"random.params.{key}: normal [mu, sigma] needs sigma >= 0 "
                              f"(got {args[1]})")
        if kind == "uniform":
            value = rng.uniform(low, high)
        elif kind == "loguniform":
            if low <= 0 or high <= 0:
                raise ConfigError(f"random.params.{key}: loguniform bounds must be > 0")
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif kind == "normal":
            value = rng.gauss(low, high)
        else:  # randint, high excluded like Python's range
            return rng.randrange(int(low), int(high))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"random.params.{key}: cannot read {spec!r}",
                          hint="give [low, high] (choice: a list of values)") from None
    return float(f"{value:.6g}")  # readable overrides and run names


def format_value(value: Any) -> str:
    """A value as an override string that ``parse_value`` reads back to the same value."""
    from forgelab.core.config import parse_value

    if isinstance(value, str) and parse_value(value) == value and "," not in value:
        return value
    return json.dumps(value)  # JSON is YAML: lists, mappings, quoted strings, numbers


# ---------------------------------------------------------------------------- the spec
@dataclass
class StudySpec:
    """What to run: one experiment, fixed overrides, configurations and seeds."""

    name: str
    experiment: str  # absolute path of the experiment file
    fixed: dict[str, Any] = field(default_factory=dict)
    configs: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    seeds: list[int] | None = None  # None: the experiment's own seed, one trial per config
    launcher: str = "local"
    workers: int | None = None
    retries: int = 0
    output_dir: str = "runs"
    address: str | None = None
    gpus_per_trial: float | None = None
    axes: dict[str, Any] = field(default_factory=dict)  # as written, for --export wandb
    random: dict[str, Any] | None = None
    search: dict[str, Any] | None = None  # --search optuna: trials, metric, direction, seed

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir).resolve() / self.name


@dataclass
class Trial:
    """One (configuration, seed) run and what became of it."""

    id: str
    config_id: str
    params: dict[str, Any]
    seed: int | None
    status: str = PENDING
    exit_code: int | None = None
    attempts: int = 0
    run_dir: str | None = None
    error: str | None = None
    resumed: bool = False
    started: float | None = None
    ended: float | None = None
    node: str | None = None

    @property
    def done(self) -> bool:
        return self.status == FINISHED


def _spec_hash(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _resolve_experiment(ref: str, base: Path | None = None) -> str:
    from forgelab.core.config import find_experiment

    if base is not None and (ref.endswith((".yaml", ".yml")) or os.sep in ref):
        candidate = (base / ref)
        if candidate.is_file():
            return str(candidate.resolve())
    return str(find_experiment(ref).resolve())


def is_sweep_file(ref: str) -> bool:
    """A YAML file with an ``experiment:`` key is a sweep file (experiments have none)."""
    from forgelab.core.config import read_yaml

    path = Path(ref)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    return "experiment" in read_yaml(path)


def spec_from_items(target: str, items: list[str], name: str | None = None) -> StudySpec:
    """The study of ``forgelab sweep TARGET ITEMS...`` (TARGET: an experiment or sweep file)."""
    from forgelab.core.config import parse_value, read_yaml

    data: dict[str, Any] = {}
    base = None
    if is_sweep_file(target):
        data = read_yaml(Path(target))
        unknown = set(data) - SWEEP_KEYS
        if unknown:
            raise ConfigError(f"{target}: unknown sweep key(s) {sorted(unknown)}; allowed: "
                              f"{', '.join(sorted(SWEEP_KEYS))}")
        base = Path(target).resolve().parent
        data.setdefault("name", Path(target).stem)
    else:
        _refuse_sweep_file_without_experiment(target)
        data["experiment"] = target
    overrides = data.get("overrides") or {}
    if isinstance(overrides, list):  # ["key=value", ...]
        pairs = [str(o).partition("=") for o in overrides]
        overrides = {k.strip(): parse_value(v) for k, _, v in pairs}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides: write a mapping {key: value} or a list of key=value")
    fixed = dict(overrides)
    if base is not None:
        _refuse_keys_set_twice(target, data, fixed)
        _check_launch_options(target, data)
    axes = {k: grid_values(k, v) for k, v in (data.get("grid") or {}).items()}
    seeds = parse_seeds(data["seeds"]) if data.get("seeds") is not None else None
    for item in items:
        key, values = parse_item(item)
        if key == "seed":
            seeds = parse_seeds(values)
        elif len(values) > 1:
            axes[key] = values
            fixed.pop(key, None)
        else:
            fixed[key] = values[0]
            axes.pop(key, None)
    if "seed" in axes or "seed" in fixed:  # seed in a file's grid/overrides: still replicates
        seeds = parse_seeds(axes.pop("seed", None) or [fixed.pop("seed")])
    output_dir = str(Path(str(fixed.pop("output_dir", data.get("output_dir", "runs"))))
                     .expanduser().resolve())  # absolute: `--resume` works from anywhere
    grid = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    random_spec = data.get("random")
    configs = grid
    if random_spec:
        if not isinstance(random_spec, dict) or "params" not in random_spec:
            raise ConfigError("random: write {count: N, seed: 0, params: {key: {loguniform: "
                              "[a, b]}}}")
        count = random_spec.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"random.count must be a positive integer (got {count!r})")
        rng = random.Random(random_spec.get("seed", 0))
        draws = [{k: sample(v, rng, k) for k, v in random_spec["params"].items()}
                 for _ in range(count)]
        configs = [{**g, **d} for g in grid for d in draws]
    experiment = _resolve_experiment(str(data["experiment"]), base)
    if name is None:
        name = data.get("name") or (
            f"{Path(experiment).stem}-"
            f"{_spec_hash(experiment, fixed, axes, seeds, random_spec, output_dir)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", str(name)):
        raise ConfigError(f"study name {name!r}: use letters, digits, '-', '_' and '.'")
    return StudySpec(name=str(name), experiment=experiment, fixed=fixed, configs=configs,
                     seeds=seeds, launcher=data.get("launcher", "local"),
                     workers=data.get("workers"), retries=int(data.get("retries", 0)),
                     output_dir=output_dir, address=data.get("address"),
                     gpus_per_trial=data.get("gpus_per_trial"), axes=axes,
                     random=random_spec, search=data.get("search"))


def _refuse_sweep_file_without_experiment(target: str) -> None:
    """A YAML with sweep keys but no ``experiment:`` would otherwise be read as an experiment
    and fail with an experiment's error (no agent or model)."""
    from forgelab.core.config import read_yaml

    path = Path(target)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return
    data = read_yaml(path)
    found = sorted(SWEEP_ONLY_KEYS & set(data)) if isinstance(data, dict) else []
    if found:
        raise ConfigError(f"{target}: a sweep file ({', '.join(found)}) without `experiment:`",
                          hint="add the experiment it sweeps, e.g. `experiment: cartpole-ppo` "
                          "(a name in experiments/ or a path relative to the file)")


def _refuse_keys_set_twice(target: str, data: dict[str, Any], fixed: dict[str, Any]) -> None:
    """A key under two of overrides/grid/random.params has no single meaning: which one wins
    would be an accident of the merge order."""
    random_spec = data.get("random")
    params = random_spec.get("params") if isinstance(random_spec, dict) else None
    sections = {"overrides": set(fixed), "grid": set(data.get("grid") or {}),
                "random.params": set(params or {})}
    if data.get("seeds") is not None:  # seed under overrides/grid is the seeds too
        sections["seeds"] = {"seed"}
    for (first, a), (second, b) in itertools.combinations(sections.items(), 2):
        both = sorted(a & b)
        if both:
            raise ConfigError(f"{target}: {', '.join(both)} is set under both {first}: and "
                              f"{second}:", hint="keep each key in one place: a fixed value "
                              "under overrides, values to sweep under grid or random.params, "
                              "seeds under seeds")


def _check_launch_options(target: str, data: dict[str, Any]) -> None:
    """The launch options of a sweep file, named as the file's keys (the flags check their own
    values in the sweep command)."""
    workers, retries = data.get("workers"), data.get("retries", 0)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                or workers < 1):
        raise ConfigError(f"{target}: workers: {workers!r}: trials at once must be an integer "
                          ">= 1", hint="write e.g. `workers: 2`, or leave it out for cores / "
                          "threads")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"{target}: retries: {retries!r}: must be an integer >= 0",
                          hint="write e.g. `retries: 1`, or leave it out for no retries")


def make_trials(spec: StudySpec, existing: list[Trial] | None = None) -> list[Trial]:
    """The trials, configuration-major (a configuration's seeds are adjacent).

    A configuration already in ``existing`` keeps its id, so a rerun of a changed command
    (an extra seed, an extra value) reuses what is done and adds only what is new.
    """
    known = {}
    for trial in existing or []:
        known.setdefault(json.dumps(trial.params, sort_keys=True), trial.config_id)
    used = {int(cid[1:]) for cid in known.values() if cid[1:].isdigit()}
    width = max(2, len(str(len(spec.configs) + len(used))))
    next_index = itertools.count()
    trials = []
    for params in spec.configs:
        key = json.dumps(params, sort_keys=True)
        config_id = known.get(key)
        if config_id is None:
            index = next(i for i in next_index if i not in used)
            used.add(index)
            config_id = known[key] = f"c{index:0{width}d}"
        for seed in spec.seeds if spec.seeds is not None else [None]:
            trial_id = config_id if seed is None else f"{config_id}-s{seed}"
            trials.append(Trial(id=trial_id, config_id=config_id, params=dict(params),
                                seed=seed))
    return trials


def trial_overrides(spec: StudySpec, trial: Trial, tags: list[str]) -> list[str]:
    """The ``key=value`` arguments of a trial's ``forgelab run``."""
    values = {**spec.fixed, **trial.params}
    args = [f"{k}={format_value(v)}" for k, v in values.items()]
    if trial.seed is not None:
        args.append(f"seed={trial.seed}")
    # W&B groups average the seeds of one configuration only, and the tag finds the study.
    args += [f"output_dir={format_value(str(trial_root(spec, trial)))}",
             f"tracking.group={spec.name}-{trial.config_id}",
             f"tracking.tags={json.dumps([*tags, spec.name])}"]
    return args


def trial_root(spec: StudySpec, trial: Trial) -> Path:
    return spec.study_dir / trial.id


# ------------------------------------------------------------------------- study file
def spec_to_dict(spec: StudySpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_dict(data: dict[str, Any]) -> StudySpec:
    return StudySpec(**data)


def load_study(study_dir: Path) -> tuple[StudySpec, list[Trial]]:
    """Read ``study.json`` of a study directory."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{study_dir} is not a study directory (no {STUDY_FILE})",
                          hint="pass a folder like runs/<study>/ made by `forgelab sweep`")
    data = json.loads(path.read_text(encoding="utf-8"))
    return spec_from_dict(data["spec"]), [Trial(**t) for t in data["trials"]]


def summarize(trials: list[Trial]) -> dict[str, int]:
    counts = {s: 0 for s in (FINISHED, FAILED, INTERRUPTED, RUNNING, PENDING)}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return counts


def save_study(spec: StudySpec, trials: list[Trial], command: list[str] | None = None,
               reruns: list[dict[str, Any]] | None = None) -> Path:
    """Write ``study.json`` atomically (one writer: the sweep process).

    :param command: the sweep command; kept only when the study has none yet, so the record
        says what made the study (a ``--resume`` would say nothing about its axes).
    :param reruns: every later sweep of the study (time and command), this one included; None
        keeps those already recorded.
    """
    path = spec.study_dir / STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
    data = {"name": spec.name, "experiment": spec.experiment,
            "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": previous.get("command") or command,
            "reruns": previous.get("reruns", []) if reruns is None else reruns,
            "summary": summarize(trials), "spec": spec_to_dict(spec),
            "trials": [asdict(t) for t in trials]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
