"""The runner: from a validated experiment to a trained, checkpointed, logged component.

It owns everything around a component's ``fit``: registry lookup, option validation, device,
seeds, the run directory, the tracker, checkpoints, resume, and Ctrl-C / SIGTERM handling.
"""

from __future__ import annotations

import json
import math
import platform
import secrets
import shutil
import signal
import string
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from forgelab.core.config import ExperimentConfig, dump_yaml, read_yaml, validate_experiment
from forgelab.core.config import validate_options as _validate_options
from forgelab.core.errors import ConfigError, ForgelabError
from forgelab.core.family import Family
from forgelab.core.pluginhost import PluginHost, get_host
from forgelab.core.wandb_agent import run_info as agent_run_info

# The installed ones are recorded (the Atari extra's games and image resizing decide pixel runs).
VERSIONED_PACKAGES = ("forgelab", "torch", "gymnasium", "stable-baselines3", "numpy", "wandb",
                      "pluggy", "pydantic", "ale-py", "minatar", "opencv-python-headless",
                      "opencv-python")
RUN_INFO = "run.json"
CONFIG_FILE = "config.yaml"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def new_run_id() -> str:
    from forgelab.core.wandb_agent import adopt_run_id

    adopted = adopt_run_id()  # under a W&B sweep agent: W&B's run id (wandb ignores ours)
    if adopted:
        return adopted
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@dataclass
class PreparedRun:
    """An experiment with its component resolved, its options validated and its checks run."""

    config: ExperimentConfig
    options: BaseModel | dict[str, Any]
    factory: Any
    host: PluginHost
    family: Family

    def resolved_config(self) -> dict[str, Any]:
        """The config with the component's options filled in with their defaults."""
        data = self.config.model_dump(mode="json")
        options = (self.options.model_dump(mode="json") if isinstance(self.options, BaseModel)
                   else dict(self.options))
        data[f"{self.family.component_key}_options"] = options
        return data


def prepare(config: ExperimentConfig, host: PluginHost | None = None) -> PreparedRun:
    """Everything that can be checked before a run exists, the same for every family: the
    component's registration, its options, its inputs (the family's ``check_inputs``: an env's
    spaces, a dataset), the registration's own ``check`` and the device. ``--dry-run`` stops
    here, so it fails exactly when the run would."""
    host = host or get_host()
    family = host.family(config)
    key = family.component_key
    try:
        reg = host.registry.get(key, config.component)
    except ForgelabError as exc:
        raise ConfigError(f"{key}: {exc.message}", hint=exc.hint) from None
    options = _validate_options(reg.load_config(), config.component_options, key, reg.name,
                                experiment=config)
    inputs = family.load_support().check_inputs(config, host, reg)
    check = reg.load_check()
    if check is not None:
        check(options, config, inputs)
    from forgelab.core.device import resolve_device

    resolve_device(config.device)  # an absent device fails now, not after the run dir exists
    return PreparedRun(config=config, options=options, factory=reg.load_factory(), host=host,
                       family=family)


def create_run_dir(config: ExperimentConfig) -> tuple[Path, str]:
    """``<output_dir>/<experiment>/<YYYYmmdd-HHMMSS>-<id>/``, never reusing a directory."""
    from forgelab.core.faults import as_user_error

    root = Path(config.output_dir) / config.name
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"output_dir: {config.output_dir!r} (or a folder in it) is a file, "
                          "not a folder", hint="set output_dir= to a folder") from None
    except OSError as exc:
        raise (as_user_error(exc) or exc) from None
    while True:
        run_id = new_run_id()
        run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
        try:
            run_dir.mkdir()
            return run_dir, run_id
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_if_empty(root)
            raise (as_user_error(exc) or exc) from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when empty: other runs of the experiment stay
    except OSError:
        pass


