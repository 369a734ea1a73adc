"""The component under test and the tiny runs the checks share.

A :class:`Subject` is one registered component plus the experiment the kit runs it with: the
kit's tiny defaults, the registration's ``conformance=`` mapping and the caller's overrides,
merged in that order. Runs go through the real runner (``forgelab.core.runner``) with W&B
disabled, in a private folder, and are cached so that several checks read the same run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from forgelab.core.registry import Registration, Registry

# The candidate environments for an agent that names none: one per action-space family
# (Pendulum's episodes cut to 50 steps: evaluation episodes and their videos stay short).
CANDIDATE_ENVS: dict[str, dict[str, Any]] = {
    "discrete": {"id": "CartPole-v1"},
    "continuous": {"id": "Pendulum-v1", "max_episode_steps": 50},
}
# Tiny budgets: enough for a few updates of every built-in with its conformance options.
AGENT_DEFAULTS: dict[str, Any] = {
    "train": {"total_steps": 64, "eval_episodes": 1, "log_every": 16},
}
MODEL_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "train": {"epochs": 2, "eval_every": 1},
}


class CheckFailure(AssertionError):
    """A conformance check found the component breaking the contract."""


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _KitHost:
    """The real host's registry with the subject's factory wrapped (to send SIGTERM mid-run).

    Everything but the registry is the real host's (plugin table, families, the
    :meth:`~forgelab.core.pluginhost.PluginHost.first_time` marks), so plugin envs are put
    into gymnasium's registry once, as for the real host.
    """

    def __init__(self, host: Any, reg: Registration, factory: Callable[..., Any]) -> None:
        self._host = host
        self.registry = Registry()
        for item in host.registry:
            self.registry.add(dataclasses.replace(item, factory=factory)
                              if (item.kind, item.name) == (reg.kind, reg.name) else item)

    def __getattr__(self, name: str) -> Any:  # anything else the runner asks a host for
        return getattr(self._host, name)

    def provenance(self, config: Any) -> dict[str, dict[str, Any]]:
        return self._host.provenance(config)


class _StopTrigger:
    """Sends this process a real SIGTERM at the component's first progress report after
    step 0 (its first logged row or progress update), once."""

    def __init__(self) -> None:
        self.armed = False
        self.fired_at: dict[str, Any] | None = None
        self.outside: Any = None  # the SIGTERM handler before the run (never signal that one)

    def arm(self) -> None:
        self.armed = True
        self.outside = signal.getsignal(signal.SIGTERM)

    def attach(self, ctx: Any) -> None:
        log, update = ctx.tracker.log, ctx.progress.update

        def fire(axes: Mapping[str, Any]) -> None:
            if signal.getsignal(signal.SIGTERM) is self.outside:
                return  # outside fit (the runner's handler is not installed): not now
            if self.armed and any(isinstance(v, (int, float)) and v > 0 for v in axes.values()):
                self.armed = False
                self.fired_at = dict(axes)
                # The runner's handler (main thread) runs before os.kill returns to us.
                os.kill(os.getpid(), signal.SIGTERM)

        def logged(metrics: Mapping[str, Any], **axes: Any) -> None:
            log(metrics, **axes)
            fire(axes)

        def updated(step: int, *args: Any, **kwargs: Any) -> None:
            update(step, *args, **kwargs)
            fire({"step": step})

        ctx.tracker.log = logged
        ctx.progress.update = updated


class Subject:
    """One component under test.

    :param registration: the component's registration (from the plugin host).
    :param host: the plugin host it came from.
    :param workdir: where the kit's runs are written.
    :param overrides: experiment keys merged over the kit's defaults and ``conformance=``.
    """

    def __init__(self, registration: Registration, host: Any, workdir: Path,
                 overrides: Mapping[str, Any] | None = None) -> None:
        self.registration = registration
        self.host = host
        self.workdir = Path(workdir)
        self.overrides = dict(overrides or {})
        self.kind = registration.kind
        self.name = registration.name
        self._runs: dict[str, Path] = {}
        self._trigger = _StopTrigger()
        self._env: dict[str, Any] | None = None
        self.notes: dict[str, str] = {}
        self.output = ""  # what the runner printed during the kit's runs

    # ------------------------------------------------------------------ config
    @property
    def conformance(self) -> dict[str, Any]:
        return dict(self.registration.metadata.get("conformance") or {})

    def experiment(self, **extra: Any) -> dict[str, Any]:
        """The tiny experiment mapping this component runs with (before validation)."""
        key = "agent" if self.kind == "agent" else "model"
        base = copy.deepcopy(AGENT_DEFAULTS if self.kind == "agent" else MODEL_DEFAULTS)
        base.update({"name": f"conformance-{self.name.replace('/', '-')}", key: self.name,
                     "seed": 0, "device": "cpu", "tracking": {"mode": "disabled"},
                     "output_dir": str(self.workdir / "runs")})
        data = deep_merge(deep_merge(base, self.conformance), self.overrides)
        if self.kind == "agent" and "env" not in data:
            data["env"] = self.default_env()
        return deep_merge(data, extra)

    def supported_envs(self) -> dict[str, dict[str, Any]]:
        """The candidate envs (one per action-space family) the registration accepts."""
        from forgelab.core import runner
        from forgelab.core.config import validate_experiment
        from forgelab.core.errors import ForgelabError

        supported = {}
        for family, env in CANDIDATE_ENVS.items():
            data = deep_merge(deep_merge(copy.deepcopy(AGENT_DEFAULTS), self.conformance),
                              self.overrides)
            data.update(agent=self.name, env=env, tracking={"mode": "disabled"})
            try:
                runner.prepare(validate_experiment(data), self.host)
            except ForgelabError as exc:
                self.notes[family] = f"{env['id']}: {exc.message}"
                continue
            supported[family] = env
        return supported

    def default_env(self) -> dict[str, Any]:
        if self._env is None:
            supported = self.supported_envs()
            if not supported:
                raise CheckFailure(
                    f"agent {self.name!r} accepts neither "
                    f"{' nor '.join(env['id'] for env in CANDIDATE_ENVS.values())}"
                    f" ({'; '.join(self.notes.values())}); name the env it needs with "
                    "register(..., conformance={'env': 'mylab/Env-v0'})")
            self._env = next(iter(supported.values()))
        return self._env  # type: ignore[return-value]

    def config(self, **extra: Any) -> Any:
        from forgelab.core.config import validate_experiment

        return validate_experiment(self.experiment(**extra), source=f"conformance {self.name}")

    # -------------------------------------------------------------------- runs
    def _kit_host(self) -> _KitHost:
        real = self.registration.load_factory()
        trigger = self._trigger

        def factory(options: Any, ctx: Any) -> Any:
            component = real(options, ctx)
            if trigger.armed and not ctx.resumed:
                trigger.attach(ctx)
            return component

        return _KitHost(self.host, self.registration, factory)

    def run(self, key: str = "a", **extra: Any) -> Path:
        """A finished tiny run (cached by ``key``; runs with the same ``extra`` are identical)."""
        if key not in self._runs:
            from forgelab.core import runner

            with self.quiet():
                self._runs[key] = runner.train(self.config(**extra), host=self._kit_host(),
                                               show_progress=False)
        return self._runs[key]

    @contextlib.contextmanager
    def quiet(self):
        """The runner's messages (result lines, "SIGTERM: stopping...") go to ``self.output``
        rather than the terminal (the kit reports per check), and W&B stays off even where
        ``WANDB_MODE`` is set: the kit's runs are private."""
        buffer = io.StringIO()
        saved = os.environ.get("WANDB_MODE")
        os.environ["WANDB_MODE"] = "disabled"
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                yield
        finally:
            self.output += buffer.getvalue()
            if saved is None:
                os.environ.pop("WANDB_MODE", None)
            else:
                os.environ["WANDB_MODE"] = saved

    def stopped_run(self) -> tuple[Path, dict[str, Any] | None]:
        """A tiny run stopped by a real SIGTERM at its first report after step 0."""
        if "stopped" not in self._runs:
            from forgelab.core import runner

            if threading.current_thread() is not threading.main_thread():
                raise CheckFailure("the SIGTERM check must run in the main thread (the "
                                   "runner's signal handler is installed only there)")
            self._trigger.arm()
            try:
                with self.quiet():
                    self._runs["stopped"] = runner.train(self.config(), host=self._kit_host(),
                                                         show_progress=False)
            finally:
                self._trigger.armed = False
        return self._runs["stopped"], self._trigger.fired_at

    def resume(self, run_dir: Path) -> Path:
        from forgelab.core import runner

        with self.quiet():
            return runner.resume(run_dir, host=self._kit_host(), show_progress=False)

    def job(self, run_dir: Path, job_type: str = "eval") -> tuple[Any, Any, Path]:
        """A fresh component restored from ``run_dir``'s latest checkpoint, in a new job."""
        from forgelab.core import runner

        with self.quiet():
            return runner._job_in_run(run_dir, job_type, self._kit_host(), "latest")


