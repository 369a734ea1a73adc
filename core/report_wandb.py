"""``forgelab report --wandb``: the report as its own W&B job (``job_type=report``).

The job goes to the project and group of the reported runs (a study's runs share a group),
offline unless asked otherwise, with the figures as images, a ``wandb.Table`` of every
seed's final metrics and the aggregates in the run summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forgelab.core.errors import ForgelabError

SEED_COLUMNS = ["configuration", "hash", "task", "metric", "seed", "run_id", "status",
                "in_aggregate", "final", "best", "last_step", "budget"]


def per_seed_rows(report: dict[str, Any]) -> list[list[Any]]:
    """One row per run for the ``wandb.Table`` (same values as runs.csv)."""
    rows = []
    for conf in report["configurations"]:
        for run in conf["runs"]:
            rows.append([conf["label"], conf["hash"], conf["task"], conf["metric"], run["seed"],
                         run["run_id"], run["status"], run["in_aggregate"], run["final"],
                         run["best"], run["last_step"], run["budget"]])
    return rows


def log_report(report: dict[str, Any], out: Path, mode: str = "offline") -> Path:
    """Log ``report`` (as written to ``out/report.json``) and its figures; returns the W&B run
    folder.

    :param mode: ``offline`` (default), ``online`` or ``auto``; ``WANDB_MODE`` wins.
    """
    import wandb

    from forgelab.core.tracking import resolve_mode

    confs = report["configurations"]
    tracking = (confs[0].get("tracking") or {}) if confs else {}
    # the runs' own group when they share one, else the study, else the experiment
    groups = {(c.get("tracking") or {}).get("group") or c["experiment"] for c in confs}
    group = (groups.pop() if len(groups) == 1 else report["studies"][0] if report["studies"]
             else confs[0]["experiment"] if confs else "report")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        run = wandb.init(project=tracking.get("project") or "forgelab",
                         entity=tracking.get("entity"), group=group, job_type="report",
                         name=f"report-{group}", dir=str(out), mode=resolve_mode(mode),
                         config={"sources": report["sources"], "bootstrap": report["bootstrap"],
                                 "threshold": report.get("threshold"),
                                 "configurations": {c["hash"]: c["label"] for c in confs}},
                         settings=wandb.Settings(console="off", silent=True))
    except wandb.errors.Error as exc:
        raise ForgelabError(f"W&B could not start the report job: {str(exc).splitlines()[0]}",
                            hint="use --wandb-mode offline and `wandb sync` later") from None
    try:
        table = wandb.Table(columns=SEED_COLUMNS, data=per_seed_rows(report))
        row: dict[str, Any] = {"report/per_seed_final": table}
        for fig in report.get("figures", []):
            key = "report/" + Path(fig["file"]).stem
            row[key] = wandb.Image(str(Path(out) / fig["file"]), caption=fig["title"])
        run.log(row)
        for conf in confs:
            agg = conf["aggregate"]
            prefix = f"{conf['label']}/{conf['metric']}"
            run.summary[f"{prefix}/n"] = agg["n"]
            run.summary[f"{prefix}/runs"] = conf["counts"]["total"]
            for key in ("iqm", "median"):
                if agg.get(key) is not None:
                    run.summary[f"{prefix}/{key}"] = agg[key]
                    if agg["headline_interval"]:
                        run.summary[f"{prefix}/{key}_ci"] = agg[f"{key}_ci"]
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder
