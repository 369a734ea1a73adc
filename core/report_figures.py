"""The report's PNG figures (matplotlib, imported only here and only when drawing).

Every figure can be read without a caption: axis labels with units, a legend, a title that
says what is aggregated and with how many seeds, and the interval's definition.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22"]
STATUS_MARKERS = {"finished": "o", "interrupted": "s", "failed": "X", "diverged": "X",
                  "running": ">", "unfinished": "D"}


def _plt():
    try:
        import matplotlib
    except ImportError:
        from forgelab.core.errors import ForgelabError

        raise ForgelabError("the report's figures need matplotlib, which is not installed",
                            hint="pip install 'forgelab[report]' (or matplotlib)") from None

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _panels(report: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Configurations that share a metric and an axis are drawn together."""
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for conf in report["configurations"]:
        panels.setdefault((conf["metric"], conf["axis"]), []).append(conf)
    return list(panels.values())


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


def curve_legend(conf: dict[str, Any]) -> str:
    """The IQM line's legend: over how many runs (the count the summary's n=... of ... uses;
    seeds may repeat), and the most that any one step had when runs evaluated at different
    steps."""
    runs = sum(1 for run in conf["runs"] if run["curve"]["steps"])
    at_once = max(conf["curve"]["n"], default=0)
    text = f"{conf['label']}: IQM of {runs} run{'s' if runs != 1 else ''}"
    return text + (f" (at most {at_once} at one step)" if at_once < runs else "")


