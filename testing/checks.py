"""The named conformance checks, each chosen by what the component is.

A check is ``fn(subject) -> str | None``: it raises :class:`~forgelab.testing.harness.CheckFailure`
(an ``AssertionError``) naming what breaks the contract, or returns an optional note (advice, such
as gymnasium's checker warnings, is a note, never a failure).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgelab.core.registry import Registration
from forgelab.testing.harness import (
    CheckFailure,
    Subject,
    comparable_rows,
    load_state,
    read_rows,
    tree_diff,
)

# Libraries a plugin module must not import when it is loaded (`forgelab plugins`, `--help`).
HEAVY_MODULES = ("torch", "gymnasium", "stable_baselines3", "wandb", "matplotlib", "ray",
                 "sklearn", "tensorflow", "jax")


@dataclass(frozen=True)
class Check:
    """One named check.

    :param name: ``check_...``, the id used by ``expected_failed_checks`` and ``-k``.
    :param kinds: the component kinds it applies to.
    :param fn: the check itself.
    :param applies: a further filter on the registration (e.g. only samplers).
    """

    name: str
    kinds: tuple[str, ...]
    fn: Callable[[Subject], str | None]
    applies: Callable[[Registration], bool] | None = None

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]

    def selected_for(self, reg: Registration) -> bool:
        return reg.kind in self.kinds and (self.applies is None or self.applies(reg))


CHECKS: dict[str, Check] = {}


def check(*kinds: str, applies: Callable[[Registration], bool] | None = None):
    def decorate(fn: Callable[[Subject], str | None]) -> Callable[[Subject], str | None]:
        CHECKS[fn.__name__] = Check(fn.__name__, kinds, fn, applies)
        return fn

    return decorate


def checks_for(reg: Registration) -> list[Check]:
    """The checks that apply to a registration, in order."""
    return [c for c in CHECKS.values() if c.selected_for(reg)]


def _factory_class(reg: Registration) -> type | None:
    try:
        factory = reg.load_factory()
    except Exception:
        return None
    return factory if isinstance(factory, type) else None


def _is_sampler(reg: Registration) -> bool:
    cls = _factory_class(reg)
    return cls is None or hasattr(cls, "sample_to_file")  # a function factory: decided at run


def _finite_metrics(metrics: Any, what: str) -> dict[str, float]:
    if not isinstance(metrics, dict) or not metrics:
        raise CheckFailure(f"{what} must return a non-empty dict of metrics, got {metrics!r}")
    bad = {k: v for k, v in metrics.items()
           if not isinstance(k, str) or not isinstance(v, (int, float)) or isinstance(v, bool)
           or not math.isfinite(float(v))}
    if bad:
        raise CheckFailure(f"{what} returned non-finite or non-numeric metrics: {bad}")
    return metrics


# ------------------------------------------------------------------------ registration
@check("agent", "model", "env", "dataset")
def check_registration(subject: Subject) -> str | None:
    """Factory, config and check import; the options schema is valid; a description exists."""
    reg = subject.registration
    if not reg.description.strip() or "\n" in reg.description.strip():
        raise CheckFailure(f"{reg.kind} {reg.name!r} needs a one-line description= "
                           "(shown by `forgelab list`)")
    if reg.kind == "env":
        import gymnasium

        from forgelab.envs.registration import apply_env_registrations

        apply_env_registrations(subject.host)
        spec = gymnasium.spec(reg.name)
        spec.make  # noqa: B018 - the spec exists; importing the entry point happens below
        from forgelab.core.registry import import_string

        entry = import_string(reg.factory) if isinstance(reg.factory, str) else reg.factory
        if not callable(entry):
            raise CheckFailure(f"entry point {reg.factory!r} is not callable")
        return None
    factory = reg.load_factory()
    if not callable(factory):
        raise CheckFailure(f"factory {reg.factory!r} is not callable")
    schema = reg.load_config()
    if schema is not None:
        from pydantic import BaseModel

        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise CheckFailure(f"config {reg.config!r} is not a pydantic model")
        schema.model_json_schema()  # every field has a type pydantic can describe
        from forgelab.core.config import validate_options

        data = subject.experiment() if reg.kind != "dataset" else {}
        key = {"agent": "agent_options", "model": "model_options"}.get(reg.kind,
                                                                     "dataset_options")
        options = (data.get(key) if reg.kind != "dataset" else
                   {**subject.conformance.get("dataset_options", {}),
                    **subject.overrides.get("dataset_options", {})})
        validate_options(schema, dict(options or {}), key, reg.name)
        if "extra" not in (schema.model_config or {}) or schema.model_config["extra"] != "forbid":
            return ("advice: give the options model `model_config = ConfigDict(extra='forbid')`"
                    " so a misspelt option is an error")
    check_fn = reg.load_check()
    if check_fn is not None and not callable(check_fn):
        raise CheckFailure(f"check {reg.metadata.get('check')!r} is not callable")
    return None


_IMPORT_WEIGHT: dict[str, list[str]] = {}


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@check("agent", "model", "env", "dataset")
def check_plugin_import_is_light(subject: Subject) -> str | None:
    """Importing the plugin module imports none of torch, gymnasium, SB3, wandb, ..."""
    info = subject.host.plugins.get(subject.registration.source.plugin)
    module = (info.module if info else "").partition(":")[0]
    if not module or not _importable(module):
        return "plugin object added in-process, not an importable module: not checked"
    if module not in _IMPORT_WEIGHT:
        code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
                f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["?"])[-1]
            raise CheckFailure(f"importing the plugin module {module!r} fails: {last}")
        _IMPORT_WEIGHT[module] = json.loads(result.stdout.strip().splitlines()[-1])
    heavy = _IMPORT_WEIGHT[module]
    if heavy:
        raise CheckFailure(f"importing plugin module {module!r} imports {', '.join(heavy)}: "
                           "register factories and configs as 'module:attr' strings and import "
                           "heavy libraries inside functions, so `forgelab --help` stays fast")
    return None


# -------------------------------------------------------------------- agents and models
def _finished(run_dir: Path) -> dict[str, Any]:
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    if info.get("status") != "finished":
        raise CheckFailure(f"the tiny run ended with status {info.get('status')!r}")
    return info


def _budget(subject: Subject) -> int:
    config = subject.config()
    return int(config.train.total_steps if subject.kind == "agent" else config.train.epochs)


@check("agent", "model")
def check_fit_reaches_budget(subject: Subject) -> str | None:
    """A tiny run finishes, with ``step`` at the budget and a checkpoint saved."""
    run_dir = subject.run("a")
    _finished(run_dir)
    state = load_state(run_dir)
    if int(state["step"]) < _budget(subject):
        raise CheckFailure(f"fit() returned at step {state['step']}, before the budget "
                           f"{_budget(subject)}: fit must train until the budget or a stop")
    if not isinstance(state["component"], dict):
        raise CheckFailure("state_dict() must return a dict")
    return None


@check("agent")
def check_supported_action_spaces(subject: Subject) -> str | None:
    """The agent trains on every action-space family its registration accepts."""
    from forgelab.core.errors import ConfigError

    supported = subject.supported_envs()
    for family, env in list(supported.items()):
        if env == subject.experiment().get("env"):
            continue  # the main env: covered by check_fit_reaches_budget
        try:
            run_dir = subject.run(f"env-{family}", env=env)
        except ConfigError as exc:  # refused by the factory rather than by `check=`
            subject.notes[family] = (f"{env['id']}: refused when built ({exc.message}); advice: "
                                     "refuse it in register(check=...) so that --dry-run and "
                                     "sweeps catch it before a run starts")
            supported = {k: v for k, v in supported.items() if k != family}
            continue
        _finished(run_dir)
    refused = [note for family, note in subject.notes.items() if family not in supported]
    return ("trains on " + ", ".join(env["id"] for env in supported.values())
            + (f"; refused (by its check or options): {'; '.join(refused)}" if refused else ""))


@check("agent", "model")
def check_checkpoint_round_trip(subject: Subject) -> str | None:
    """The checkpoint loads with ``torch.load(weights_only=True)`` and restores the same state."""
    from forgelab.core.checkpoints import to_safe

    run_dir = subject.run("a")
    saved = load_state(run_dir)
    component, ctx, _ = subject.job(run_dir, "eval")
    try:
        diff = tree_diff(to_safe(component.state_dict()), saved["component"])
    finally:
        ctx.tracker.finish(exit_code=0, quiet=True)
    if diff:
        raise CheckFailure(f"state_dict() after load_state_dict(checkpoint) differs from the "
                           f"checkpoint at {diff}")
    return None


@check("agent", "model")
def check_evaluate_contract(subject: Subject) -> str | None:
    """``evaluate()`` on a restored component returns finite metrics, logs them, and gives the
    same numbers when repeated from the same checkpoint."""
    run_dir = subject.run("a")
    results = []
    for _ in range(2):
        component, ctx, _ = subject.job(run_dir, "eval")
        try:
            results.append(_finite_metrics(component.evaluate(), "evaluate()"))
        finally:
            ctx.tracker.finish(exit_code=0, quiet=True)
        logged = {k for row in read_rows(ctx.run_dir) for k in row}
        missing = set(results[-1]) - logged
        if missing:
            raise CheckFailure(f"evaluate() returned {sorted(missing)} without logging them "
                               "through ctx.tracker")
    if subject.kind == "agent" and "eval/return_mean" not in results[0]:
        raise CheckFailure("an agent's evaluate() must return 'eval/return_mean' "
                           "(forgelab.agents.evaluation.PolicyEvaluator does)")
    if results[0] != results[1]:
        raise CheckFailure(f"evaluate() from the same checkpoint gave {results[0]} then "
                           f"{results[1]}: evaluation must be seeded (ctx.inputs.eval_seed)")
    return None


@check("agent", "model")
def check_same_seed_same_result(subject: Subject) -> str | None:
    """Two runs with the same seed end in the same state and log the same numbers."""
    a, b = subject.run("a"), subject.run("b")
    diff = tree_diff(load_state(a)["component"], load_state(b)["component"],
                     ignore=NOT_COMPARED)
    if diff:
        raise CheckFailure(f"the same seed gave different final states at {diff}: seed every "
                           "generator from ctx.seed")
    if comparable_rows(a) != comparable_rows(b):
        raise CheckFailure("the same seed logged different metrics (perf/* aside)")
    return None


@check("agent", "model")
def check_sigterm_resume(subject: Subject) -> str | None:
    """Stopped by SIGTERM and resumed, a run ends where an uninterrupted one does (exactly, for
    a component that claims ``exact_resume``)."""
    import signal

    stopped, fired_at = subject.stopped_run()
    info = json.loads((stopped / "run.json").read_text(encoding="utf-8"))
    if fired_at is None:
        raise CheckFailure("the component never reported progress after step 0 "
                           "(ctx.tracker.log or ctx.progress.update), so it cannot be stopped "
                           "mid-run")
    if info.get("status") != "interrupted" or info.get("stop_signal") != signal.SIGTERM:
        raise CheckFailure(f"after SIGTERM the run's status is {info.get('status')!r}, "
                           "not 'interrupted': fit() must return when ctx.stop_requested")
    stop_step = int(load_state(stopped)["step"])
    if stop_step >= _budget(subject):
        raise CheckFailure(f"after SIGTERM at {fired_at} the component trained to the end "
                           f"({stop_step}): fit() must check ctx.stop_requested every update")
    subject.resume(stopped)
    _finished(stopped)
    resumed = load_state(stopped)
    if int(resumed["step"]) < _budget(subject):
        raise CheckFailure(f"the resumed run ended at step {resumed['step']}, before the budget")
    component, ctx, _ = subject.job(stopped, "eval")
    ctx.tracker.finish(exit_code=0, quiet=True)
    exact = bool(getattr(component, "exact_resume", True))
    if not exact:
        return f"stopped at {stop_step}, resumed to {resumed['step']} (no exact-resume claim)"
    diff = tree_diff(resumed["component"], load_state(subject.run("a"))["component"],
                     ignore=NOT_COMPARED)
    if diff:
        raise CheckFailure(f"stopped at step {stop_step} and resumed, the final state differs "
                           f"from an uninterrupted run at {diff}; save everything fit() needs "
                           "in state_dict() (forgelab.envs.state snapshots envs), or set "
                           "`exact_resume = False` on the component")
    return f"stopped at step {stop_step}; resumed run equals the uninterrupted one"


@check("model", applies=_is_sampler)
def check_sampling(subject: Subject) -> str | None:
    """``sample_to_file`` writes the same file twice from one checkpoint (or refuses clearly)."""
    from forgelab.core.errors import ForgelabError

    run_dir = subject.run("a")
    outputs = []
    for i in range(2):
        component, ctx, _ = subject.job(run_dir, "sample")
        try:
            if not hasattr(component, "sample_to_file"):
                return "not a sampler"
            out = ctx.run_dir / f"samples-{i}.png"
            try:
                path = Path(component.sample_to_file(8, out))
            except ForgelabError as exc:
                if getattr(component, "can_sample", True):
                    raise CheckFailure(f"sample_to_file failed: {exc.message}") from None
                return f"refuses to sample, clearly: {exc.message}"
            if getattr(component, "can_sample", True) is False:
                raise CheckFailure("can_sample is False but sample_to_file wrote a file")
            if not path.is_file() or path.stat().st_size == 0:
                raise CheckFailure(f"sample_to_file returned {path}, which is not a file")
            outputs.append(path.read_bytes())
            shape_note = _sample_shape(component)
        finally:
            ctx.tracker.finish(exit_code=0, quiet=True)
    if outputs[0] != outputs[1]:
        raise CheckFailure("sample_to_file gave different files from the same checkpoint: "
                           "sample from a fixed generator")
    return shape_note


# Not part of "the same result": gymnasium seeds spaces' sample() generators from OS
# entropy (batch_space reads space.np_random; a space an agent samples from must be seeded, and
# an unseeded one shows up in the actions and parameters compared beside it); and the wall
# clock that RecordEpisodeStatistics keeps.
NOT_COMPARED = ("__space__", "episode_start_time", "time_queue")


def _sample_shape(component: Any) -> str | None:
    """For models with ``sample(n, generator)`` and a dataset: shape and range of samples."""
    data = getattr(component, "data", None)
    if not hasattr(component, "sample") or data is None:
        return None
    import torch

    samples = component.sample(5, torch.Generator(device="cpu").manual_seed(0))
    expected = (5, *tuple(data.sample_shape))
    if tuple(samples.shape) != expected:
        raise CheckFailure(f"sample(5, generator) has shape {tuple(samples.shape)}, "
                           f"expected {expected}")
    if not torch.isfinite(samples).all():
        raise CheckFailure("sample() returned non-finite values")
    if data.kind == "image" and (samples.min() < 0 or samples.max() > 1):
        raise CheckFailure("image samples must lie in [0, 1]")
    return f"samples of shape {expected[1:]}"


# --------------------------------------------------------------------------------- envs
def _make(subject: Subject, **kwargs: Any) -> Any:
    import gymnasium

    from forgelab.envs.registration import apply_env_registrations

    apply_env_registrations(subject.host)
    return gymnasium.make(subject.name, **kwargs)


@check("env")
def check_env_id_and_time_limit(subject: Subject) -> str | None:
    """The id is namespaced, and ``gymnasium.make`` applies the registered episode limit."""
    namespace, sep, _ = subject.name.partition("/")
    if not sep or not namespace:
        plugin = subject.registration.source.plugin or "mylab"  # the plugin's name as namespace
        raise CheckFailure(f"{subject.name!r} has no namespace: use '{plugin}/{subject.name}'")
    env = _make(subject)
    try:
        limit = subject.registration.metadata.get("max_episode_steps")
        if limit is not None and env.spec.max_episode_steps != limit:
            raise CheckFailure(f"the registered max_episode_steps={limit} is not applied "
                               f"(spec says {env.spec.max_episode_steps})")
    finally:
        env.close()
    return None if limit is not None else "advice: no max_episode_steps registered"


def _checker_advice(subject: Subject, run_checker: Callable[[Any], Any]) -> str | None:
    """Run an env checker on a fresh env; its warnings, one line each, as the check's note."""
    env = _make(subject)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_checker(env)
    finally:
        env.close()
    advice = sorted({str(w.message).splitlines()[0] for w in caught})
    return ("advice: " + " | ".join(advice)) if advice else None


