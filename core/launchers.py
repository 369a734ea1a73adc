"""Launchers run a study's trials; each trial is one real ``forgelab run`` process.

Launchers are plugins (the ``register_launchers`` hook). A launcher gets a :class:`LaunchContext`
and runs its trials however it likes (a local process pool, a Ray cluster, a batch queue), as
long as every trial goes through :func:`plan_trial` / :func:`spawn` / :func:`outcome`, so that:

- a trial whose last run finished is never run again; one with a checkpoint is resumed with
  ``forgelab run --resume`` (after a kill, a lost node, or a rerun of the sweep);
- a trial's run directory lives in ``<study>/<trial>/`` and its output in ``trial.log`` there;
- a lock file in the trial folder, held by the ``forgelab run`` process itself, makes sure two
  processes never run one trial at once (an orphan still writing its last checkpoint included);
- a child dies with its launcher process (Linux: ``PR_SET_PDEATHSIG``): it gets SIGTERM, saves a
  checkpoint and exits 143, so even a SIGKILLed sweep leaves resumable trials.

The built-in ``local`` launcher is here; ``ray`` is in :mod:`forgelab.core.ray_launcher`.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from forgelab.core.errors import ConfigError
from forgelab.core.study import FAILED, FINISHED, INTERRUPTED, RUNNING, StudySpec, Trial

LOG_FILE = "trial.log"
LOCK_FILE = ".trial.lock"
PID_FILE = "trial.pid"  # the process id of the trial's running `forgelab run`
STOP_CODES = {128 + signal.SIGINT, 128 + signal.SIGTERM}


@dataclass
class LaunchContext:
    """Everything a launcher needs to run a study's unfinished trials.

    :param spec: the study (its directory, experiment, launcher options).
    :param trials: the trials to run, configuration-major (seeds of a configuration adjacent).
    :param args_for: the ``key=value`` overrides of a trial's ``forgelab run``.
    :param workers: trials at once (the local launcher; Ray schedules by resources).
    :param threads: CPU threads of one trial (what each trial asks a scheduler for).
    :param retries: how often a failed trial is run again in this sweep.
    :param record: call after changing a trial, to write the study file.
    """

    spec: StudySpec
    trials: list[Trial]
    args_for: Callable[[Trial], list[str]]
    workers: int
    threads: int = 1
    retries: int = 0
    gpus_per_trial: float = 0.0
    record: Callable[[Trial], None] = lambda trial: None
    env: dict[str, str] = field(default_factory=dict)


class Launcher(Protocol):
    """What ``register_launchers`` registers a factory for (``factory() -> Launcher``)."""

    def launch(self, ctx: LaunchContext) -> int | None:
        """Run ``ctx.trials``; return the signal number that stopped the sweep, or None."""


# ------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class LauncherInfo:
    name: str
    factory: Callable[[], Launcher] | str
    description: str
    plugin: str

    def load(self) -> Launcher:
        from forgelab.core.registry import import_string

        factory = import_string(self.factory) if isinstance(self.factory, str) else self.factory
        return factory()


def available_launchers(host: Any) -> dict[str, LauncherInfo]:
    """Every launcher the installed plugins register; a failing plugin is reported, skipped."""
    found: dict[str, LauncherInfo] = {}
    for impl in host.pm.hook.register_launchers.get_hookimpls():

        def register(name: str, factory: Any, *, description: str = "",
                     _plugin: str = impl.plugin_name) -> None:
            if name in found:
                print(f"warning: launcher {name!r} of plugin {_plugin!r} ignored: plugin "
                      f"{found[name].plugin!r} registers it too", file=sys.stderr)
                return
            found[name] = LauncherInfo(name, factory, description, _plugin)

        try:
            impl.function(register=register)
        except Exception as exc:  # a broken plugin must not take the other launchers down
            print(f"warning: plugin {impl.plugin_name!r} failed to register launchers: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return found


def get_launcher(host: Any, name: str) -> Launcher:
    from forgelab.core.errors import unknown_name_message

    found = available_launchers(host)
    if name not in found:
        raise ConfigError(unknown_name_message("launcher", name, found),
                          hint="the ray launcher needs `pip install forgelab[ray]`"
                          if name == "ray" else None)
    return found[name].load()


# ------------------------------------------------------------------- one trial's process
def run_dirs(root: Path) -> list[Path]:
    """Run directories made in a trial folder (``<root>/<experiment>/<stamp>-<id>``), oldest
    first."""
    dirs = [p.parent for p in Path(root).glob("*/*/run.json")]
    return sorted(dirs, key=lambda p: (p.stat().st_mtime, p.name))


def _run_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


def finished_run(root: Path) -> Path | None:
    """The trial's last run directory when that run finished, else None."""
    runs = run_dirs(root)
    return runs[-1] if runs and _run_status(runs[-1]) == FINISHED else None


def plan_trial(root: Path, experiment: str, overrides: list[str]) -> tuple[list[str], bool] | None:
    """The ``forgelab`` arguments for a trial: resume its last run when it has a checkpoint,
    else start it. None when its last run already finished.

    :return: ``(arguments, resumed)`` or None.
    """
    if finished_run(root) is not None:
        return None
    runs = run_dirs(root)
    for run_dir in reversed(runs):
        if (run_dir / "checkpoints" / "latest").is_file():
            return ["run", "--no-progress", "--resume", str(run_dir)], True
    return ["run", "--no-progress", experiment, *overrides], False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: children outlive a SIGKILLed sweep
        pass