def discard_run_dir(run_dir: Path) -> None:
    """Remove a run directory in which nothing was trained (and its experiment folder when
    that leaves it empty): a failed start leaves nothing half-made behind."""
    shutil.rmtree(run_dir, ignore_errors=True)
    _remove_if_empty(Path(run_dir).parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _record_status(path: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` at the end of a job; on a full disk, in place as a last resort (the
    status matters more than the atomic replace), and never raise over the job's own error."""
    try:
        _write_json(path, info)
    except OSError:
        try:
            path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"warning: could not update {path}: {exc.strerror or exc}", file=sys.stderr)


@contextmanager
def _stop_on_signals(ctx: Any):
    """First Ctrl-C / SIGTERM asks the component to stop (it then gets checkpointed);
    a second Ctrl-C interrupts at once, keeping the last checkpoint on disk."""

    def handler(signum: int, frame: Any) -> None:
        if ctx.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        ctx.request_stop(signum)
        name = signal.Signals(signum).name
        again = " (Ctrl-C again to quit without saving)" if signum == signal.SIGINT else ""
        print(f"\n{name}: stopping after the current update and saving a checkpoint{again}",
              file=sys.stderr)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals stay with the caller
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _tracker_for(run: PreparedRun, run_dir: Path, run_id: str, job_type: str,
                 resume: bool, wandb_config: dict[str, Any]):
    from forgelab.core.tracking import Tracker, resolve_mode

    config = run.config
    tracking = config.tracking
    mode = resolve_mode(tracking.mode)
    inputs = [name for _, name in run.family.input_names(config)]
    tags = list(dict.fromkeys([config.component, *inputs, *tracking.tags]))
    tracker = Tracker(
        run_dir, mode=mode, run_id=run_id, resume=resume,
        project=tracking.project, entity=tracking.entity,
        group=tracking.group or config.name, job_type=job_type, tags=tags,
        name=f"{config.name}-{run_id}", config=wandb_config,
    )
    for axis, patterns in run.family.axes:
        tracker.define_axis(axis, list(patterns))
    return tracker


def build_context(run: PreparedRun, run_dir: Path, run_id: str, job_type: str, resume: bool,
                  wandb_config: dict[str, Any], progress_total: int | None = None,
                  progress_initial: int = 0, show_progress: bool = True):
    """Device, seeds, tracker, checkpoints and progress for one job in ``run_dir``."""
    from forgelab.core.checkpoints import CheckpointManager
    from forgelab.core.component import RunContext
    from forgelab.core.device import (
        configure_cpu_math,
        configure_threads,
        resolve_device,
        seed_everything,
    )
    from forgelab.core.loop import TrainingLoop
    from forgelab.core.progress import Progress

    config = run.config
    device = resolve_device(config.device)
    seed_everything(config.seed)
    configure_cpu_math()
    configure_threads(config.threads)  # every family alike: native, SB3 and generative
    tracker = _tracker_for(run, run_dir, run_id, job_type, resume, wandb_config)
    checkpoints = CheckpointManager(
        run_dir / "checkpoints",
        tracker=tracker if config.tracking.log_checkpoints else None,
        artifact_name=f"{config.name}-{run_id}",
    )
    progress = Progress(progress_total, unit=run.family.unit, initial=progress_initial,
                        enabled=show_progress, description=config.name)
    ctx = RunContext(config=config, run_dir=run_dir, device=device, seed=config.seed,
                     tracker=tracker, checkpoints=checkpoints, progress=progress,
                     registry=run.host.registry, job_type=job_type, resumed=resume,
                     family=run.family)
    ctx.loop = TrainingLoop(ctx, run.family)
    checkpoints.loop = ctx.loop
    ctx.inputs = run.family.load_support().run_inputs(config, ctx)
    return ctx


def train(config: ExperimentConfig, host: PluginHost | None = None,
          show_progress: bool = True, prepared: PreparedRun | None = None) -> Path:
    """Run a new training job; returns its run directory.

    :param prepared: ``prepare(config, host)``'s result when the caller already has it (the
        CLI prepares once for ``--dry-run`` and the run alike, so the env is built once).
    """
    from forgelab.core.faults import as_user_error
    from forgelab.core.runlock import RunLock

    run = prepared if prepared is not None and prepared.config is config else prepare(config,
                                                                                      host)
    run_dir, run_id = create_run_dir(config)
    lock = RunLock(run_dir)
    try:
        lock.acquire()
        resolved = run.resolved_config()
        (run_dir / CONFIG_FILE).write_text(dump_yaml(resolved), encoding="utf-8")
        info = {"run_id": run_id, "experiment": config.name, "status": "running",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": package_versions(),
                "components": run.host.provenance(config), **agent_run_info()}
        _write_json(run_dir / RUN_INFO, info)
    except BaseException as exc:  # a full disk, or SIGTERM right at the start
        lock.release()
        discard_run_dir(run_dir)
        raise (as_user_error(exc) or exc) from None
    try:
        return _fit(run, run_dir, info, resume=False, show_progress=show_progress)
    finally:
        lock.release()


def prepare_resume(run_dir: Path, overrides: list[str] | None = None,
                   host: PluginHost | None = None) -> tuple[PreparedRun, dict[str, Any], bool]:
    """The saved run's config with ``overrides`` applied and validated (for ``--dry-run`` too).

    :return: the prepared run, its ``run.json`` and whether anything was overridden.
    """
    from forgelab.core.config import apply_overrides, parse_overrides

    run_dir = Path(run_dir)
    data, info = load_run(run_dir)
    parsed = parse_overrides(list(overrides or []))
    for key, _ in parsed:
        if key.split(".")[0] not in {"train", "tracking"}:
            raise ConfigError(f"cannot change {key!r} when resuming: only train.* and "
                              "tracking.* may change", hint="start a new run instead")
    config = validate_experiment(apply_overrides(data, parsed), source=str(run_dir / CONFIG_FILE))
    _fill_resume_defaults(config, host or get_host())
    return prepare(config, host), info, bool(parsed)


def _fill_resume_defaults(config: ExperimentConfig, host: PluginHost) -> None:
    """Give options a run's saved config lacks the values its options class lists in
    ``resume_defaults``: a config.yaml lists every option, so a missing one is newer than the
    run, and the run continues as it was made (e.g. PPO's ``gradients: autograd``)."""
    try:
        reg = host.registry.get(host.family(config).component_key, config.component)
        schema = reg.load_config()
    except ForgelabError:
        return  # prepare() says what is wrong
    options = getattr(config, f"{config.kind}_options", None)  # (the mapping itself)
    if isinstance(options, dict):
        for key, value in getattr(schema, "resume_defaults", {}).items():
            options.setdefault(key, value)


def resume(run_dir: Path, overrides: list[str] | None = None, host: PluginHost | None = None,
           show_progress: bool = True) -> Path:
    """Continue a run from its latest checkpoint with full state and the same W&B run id.

    Only ``train.*`` and ``tracking.*`` may be overridden (e.g. a longer ``train.total_steps``).
    """
    from forgelab.core.loading import nothing_to_resume
    from forgelab.core.runlock import RunLock

    run, info, changed = prepare_resume(run_dir, overrides, host)
    reason = nothing_to_resume(Path(run_dir), run.config, info, run.family)
    if reason is not None:  # say why, and open no W&B run for it
        print(reason, file=sys.stderr)
        return Path(run_dir)
    with RunLock(Path(run_dir)):  # one writer per run: a second resumer is refused here
        if changed:
            (Path(run_dir) / CONFIG_FILE).write_text(dump_yaml(run.resolved_config()),
                                                     encoding="utf-8")
        return _fit(run, Path(run_dir), info, resume=True, show_progress=show_progress)


def exit_status(run_dir: Path) -> int:
    """The process exit code for a finished job: 0, or 128 + the signal that stopped it
    (130 Ctrl-C, 143 SIGTERM), so schedulers and sweep agents can tell a stopped run."""
    info = json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    if info.get("status") != "interrupted":
        return 0
    return 128 + int(info.get("stop_signal") or signal.SIGINT)


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a run directory's ``config.yaml`` and ``run.json``."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / RUN_INFO).is_file():
        raise ForgelabError(f"{run_dir} is not a forgelab run directory "
                            f"(no {CONFIG_FILE} / {RUN_INFO})",
                            hint="pass a folder like runs/<experiment>/<timestamp>-<id>")
    try:
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForgelabError(f"{run_dir / RUN_INFO} is unreadable: {exc}",
                            hint="restore it from a copy; it holds the run id "
                            "(the W&B run id) and the status") from None
    if not isinstance(info, dict) or not isinstance(info.get("run_id"), str):
        raise ForgelabError(f"{run_dir / RUN_INFO} is not a forgelab run record "
                            "(a JSON object with a run_id)",
                            hint="restore it from a copy")
    return read_yaml(run_dir / CONFIG_FILE), info


def _restore(component: Any, ctx: Any, state: dict[str, Any], checkpoint_dir: Path) -> None:
    """Put a loaded checkpoint back: the component's state, its own files, the training
    loop's schedule state and the global RNG."""
    from forgelab.core.checkpoints import loading_errors, restore_rng
    from forgelab.core.loading import restore_component

    restore_component(component, state, checkpoint_dir)
    with loading_errors(checkpoint_dir):
        if isinstance(state.get("loop"), dict):
            ctx.loop.load_state_dict(state["loop"])
        restore_rng(state["rng"])


def _load_for_resume(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """Recover what a killed save left, load ``latest`` and drop the metrics.jsonl rows logged
    after it (the resumed run logs those steps again)."""
    from forgelab.core.checkpoints import CheckpointManager
    from forgelab.core.tracking import truncate_rows

    manager = CheckpointManager(run_dir / "checkpoints")
    for action in manager.recover():
        print(f"checkpoints: {action}", file=sys.stderr)
    state, checkpoint_dir = manager.load("latest")
    rows = state.get("log_rows")
    if isinstance(rows, int):
        dropped = truncate_rows(run_dir / "metrics.jsonl", rows)
        if dropped:
            print(f"metrics.jsonl: dropped {dropped} rows logged after {checkpoint_dir.name}",
                  file=sys.stderr)
    return state, checkpoint_dir


def _build(run: PreparedRun, ctx: Any) -> Any:
    """``factory(options, ctx)``; whatever a factory raises becomes one clear error."""
    from forgelab.core.faults import as_user_error

    try:
        return run.factory(run.options, ctx)
    except ForgelabError:
        raise
    except Exception as exc:
        mapped = as_user_error(exc)
        if mapped is not None:
            raise mapped from None
        first = (str(exc).splitlines() or [""])[0][:300]
        raise ForgelabError(f"{run.config.component!r} could not be built: "
                            f"{type(exc).__name__}: {first}",
                            hint="a bug or an unsupported setting in the component's plugin; "
                            "`forgelab plugins` shows where it comes from") from None


def _failure(exc: BaseException, component: Any) -> ForgelabError | None:
    """The clear error for what stopped ``fit``: divergence, a machine fault or bad input."""
    from forgelab.core.faults import as_user_error
    from forgelab.core.guard import diverged_cause

    if isinstance(exc, ForgelabError):
        return exc
    if not isinstance(exc, Exception):
        return None
    cause = diverged_cause(component)  # a NaN policy fails in torch before any check sees it
    return cause if cause is not None else as_user_error(exc)


def _release(component: Any) -> None:
    """Close what the component holds open (envs, async worker processes), once its last
    checkpoint is saved: native agents keep their envs to the end of ``fit`` because that
    checkpoint snapshots them. Without this, workers lived on until garbage collection (in a
    notebook or a Ray worker) or were terminated at interpreter exit."""
    close = getattr(component, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # the run's own outcome matters more than a failed close
            print(f"warning: could not close {type(component).__name__}: {exc}",
                  file=sys.stderr)


def _fit(run: PreparedRun, run_dir: Path, info: dict[str, Any], resume: bool,
         show_progress: bool) -> Path:
    from forgelab.core.faults import as_user_error
    from forgelab.core.results import recorded_seconds

    config = run.config
    total = run.family.budget(config)
    session_start = time.monotonic()
    state = checkpoint_dir = None
    if resume:
        state, checkpoint_dir = _load_for_resume(run_dir)
    wandb_config = {**run.resolved_config(), "versions": info.get("versions", {}),
                    "components": info.get("components", {})}
    try:
        ctx = build_context(run, run_dir, info["run_id"], "train", resume, wandb_config,
                            progress_total=total,
                            progress_initial=int(state["step"]) if state else 0,
                            show_progress=show_progress)
        ctx.checkpoints.metrics_log = ctx.tracker  # checkpoints record metrics.jsonl's length
        ctx.tracker.stop_on_nonfinite_loss = True  # the divergence guard (forgelab.core.guard)
    except BaseException as exc:  # e.g. W&B could not log in: nothing ran, leave nothing behind
        if not resume:
            discard_run_dir(run_dir)
        raise (as_user_error(exc) or exc) from None
    try:
        # A factory that raises or a checkpoint that does not fit (the component's own checks
        # ran in prepare): nothing was trained, so a new run leaves nothing behind and a
        # resumed one keeps its status.
        component = _build(run, ctx)
        if state is not None:
            _restore(component, ctx, state, checkpoint_dir)
    except BaseException as exc:
        ctx.progress.close()
        ctx.tracker.finish(exit_code=1, quiet=True)
        if not resume:
            discard_run_dir(run_dir)
        raise (as_user_error(exc) or exc) from None
    if resume:
        note = getattr(component, "resume_note", None)
        if note:
            print(f"note: {note}", file=sys.stderr)
        info.update(status="running", resumed=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        info.pop("error", None)
        _record_status(run_dir / RUN_INFO, info)
    exit_code = 1
    status = "failed"
    try:
        with _stop_on_signals(ctx):
            try:
                ctx.loop.start(int(getattr(component, "step", 0)))
                ctx.loop.catch_up(component)
                component.fit()
                ctx.checkpoints.save(component)
            except KeyboardInterrupt as exc:
                status = "interrupted"
                signum = int(getattr(exc, "signum", None) or signal.SIGINT)
                info["stop_signal"] = signum
                latest = ctx.checkpoints.path_or_none("latest")
                print("interrupted: " + (
                    f"kept the last checkpoint ({latest.name}); resume with "
                    f"`forgelab run --resume {run_dir}`" if latest is not None else
                    "no checkpoint had been saved yet, so there is nothing to resume; start "
                    "the run again"), file=sys.stderr)
                exit_code = 128 + signum
                return run_dir
        status = "interrupted" if ctx.stop_requested else "finished"
        if ctx.stop_requested:
            info["stop_signal"] = ctx.stop_signal
        exit_code = 0
        if ctx.stop_requested:
            if ctx.stop_signal == signal.SIGTERM:  # a W&B sweep agent requeues the run
                ctx.tracker.mark_preempting()
            print(f"stopped at step {component.step}; checkpoint saved. Resume with "
                  f"`forgelab run --resume {run_dir}`", file=sys.stderr)
    except BaseException as exc:
        from forgelab.core.guard import DivergenceError

        if isinstance(exc, KeyboardInterrupt):  # SIGTERM just before training took over
            status = "interrupted"
            info["stop_signal"] = int(getattr(exc, "signum", None) or signal.SIGINT)
            exit_code = 128 + info["stop_signal"]
            raise
        error = _failure(exc, component)
        if error is None:
            raise
        status = "diverged" if isinstance(error, DivergenceError) else "failed"
        if isinstance(error, DivergenceError):
            latest = ctx.checkpoints.path_or_none("latest")
            error.hint = "lower the learning rate or clip gradients and start a new run; " + (
                f"the last finite checkpoint ({latest.name}) is still `latest`"
                if latest is not None else "no finite checkpoint had been saved")
        info["error"] = error.message
        exit_code = error.exit_code
        raise error from None
    finally:
        _release(component)
        ctx.progress.close()
        # Where training got to (a stop lands between logged rows) and the time spent training,
        # summed over sessions (the gaps between a stop and a resume are not the run's).
        info.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    step=int(getattr(component, "step", 0) or 0),
                    seconds=round((recorded_seconds(info) or 0.0)  # earlier sessions
                                  + time.monotonic() - session_start, 1))
        _record_status(run_dir / RUN_INFO, info)
        try:
            ctx.tracker.finish(exit_code=exit_code)
        except OSError as exc:  # a full disk: W&B's own files; the run's error comes first
            print(f"warning: W&B could not finish: {exc.strerror or exc}", file=sys.stderr)
    from forgelab.core.results import print_run_result

    print_run_result(run_dir)  # result, best checkpoint, duration, report/resume commands
    return run_dir


def open_job(run: PreparedRun, run_dir: Path, job_type: str, source_run: str | None,
             checkpoint: str, extra_config: dict[str, Any] | None = None) -> Any:
    """A new ``<run_dir>/<job_type>s/<time>-<id>/`` job beside a saved run, with its context: a
    W&B run of ``job_type`` whose config names the source run and checkpoint. A job reads
    checkpoints and never writes one. Whatever fails on the way leaves no job folder (and no
    offline W&B run) behind; :func:`_end_job` finishes it."""
    from forgelab.core.faults import as_user_error

    job_root = Path(run_dir) / f"{job_type}s"
    job_id = new_run_id()
    job_dir = job_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{job_id}"
    try:
        job_dir.mkdir(parents=True)
    except OSError as exc:
        _remove_if_empty(job_root)
        raise (as_user_error(exc) or exc) from None
    wandb_config = {**run.resolved_config(), "versions": package_versions(),
                    "source_run": source_run, "checkpoint": checkpoint, **(extra_config or {})}
    try:
        ctx = build_context(run, job_dir, job_id, job_type, False, wandb_config,
                            show_progress=False)
    except BaseException as exc:  # W&B could not log in, say
        discard_run_dir(job_dir)
        raise (as_user_error(exc) or exc) from None
    ctx.checkpoints.tracker = None
    return ctx


def _job_in_run(run_dir: Path, job_type: str, host: PluginHost | None, which: str,
                prepared: PreparedRun | None = None) -> tuple[Any, Any, Path]:
    """Rebuild a saved run's component in a new job (:func:`open_job`) with its checkpoint and
    the training loop's state loaded, for `forgelab sample` and the conformance kit.
    (`forgelab eval` restores the component alone: :func:`forgelab.core.playback.evaluate`.)"""
    from forgelab.core.faults import as_user_error
    from forgelab.core.loading import checkpoint_dir as find_checkpoint
    from forgelab.core.loading import read_checkpoint

    data, info = load_run(run_dir)
    run = prepared or prepare(validate_experiment(data, source=str(Path(run_dir) / CONFIG_FILE)),
                              host)
    checkpoint_dir = find_checkpoint(Path(run_dir), which)  # best, latest or a step
    state = read_checkpoint(checkpoint_dir)
    ctx = open_job(run, run_dir, job_type, info.get("run_id"), checkpoint_dir.name)
    try:
        component = _build(run, ctx)
        _restore(component, ctx, state, checkpoint_dir)
    except BaseException as exc:
        _end_job(ctx, ok=False)
        raise (as_user_error(exc) or exc) from None
    return component, ctx, checkpoint_dir


def _end_job(ctx: Any, ok: bool) -> None:
    """Finish an eval / sample job's tracker; a failed job's folder is removed."""
    try:
        ctx.tracker.finish(exit_code=0 if ok else 1, quiet=not ok)
    finally:
        if not ok:
            discard_run_dir(ctx.run_dir)


def evaluate(run_dir: Path, which: str = "best", host: PluginHost | None = None
             ) -> tuple[dict[str, float], Path]:
    """Re-evaluate a saved run's checkpoint; logs a W&B run with ``job_type=eval``.

    The same job as ``forgelab eval`` (:func:`forgelab.core.playback.evaluate`, which also
    takes episodes, videos and stochastic actions).
    """
    from forgelab.core import playback

    return playback.evaluate(Path(run_dir), which=which, host=host)


def _check_sample_request(run: PreparedRun, n: int, out: Path | None) -> None:
    """What `forgelab sample` can tell before it starts a job."""
    factory = run.factory
    if isinstance(factory, type) and not hasattr(factory, "sample_to_file"):
        raise ForgelabError(f"{run.config.component!r} ({run.family.name}) cannot draw samples",
                            hint="`forgelab sample` works on generative-model runs; "
                            "`forgelab eval` evaluates any run")
    if out is not None:
        if out.suffix.lower() not in {".png", ".csv"}:
            raise ForgelabError(f"cannot write samples to {out}: use a .png file "
                                "(or .csv for 2-D points)")
        if not out.parent.is_dir():
            raise ForgelabError(f"--out: the folder {out.parent} does not exist",
                                hint="create it first, or pick another --out")


def sample(run_dir: Path, n: int, out: Path | None, which: str = "best",
           host: PluginHost | None = None) -> Path:
    """Write ``n`` samples of a saved generative model to ``out``."""
    from forgelab.core.faults import as_user_error, check_memory

    data, _ = load_run(run_dir)
    out = Path(out) if out else None
    run = prepare(validate_experiment(data, source=str(Path(run_dir) / CONFIG_FILE)), host)
    _check_sample_request(run, n, out)
    component, ctx, _ = _job_in_run(run_dir, "sample", host, which, prepared=run)
    ok = False
    try:
        if not hasattr(component, "sample_to_file"):
            raise ForgelabError(f"{ctx.config.component!r} cannot draw samples",
                                hint="`forgelab sample` works on generative-model runs")
        # Noise, activations and the output grid: a few KB per sample, estimated before
        # allocating (Linux would rather kill the process later than refuse now).
        shape = getattr(getattr(component, "train_x", None), "shape", (0, 1024))
        per_sample = 4 * 8 * (int(math.prod(shape[1:])) + 1024)
        check_memory(n * per_sample, f"{n} samples", "--n")
        path = component.sample_to_file(n, out or ctx.run_dir / "samples.png")
        ok = True
    except Exception as exc:
        raise (as_user_error(exc) or exc) from None
    finally:
        _end_job(ctx, ok)
    return path
