"""``forgelab sweep ... --search optuna``: Bayesian search (Optuna's TPE) over a study's axes.

The search space is the study's axes (categorical) and the sweep file's ``random.params``
(uniform, loguniform, randint, choice). Each Optuna trial is one *configuration*: all its seeds
run together through the study's launcher, and the objective is the mean over seeds of the
metric's last value in each run's ``metrics.jsonl`` (``--metric``, default
``eval/return_mean``); a configuration with a failed seed is a failed Optuna trial. Nothing
stops single seeds.

Optuna's storage is a journal file, ``<study>/optuna.log``: no server. A sweep that is killed
leaves its Optuna trials RUNNING forever (the journal has no heartbeat), so the next sweep of the
study fails them and enqueues their parameters again: the configuration keeps its folder, and its
seeds resume from their checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgelab.core.config import parse_value
from forgelab.core.errors import ConfigError
from forgelab.core.launchers import LaunchContext
from forgelab.core.study import FINISHED, StudySpec, Trial, format_value

JOURNAL = "optuna.log"


def search_space(spec: StudySpec) -> dict[str, Any]:
    """Optuna distributions of the axes (values as strings: lists and None are categories too)
    and of the random parameters."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space: dict[str, Any] = {k: CategoricalDistribution([format_value(v) for v in values])
                             for k, values in spec.axes.items()}
    for key, dist in ((spec.random or {}).get("params") or {}).items():
        (kind, args), = dist.items()
        if kind == "choice":
            space[key] = CategoricalDistribution([format_value(v) for v in args])
        elif kind in ("uniform", "loguniform"):
            space[key] = FloatDistribution(float(args[0]), float(args[1]),
                                           log=kind == "loguniform")
        elif kind == "randint":
            space[key] = IntDistribution(int(args[0]), int(args[1]) - 1)
        else:
            raise ConfigError(f"random.params.{key}: Optuna cannot search {kind!r}",
                              hint="use uniform, loguniform, randint or choice")
    if not space:
        raise ConfigError("--search optuna needs something to search",
                          hint="give axes (key=v1,v2) or random.params in a sweep file")
    return space


def final_metric(run_dir: str | None, metric: str) -> float | None:
    """The last value of ``metric`` in a run's ``metrics.jsonl`` (None when never logged)."""
    if not run_dir:
        return None
    value = None
    try:
        with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as rows:
            for line in rows:
                row = json.loads(line) if line.strip() else {}
                if isinstance(row.get(metric), (int, float)):
                    value = float(row[metric])
    except (OSError, ValueError):
        return None
    return value


def run_search(spec: StudySpec, trials: list[Trial], ctx: LaunchContext, launcher: Any,
               validate: Callable[[Trial], None]) -> int | None:
    """Ask Optuna for configurations, run their seeds, tell it the mean metric, until
    ``spec.search["trials"]`` configurations are done; returns the stopping signal or None.

    :param trials: the study's trial records (new ones are appended).
    :param validate: raises ConfigError for a configuration the experiment rejects.
    """
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise ConfigError("--search optuna needs Optuna", hint="pip install 'forgelab[optuna]'"
                          ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.search or {}
    budget, metric = int(search["trials"]), search["metric"]
    storage = JournalStorage(JournalFileBackend(str(spec.study_dir / JOURNAL)))
    study = optuna.create_study(
        study_name=spec.name, storage=storage, load_if_exists=True,
        direction=search["direction"], sampler=optuna.samplers.TPESampler(seed=search["seed"]))
    requeued = set(search.setdefault("requeued", []))
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # left by a killed sweep: fail it, and ask for the same configuration again first
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(stale.params)
        requeued.add(stale.number)
    search["requeued"] = sorted(requeued)
    space = search_space(spec)
    by_params = {json.dumps(t.params, sort_keys=True): t.config_id for t in trials}
    by_id = {t.id: t for t in trials}
    seeds = spec.seeds if spec.seeds is not None else [None]
    per_batch = max(1, ctx.workers // len(seeds))
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)

    while True:
        done = [t for t in study.get_trials(deepcopy=False, states=ended)
                if t.number not in requeued]
        remaining = budget - len(done)
        if remaining <= 0:
            break
        batch = []
        for _ in range(min(per_batch, remaining)):
            asked = study.ask(space)
            params = {k: parse_value(v) if isinstance(v, str) else v
                      for k, v in asked.params.items()}
            key = json.dumps(params, sort_keys=True)
            if key not in by_params:
                used = set(by_params.values())
                by_params[key] = next(f"c{i:02d}" for i in range(len(used) + 1)
                                      if f"c{i:02d}" not in used)
            config_id = by_params[key]
            members = []
            for seed in seeds:
                trial_id = config_id if seed is None else f"{config_id}-s{seed}"
                if trial_id not in by_id:
                    by_id[trial_id] = Trial(trial_id, config_id, params, seed)
                    trials.append(by_id[trial_id])
                members.append(by_id[trial_id])
            try:
                validate(members[0])
            except ConfigError as exc:
                for member in members:
                    member.status, member.error = "failed", exc.message
                study.tell(asked, state=optuna.trial.TrialState.FAIL)
                continue
            batch.append((asked, members))
        todo = [m for _, members in batch for m in members if not m.done]
        for member in todo:
            ctx.record(member)
        ctx.trials = todo
        stopped = launcher.launch(ctx) if todo else None
        for asked, members in batch:
            values = [final_metric(m.run_dir, metric) for m in members]
            if stopped and not all(m.status == FINISHED for m in members):
                continue  # stays RUNNING: the next sweep requeues it and resumes its seeds
            if all(m.status == FINISHED for m in members) and None not in values:
                study.tell(asked, sum(values) / len(values))
            else:
                study.tell(asked, state=optuna.trial.TrialState.FAIL)
        if stopped:
            return stopped
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        config = by_params.get(json.dumps({k: parse_value(v) if isinstance(v, str) else v
                                           for k, v in best.params.items()}, sort_keys=True))
        search["best"] = {"config_id": config, "value": best.value, "params": best.params}
        print(f"optuna: best {metric} {best.value:.4g} (mean over {len(seeds)} seed(s)) for "
              f"{config}: " + " ".join(f"{k}={v}" for k, v in best.params.items()))
    return None
