"""Reading finished (or crashed) runs back from their directories, for reports and listings.

A run directory is any folder holding both ``config.yaml`` and ``run.json``; studies and
``runs/`` trees are searched recursively for them. Nothing here needs W&B, an account or a
network: only the files every run writes (``config.yaml``, ``run.json``, ``metrics.jsonl``).

Runs are grouped into *configurations*: runs whose resolved configs agree on everything
except the seed and the keys that cannot change what is learned (output folder, name,
device, tracking, logging/checkpoint/video schedules and the budget, which is flagged when
it differs instead).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from forgelab.core.errors import ForgelabError
from forgelab.core.family import Family, family_of_data
from forgelab.core.runlock import lock_held

CONFIG_FILE, RUN_INFO, METRICS_FILE = "config.yaml", "run.json", "metrics.jsonl"
STUDY_FILES = ("study.json", "study.yaml", "study.yml")
# Keys left out when deciding whether two runs are seeds of one configuration.
IGNORED_KEYS = {"seed", "name", "output_dir", "device", "tracking", "train.total_steps",
                "train.epochs", "train.video_every", "train.checkpoint_every",
                "train.log_every", "train.eval_every", "train.eval_envs"}
# Substrings of metric names where smaller is better (losses, NLL, distances, errors).
LOWER_IS_BETTER = ("loss", "nll", "elbo", "recon", "_fd", "error", "mse", "distance", "kl")


def _families() -> dict[str, Family]:
    """The installed families (a report of saved runs needs only their descriptions)."""
    from forgelab.core.pluginhost import get_host

    return get_host().families()


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better, from its name."""
    name = metric.split("/")[-1].lower()
    return any(part in name for part in LOWER_IS_BETTER)


