"""``forgelab sweep``: plan a study, validate every trial, then hand the unfinished ones to a
launcher and keep ``study.json`` up to date (see :mod:`forgelab.core.study` for the syntax)."""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path
from typing import Any

from forgelab.core.errors import ConfigError, ForgelabError
from forgelab.core.study import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    STUDY_FILE,
    StudySpec,
    Trial,
    format_value,
    is_sweep_file,
    load_study,
    make_trials,
    save_study,
    spec_from_items,
    summarize,
    trial_overrides,
)

EPILOG = """examples:
  forgelab sweep cartpole-ppo seed=0:10                     10 seeds of one configuration
  forgelab sweep cartpole-ppo agent.learning_rate=1e-3,3e-4 agent.n_steps=32,64 seed=0:5
  forgelab sweep pendulum-ppo 'agent.hidden_sizes=[64,64],[128,128]' seed=0:3 --workers 2
  forgelab sweep study.yaml --dry-run                       a sweep file (grid, random, seeds)
  forgelab sweep study.yaml --launcher ray                  RAY_ADDRESS=... for a cluster
  forgelab sweep --resume runs/<study>                      finish what is unfinished
  forgelab sweep cartpole-ppo agent.gamma=0.98,0.99 seed=0:3 --export wandb

Values with commas inside (lists, mappings) are one value: commas split only outside brackets
and quotes. Rerunning the same command resumes the study: finished trials are kept, interrupted
ones resume from their checkpoints, failed ones run again.
"""


def add_parser(sub: Any) -> None:
    """The ``sweep`` subcommand's arguments (called by :mod:`forgelab.core.cli`)."""
    p = sub.add_parser("sweep", help="run a study: seeds, grids and random searches of an "
                       "experiment, locally or on Ray", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="experiment name/YAML, or a sweep file")
    p.add_argument("items", nargs="*", metavar="key=v1,v2", help="axes, seeds, fixed overrides")
    p.add_argument("--workers", type=int, help="trials at once (default: cores / threads)")
    p.add_argument("--launcher", help="local (default) or ray, or a plugin's launcher")
    p.add_argument("--retries", type=int, help="run a failed trial again up to N times")
    p.add_argument("--name", help="study name (default: experiment + a hash of the sweep)")
    p.add_argument("--resume", metavar="STUDY_DIR", help="finish an existing study")
    p.add_argument("--dry-run", action="store_true", help="print the trials, run nothing")
    p.add_argument("--export", choices=["wandb"], help="write a W&B sweep file, run nothing")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    p.add_argument("--gpus-per-trial", type=float, help="Ray: GPUs per trial (e.g. 0.5)")
    p.add_argument("--search", choices=["optuna"], help="Bayesian search over the axes "
                   "instead of the whole grid (pip install 'forgelab[optuna]')")
    p.add_argument("--trials", type=int, help="--search: configurations to try (default 10)")
    p.add_argument("--metric", help="--search: the objective (default eval/return_mean), the "
                   "mean over seeds of its last value")
    p.add_argument("--direction", choices=["maximize", "minimize"],
                   help="--search: default maximize")


def _apply_flags(spec: StudySpec, args: argparse.Namespace) -> None:
    # a sweep file's own values were checked when it was read, naming its keys
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})")
    if getattr(args, "retries", None) is not None and args.retries < 0:
        raise ConfigError(f"--retries must be 0 or more (got {args.retries})")
    for flag in ("launcher", "workers", "retries", "address", "gpus_per_trial"):
        value = getattr(args, flag, None)
        if value is not None:
            setattr(spec, flag, value)
    if getattr(args, "search", None) or spec.search:
        search = {"method": "optuna", "trials": 10, "metric": "eval/return_mean",
                  "direction": "maximize", "seed": 0, **(spec.search or {})}
        for flag in ("trials", "metric", "direction"):
            if getattr(args, flag, None) is not None:
                search[flag] = getattr(args, flag)
        if search["method"] != "optuna" or int(search["trials"]) < 1:
            raise ConfigError(f"search: {search!r}: write {{method: optuna, trials: N}}")
        spec.search = search


def _merge(spec: StudySpec, new: list[Trial], old: list[Trial]) -> list[Trial]:
    """New trials take their records from the study file; old trials not asked for stay."""
    by_id = {t.id: t for t in old}
    merged = [by_id.pop(t.id, t) for t in new]
    return merged + list(by_id.values())


def _validate(spec: StudySpec, trials: list[Trial], host: Any) -> tuple[int, list[str], str]:
    """Check every configuration before anything runs; the trial's threads, tags and device."""
    from forgelab.core import runner
    from forgelab.core.config import load_experiment

    threads, tags, device = 1, [], "cpu"
    seen: set[str] = set()
    for trial in trials:
        if trial.config_id in seen:
            continue
        seen.add(trial.config_id)
        values = {**spec.fixed, **trial.params}
        overrides = [f"{k}={format_value(v)}" for k, v in values.items()]
        if trial.seed is not None:
            overrides.append(f"seed={trial.seed}")
        try:
            config = load_experiment(spec.experiment, overrides)
            runner.prepare(config, host)
        except ForgelabError as exc:
            raise ConfigError(f"trial {trial.id} ({' '.join(overrides) or 'no overrides'}): "
                              f"{exc.message}", hint=exc.hint) from None
        threads = max(threads, int(getattr(config, "threads", None) or 1))
        tags, device = list(config.tracking.tags), config.device
    return threads, tags, device