def curves_figure(confs: list[dict[str, Any]], path: Path, threshold: float | None) -> None:
    """Per-seed thin lines and the IQM over seeds with its 95% bootstrap band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    metric = confs[0]["curve"]["metric"]
    for conf in confs:
        colour = _colour(conf["index"])
        for run in conf["runs"]:
            steps = run["curve"]["steps"]
            values = [math.nan if v is None else v for v in run["curve"]["values"]]
            style = "-" if run["status"] == "finished" else ":"
            ax.plot(steps, values, style, color=colour, alpha=0.3, linewidth=0.9,
                    marker="." if len(steps) < 3 else None)
            if run["status"] != "finished" and steps:
                ax.plot(steps[-1], values[-1], "x", color=colour, markersize=7)
        curve = conf["curve"]
        xs = curve["steps"]
        ys = [math.nan if v is None else v for v in curve["iqm"]]
        ax.plot(xs, ys, color=colour, linewidth=2.4, marker="o" if len(xs) < 3 else None,
                label=curve_legend(conf))
        lo = [math.nan if v is None else v for v in curve["low"]]
        hi = [math.nan if v is None else v for v in curve["high"]]
        if any(not math.isnan(v) for v in lo):
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, linewidth=0,
                            label="95% bootstrap CI of the IQM")
    if threshold is not None and metric == confs[0]["metric"]:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1,
                   label=f"threshold {threshold:g}")
    ax.plot([], [], "-", color="grey", alpha=0.5, linewidth=0.9, label="one seed each")
    if any(r["status"] != "finished" for c in confs for r in c["runs"]):
        ax.plot([], [], "x:", color="grey", label="unfinished / failed run (last value)")
    ax.set_xlabel(confs[0]["axis_label"])
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps and epochs are counts
    from forgelab.core.results import lower_is_better

    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    ax.set_title(f"{metric} against {confs[0]['axis_label']}\n"
                 "thick: interquartile mean over seeds, band: 95% stratified bootstrap CI "
                 "(shown from 5 seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def seeds_figure(confs: list[dict[str, Any]], path: Path, threshold: float | None) -> None:
    """Every seed's final value as a dot, with the IQM, its interval and the median."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 1.3 + 0.75 * len(confs)), dpi=110)
    metric = confs[0]["metric"]
    labels = []
    for row, conf in enumerate(reversed(confs)):
        colour = _colour(conf["index"])
        runs = [r for r in conf["runs"] if r["final"] is not None and math.isfinite(r["final"])]
        for k, run in enumerate(runs):
            jitter = ((k * 0.618) % 1.0 - 0.5) * 0.3  # deterministic spread, no overlap
            finished = run["status"] == "finished"
            ax.plot(run["final"], row + jitter, STATUS_MARKERS.get(run["status"], "o"),
                    color=colour if finished else "none", markeredgecolor=colour,
                    markersize=6, alpha=0.85)
        agg = conf["aggregate"]
        if agg.get("iqm") is not None:
            if agg["headline_interval"]:
                lo, hi = agg["iqm_ci"]
                ax.plot([lo, hi], [row + 0.33, row + 0.33], color="black", linewidth=2)
            ax.plot(agg["median"], row + 0.33, "D", color="white", markeredgecolor="black",
                    markersize=6)
            ax.plot(agg["iqm"], row + 0.33, "|", color="black", markersize=16, mew=2.5)
        counts = conf["counts"]
        missing = counts["total"] - agg["n"]
        labels.append(f"{conf['label']}\nn={agg['n']} of {counts['total']} runs"
                      + (f" ({missing} not in the aggregate)" if missing else ""))
    ax.set_yticks(range(len(confs)), labels, fontsize=8)
    ax.set_ylim(-0.6, len(confs) - 0.3)
    present = {r["status"] for c in confs for r in c["runs"]} | {"finished"}
    for status, marker in STATUS_MARKERS.items():
        if status not in present:
            continue
        filled = status == "finished"
        ax.plot([], [], marker, color="grey" if filled else "none", markeredgecolor="grey",
                label=f"one seed, {status}")
    ax.plot([], [], "|", color="black", markersize=12, mew=2.5, label="IQM")
    ax.plot([], [], "-", color="black", linewidth=2, label="95% CI of the IQM (n >= 5)")
    ax.plot([], [], "D", color="white", markeredgecolor="black", label="median")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1,
                   label=f"threshold {threshold:g}")
    ax.set_xlabel(f"{metric} (final value of each run; "
                  f"{'lower' if confs[0]['lower_is_better'] else 'higher'} is better)")
    ax.set_title(f"Every seed: final {metric}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare_figure(comparison: dict[str, Any], path: Path) -> None:
    """A's and B's per-seed values side by side, one panel per task; same seeds joined."""
    plt = _plt()
    tasks = comparison["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(7.5, 4.2 * len(tasks)), 5.6),
                             dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        # each seed keeps one horizontal offset on both sides, so its line joins its dots
        seeds = sorted(set(task["a_seeds"]) | set(task["b_seeds"]), key=str)
        offset = {s: ((k * 0.618) % 1.0 - 0.5) * 0.16 for k, s in enumerate(seeds)}
        a = dict(zip(task["a_seeds"], task["a_values"], strict=True))
        b = dict(zip(task["b_seeds"], task["b_values"], strict=True))
        for seed in sorted(set(a) & set(b), key=str):
            ax.plot([offset[seed], 1 + offset[seed]], [a[seed], b[seed]], color="grey",
                    alpha=0.35, linewidth=0.8)
        for x, side, colour in ((0, a, COLOURS[0]), (1, b, COLOURS[1])):
            ax.plot([x + offset[s] for s in side], list(side.values()), "o", color=colour,
                    alpha=0.8)
        ax.set_xticks([0, 1], [f"A: {task['a_label']}\n(n={len(task['a_values'])})",
                               f"B: {task['b_label']}\n(n={len(task['b_values'])})"],
                      fontsize=8)
        ax.set_xlim(-0.5, 1.5)
        ax.set_ylabel(f"{comparison['metric']} (final value of each run)")
        p = task["p_value"]
        ax.set_title(f"{task['task']}\nMann-Whitney U p = {p:.3g}" if p is not None
                     else task["task"], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax.plot([], [], color="grey", alpha=0.5, label="same seed on both sides")
    ax.legend(fontsize=7, loc="best")
    poi, (lo, hi) = comparison["probability_of_improvement"], \
        comparison["probability_of_improvement_ci"]
    fig.suptitle(f"Per-seed final {comparison['metric']}\nP(a run of A beats a run of B) = "
                 f"{poi:.2f} [{lo:.2f}, {hi:.2f}] (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_figures(report: dict[str, Any], out: Path) -> list[dict[str, str]]:
    """Draw every figure of ``report`` into ``out``; returns ``[{file, title}]``."""
    figures = []
    threshold = report.get("threshold")
    for k, confs in enumerate(_panels(report), start=1):
        metric = confs[0]["metric"]
        name = f"{k:02d}-{_slug(metric)}"
        curves = f"curves-{name}.png"
        curves_figure(confs, out / curves, threshold)
        figures.append({"file": curves, "title": f"Learning curves: {confs[0]['curve']['metric']}"
                        f" against {confs[0]['axis_label']}"})
        seeds = f"seeds-{name}.png"
        seeds_figure(confs, out / seeds, threshold)
        figures.append({"file": seeds, "title": f"Every seed: final {metric}"})
    if report.get("comparison"):
        compare_figure(report["comparison"], out / "compare.png")
        figures.append({"file": "compare.png", "title": "A against B, seed by seed"})
    return figures
