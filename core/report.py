"""``forgelab report`` and ``forgelab compare``: honest aggregate results from run directories.

The numbers (:func:`analyse`, :func:`compare`) are plain data that become ``report.json``,
CSV files, PNG figures (:mod:`forgelab.core.report_figures`) and a static HTML page
(:mod:`forgelab.core.report_html`). The defaults follow Agarwal et al. 2021: every seed
shown, crashed and unfinished runs counted, IQM and median with stratified bootstrap intervals
labelled with n, and no interval as a headline below 5 seeds.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from forgelab.core import stats
from forgelab.core.errors import ForgelabError, closest
from forgelab.core.results import (
    Configuration,
    RunRecord,
    curve_metric,
    default_metric,
    family_metrics,
    find_run_dirs,
    group_runs,
    lower_is_better,
    read_run,
    split_attempts,
    study_name,
    trials_without_runs,
)

MIN_SEEDS_FOR_INTERVAL = 5
FIGURE_PATTERNS = ("curves-[0-9][0-9]-*.png", "seeds-[0-9][0-9]-*.png", "compare.png")
MAX_CURVE_POINTS = 200
AXIS_LABELS = {"global_step": "environment steps", "epoch": "epoch"}
UNDERCOVERAGE_NOTE = (
    "Percentile bootstrap intervals under-cover at small n: on bimodal RL-like returns a "
    "nominal 95% interval of the mean covered the truth in about 64% of studies at n=3, 83% "
    "at n=5, 86% at n=10 and 93% at n=20. Read them as optimistic below n=10; with fewer than "
    f"{MIN_SEEDS_FOR_INTERVAL} seeds no interval is shown as a headline.")


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _run_entry(run: RunRecord, metric: str, threshold: float | None, lower: bool,
               root: Path | None) -> dict[str, Any]:
    """One seed's row: final and best value, progress, steps to threshold."""
    steps, values = run.series(metric)
    if not values and metric in run.summary:
        value = run.summary[metric]
        values = [float(value)] if isinstance(value, int | float) else []
        steps = [run.last_step or 0] * len(values)
    finite = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    best = (min if lower else max)(finite, key=lambda sv: sv[1]) if finite else None
    last = run.last_step
    entry: dict[str, Any] = {
        "run_id": run.run_id, "seed": run.seed, "status": run.status,
        "path": str(run.path if root is None else _relative(run.path, root)),
        "final": values[-1] if values else None, "final_step": steps[-1] if steps else None,
        "best": best[1] if best else None, "best_step": best[0] if best else None,
        "last_step": last, "budget": run.budget, "duration_s": run.duration_s,
        "evaluations": len(values),
        "truncated": bool(run.budget and (last or 0) < run.budget),
    }
    if threshold is not None:
        reached = next((s for s, v in finite if (v <= threshold if lower else v >= threshold)),
                       None)
        entry["steps_to_threshold"] = reached
        entry["censored_at"] = None if reached is not None else (last or run.budget)
    return entry


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _aggregate(values: list[float], reps: int, seed: int) -> dict[str, Any]:
    n = len(values)
    out: dict[str, Any] = {"n": n, "headline_interval": n >= MIN_SEEDS_FOR_INTERVAL,
                           "iqm": None, "iqm_ci": None, "median": None, "median_ci": None,
                           "mean": None, "std": None, "min": None, "max": None}
    if not n:  # every run failed: the page shows dashes, the counts say why
        return out
    for name in ("iqm", "median"):
        est, lo, hi = stats.stratified_bootstrap_ci(np.array(values), name, reps=reps, seed=seed)
        out[name], out[f"{name}_ci"] = est, [lo, hi]
    out.update(mean=float(np.mean(values)), std=float(np.std(values, ddof=1)) if n > 1 else None,
               min=float(np.min(values)), max=float(np.max(values)))
    return out