def _lock(spec: StudySpec):
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    handle = open(spec.study_dir / ".study.lock", "w")  # noqa: SIM115 - held while running
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ForgelabError(f"study {spec.name!r} is being run by another `forgelab sweep`",
                            hint=f"wait for it, or stop it; its record is {spec.study_dir}/"
                            f"{STUDY_FILE}") from None
    return handle


def _print_trials(spec: StudySpec, trials: list[Trial], workers: int) -> None:
    n_configs = len({t.config_id for t in trials})
    seeds = spec.seeds if spec.seeds is not None else ["(experiment's)"]
    todo = [t for t in trials if not t.done]
    print(f"study {spec.name}: {n_configs} configuration(s) x {len(seeds)} seed(s) = "
          f"{len(trials)} trial(s), {len(trials) - len(todo)} finished")
    print(f"  directory {spec.study_dir}\n  launcher {spec.launcher}, workers {workers}, "
          f"retries {spec.retries}")
    if spec.fixed:
        print("  fixed: " + " ".join(f"{k}={format_value(v)}" for k, v in spec.fixed.items()))
    for trial in trials:
        params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
        seed = "" if trial.seed is None else f"seed={trial.seed}"
        print(f"  {trial.id:<12} {trial.status:<11} {params} {seed}".rstrip())


def run_sweep(args: argparse.Namespace, host: Any) -> int:
    """The whole command; returns the exit code (0 all finished, 1 a trial failed,
    128 + signal when stopped)."""
    from forgelab.core.launchers import LaunchContext, default_workers, get_launcher

    old: list[Trial] = []
    if args.resume:
        spec, old = load_study(Path(args.resume))
        if args.target or args.items:
            raise ConfigError("--resume STUDY_DIR takes no experiment or axes",
                              hint="rerun the original command, or `forgelab sweep --resume "
                              f"{args.resume}` alone")
    elif not args.target:
        raise ConfigError("what to sweep? `forgelab sweep EXPERIMENT key=v1,v2 seed=0:5` or "
                          "`forgelab sweep STUDY.yaml`", hint="`forgelab sweep --help` shows "
                          "the syntax")
    else:
        spec = spec_from_items(args.target, list(args.items), name=args.name)
        if getattr(args, "search", None) and not args.name and not is_sweep_file(args.target):
            spec.name += "-optuna"  # never the directory of the same axes' grid
        if (spec.study_dir / STUDY_FILE).is_file():
            old_spec, old = load_study(spec.study_dir)
            if old_spec.experiment != spec.experiment:
                raise ConfigError(f"study {spec.name!r} already exists for "
                                  f"{old_spec.experiment}", hint="choose another --name")
            if old_spec.fixed != spec.fixed:  # its finished trials ran with other settings
                changed = sorted(k for k in {**old_spec.fixed, **spec.fixed}
                                 if old_spec.fixed.get(k, "-") != spec.fixed.get(k, "-"))
                raise ConfigError(f"study {spec.name!r} was run with other fixed overrides "
                                  f"({', '.join(changed)})", hint="choose another --name; "
                                  "axes and seeds may change, adding trials to the study")
    _apply_flags(spec, args)
    if spec.search:  # Optuna picks the configurations; check the fixed part with one now
        trials = list(old)
        wanted = {t.id for t in old}
        threads, tags, device = _validate(spec, make_trials(spec)[:1], host)
    else:
        trials = _merge(spec, make_trials(spec, old), old)
        wanted = {t.id for t in make_trials(spec, old)}
        threads, tags, device = _validate(spec, [t for t in trials if t.id in wanted], host)
    launcher = get_launcher(host, spec.launcher)  # an unknown name fails before side effects
    if args.export == "wandb":
        from forgelab.core.wandb_agent import write_sweep_file

        path = write_sweep_file(spec)
        print(f"wrote {path}\n  start it with: wandb sweep {path}  (then: wandb agent ID)")
        return 0
    workers = spec.workers or default_workers(threads)
    if args.dry_run:
        if spec.search:
            from forgelab.core.optuna_search import search_space

            print(f"study {spec.name}: Optuna search of {spec.search['trials']} configuration(s)"
                  f" x {len(spec.seeds or [None])} seed(s), {spec.search['direction']} "
                  f"{spec.search['metric']}\n  space: " + ", ".join(
                      f"{k}={v}" for k, v in search_space(spec).items()))
            return 0
        _print_trials(spec, [t for t in trials if t.id in wanted], workers)
        return 0
    lock = _lock(spec)
    command = ["forgelab", "sweep", *sys.argv[2:]] if sys.argv[1:2] == ["sweep"] else None
    reruns = _reruns(spec, command)
    pending = [t for t in trials if t.id in wanted and not t.done]
    earlier = _finished_earlier(spec, pending)
    todo = [t for t in pending if not t.done]
    total = len(todo) if not spec.search else "?"
    numbers: dict[str, int] = {}  # a trial's place in the progress count: trials, not attempts
    ends: dict[str, int] = {}  # how often each trial ended in this sweep (retries: more)
    launched: set[str] = set()  # trials this sweep started: only their ends are news

    def record(trial: Trial) -> None:
        save_study(spec, trials, command, reruns)
        if trial.status == RUNNING:
            launched.add(trial.id)
        elif trial.status == FINISHED and trial.id not in launched:
            # a launcher found its run finished (by a sweep whose study file missed it)
            _say_finished_earlier(trial)
        elif trial.status in (FINISHED, FAILED, INTERRUPTED) and trial.id in launched:
            number = numbers.setdefault(trial.id, len(numbers) + 1)
            ends[trial.id] = ends.get(trial.id, 0) + 1
            retry = f", retry {ends[trial.id] - 1}/{spec.retries}" if ends[trial.id] > 1 else ""
            took = f" {trial.ended - trial.started:.1f} s" if trial.started and trial.ended \
                else ""
            extra = f": {trial.error}" if trial.error else ""
            print(f"[{number}/{total}] {trial.id} {trial.status} (exit {trial.exit_code}"
                  f"{retry}){took}{extra}", flush=True)

    save_study(spec, trials, command, reruns)
    what = (f"Optuna search of {spec.search['trials']} configuration(s)" if spec.search else
            f"{total} of {len(wanted)} trial(s) to run")
    print(f"study {spec.name}: {what}, launcher "
          f"{spec.launcher}, {workers if spec.launcher == 'local' else spec.workers or 'auto'}"
          f" worker(s); record {spec.study_dir / STUDY_FILE}", flush=True)
    for trial in earlier:
        _say_finished_earlier(trial)
    gpus = spec.gpus_per_trial if spec.gpus_per_trial is not None else (
        1.0 if device.startswith("cuda") else 0.0)
    ctx = LaunchContext(spec=spec, trials=todo, workers=workers, threads=threads,
                        retries=spec.retries, gpus_per_trial=gpus, record=record,
                        args_for=lambda t: trial_overrides(spec, t, tags),
                        env={"OMP_NUM_THREADS": str(threads)})
    started = time.monotonic()
    try:
        if spec.search:
            from forgelab.core.optuna_search import run_search

            stopped = run_search(spec, trials, ctx, launcher,
                                 lambda trial: _validate(spec, [trial], host))
            wanted = {t.id for t in trials}
        else:
            stopped = launcher.launch(ctx) if todo else None
    finally:
        save_study(spec, trials, command, reruns)
        lock.close()
    return _report(spec, [t for t in trials if t.id in wanted], stopped,
                   time.monotonic() - started, len(launched))