@dataclass
class TrialProcess:
    """A running ``forgelab run`` of one trial."""

    trial: Trial
    proc: subprocess.Popen
    lock: IO[str]
    log_offset: int
    root: Path

    def forward(self, signum: int) -> None:
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass


def lock_trial(root: Path) -> IO[str]:
    """Take the trial's lock (before :func:`plan_trial`, so the plan sees the last checkpoint).

    Blocks only while an orphan of a killed launcher is still saving its last checkpoint: the
    lock is passed on to the trial's process, which holds it until it exits.
    """
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / LOCK_FILE, "w")  # noqa: SIM115 - handed to the child
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def spawn(trial: Trial, root: Path, args: list[str], env: dict[str, str],
          lock: IO[str]) -> TrialProcess:
    """Start ``forgelab ARGS`` for ``trial`` in its own session (a terminal's Ctrl-C reaches the
    launcher only, which forwards it once: a second SIGINT would make the child quit unsaved)."""
    log_path = root / LOG_FILE
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} forgelab {' '.join(args)}\n"
                  .encode())
        log.flush()
        child_env = {k: v for k, v in {**os.environ, **env}.items() if k != "WANDB_SERVICE"}
        proc = subprocess.Popen([sys.executable, "-m", "forgelab.core.cli", *args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, start_new_session=True,
                                pass_fds=(lock.fileno(),), preexec_fn=_die_with_parent)
    (root / PID_FILE).write_text(f"{proc.pid}\n", encoding="utf-8")  # for people and tools
    return TrialProcess(trial, proc, lock, offset, root)


def last_error(log_path: Path, offset: int = 0) -> str | None:
    """The line that says why a trial failed: forgelab's ``error:`` line, else a traceback's
    last line, else the last line."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith("===")]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[:300]
    return lines[-1][:300] if lines else None


def outcome(trial: Trial, root: Path, exit_code: int, log_offset: int = 0) -> None:
    """Set a trial's status, exit code, run directory and error after its process ended."""
    if exit_code < 0:  # killed by a signal: report it as a shell would
        exit_code = 128 - exit_code
    runs = run_dirs(root)
    status = _run_status(runs[-1]) if runs else None
    trial.exit_code = exit_code
    trial.run_dir = str(runs[-1]) if runs else trial.run_dir
    trial.ended = time.time()
    if exit_code == 0 and status == FINISHED:
        trial.status, trial.error = FINISHED, None
    elif exit_code in STOP_CODES or status == "interrupted":
        trial.status, trial.error = INTERRUPTED, None
    else:
        trial.status = FAILED
        error = last_error(root / LOG_FILE, log_offset)
        if exit_code > 128:
            name = signal.Signals(exit_code - 128).name if exit_code - 128 in signal.valid_signals(
            ) else f"signal {exit_code - 128}"
            error = f"killed by {name}" + (f" ({error})" if error else "")
        trial.error = error or f"exit code {exit_code}"


def announce_stop(signum: int) -> None:
    """What a launcher says on stderr at the first SIGINT/SIGTERM of a study."""
    print(f"\n{signal.Signals(signum).name}: stopping; running trials save a "
          "checkpoint. Run the same command again to resume.", file=sys.stderr)


def begin(trial: Trial, resumed: bool) -> None:
    trial.status, trial.exit_code, trial.error = RUNNING, None, None
    trial.attempts += 1
    trial.resumed = trial.resumed or resumed
    trial.started = time.time()


# --------------------------------------------------------------------- local launcher
class LocalLauncher:
    """A process pool on this machine: ``ctx.workers`` trials at once, in order."""

    def launch(self, ctx: LaunchContext) -> int | None:
        queue = deque(ctx.trials)
        tries: dict[str, int] = {}
        running: dict[int, TrialProcess] = {}
        stop: list[int] = []

        def handler(signum: int, frame: Any) -> None:
            if not stop:
                announce_stop(signum)
            stop.append(signum)
            for job in running.values():
                job.forward(signum)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                while queue and not stop and len(running) < ctx.workers:
                    trial = queue.popleft()
                    job = self._start(ctx, trial)
                    if job is not None:
                        tries[trial.id] = tries.get(trial.id, 0) + 1
                        running[job.proc.pid] = job
                        if stop:  # the signal came while this one was starting
                            job.forward(stop[-1])
                if not running:
                    break
                pid, status = os.waitpid(-1, 0)  # any child; a signal handler runs meanwhile
                job = running.pop(pid, None)
                if job is None:
                    continue
                code = os.waitstatus_to_exitcode(status)
                job.proc.returncode = code  # reaped here, not by Popen
                job.lock.close()
                outcome(job.trial, job.root, code, job.log_offset)
                ctx.record(job.trial)
                if (job.trial.status == FAILED and not stop
                        and tries[job.trial.id] <= ctx.retries):
                    queue.appendleft(job.trial)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return stop[0] if stop else None

    @staticmethod
    def _start(ctx: LaunchContext, trial: Trial) -> TrialProcess | None:
        root = ctx.spec.study_dir / trial.id
        lock = lock_trial(root)
        plan = plan_trial(root, ctx.spec.experiment, ctx.args_for(trial))
        if plan is None:  # finished by an earlier sweep whose study file missed it
            lock.close()
            outcome(trial, root, 0)
            ctx.record(trial)
            return None
        args, resumed = plan
        job = spawn(trial, root, args, ctx.env, lock)
        begin(trial, resumed)
        trial.node = "local"
        ctx.record(trial)
        return job


def default_workers(threads: int) -> int:
    """Trials at once on this machine: the usable cores over each trial's threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, threads))
