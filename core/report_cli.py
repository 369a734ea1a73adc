"""``forgelab report``, ``forgelab compare`` and ``forgelab runs``: parsers and commands.

Only argparse is imported at start-up; the statistics, matplotlib and wandb load inside the
commands, so ``forgelab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from forgelab.core.errors import ForgelabError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="headline metric (default: eval/return_mean for agents, "
                   "a test metric such as test/nll_k1000 for generative models)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--lower-is-better", dest="lower", action="store_true", default=None,
                           help="smaller values are better (default: guessed from the name)")
    direction.add_argument("--higher-is-better", dest="lower", action="store_false")
    p.add_argument("--reps", type=int, default=10_000,
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--out", help="report folder (default: PATH/report for one directory, "
                   "else reports/report-<time>)")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")


def add_parsers(sub: Any) -> None:
    """Add the three subcommands to the ``forgelab`` parser's subparsers."""
    p = sub.add_parser("report", help="aggregate runs over seeds: HTML page, PNG figures, "
                       "JSON and CSV (offline)",
                       description="Report run directories, study directories or globs: "
                       "every seed, IQM and median with bootstrap intervals, learning curves.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run / study directories or globs")
    p.add_argument("--threshold", type=float,
                   help="success level: fraction of seeds reaching it, steps to reach it")
    p.add_argument("--wandb", action="store_true",
                   help="also log the report to W&B as its own job (job_type=report)")
    p.add_argument("--wandb-mode", choices=["offline", "online", "auto"], default="offline",
                   help="W&B mode for --wandb (default offline; WANDB_MODE wins)")
    _common(p)

    p = sub.add_parser("compare", help="compare two configurations or studies seed by seed",
                       description="A against B: same seeds checked, probability of "
                       "improvement, Mann-Whitney U, both per-seed distributions.")
    p.add_argument("a", metavar="A", help="run directories of A (a folder or a quoted glob)")
    p.add_argument("b", metavar="B", help="run directories of B")
    p.add_argument("--reference", action="append", default=[], metavar="TASK=LOW:HIGH",
                   help="fixed reference scores to normalise an environment by (needed for "
                   "several environments), e.g. CartPole-v1=9.4:500")
    _common(p)

    p = sub.add_parser("runs", help="list local runs and studies: status, key metric, age")
    p.add_argument("path", nargs="?", default="runs", help="where to look (default runs/)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _print_summary(report: dict[str, Any], out: Path | None) -> None:
    from forgelab.core.report_html import fmt

    for conf in report["configurations"]:
        agg, counts = conf["aggregate"], conf["counts"]
        others = ", ".join(f"{v} {k}" for k, v in counts.items()
                           if k not in ("total", "finished", "no_metric") and v)
        # the hash once: a label carries it already when nothing else told it apart
        tag = "" if conf["label"].endswith(f"[{conf['hash']}]") else f" [{conf['hash']}]"
        line = (f"{conf['label']}{tag}  {conf['metric']}: n={agg['n']} of "
                f"{counts['total']} runs" + (f" ({others})" if others else ""))
        if agg["n"]:
            line += f"  IQM {fmt(agg['iqm'])}"
            if agg["headline_interval"]:
                line += f" [{fmt(agg['iqm_ci'][0])}, {fmt(agg['iqm_ci'][1])}]"
            line += f"  median {fmt(agg['median'])}"
            if agg["headline_interval"]:
                line += f" [{fmt(agg['median_ci'][0])}, {fmt(agg['median_ci'][1])}]"
            if not agg["headline_interval"]:
                line += "  (fewer than 5 seeds: no interval)"
        print(line)
        if conf.get("threshold"):
            t = conf["threshold"]
            lo, hi = t["wilson"]
            steps = (f"> {fmt(t['budget'])}" if t["median_censored"] else fmt(t["median_steps"]))
            print(f"    reached {fmt(t['value'])}: {t['reached']}/{t['n']} seeds "
                  f"[{fmt(lo)}, {fmt(hi)}]; median {conf['unit_label']} to it {steps}")
        for flag in conf["flags"]:
            print(f"    ! {flag}")
    for trial in report.get("trials_without_runs", []):
        print(f"! study {trial['study']}: trial {trial['id']} (seed {trial['seed']}) left no run "
              f"directory ({trial['status']})")
    if out is not None:
        print(f"report: {out / 'index.html'}")


def _out_dir(args: argparse.Namespace, paths: list[str]) -> Path:
    from forgelab.core.report import default_out

    return Path(args.out) if args.out else default_out(paths)


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from forgelab.core import report as rep

    data = rep.analyse(args.paths, metric=args.metric, threshold=args.threshold,
                       lower=args.lower, reps=args.reps, seed=args.seed)
    out = _out_dir(args, args.paths)
    rep.write_report(data, out)
    if args.wandb:
        from forgelab.core.report_wandb import log_report

        run_dir = log_report(json.loads((out / "report.json").read_text()), out, args.wandb_mode)
        print(f"W&B report job: {run_dir}", file=sys.stderr)
    if args.json:
        print((out / "report.json").read_text(encoding="utf-8"), end="")
    else:
        _print_summary(data, out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from forgelab.core import report as rep
    from forgelab.core.report_html import fmt
    from forgelab.core.results import describe, differing_keys

    refs = rep.parse_references(args.reference)
    kwargs = dict(metric=args.metric, lower=args.lower, reps=args.reps, seed=args.seed)
    a, b = rep.analyse([args.a], **kwargs), rep.analyse([args.b], **kwargs)
    comparison = rep.compare(a, b, refs, reps=args.reps, seed=args.seed)
    # one report holding both sides, A's configurations first, labelled by what differs
    for task in comparison["tasks"]:
        ca = next(c for c in a["configurations"] if c["id"] == task["a"])
        cb = next(c for c in b["configurations"] if c["id"] == task["b"])
        keys = differing_keys([ca["config"], cb["config"]])
        for conf in (ca, cb):
            if keys and conf["label"] == conf["experiment"]:
                conf["label"] += f" ({describe(conf['config'], keys)})"
        task["a_label"], task["b_label"] = ca["label"], cb["label"]
    confs = a["configurations"] + b["configurations"]
    for i, conf in enumerate(confs):
        conf["index"], conf["id"] = i, f"c{i}"
        conf["label"] = ("A: " if i < len(a["configurations"]) else "B: ") + conf["label"]
    for task in comparison["tasks"]:
        task["b"] = f"c{len(a['configurations']) + int(task['b'][1:])}"
    data = {**a, "sources": [args.a, args.b], "studies": a["studies"] + b["studies"],
            "configurations": confs, "comparison": comparison}
    out = Path(args.out) if args.out else Path("reports") / (
        f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    rep.write_report(data, out)
    if args.json:
        print((out / "report.json").read_text(encoding="utf-8"), end="")
        return 0
    _print_summary(data, None)
    for warning in comparison["warnings"]:
        print(f"! {warning}")
    lo, hi = comparison["probability_of_improvement_ci"]
    better = "lower" if comparison["lower_is_better"] else "higher"
    print(f"P(A better than B) = {fmt(comparison['probability_of_improvement'])} "
          f"[{fmt(lo)}, {fmt(hi)}] (95% CI; {better} {comparison['metric']} is better)")
    for task in comparison["tasks"]:
        seeds = "same seeds" if task["same_seeds"] else (
            f"DIFFERENT seeds: only in A {task['only_in_a']}, only in B {task['only_in_b']}")
        print(f"  {task['task']}: n={len(task['a_values'])} vs {len(task['b_values'])}, "
              f"{seeds}; Mann-Whitney U={fmt(task['mann_whitney_u'])}, "
              f"p={fmt(task['p_value'])}")
    print(f"report: {out / 'index.html'}")
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_runs(args: argparse.Namespace) -> int:
    import json

    from forgelab.core.report_html import fmt
    from forgelab.core.results import (
        default_metric,
        find_run_dirs,
        read_run,
        study_name,
    )

    root = Path(args.path)
    if not root.exists():
        raise ForgelabError(f"{root}: no such directory",
                            hint="runs are written under runs/ (or the config's output_dir)")
    try:
        dirs = find_run_dirs([root])
    except ForgelabError:
        dirs = []
    now = time.time()
    rows = []
    for run_dir in dirs:
        run = read_run(run_dir)
        metric = default_metric(run)
        _, values = run.series(metric)
        above = [p for p in run_dir.parents if p.is_relative_to(root.resolve())]
        study = next((s for s in (study_name(p) for p in above) if s), None)
        rows.append({"path": str(run_dir), "study": study, "experiment": run.experiment,
                     "run_id": run.run_id, "seed": run.seed, "status": run.status,
                     "metric": metric, "value": values[-1] if values else None,
                     "last_step": run.last_step, "budget": run.budget,
                     "age_s": now - run.created if run.created else None})
    rows.sort(key=lambda r: (r["age_s"] is None, r["age_s"] or 0))
    studies = _studies(root)
    if args.json:
        print(json.dumps({"runs": rows, "studies": studies}, indent=2))
        return 0
    for study in studies:
        counts = ", ".join(f"{v} {k}" for k, v in study["summary"].items() if v)
        print(f"study {study['name']}: {counts or 'no trials'}  ({study['path']})")
    if not rows:
        print(f"no runs under {root}")
        return 0
    names = [(f"{r['study']}/" if r["study"] else "") + r["experiment"] for r in rows]
    width = max(10, *(len(n) for n in names))
    print(f"{'age':>5}  {'status':<11} {'experiment':<{width}} {'seed':>4}  {'metric':<30} "
          f"{'progress':<17} directory")
    for r, name in zip(rows, names, strict=True):
        metric = f"{r['metric']} {fmt(r['value'])}"
        progress = f"{fmt(r['last_step'])}/{fmt(r['budget'])}"
        print(f"{_age(r['age_s']):>5}  {r['status']:<11} {name:<{width}} "
              f"{'-' if r['seed'] is None else r['seed']:>4}  {metric:<30} {progress:<17} "
              f"{r['path']}")
    return 0


def _studies(root: Path) -> list[dict[str, Any]]:
    """Studies (folders with a ``study.json``) under ``root``, with their trial counts."""
    import json

    found = []
    for file in sorted(root.rglob("study.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        trials = data.get("trials") or [] if isinstance(data, dict) else []
        summary: dict[str, int] = {}
        for trial in trials:
            status = str(trial.get("status")) if isinstance(trial, dict) else "?"
            summary[status] = summary.get(status, 0) + 1
        found.append({"name": data.get("name") or file.parent.name, "path": str(file.parent),
                      "trials": len(trials), "summary": summary})
    return found


COMMANDS = {"report": cmd_report, "compare": cmd_compare, "runs": cmd_runs}