def load_state(run_dir: Path) -> dict[str, Any]:
    """The latest checkpoint of a run, read with ``torch.load(weights_only=True)``."""
    import torch

    from forgelab.core.checkpoints import STATE_FILE, CheckpointManager

    directory = CheckpointManager(Path(run_dir) / "checkpoints").path("latest")
    if directory is None:
        raise CheckFailure(f"the run wrote no checkpoint ({run_dir})")
    try:
        return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckFailure(f"the checkpoint does not load with torch.load(weights_only=True): "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's (or job's) ``metrics.jsonl``."""
    import json

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def comparable_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Logged rows without wall-clock values (``_time``, ``perf/*``): what a seed decides."""
    rows = []
    for row in read_rows(run_dir):
        row = {k: v for k, v in row.items() if k != "_time" and not k.startswith("perf/")}
        if isinstance(row.get("summary"), dict):
            row["summary"] = {k: v for k, v in row["summary"].items()
                              if not k.startswith("perf/")}
        if any(k not in AXES for k in row):
            rows.append(row)
    return rows


AXES = ("global_step", "epoch", "step")


def tree_diff(a: Any, b: Any, path: str = "", ignore: tuple[str, ...] = ()) -> str | None:
    """The first place where two checkpoint trees differ (None when they are equal).

    :param ignore: paths containing any of these strings are not compared.
    """
    import torch

    where = path or "(root)"
    if ignore and any(part in path for part in ignore):
        return None
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{where}: {type(a).__name__} vs {type(b).__name__}"
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{where}: shape/dtype {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
        if not torch.equal(a, b) and not (a.is_floating_point() and
                                          torch.equal(a.isnan(), b.isnan()) and
                                          torch.equal(a[~a.isnan()], b[~b.isnan()])):
            return f"{where}: tensors differ"
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys differ ({sorted(map(str, set(a) ^ set(b)))})"
        for key in a:
            found = tree_diff(a[key], b[key], f"{path}.{key}" if path else str(key), ignore)
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = tree_diff(x, y, f"{path}[{i}]", ignore)
            if found:
                return found
        return None
    if a != b and not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):
        return f"{where}: {a!r} vs {b!r}"
    return None