def _curve(runs: list[RunRecord], metric: str, reps: int, seed: int) -> dict[str, Any]:
    """IQM over seeds at each step, each run holding its latest value until its last step."""
    series = [run.series(metric) for run in runs]
    series = [(np.array(s), np.array(v)) for s, v in series if s]
    if not series:
        return {"metric": metric, "steps": [], "iqm": [], "low": [], "high": [], "n": []}
    grid = np.unique(np.concatenate([s for s, _ in series]))
    if len(grid) > MAX_CURVE_POINTS:  # e.g. per-episode training returns
        grid = np.unique(grid[np.linspace(0, len(grid) - 1, MAX_CURVE_POINTS).round().astype(int)])
    table = np.full((len(series), len(grid)), np.nan)
    for i, (steps, values) in enumerate(series):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        idx = np.searchsorted(steps, grid, side="right") - 1
        alive = (idx >= 0) & (grid <= steps[-1])
        table[i, alive] = values[idx[alive]]
    out: dict[str, Any] = {"metric": metric, "steps": grid.tolist(), "iqm": [], "low": [],
                           "high": [], "n": []}
    for column in table.T:
        col = column[np.isfinite(column)]
        out["n"].append(int(col.size))
        if col.size >= MIN_SEEDS_FOR_INTERVAL:
            est, lo, hi = stats.stratified_bootstrap_ci(col, "iqm", reps=reps, seed=seed)
        else:
            est, lo, hi = (stats.iqm(col) if col.size else math.nan), math.nan, math.nan
        for key, value in (("iqm", est), ("low", lo), ("high", hi)):
            out[key].append(_finite(value))
    return out


def analyse_configuration(config: Configuration, index: int, metric: str | None,
                          threshold: float | None, lower: bool | None, reps: int, seed: int,
                          root: Path | None = None) -> dict[str, Any]:
    """Everything the report says about one configuration."""
    first = config.runs[0]
    metric = metric or default_metric(first)
    lower = lower_is_better(metric) if lower is None else lower
    # a finished run shows what is logged over time (a diverged one may have logged nothing)
    cmetric = curve_metric(metric, next((r for r in config.runs if r.status == "finished"),
                                        first))
    runs = [_run_entry(r, metric, threshold, lower, root) for r in config.runs]
    for entry, run in zip(runs, config.runs, strict=True):  # every seed's curve, as drawn
        steps, values = run.series(cmetric)
        entry["curve"] = {"steps": steps, "values": values}
    counts: dict[str, int] = {"total": len(runs)}
    order = ["finished", "failed", "diverged", "running", "unfinished", "interrupted"]
    for status in sorted({e["status"] for e in runs},
                         key=lambda s: (order.index(s) if s in order else len(order), s)):
        counts[status] = sum(1 for e in runs if e["status"] == status)
    used = [e for e in runs if e["status"] == "finished" and _finite(e["final"]) is not None]
    for entry in runs:
        entry["in_aggregate"] = entry in used
    counts["no_metric"] = sum(1 for e in runs if e["status"] == "finished" and e not in used)
    flags = []
    budgets = sorted({e["budget"] for e in runs if e["budget"]})
    if len(budgets) > 1:
        flags.append(f"different budgets: {', '.join(f'{b:,}' for b in budgets)}")
    for entry in runs:
        if entry["status"] == "running":  # still training: not a run that stopped
            flags.append(f"run {entry['run_id']} (seed {entry['seed']}) is running: at "
                         f"{entry['last_step'] or 0:,} of {entry['budget'] or 0:,} so far")
        elif entry["truncated"]:
            flags.append(f"run {entry['run_id']} (seed {entry['seed']}) stopped at "
                         f"{entry['last_step'] or 0:,} of {entry['budget']:,} "
                         f"({entry['status']})")
        elif entry["status"] != "finished":
            flags.append(f"run {entry['run_id']} (seed {entry['seed']}) is {entry['status']}")
    seeds = [e["seed"] for e in runs]
    repeated = sorted({s for s in seeds if s is not None and seeds.count(s) > 1})
    if repeated:
        flags.append(f"seeds used more than once: {repeated}")
    earlier = [{"run_id": r.run_id, "seed": r.seed, "status": r.status,
                "trial": r.path.parent.parent.name,
                "path": str(r.path if root is None else _relative(r.path, root))}
               for r in config.earlier]
    for trial in sorted({e["trial"] for e in earlier}):
        statuses = [e["status"] for e in earlier if e["trial"] == trial]
        flags.append(f"trial {trial} was retried: {len(statuses)} earlier attempt(s) "
                     f"({', '.join(statuses)}) not counted, only its last run")
    if counts["no_metric"]:
        flags.append(f"{counts['no_metric']} finished run(s) never logged {metric}")
    if metric.startswith("train/"):
        flags.append(f"{metric} is a training statistic, not an evaluation of the policy")
    entry: dict[str, Any] = {
        "index": index, "id": f"c{index}", "label": config.label, "hash": config.hash,
        "experiment": config.experiment, "component": first.component, "task": first.task,
        "axis": first.axis, "axis_label": AXIS_LABELS.get(first.axis, first.axis),
        "unit_label": first.family.unit_label if first.family else "steps",
        "metric": metric, "lower_is_better": lower, "budgets": budgets, "counts": counts,
        "seeds": [e["seed"] for e in used], "runs": runs, "flags": flags,
        "earlier_attempts": earlier,
        "aggregate": _aggregate([e["final"] for e in used], reps, seed),
        "config": config.key,
        # where the runs logged to W&B, so that `report --wandb` joins them
        "tracking": {k: (first.config.get("tracking") or {}).get(k)
                     for k in ("project", "entity", "group")},
    }
    if threshold is not None:
        reached = sum(1 for e in runs if e["steps_to_threshold"] is not None)
        steps = [e["steps_to_threshold"] if e["steps_to_threshold"] is not None else math.inf
                 for e in runs]
        med = float(np.median(steps)) if steps else math.nan
        entry["threshold"] = {
            "value": threshold, "reached": reached, "n": len(runs),
            "fraction": reached / len(runs) if runs else None,
            "wilson": list(stats.wilson_interval(reached, len(runs))),
            # steps and epochs are counts: a whole median prints as one (2, not 2.00)
            "median_steps": int(med) if math.isfinite(med) and med.is_integer()
            else _finite(med),
            # more than half the seeds missed: the median is only known to exceed the budget
            "median_censored": bool(runs) and not math.isfinite(med),
            "budget": max(budgets) if budgets else None,
        }
    entry["curve"] = _curve(config.runs, cmetric, reps, seed)
    return entry


