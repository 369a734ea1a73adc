"""The report as one static HTML page (no scripts, no network): tables, figures, notes.

Every number on the page carries ``data-json="dotted.path"`` pointing at its value in
``report.json`` and is printed with :func:`fmt`, so a test can check the page against the JSON.
"""

from __future__ import annotations

import html
import math
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1150px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;vertical-align:top}
.num{white-space:nowrap}.ci{display:block;color:#555}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.meta{color:#555;font-size:.9em}.note{background:#fff8e1;border-left:4px solid #f0b400;
padding:.5em 1em;margin:1em 0;font-size:.9em}.flag{color:#a33}.muted{color:#888;font-size:.85em}
.finished{color:#1a7f37}.failed{color:#c62828;font-weight:bold}.unfinished,.interrupted{color:#b35c00}.running{color:#1f5fa8}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
code{background:#f4f4f4;padding:0 .2em}
"""


def fmt(value: Any) -> str:
    """A number as the page prints it (the test formats report.json the same way)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _e(text: Any) -> str:
    return html.escape(str(text))


def num(value: Any, path: str) -> str:
    """A number with its report.json path."""
    return f'<span class="num" data-json="{_e(path)}">{fmt(value)}</span>'


def _interval(ci: list[Any] | None, path: str, block: bool = False) -> str:
    """`` [low, high]``; ``block``: on its own line (narrow table cells)."""
    if not ci or ci[0] is None:
        return ""
    text = f"[{num(ci[0], path + '.0')}, {num(ci[1], path + '.1')}]"
    return f'<span class="ci">{text}</span>' if block else f" {text}"


def _summary_table(report: dict[str, Any]) -> str:
    thr = report.get("threshold") is not None
    head = ("<tr><th class=l>configuration</th><th class=l>metric</th><th>runs</th>"
            "<th>not finished</th><th>n</th><th>IQM [95% CI]</th>"
            "<th>median [95% CI]</th><th>mean ± sd</th><th>min – max</th>")
    if thr:
        units = {c.get("unit_label", "steps") for c in report["configurations"]}
        unit = units.pop() if len(units) == 1 else "steps or epochs"
        head += f"<th>reached threshold [95% Wilson]</th><th>median {_e(unit)} to threshold</th>"
    rows = [head + "</tr>"]
    for conf in report["configurations"]:
        p = f"configurations.{conf['index']}"
        agg, counts = conf["aggregate"], conf["counts"]
        ok = agg.get("headline_interval")
        note = "" if ok or not agg["n"] else (
            f' <span class="muted">(no interval: fewer than '
            f'{report["bootstrap"]["min_seeds_for_headline"]} seeds)</span>')
        cells = [
            f'<td class=l><a href="#{conf["id"]}">{_e(conf["label"])}</a>'
            f'<br><span class="muted">{_e(conf["hash"])}</span></td>',
            f"<td class=l>{_e(conf['metric'])} (final, "
            f"{'lower' if conf['lower_is_better'] else 'higher'} is better)</td>",
            f"<td>{num(counts['total'], p + '.counts.total')}</td>",
            "<td class=l>" + (", ".join(
                f"{num(v, f'{p}.counts.{k}')} {_e(k)}" for k, v in counts.items()
                if k not in ("total", "finished", "no_metric") and v) or "none") + "</td>",
            f"<td>n&nbsp;=&nbsp;{num(agg['n'], p + '.aggregate.n')}</td>",
        ]
        for name in ("iqm", "median"):
            ci = (_interval(agg.get(f"{name}_ci"), f"{p}.aggregate.{name}_ci", block=True)
                  if ok else "")
            cells.append(f"<td>{num(agg.get(name), f'{p}.aggregate.{name}')}{ci}"
                         f"{note if name == 'iqm' else ''}</td>")
        cells.append(f"<td>{num(agg.get('mean'), p + '.aggregate.mean')} ± "
                     f"{num(agg.get('std'), p + '.aggregate.std')}</td>")
        cells.append(f"<td>{num(agg.get('min'), p + '.aggregate.min')} – "
                     f"{num(agg.get('max'), p + '.aggregate.max')}</td>")
        if thr:
            t = conf["threshold"]
            cells.append(f"<td>{num(t['reached'], p + '.threshold.reached')} of "
                         f"{num(t['n'], p + '.threshold.n')}"
                         f"{_interval(t['wilson'], p + '.threshold.wilson', block=True)}</td>")
            median = (f"&gt; {num(t['budget'], p + '.threshold.budget')}<span class=ci>"
                      "(more than half missed)</span>" if t["median_censored"]
                      else num(t["median_steps"], p + ".threshold.median_steps"))
            cells.append(f"<td>{median}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "\n".join(rows) + "</table>"


def _seeds_table(report: dict[str, Any], conf: dict[str, Any]) -> str:
    p = f"configurations.{conf['index']}"
    thr = report.get("threshold") is not None
    head = ("<tr><th>seed</th><th class=l>run</th><th class=l>status</th><th>in aggregate</th>"
            "<th>final</th><th>at step</th><th>best</th><th>at step</th>"
            "<th>last step / budget</th>" + ("<th>steps to threshold</th>" if thr else "")
            + "<th>duration s</th><th class=l>directory</th></tr>")
    rows = [head]
    for i, run in enumerate(conf["runs"]):
        q = f"{p}.runs.{i}"
        cells = [f"<td>{num(run['seed'], q + '.seed')}</td>",
                 f"<td class=l>{_e(run['run_id'])}</td>",
                 f'<td class="l {_e(run["status"])}">{_e(run["status"])}</td>',
                 f"<td>{'yes' if run['in_aggregate'] else 'no'}</td>",
                 f"<td>{num(run['final'], q + '.final')}</td>",
                 f"<td>{num(run['final_step'], q + '.final_step')}</td>",
                 f"<td>{num(run['best'], q + '.best')}</td>",
                 f"<td>{num(run['best_step'], q + '.best_step')}</td>",
                 f"<td>{num(run['last_step'], q + '.last_step')} / "
                 f"{num(run['budget'], q + '.budget')}</td>"]
        if thr:
            if run["steps_to_threshold"] is not None:
                cells.append(f"<td>{num(run['steps_to_threshold'], q + '.steps_to_threshold')}"
                             "</td>")
            else:  # censored: never reached within what it ran
                cells.append(f"<td>&gt; {num(run['censored_at'], q + '.censored_at')}</td>")
        cells += [f"<td>{num(run['duration_s'], q + '.duration_s')}</td>",
                  f'<td class=l><span class="muted">{_e(run["path"])}</span></td>']
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "\n".join(rows) + "</table>"


def _configuration(report: dict[str, Any], conf: dict[str, Any]) -> str:
    p = f"configurations.{conf['index']}"
    agg = conf["aggregate"]
    parts = [f'<h3 id="{conf["id"]}">{_e(conf["label"])} <span class="muted">'
             f'{_e(conf["hash"])} · {_e(conf["component"])} on {_e(conf["task"])}</span></h3>']
    if agg["n"] and not agg["headline_interval"]:
        parts.append(f'<p class="muted">With n = {agg["n"]} the bootstrap interval is not a '
                     "reliable statement; for the record, IQM"
                     f"{_interval(agg.get('iqm_ci'), p + '.aggregate.iqm_ci')}, median"
                     f"{_interval(agg.get('median_ci'), p + '.aggregate.median_ci')}.</p>")
    for flag in conf["flags"]:
        parts.append(f'<p class="flag">⚠ {_e(flag)}</p>')
    parts.append(_seeds_table(report, conf))
    config_rows = "".join(f"<tr><td class=l>{_e(k)}</td><td class=l>{_e(v)}</td></tr>"
                          for k, v in conf["config"].items())
    parts.append("<details><summary>configuration (what its runs share)</summary>"
                 f"<table>{config_rows}</table></details>")
    return "\n".join(parts)


def _comparison(comp: dict[str, Any]) -> str:
    p = "comparison"
    direction = "lower" if comp["lower_is_better"] else "higher"
    parts = ["<h2>A against B</h2>",
             f"<p>P(a run of A is better than a run of B) = "
             f"{num(comp['probability_of_improvement'], p + '.probability_of_improvement')}"
             f"{_interval(comp['probability_of_improvement_ci'], p + '.probability_of_improvement_ci')}"  # noqa: E501
             f" (95% stratified bootstrap CI; {direction} {_e(comp['metric'])} is better; "
             f"0.5 = no difference). IQM of A "
             f"{num(comp['iqm_a'], p + '.iqm_a')}{_interval(comp['iqm_a_ci'], p + '.iqm_a_ci')}"
             f" (n = {num(comp['n_a'], p + '.n_a')}), of B "
             f"{num(comp['iqm_b'], p + '.iqm_b')}{_interval(comp['iqm_b_ci'], p + '.iqm_b_ci')}"
             f" (n = {num(comp['n_b'], p + '.n_b')})"
             + (", scores normalised by the declared reference scores" if comp["normalised"]
                else "") + ".</p>"]
    rows = ["<tr><th class=l>task</th><th class=l>A</th><th class=l>B</th><th>n A</th>"
            "<th>n B</th><th class=l>same seeds</th><th>Mann-Whitney U</th><th>p (two-sided)"
            "</th></tr>"]
    for i, t in enumerate(comp["tasks"]):
        q = f"{p}.tasks.{i}"
        seeds = "yes" if t["same_seeds"] else (
            f'<span class="flag">no: only in A {_e(t["only_in_a"])}, only in B '
            f'{_e(t["only_in_b"])}</span>')
        rows.append(f"<tr><td class=l>{_e(t['task'])}</td><td class=l>{_e(t['a_label'])}</td>"
                    f"<td class=l>{_e(t['b_label'])}</td><td>{len(t['a_values'])}</td>"
                    f"<td>{len(t['b_values'])}</td><td class=l>{seeds}</td>"
                    f"<td>{num(t['mann_whitney_u'], q + '.mann_whitney_u')}</td>"
                    f"<td>{num(t['p_value'], q + '.p_value')}</td></tr>")
    parts.append("<table>" + "\n".join(rows) + "</table>")
    parts += [f'<p class="flag">⚠ {_e(w)}</p>' for w in comp.get("warnings", [])]
    return "\n".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    confs = report["configurations"]
    title = "forgelab report" + (f": {', '.join(report['studies'])}" if report["studies"]
                                 else "")
    boot = report["bootstrap"]
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="meta">{len(confs)} configuration(s), '
            f"{sum(c['counts']['total'] for c in confs)} runs from "
            f"{_e(', '.join(report['sources']))} · created {_e(report['created'])} · forgelab "
            f"{_e(report['forgelab_version'])}</p>",
            '<div class="note"><b>How to read this.</b> Each run contributes the <i>final</i> '
            "value of the metric (its last evaluation; for generative models the test split "
            "at the end). Only finished runs enter the aggregate; failed, unfinished and "
            "interrupted runs are counted and listed, never dropped. IQM = mean of the middle "
            "50% of seeds. Intervals are 95% percentile bootstrap intervals stratified by "
            f"task, {boot['reps']:,} resamples, seed {boot['seed']}. "
            + " ".join(_e(n) for n in report["notes"]) + "</div>"]
    if report.get("threshold") is not None:
        body.append(f"<p>Threshold <b>{fmt(report['threshold'])}</b>: a run reaches it at its "
                    "first evaluation at or past it; runs that never did are censored and "
                    "shown as “&gt; the last step they ran”, and count as misses.</p>")
    if report.get("comparison"):
        body.append(_comparison(report["comparison"]))
    body += ["<h2>Summary</h2>", _summary_table(report)]
    flags = [(c["label"], f) for c in confs for f in c["flags"]]
    flags += [(f"study {t['study']}", f"trial {t['id']} (seed {t['seed']}, {t['params']}) left "
               f"no run directory: {t['status']}" + (f": {t['error']}" if t["error"] else ""))
              for t in report.get("trials_without_runs", [])]
    if flags:
        body.append("<h2>Flags</h2><ul>" + "".join(
            f'<li class="flag">{_e(label)}: {_e(flag)}</li>' for label, flag in flags) + "</ul>")
    body.append("<h2>Figures</h2>")
    for fig in report.get("figures", []):
        body.append(f'<figure><img src="{_e(fig["file"])}" alt="{_e(fig["title"])}">'
                    f"<figcaption>{_e(fig['title'])}</figcaption></figure>")
    body.append("<h2>Configurations and seeds</h2>")
    body += [_configuration(report, c) for c in confs]
    files = ["report.json", *report.get("files", [])]
    body.append("<h2>Data</h2><p>Every number on this page: " + ", ".join(
        f'<a href="{_e(f)}">{_e(f)}</a>' for f in files) + ".</p>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")