def _reruns(spec: StudySpec, command: list[str] | None) -> list[dict[str, Any]] | None:
    """The study's later sweeps with this one added (None for the sweep that makes it): its
    ``command`` stays the one that made it."""
    path = spec.study_dir / STUDY_FILE
    if not path.is_file() or command is None:
        return None
    previous = json.loads(path.read_text(encoding="utf-8")).get("reruns") or []
    return [*previous, {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}]


def _say_finished_earlier(trial: Trial) -> None:
    print(f"{trial.id} already finished before this sweep: {trial.run_dir}", flush=True)


def _finished_earlier(spec: StudySpec, trials: list[Trial]) -> list[Trial]:
    """Mark the trials whose last run finished although the study file says otherwise (a
    SIGKILLed sweep misses the end of a trial that finished meanwhile); returns them."""
    from forgelab.core.launchers import finished_run

    found = []
    for trial in trials:
        run_dir = finished_run(spec.study_dir / trial.id)
        if run_dir is not None:
            trial.status, trial.exit_code, trial.error = FINISHED, 0, None
            trial.run_dir = str(run_dir)
            trial.ended = (run_dir / "run.json").stat().st_mtime  # when it finished, not now
            found.append(trial)
    return found


def _report(spec: StudySpec, trials: list[Trial], stopped: int | None, seconds: float,
            ran: int) -> int:
    counts = summarize(trials)
    print(f"study {spec.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f" (this sweep ran {ran} trial(s) in {seconds:.1f} s); record: "
          f"{spec.study_dir / STUDY_FILE}")
    failed = [t for t in trials if t.status == FAILED]
    for trial in failed:
        print(f"  failed {trial.id} after {trial.attempts} attempt(s): {trial.error}\n"
              f"    log: {spec.study_dir / trial.id / 'trial.log'}", file=sys.stderr)
    if stopped:
        if trials and all(t.status == FINISHED for t in trials):
            # The stop came as the last trials ended: the study is complete all the same.
            print("stopped, but every trial had finished: nothing to resume", file=sys.stderr)
        else:
            print(f"stopped; resume with: forgelab sweep --resume {spec.study_dir}",
                  file=sys.stderr)
        return 128 + stopped
    if any(t.status != FINISHED for t in trials):
        print(f"unfinished trials; run again with: forgelab sweep --resume {spec.study_dir}",
              file=sys.stderr)
        return 1
    return 0