@check("env")
def check_gymnasium_env_checker(subject: Subject) -> str | None:
    """gymnasium's ``check_env`` (spaces, reset/step signatures and seeding, determinism)."""
    from gymnasium.utils.env_checker import check_env

    return _checker_advice(subject, lambda env: check_env(env.unwrapped, skip_render_check=True))


@check("env")
def check_sb3_env_checker(subject: Subject) -> str | None:
    """Stable-Baselines3's ``check_env`` (what SB3 agents need from the spaces)."""
    from stable_baselines3.common.env_checker import check_env

    return _checker_advice(subject, lambda env: check_env(env, warn=True, skip_render_check=True))


@check("env")
def check_render_modes(subject: Subject) -> str | None:
    """Every declared render mode renders after reset (rgb_array: HxWx3 uint8, ansi: str)."""
    import numpy as np

    probe = _make(subject)
    modes = list(probe.metadata.get("render_modes", []))
    probe.close()
    for mode in modes:
        env = _make(subject, render_mode=mode)
        try:
            env.reset(seed=0)
            frame = env.render()
            if mode == "rgb_array":
                frame = np.asarray(frame)
                if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                    raise CheckFailure(f"render_mode='rgb_array' gave {frame.shape} "
                                       f"{frame.dtype}, expected (H, W, 3) uint8")
            elif mode == "ansi" and not isinstance(frame, str):
                raise CheckFailure(f"render_mode='ansi' gave {type(frame).__name__}, not str")
        finally:
            env.close()
    return f"render modes: {', '.join(modes) or 'none'}"