def _number(value: Any) -> float | None:
    """A logged scalar as a float ("nan" / "inf" strings included); None for media paths."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def parse_run_time(text: str | None) -> float | None:
    """Seconds since the epoch of a run.json time (``%Y-%m-%dT%H:%M:%S%z``)."""
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return None


def recorded_seconds(info: dict[str, Any]) -> float | None:
    """The training seconds a run.json records for its ended sessions: ``seconds`` (summed over
    sessions), or for a run.json from before that was kept, ``created`` to ``finished``."""
    if isinstance(info.get("seconds"), int | float):
        return float(info["seconds"])
    start, end = parse_run_time(info.get("created")), parse_run_time(info.get("finished"))
    return max(0.0, end - start) if start is not None and end is not None else None


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


@dataclass
class RunRecord:
    """One run directory as written by the runner."""

    path: Path
    config: dict[str, Any]
    info: dict[str, Any]
    rows: list[dict[str, Any]] = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or self.path.name)

    @property
    def experiment(self) -> str:
        return str(self.config.get("name") or self.info.get("experiment") or "?")

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else None

    @property
    def status(self) -> str:
        """finished, failed, diverged, interrupted, running (a live process holds its
        run.lock), or unfinished (killed outright: run.json still says running)."""
        status = str(self.info.get("status") or "unfinished")
        if status == "running":
            return "running" if lock_held(self.path) else "unfinished"
        return status

    @cached_property
    def family(self) -> Family | None:
        """The run's family (from the installed plugins), None for one no plugin knows; looked
        up once per record (``axis`` and ``kind`` are read for every logged row)."""
        return family_of_data(self.config, _families())

    @property
    def kind(self) -> str:
        return self.family.component_key if self.family else "?"

    @property
    def axis(self) -> str:
        """The run's own progress axis (env steps for agents, epochs for generative models)."""
        return self.family.curve_axis if self.family else "step"

    @property
    def budget(self) -> int | None:
        train = self.config.get("train") or {}
        value = train.get(self.family.budget_key) if self.family else None
        return int(value) if isinstance(value, int) else None

    @property
    def component(self) -> str:
        return str(self.config.get(self.kind) or "?")

    @property
    def task(self) -> str:
        """What the run is trained on: the env id or the dataset name."""
        env = self.config.get("env") or {}
        return str(env.get("id") if isinstance(env, dict) else env) if env else str(
            self.config.get("dataset") or "?")

    @property
    def last_step(self) -> int | None:
        """How far training got: the last logged step, or the step a session ended at (a stop
        lands between logged rows), whichever is later."""
        axis = self.axis
        steps = [r[axis] for r in self.rows if isinstance(r.get(axis), int | float)]
        ended = self.info.get("step")
        if isinstance(ended, int) and ended > 0:
            steps.append(ended)
        return int(max(steps)) if steps else None

    @property
    def created(self) -> float | None:
        return parse_run_time(self.info.get("created"))

    @property
    def duration_s(self) -> float | None:
        """Wall seconds spent training, summed over the run's sessions (a resumed run does not
        count the time between a stop and its resume). A run still going (or killed outright)
        adds its current session up to the last logged row; a run.json from before the sum
        was recorded counts from creation to the end."""
        recorded = recorded_seconds(self.info)
        if recorded is not None and str(self.info.get("status")) != "running":
            return recorded
        last_row = max((r.get("_time") or 0 for r in self.rows), default=0) or None
        seconds = self.info.get("seconds")
        if isinstance(seconds, int | float):  # an earlier session's sum, plus this one so far
            since = parse_run_time(self.info.get("resumed"))
            return float(seconds) + (max(0.0, last_row - since) if since and last_row else 0.0)
        start = self.created
        end = parse_run_time(self.info.get("finished")) or last_row
        return None if start is None or end is None else max(0.0, end - start)

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        axes = ("_time", self.axis, "step", "epoch", "global_step")
        for row in self.rows:
            for key, value in row.items():
                if key not in axes and _number(value) is not None:
                    names[key] = None
        for key in self.summary:
            names[key] = None
        return list(names)

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``metric`` against the run's axis, in logged order."""
        steps, values = [], []
        axis = self.axis
        for row in self.rows:
            value = _number(row.get(metric))
            step = row.get(axis)
            if value is not None and isinstance(step, int | float):
                steps.append(int(step))
                values.append(value)
        return steps, values

    def group_key(self) -> dict[str, Any]:
        """The config without the keys that do not make it a different configuration."""
        flat = _flatten(self.config)
        return {k: v for k, v in sorted(flat.items())
                if k not in IGNORED_KEYS and k.split(".")[0] not in IGNORED_KEYS}


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` and its merged ``summary`` entries; a line cut short by a
    crash is skipped rather than failing the whole report."""
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    if not path.is_file():
        return rows, summary
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict):
                continue
            if isinstance(row.get("summary"), dict):
                summary.update(row["summary"])
            else:
                rows.append(row)
    return rows, summary


def read_run(path: Path) -> RunRecord:
    """Read one run directory."""
    path = Path(path)
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        info = json.loads((path / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ForgelabError(f"cannot read the run in {path}: {exc}",
                            hint="is it a forgelab run directory?") from None
    rows, summary = read_metrics(path / METRICS_FILE)
    return RunRecord(path=path, config=config, info=info, rows=rows, summary=summary)


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / RUN_INFO).is_file()


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories under ``paths`` (run folders, study or ``runs/`` trees, or globs).

    :raises ForgelabError: when a path does not exist or holds no run directory.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        matches = sorted(glob.glob(str(raw))) if glob.has_magic(str(raw)) else [str(raw)]
        if not matches or not all(Path(m).exists() for m in matches):
            raise ForgelabError(f"{raw}: no such file or directory",
                                hint="pass run directories, study directories or runs/")
        before = len(found)
        for match in matches:
            for run_dir in _walk(Path(match)):
                found[run_dir.resolve()] = None
        if len(found) == before:
            raise ForgelabError(f"{raw}: no forgelab run directories in it (folders with "
                                f"{CONFIG_FILE} and {RUN_INFO})",
                                hint="runs are under runs/<experiment>/<timestamp>-<id>/")
    return list(found)


def _walk(path: Path) -> Iterable[Path]:
    if not path.is_dir():
        return
    if is_run_dir(path):
        yield path  # a run's own sub-jobs (evals/, samples/) are not runs of the study
        return
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name not in ("wandb", "media", "checkpoints", "report"):
            yield from _walk(child)


def split_attempts(dirs: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(current, earlier)``: a study's trial that was retried (``--retries``) left one run
    directory per attempt in its folder, ``<study>/<trial id>/<experiment>/<run>``; only its
    last attempt is the trial's result, so the earlier ones must not count as more seeds. Only
    the folders of trials a sweep's ``study.json`` lists are trial folders (``runs/`` beside a
    ``study.yaml`` sweep file is not)."""
    studies: dict[Path, dict[str, str | None]] = {}  # each study.json read once
    by_trial: dict[Path, list[Path]] = {}
    for run_dir in dirs:
        trial = Path(run_dir).parent.parent
        if trial.parent not in studies:
            studies[trial.parent] = _study_trials(trial.parent)
        if trial.name in studies[trial.parent]:
            by_trial.setdefault(trial, []).append(run_dir)
    earlier: set[Path] = set()
    for trial, runs in by_trial.items():
        if len(runs) > 1:
            last = _last_attempt(runs, studies[trial.parent][trial.name])
            earlier.update(r for r in runs if r != last)
    return [d for d in dirs if d not in earlier], [d for d in dirs if d in earlier]


def _study_trials(folder: Path) -> dict[str, str | None]:
    """Trial id -> recorded run directory (None until the trial's process ended) of the sweep
    whose ``study.json`` is in ``folder``; empty when there is none."""
    try:
        data = json.loads((folder / "study.json").read_text(encoding="utf-8"))
        return {str(t["id"]): t.get("run_dir") for t in data.get("trials") or []
                if isinstance(t, dict) and t.get("id")}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _last_attempt(runs: list[Path], recorded: str | None) -> Path:
    """The run study.json records for the trial, else the one whose run.json was written last
    (as the sweep itself picks it)."""
    if recorded:
        match = [r for r in runs if Path(r).resolve() == Path(recorded).resolve()]
        if match:
            return match[0]
    return max(runs, key=lambda r: ((Path(r) / RUN_INFO).stat().st_mtime, Path(r).name))


def study_name(path: Path) -> str | None:
    """The name in a study file (``study.json`` / ``study.yaml``) of ``path``, if any."""
    for name in STUDY_FILES:
        file = Path(path) / name
        if file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
                data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError):
                return Path(path).name
            if isinstance(data, dict):
                return str(data.get("name") or data.get("study") or Path(path).name)
            return Path(path).name
    return None


def trials_without_runs(path: Path) -> list[dict[str, Any]]:
    """Trials a study file (``study.json``) records but that left no run directory (e.g. a
    process that failed before it started training), so a report can count them. A trial's
    run is the one study.json names, or any run in the trial's folder."""
    file = Path(path) / "study.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    missing = []
    for trial in data.get("trials") or []:
        if not isinstance(trial, dict):
            continue
        run_dir = trial.get("run_dir")
        if run_dir and is_run_dir(Path(run_dir)):
            continue
        # study.json records a trial's run directory when its process ends: a live or killed
        # sweep's runs are only in the trial's folder, <study>/<trial id>/<experiment>/<run>/
        folder = Path(path) / str(trial.get("id"))
        if trial.get("id") and folder.is_dir() and next(iter(_walk(folder)), None):
            continue
        missing.append({k: trial.get(k) for k in ("id", "seed", "status", "error", "params")})
    return missing


@dataclass
class Configuration:
    """Runs that differ only in their seed (and in keys that cannot change learning)."""

    key: dict[str, Any]
    runs: list[RunRecord]
    label: str = ""
    # earlier attempts of retried study trials: listed, never counted
    earlier: list[RunRecord] = field(default_factory=list)

    @property
    def hash(self) -> str:
        text = json.dumps(self.key, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def experiment(self) -> str:
        names = [r.experiment for r in self.runs]
        return max(set(names), key=names.count)


def group_runs(runs: list[RunRecord], earlier: Iterable[RunRecord] = ()) -> list[Configuration]:
    """Group runs into configurations, labelled by experiment name plus the keys in which
    configurations of the same experiment differ; ``earlier`` attempts of retried trials are
    attached to their configuration without counting in it."""
    groups: dict[str, Configuration] = {}
    for run in runs:
        key = run.group_key()
        text = json.dumps(key, sort_keys=True, default=str)
        groups.setdefault(text, Configuration(key=key, runs=[])).runs.append(run)
    for run in earlier:
        text = json.dumps(run.group_key(), sort_keys=True, default=str)
        if text in groups:
            groups[text].earlier.append(run)
    configs = list(groups.values())
    for config in configs:
        config.runs.sort(key=lambda r: (r.seed if r.seed is not None else math.inf, r.run_id))
        same_name = [c for c in configs if c.experiment == config.experiment]
        keys = differing_keys([c.key for c in same_name]) if len(same_name) > 1 else []
        config.label = config.experiment + (f" ({describe(config.key, keys)})" if keys else "")
    labels = [c.label for c in configs]
    for config in configs:  # identical labels (values that print alike, e.g. 1 and "1")
        if labels.count(config.label) > 1:
            config.label += f" [{config.hash}]"
    configs.sort(key=lambda c: c.label)
    return configs


def differing_keys(keys: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ between configurations, those that tell them apart first:
    picked greedily, each the one that splits the configurations into the most groups (then
    the one with the most values, then by name), until every configuration is told apart;
    the keys left follow in name order. A label shows the first few, so a key that differs in
    only two of ten configurations is not hidden behind ones that merely follow it."""
    def text(key: dict[str, Any], name: str) -> str:
        return json.dumps(key.get(name), sort_keys=True, default=str)

    left = sorted(k for k in set().union(*keys) if len({text(c, k) for c in keys}) > 1)
    chosen: list[str] = []
    groups = 1
    while left and groups < len(keys):
        def split(name: str) -> tuple[int, int]:
            parts = {tuple(text(c, k) for k in [*chosen, name]) for c in keys}
            return len(parts), len({text(c, name) for c in keys})

        best = min(left, key=lambda name: (-split(name)[0], -split(name)[1], name))
        if split(best)[0] <= groups:
            break  # no key tells the rest apart
        groups = split(best)[0]
        chosen.append(best)
        left.remove(best)
    return chosen + left


def describe(key: dict[str, Any], names: list[str], shown: int = 3) -> str:
    """``agent.n_steps=64, agent.gamma=0.98 +2 more``: the first ``shown`` of ``names``
    (``_options`` dropped from the section), and how many more differ."""
    parts = [f"{k.replace('_options', '')}={key.get(k)}" for k in names[:shown]]
    more = f" +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(parts) + more


def default_metric(run: RunRecord) -> str:
    """The headline metric of a run: the first of its family's headline metrics (names or
    prefixes) that it logged, e.g. the evaluation return of an agent (training returns when it
    never evaluated) or a test metric of a generative model."""
    return _first_headline(run.family, run.metric_names())


def _first_headline(family: Family | None, names: list[str]) -> str:
    """The first of ``family``'s headline metrics (names or prefixes) among ``names``, else
    the first headline metric itself."""
    headline = family.headline_metrics if family else ("eval/", "test/", "val/")
    return next((name for prefix in headline for name in names if name.startswith(prefix)),
                headline[0] if headline else "?")


def family_metrics(runs: list[RunRecord]) -> dict[str | None, str]:
    """The headline metric of each family in a report (keyed by family name): the first of
    the family's headline metrics that any of its runs logged, so that every configuration is
    judged on the same metric (a configuration whose runs all diverged before evaluating keeps
    the evaluation metric and is counted as diverged, not headlined by training returns)."""
    by_family: dict[str | None, list[RunRecord]] = {}
    for run in runs:
        by_family.setdefault(run.family.name if run.family else None, []).append(run)
    return {name: _first_headline(members[0].family,
                                  [n for run in members for n in run.metric_names()])
            for name, members in by_family.items()}


def curve_metric(metric: str, run: RunRecord) -> str:
    """The metric drawn as a learning curve: the metric itself when it is logged over time,
    else its validation twin (``test/neg_elbo`` -> ``val/neg_elbo``)."""
    if len(run.series(metric)[0]) > 1:
        return metric
    twin = "val/" + metric.split("/", 1)[-1]
    if run.series(twin)[0]:
        return twin
    # e.g. test/nll_k1000 has no validation twin: the first validation metric (val/neg_elbo)
    over_time = [n for n in run.metric_names() if n.startswith("val/") and
                 len(run.series(n)[0]) > 1]
    return over_time[0] if over_time else metric


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def run_result_lines(run_dir: Path) -> list[str]:
    """What a finished job prints last: its result, best checkpoint, duration, next commands."""
    run = read_run(Path(run_dir))
    lines = []
    unit = run.family.unit_label if run.family else "steps"
    metric = default_metric(run)
    steps, values = run.series(metric)
    # A final test split (generative models) is the result; otherwise the headline metric's
    # last value and its best one over the run.
    tests = {k: v for k, v in run.summary.items()
             if k.startswith("test/") and isinstance(v, int | float)}
    if tests:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in list(tests.items())[:5])
        lines.append(f"result (test split): {shown}")
    elif values:
        finite = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        pick = min if lower_is_better(metric) else max
        best = pick(finite, key=lambda sv: sv[1]) if finite else (steps[-1], values[-1])
        episodes = (run.config.get("train") or {}).get("eval_episodes")
        what = (f" (mean of {episodes} evaluation episodes)" if metric == "eval/return_mean"
                else " (training episodes, no evaluation was run)"
                if metric == "train/episode_return" else "")
        at = run.family.unit if run.family else "step"
        lines.append(f"result: {metric} {_fmt(values[-1])} at {at} {steps[-1]:,}{what}; "
                     f"best {_fmt(best[1])} at {at} {best[0]:,}")
    if not lines:
        lines.append(f"result: no {metric} was logged")
    pointer = run.path / "checkpoints" / "best"
    if pointer.is_file():
        lines.append(f"best checkpoint: {run.path / 'checkpoints' / pointer.read_text().strip()}")
    duration = run.duration_s
    progress = f"{run.last_step:,} of {run.budget:,} {unit}" if run.last_step is not None \
        and run.budget else f"{run.last_step or 0} {unit}"
    if duration is not None:
        took = f"{duration:,.0f} s" if duration >= 1 else "under 1 s"
        lines.append(f"took {took} ({progress}), status {run.status}")
    budget_key = f"train.{run.family.budget_key}" if run.family else "train.?"
    # Twice how far it got: a run can overshoot its budget (PPO trains whole rollouts), and a
    # budget below the step reached leaves nothing to resume.
    reached = max(run.last_step or 0, run.budget or 0)
    extend = f" {budget_key}={2 * reached}" if run.budget and run.status == "finished" else ""
    lines.append(f"report: forgelab report {run.path.parent}")
    lines.append(f"{'extend' if extend else 'resume'}: forgelab run --resume {run.path}{extend}")
    return lines


def print_run_result(run_dir: Path) -> None:
    """Print :func:`run_result_lines` to stderr; a summary must never fail a finished run."""
    import sys

    try:
        lines = run_result_lines(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; say why and go on
        lines = [f"(no result summary: {type(exc).__name__}: {exc})"]
    print("\n".join(lines), file=sys.stderr)