def _configuration_metric(config: Configuration, by_family: dict[str | None, str]) -> str:
    """The family's metric for the report, unless this configuration's finished runs never
    log it (e.g. agents trained without evaluations): then their own headline metric."""
    family = config.runs[0].family
    metric = by_family.get(family.name if family else None) or default_metric(config.runs[0])
    finished = [r for r in config.runs if r.status == "finished"]
    if finished and not any(metric in r.metric_names() for r in finished):
        return default_metric(finished[0])
    return metric


def load_configurations(paths: list[str | Path]) -> tuple[list[Configuration], list[str]]:
    """Run directories under ``paths`` grouped into configurations, and any study names."""
    current, earlier = split_attempts(find_run_dirs(paths))
    runs = [read_run(d) for d in current]
    studies = [n for n in (study_name(Path(p)) for p in paths if Path(p).is_dir()) if n]
    return group_runs(runs, [read_run(d) for d in earlier]), studies


def check_metric_logged(metric: str, runs: list[RunRecord], paths: list[str | Path]) -> None:
    """Refuse a ``--metric`` that no run logged (a typo would give an empty report), naming
    the metrics the runs did log, closest first."""
    logged: dict[str, None] = {}
    for run in runs:
        logged.update(dict.fromkeys(run.metric_names()))
    if not logged or metric in logged:  # runs that logged nothing yet: nothing to check
        return
    close = difflib.get_close_matches(metric, list(logged), n=len(logged), cutoff=0.0)
    guess = closest(metric, logged)
    shown = ", ".join(close[:12]) + (f" (+{len(close) - 12} more)" if len(close) > 12 else "")
    raise ForgelabError(f"--metric {metric}: no run in {', '.join(map(str, paths))} logged "
                        f"it; they logged: {shown}",
                        hint=f"did you mean --metric {guess}?" if guess else "pass one of "
                        "those, or leave --metric out for the family's headline metric")