@check("env")
def check_env_same_seed_same_episode(subject: Subject) -> str | None:
    """Reset with one seed and the same actions give the same episode, through the time limit."""
    import numpy as np

    def episode() -> list[Any]:
        env = _make(subject)
        env.action_space.seed(1)
        obs, _ = env.reset(seed=123)
        trace = [np.asarray(obs).tolist()]
        for _ in range(200):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append((np.asarray(obs).tolist(), float(reward), terminated, truncated))
            if terminated or truncated:
                break
        env.close()
        return trace

    first, second = episode(), episode()
    if first != second:
        raise CheckFailure("the same seed and actions gave different episodes: draw every "
                           "random number from self.np_random")
    return f"{len(first) - 1} steps"


# ----------------------------------------------------------------------------- datasets
def _dataset(subject: Subject, seed: int) -> Any:
    from forgelab.core.config import validate_options

    reg = subject.registration
    options = {**subject.conformance.get("dataset_options", {}),
               **subject.overrides.get("dataset_options", {})}
    validated = validate_options(reg.load_config(), options, "dataset_options", reg.name)
    return reg.load_factory()(validated, seed)


@check("dataset")
def check_dataset_splits(subject: Subject) -> str | None:
    """The factory returns ``Splits``: non-empty train/val/test of ``sample_shape``, labels in
    range, images in [0, 1]."""
    import torch

    data = _dataset(subject, 0)
    for attr in ("train", "val", "test", "sample_shape", "num_classes", "kind"):
        if not hasattr(data, attr):
            raise CheckFailure(f"the factory must return forgelab.generative.datasets.Splits "
                               f"(no {attr!r} on {type(data).__name__})")
    if data.kind not in ("image", "points"):
        raise CheckFailure(f"kind must be 'image' or 'points', not {data.kind!r}")
    sizes = []
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        x, y = split.x, split.y
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise CheckFailure(f"{name}.x must be a float tensor")
        if len(x) == 0 or tuple(x.shape[1:]) != tuple(data.sample_shape):
            raise CheckFailure(f"{name}.x has shape {tuple(x.shape)}; expected "
                               f"(n > 0, *{tuple(data.sample_shape)})")
        if not torch.isfinite(x).all():
            raise CheckFailure(f"{name}.x has non-finite values")
        if data.kind == "image" and (x.min() < 0 or x.max() > 1):
            raise CheckFailure(f"{name}.x: image values must lie in [0, 1]")
        if (y is None) != (data.num_classes is None):
            raise CheckFailure(f"{name}.y must be given exactly when num_classes is set")
        if y is not None and (y.shape != (len(x),) or y.min() < 0 or
                              y.max() >= data.num_classes):
            raise CheckFailure(f"{name}.y must be ({len(x)},) labels in [0, "
                               f"{data.num_classes})")
        sizes.append(len(x))
    return f"train/val/test = {sizes[0]}/{sizes[1]}/{sizes[2]}, sample shape {data.sample_shape}"


@check("dataset")
def check_dataset_determinism(subject: Subject) -> str | None:
    """The same seed gives identical splits."""
    def arrays(data: Any) -> list[Any]:
        return [[getattr(data, n).x, getattr(data, n).y] for n in ("train", "val", "test")]

    diff = tree_diff(arrays(_dataset(subject, 0)), arrays(_dataset(subject, 0)))
    if diff:
        raise CheckFailure(f"the same seed gave different splits at {diff}")
    return None