def missing_trials(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Trials of the studies in ``paths`` that have no run directory to read."""
    return [{**t, "study": study_name(Path(p))} for p in paths if Path(p).is_dir()
            for t in trials_without_runs(Path(p))]


def analyse(paths: list[str | Path], metric: str | None = None, threshold: float | None = None,
            lower: bool | None = None, reps: int = stats.DEFAULT_REPS,
            seed: int = stats.DEFAULT_SEED, root: Path | None = None) -> dict[str, Any]:
    """The report's numbers for the runs under ``paths``.

    :param metric: headline metric (default: ``eval/return_mean`` for agents, a test metric
        for generative models).
    :param threshold: success level: fraction of seeds reaching it and steps to reach it.
    :param lower: whether smaller is better (default: guessed from the metric's name).
    :param reps: bootstrap resamples; :param seed: their generator's seed.
    """
    if reps < 1:
        raise ForgelabError(f"--reps must be positive (got {reps})")
    configs, studies = load_configurations(paths)
    if metric:
        check_metric_logged(metric, [run for config in configs for run in config.runs], paths)
    if root is None and len(paths) == 1 and Path(paths[0]).is_dir():
        root = Path(paths[0])  # run directories shown relative to the study / runs folder
    by_family = family_metrics([run for config in configs for run in config.runs])
    analysed = [analyse_configuration(c, i, metric or _configuration_metric(c, by_family),
                                      threshold, lower, reps, seed, root)
                for i, c in enumerate(configs)]
    metrics = sorted({c["metric"] for c in analysed})
    if threshold is not None and len(metrics) > 1:
        raise ForgelabError(f"--threshold needs one metric, but these runs report "
                            f"{', '.join(metrics)}",
                            hint="choose one with --metric, or report the runs separately")
    from importlib.metadata import version

    return {
        "forgelab_report": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "forgelab_version": version("forgelab"), "sources": [str(p) for p in paths],
        "studies": studies, "threshold": threshold,
        "trials_without_runs": missing_trials(paths),
        "bootstrap": {"reps": reps, "seed": seed, "confidence": 0.95, "method": "percentile, "
                      "stratified by task", "min_seeds_for_headline": MIN_SEEDS_FOR_INTERVAL},
        "notes": [UNDERCOVERAGE_NOTE],
        "configurations": analysed,
    }


def parse_references(items: list[str]) -> dict[str, tuple[float, float]]:
    """``TASK=LOW:HIGH`` (e.g. ``CartPole-v1=9.4:500``) -> ``{task: (low, high)}``."""
    refs = {}
    for item in items:
        task, _, span = item.rpartition("=")
        low, _, high = span.partition(":")
        try:
            refs[task] = (float(low), float(high))
        except ValueError:
            raise ForgelabError(f"--reference {item!r}: expected TASK=LOW:HIGH",
                                hint="e.g. --reference CartPole-v1=9.4:500 (random and "
                                "expert scores)") from None
        if not task or refs[task][0] == refs[task][1]:
            raise ForgelabError(f"--reference {item!r}: needs a task and LOW != HIGH")
    return refs


def compare(report_a: dict[str, Any], report_b: dict[str, Any],
            references: dict[str, tuple[float, float]] | None = None,
            reps: int = stats.DEFAULT_REPS, seed: int = stats.DEFAULT_SEED) -> dict[str, Any]:
    """A against B: one configuration per task on each side, paired by task.

    With several tasks, scores are normalised by the user's fixed reference scores
    ``(x - low) / (high - low)``, never by the observed min and max.
    """
    references = references or {}
    sides = {}
    for name, rep in (("A", report_a), ("B", report_b)):
        by_task: dict[str, dict[str, Any]] = {}
        for conf in rep["configurations"]:
            if conf["task"] in by_task:
                raise ForgelabError(
                    f"{name} ({', '.join(rep['sources'])}) holds several configurations on "
                    f"{conf['task']}: {by_task[conf['task']]['label']!r} and {conf['label']!r}",
                    hint="compare takes one configuration per environment on each side: pass "
                    "the run directories of one configuration")
            by_task[conf["task"]] = conf
        sides[name] = by_task
    tasks = sorted(set(sides["A"]) & set(sides["B"]))
    if not tasks:
        raise ForgelabError(f"A and B share no environment or dataset (A: "
                            f"{sorted(sides['A'])}, B: {sorted(sides['B'])})")
    missing = [t for t in tasks if t not in references]
    if len(tasks) > 1 and missing:
        raise ForgelabError(f"comparing over {len(tasks)} environments needs fixed reference "
                            f"scores to normalise by; none for {', '.join(missing)}",
                            hint="add --reference TASK=LOW:HIGH per environment (e.g. random "
                            "and expert returns); forgelab never normalises by the observed "
                            "min/max")
    metrics = {sides[s][t]["metric"] for s in "AB" for t in tasks}
    if len(metrics) > 1:
        raise ForgelabError(f"A and B report different metrics: {sorted(metrics)}",
                            hint="choose one with --metric")
    lower = sides["A"][tasks[0]]["lower_is_better"]
    per_task, xs, ys = [], [], []
    for task in tasks:
        a, b = sides["A"][task], sides["B"][task]
        va = [e["final"] for e in a["runs"] if e["in_aggregate"]]
        vb = [e["final"] for e in b["runs"] if e["in_aggregate"]]
        low, high = references.get(task, (0.0, 1.0))
        xs.append((np.array(va, dtype=float) - low) / (high - low))
        ys.append((np.array(vb, dtype=float) - low) / (high - low))
        u, p = stats.mann_whitney_u(va, vb) if va and vb else (math.nan, math.nan)
        seeds_a, seeds_b = set(a["seeds"]), set(b["seeds"])
        per_task.append({
            "task": task, "a": a["id"], "b": b["id"], "a_label": a["label"],
            "b_label": b["label"], "a_values": va, "b_values": vb,
            "a_seeds": a["seeds"], "b_seeds": b["seeds"],
            "same_seeds": seeds_a == seeds_b,
            "only_in_a": sorted(s for s in seeds_a - seeds_b if s is not None),
            "only_in_b": sorted(s for s in seeds_b - seeds_a if s is not None),
            "mann_whitney_u": _finite(u), "p_value": _finite(p),
            "reference": list(references[task]) if task in references else None,
        })
    # "improvement" means better in the metric's own direction
    sign = -1.0 if lower else 1.0
    poi = stats.probability_of_improvement([sign * x for x in xs], [sign * y for y in ys],
                                           reps=reps, seed=seed)
    agg_a = stats.stratified_bootstrap_ci(xs, "iqm", reps=reps, seed=seed)
    agg_b = stats.stratified_bootstrap_ci(ys, "iqm", reps=reps, seed=seed)
    return {
        "warnings": _compare_warnings(sides, tasks),
        "tasks": per_task, "metric": metrics.pop(), "lower_is_better": lower,
        "normalised": bool(references), "n_a": sum(x.size for x in xs),
        "n_b": sum(y.size for y in ys),
        "probability_of_improvement": poi[0], "probability_of_improvement_ci": [poi[1], poi[2]],
        "iqm_a": agg_a[0], "iqm_a_ci": [agg_a[1], agg_a[2]],
        "iqm_b": agg_b[0], "iqm_b_ci": [agg_b[1], agg_b[2]],
        "same_seeds": all(t["same_seeds"] for t in per_task),
    }


def _compare_warnings(sides: dict[str, dict[str, dict[str, Any]]],
                      tasks: list[str]) -> list[str]:
    """What makes A against B meaningless or unfair even when the numbers compute: the same
    runs on both sides (A against A says 'no difference' whatever the method), or sides
    trained for different budgets (the longer one wins by training longer)."""
    warnings = []
    for task in tasks:
        a, b = sides["A"][task], sides["B"][task]
        where = f" on {task}" if len(tasks) > 1 else ""
        # a run id is drawn at random per run: the same id is the same run (or its copy)
        shared = {r["run_id"] for r in a["runs"]} & {r["run_id"] for r in b["runs"]}
        if shared:
            warnings.append(f"A and B share {len(shared)} of their runs{where}: they are not "
                            "two independent sets of seeds")
        if a["budgets"] != b["budgets"]:
            def show(budgets: list[int]) -> str:
                return "/".join(f"{x:,}" for x in budgets) or "?"

            warnings.append(f"A and B were trained with different budgets{where}: A "
                            f"{show(a['budgets'])}, B {show(b['budgets'])} "
                            f"{a.get('unit_label', 'steps')}")
    return warnings


# ------------------------------------------------------------------------------ writing
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_csvs(report: dict[str, Any], out: Path) -> list[str]:
    """``runs.csv`` (every seed), ``aggregates.csv`` and ``curves.csv``."""
    confs = report["configurations"]
    run_cols = ["configuration", "hash", "seed", "run_id", "status", "in_aggregate", "final",
                "final_step", "best", "best_step", "last_step", "budget", "steps_to_threshold",
                "duration_s", "path"]
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(run_cols)
        for conf in confs:
            for run in conf["runs"]:
                writer.writerow([conf["label"], conf["hash"]] +
                                [run.get(c) for c in run_cols[2:]])
    agg_cols = ["n", "iqm", "iqm_low", "iqm_high", "median", "median_low", "median_high",
                "mean", "std", "min", "max"]
    with open(out / "aggregates.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["configuration", "hash", "metric", "runs", "failed", "diverged",
                         "unfinished", "interrupted", *agg_cols, "threshold", "reached",
                         "reached_low", "reached_high", "median_steps_to_threshold"])
        for conf in confs:
            agg, counts, thr = conf["aggregate"], conf["counts"], conf.get("threshold") or {}
            row = [conf["label"], conf["hash"], conf["metric"], counts["total"],
                   counts.get("failed", 0), counts.get("diverged", 0),
                   counts.get("unfinished", 0), counts.get("interrupted", 0), agg["n"]]
            for name in ("iqm", "median"):
                ci = agg.get(f"{name}_ci") or [None, None]
                row += [agg.get(name), *ci]
            row += [agg.get(k) for k in ("mean", "std", "min", "max")]
            wilson = thr.get("wilson") or [None, None]
            median = (f"> {thr.get('budget')}" if thr.get("median_censored")
                      else thr.get("median_steps"))
            row += [thr.get("value"), thr.get("reached"), *wilson, median]
            writer.writerow(row)
    with open(out / "curves.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["configuration", "hash", "metric", "step", "n", "iqm", "low", "high"])
        for conf in confs:
            c = conf["curve"]
            for i, step in enumerate(c["steps"]):
                writer.writerow([conf["label"], conf["hash"], c["metric"], step, c["n"][i],
                                 c["iqm"][i], c["low"][i], c["high"][i]])
    return ["runs.csv", "aggregates.csv", "curves.csv"]


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Figures, CSVs, ``report.json`` and ``index.html`` in ``out``; returns the HTML path."""
    from forgelab.core.report_figures import draw_figures
    from forgelab.core.report_html import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # An earlier report in this folder may have drawn other metrics: its figures would stay
    # beside this one's and look current. Only the figures its report.json lists are removed
    # (a user's own files in --out stay, whatever their names).
    for old in _previous_figures(out):
        old.unlink(missing_ok=True)
    report["figures"] = draw_figures(report, out)
    report["files"] = write_csvs(report, out)
    report = _clean(report)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n",
                                     encoding="utf-8")
    html = out / "index.html"
    html.write_text(render_html(report), encoding="utf-8")
    return html


def _previous_figures(out: Path) -> list[Path]:
    """The figures the report already in ``out`` drew (its ``report.json``'s ``figures``)."""
    try:
        earlier = json.loads((out / "report.json").read_text(encoding="utf-8"))
        names = [fig["file"] for fig in earlier.get("figures", [])]
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return []
    return [out / name for name in names
            if isinstance(name, str) and Path(name).name == name and any(
                Path(name).match(pattern) for pattern in FIGURE_PATTERNS)]


def default_out(paths: list[str]) -> Path:
    """``<PATH>/report`` for one directory, else ``reports/report-<time>``."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "report"
    return Path("reports") / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
