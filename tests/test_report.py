"""`forgelab report`, `compare` and `runs` on real run directories.

The runs are real (cartpole-random through the runner, a few thousand env steps, W&B off); the
unfinished one is a real `forgelab run` process killed with SIGKILL after its first evaluation,
and the failed one is a finished run's copy with the status a crash leaves in run.json.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    forgelab_cli,
    read_metrics,
    run_experiment,
    user_env,
    wandb_history,
    wandb_records,
)

from forgelab.core import stats
from forgelab.core.cli import main
from forgelab.core.report_html import fmt

FAST = ["train.total_steps=2000", "train.eval_every=500", "train.eval_episodes=3",
        "train.video_every=1000000", "train.checkpoint_every=1000000", "tracking.mode=disabled"]


def _final(run_dir: Path, key: str = "eval/return_mean") -> float:
    return [r[key] for r in read_metrics(run_dir) if key in r][-1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("lab")
    a = [run_experiment("cartpole-random", f"seed={s}", *FAST, output_dir=base / "A")
         for s in range(5)]
    b = [run_experiment("cartpole-random", f"seed={s}", "env.num_envs=2", *FAST,
                        output_dir=base / "B") for s in (0, 1, 7)]
    # a crash: the run directory of a finished run, as a run that raised leaves it
    failed = base / "A" / "cartpole-random" / "20990101-000000-failed00"
    shutil.copytree(a[0], failed)
    info = json.loads((failed / "run.json").read_text())
    info.update(run_id="failed00", status="failed", error="RuntimeError: boom")
    (failed / "run.json").write_text(json.dumps(info))
    (failed / "config.yaml").write_text((failed / "config.yaml").read_text()
                                        .replace("seed: 0", "seed: 6"))
    killed = _killed_run(base / "A")
    return {"base": base, "a": a, "b": b, "failed": failed, "killed": killed}


def _killed_run(output_dir: Path) -> Path:
    """A real run killed outright (SIGKILL) once it has evaluated: run.json says running."""
    with _live_run(output_dir, seed=5) as run_dir:
        return run_dir


@contextlib.contextmanager
def _live_run(output_dir: Path, seed: int) -> Iterator[Path]:
    """A real `forgelab run` process that has evaluated once and is still training (it holds
    run.lock); killed outright (SIGKILL) on leaving the block."""
    exe = str(Path(sys.executable).parent / "forgelab")
    proc = subprocess.Popen([exe, "run", "cartpole-random", f"seed={seed}", *FAST,
                             "train.total_steps=100000000", f"output_dir={output_dir}",
                             "--no-progress"], env=user_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:  # polling for the first evaluation row, not timing anything
            files = [p for p in output_dir.glob("cartpole-random/*/metrics.jsonl")
                     if f"seed: {seed}" in (p.parent / "config.yaml").read_text()]
            if files and "eval/return_mean" in files[0].read_text():
                break
            assert proc.poll() is None and time.monotonic() < deadline, "run never evaluated"
            time.sleep(0.1)
        yield files[0].parent
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


class _Refs(HTMLParser):
    """src/href targets and the numbers tagged with data-json."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.numbers: list[tuple[str, str]] = []
        self._path: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.refs += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if "data-json" in attrs:
            self._path = attrs["data-json"]

    def handle_data(self, data):
        if self._path is not None:
            self.numbers.append((self._path, data))
            self._path = None


def _lookup(data, path: str):
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _check_html_against_json(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    parser = _Refs()
    parser.feed((out / "index.html").read_text())
    local = [r for r in parser.refs if not r.startswith("#")]
    assert local and all((out / r).is_file() for r in local), local
    assert not any("://" in r for r in parser.refs)  # nothing from the network
    for fig in report["figures"]:
        assert fig["file"] in local
    assert len(parser.numbers) > 20
    for path, text in parser.numbers:
        assert text == fmt(_lookup(report, path)), path
    return report


def test_report_counts_every_run_and_html_matches_json(lab, capsys):
    base = lab["base"]
    out = base / "report-A"
    assert main(["report", str(base / "A"), "--threshold", "25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = _check_html_against_json(out)
    (conf,) = report["configurations"]
    assert conf["counts"] == {"total": 7, "finished": 5, "failed": 1, "unfinished": 1,
                              "no_metric": 0}
    finals = [_final(d) for d in lab["a"]]
    agg = conf["aggregate"]
    assert agg["n"] == 5 and agg["headline_interval"]
    assert agg["iqm"] == pytest.approx(stats.iqm(finals))
    assert agg["median"] == pytest.approx(float(np.median(finals)))
    assert agg["iqm_ci"][0] <= agg["iqm"] <= agg["iqm_ci"][1]
    assert sorted(conf["seeds"]) == [0, 1, 2, 3, 4]
    statuses = {r["seed"]: r["status"] for r in conf["runs"]}
    assert statuses[5] == "unfinished" and statuses[6] == "failed"
    assert any("unfinished" in f and "seed 5" in f for f in conf["flags"])
    # thresholds: a seed that never reached 25 is censored at the last step it ran
    thr = conf["threshold"]
    reached = [d for d in lab["a"] if any(r.get("eval/return_mean", 0) >= 25
                                          for r in read_metrics(d))]
    assert thr["n"] == 7
    assert thr["wilson"] == pytest.approx(list(stats.wilson_interval(thr["reached"], 7)))
    for run in conf["runs"]:
        if run["steps_to_threshold"] is None:
            assert run["censored_at"] == run["last_step"]
    assert thr["reached"] >= len(reached)
    html = (out / "index.html").read_text()
    for run in conf["runs"]:
        assert run["run_id"] in html
    assert "under-cover" in html and "n&nbsp;=&nbsp;" in html
    # the CSVs hold the same seeds
    lines = (out / "runs.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 7
    assert "IQM" in printed and "n=5 of 7 runs (1 failed, 1 unfinished)" in printed
    # the curve of the killed run ends early and is drawn dotted: its points are in the JSON
    killed = next(r for r in conf["runs"] if r["seed"] == 5)
    assert killed["curve"]["steps"] and not killed["in_aggregate"]


def test_few_seeds_get_no_headline_interval(lab):
    out = lab["base"] / "report-B"
    assert main(["report", str(lab["base"] / "B"), "--out", str(out)]) == 0
    report = _check_html_against_json(out)
    (conf,) = report["configurations"]
    assert conf["aggregate"]["n"] == 3 and not conf["aggregate"]["headline_interval"]
    html = (out / "index.html").read_text()
    summary = html[html.index("<h2>Summary</h2>"):html.index("<h2>", html.index(
        "<h2>Summary</h2>") + 5)]
    assert "iqm_ci" not in summary and "no interval" in summary


def test_compare_checks_seeds_and_tests_the_difference(lab, capsys):
    base = lab["base"]
    out = base / "compare"
    assert main(["compare", str(base / "A"), str(base / "B"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = _check_html_against_json(out)
    comp = report["comparison"]
    (task,) = comp["tasks"]
    assert not task["same_seeds"]
    assert task["only_in_a"] == [2, 3, 4] and task["only_in_b"] == [7]
    xa, xb = [_final(d) for d in lab["a"]], [_final(d) for d in lab["b"]]
    u, p = stats.mann_whitney_u(xa, xb)
    assert task["mann_whitney_u"] == pytest.approx(u) and task["p_value"] == pytest.approx(p)
    poi = stats.probability_of_improvement(xa, xb)
    assert comp["probability_of_improvement"] == pytest.approx(poi[0])
    assert "DIFFERENT seeds" in printed and "compare.png" in (out / "index.html").read_text()


def test_several_environments_need_declared_reference_scores(lab, capsys, tmp_path):
    for side, seed in (("A", 0), ("B", 1)):  # one Acrobot run beside each side's CartPole
        run_experiment("cartpole-random", f"seed={seed}", "env.id=Acrobot-v1", *FAST,
                       "train.total_steps=500", output_dir=tmp_path / side)
        for run in (lab["a"] if side == "A" else lab["b"]):
            shutil.copytree(run, tmp_path / side / "cartpole" / run.name)
    capsys.readouterr()
    code = main(["compare", str(tmp_path / "A"), str(tmp_path / "B")])
    err = capsys.readouterr().err
    assert code == 2 and "reference" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2  # the error and its hint
    code = main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--out",
                 str(tmp_path / "out"), "--reference", "CartPole-v1=9.4:500",
                 "--reference", "Acrobot-v1=-500:-60"])
    assert code == 0
    comp = json.loads((tmp_path / "out" / "report.json").read_text())["comparison"]
    assert comp["normalised"] and len(comp["tasks"]) == 2
    cart = next(t for t in comp["tasks"] if t["task"] == "CartPole-v1")
    acro = next(t for t in comp["tasks"] if t["task"] == "Acrobot-v1")
    norm = [np.array(t["a_values"]) for t in (acro, cart)], [np.array(t["b_values"])
                                                          for t in (acro, cart)]
    refs = [(-500, -60), (9.4, 500)]
    xs = [(v - lo) / (hi - lo) for v, (lo, hi) in zip(norm[0], refs, strict=True)]
    ys = [(v - lo) / (hi - lo) for v, (lo, hi) in zip(norm[1], refs, strict=True)]
    assert comp["probability_of_improvement"] == pytest.approx(
        stats.probability_of_improvement(xs, ys)[0])
    assert comp["iqm_a"] == pytest.approx(stats.iqm(np.concatenate(xs)))


def test_report_logs_its_own_wandb_job(lab, monkeypatch):
    out = lab["base"] / "report-wandb"
    assert main(["report", str(lab["base"] / "B"), "--out", str(out), "--wandb"]) == 0
    records = wandb_records(out)
    run = next(r["run"] for r in records if r.get("type") == "run")
    assert run["job_type"] == "report" and run["run_group"] == "cartpole-random"
    (row,) = wandb_history(records)
    assert row["report/per_seed_final._type"] == "table-file"
    assert row["report/per_seed_final.nrows"] == 3
    assert any(k.startswith("report/seeds-") and k.endswith("._type") for k in row)
    table = next(out.glob("wandb/*run-*/files/media/table/report/per_seed_final_*.json"))
    data = json.loads(table.read_text())
    finals = sorted(r[data["columns"].index("final")] for r in data["data"])
    assert finals == pytest.approx(sorted(_final(d) for d in lab["b"]))


def test_runs_lists_status_and_metric(lab, capsys):
    assert main(["runs", str(lab["base"] / "A")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 7
    killed = next(line for line in out if str(lab["killed"]) in line)
    assert "unfinished" in killed and "eval/return_mean" in killed
    finished = next(line for line in out if str(lab["a"][1]) in line)
    assert "finished" in finished and fmt(_final(lab["a"][1])) in finished


def test_bad_paths_are_one_line_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no forgelab run directories" in capsys.readouterr().err


def test_every_run_ends_by_printing_its_result(capsys):
    run_dir = run_experiment("cartpole-random", *FAST)
    err = capsys.readouterr().err
    final = _final(run_dir)
    assert f"result: eval/return_mean {final:.4g} at step 2,000" in err
    best = re.search(r"best checkpoint: (\S+)", err).group(1)
    assert Path(best).is_dir() and Path(best).parent == run_dir / "checkpoints"
    assert f"forgelab report {run_dir.parent}" in err
    assert f"forgelab run --resume {run_dir}" in err and "took " in err
    assert not math.isnan(final)


def test_a_study_directory_is_named_and_its_trials_without_runs_counted(lab, tmp_path, capsys):
    study = tmp_path / "runs" / "lr-study"
    trials = []
    for i, run in enumerate(lab["b"]):
        copy = study / f"t{i}" / "cartpole-random" / run.name
        shutil.copytree(run, copy)
        trials.append({"id": f"t{i}", "seed": i, "status": "finished", "run_dir": str(copy),
                       "params": {}})
    trials.append({"id": "t9", "seed": 9, "status": "failed", "run_dir": None,
                   "error": "exit code 1", "params": {"agent.x": 1}})
    (study / "study.json").write_text(json.dumps({"name": "lr-study", "trials": trials}))
    assert main(["report", str(study)]) == 0  # default folder: <study>/report
    assert "trial t9 (seed 9) left no run directory (failed)" in capsys.readouterr().out
    report = _check_html_against_json(study / "report")
    assert report["studies"] == ["lr-study"] and report["configurations"][0]["counts"][
        "total"] == 3
    html = (study / "report" / "index.html").read_text()
    assert "<h1>forgelab report: lr-study</h1>" in html and "exit code 1" in html
    # a second report does not count the first report's folder as a run
    assert main(["report", str(study), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["configurations"][0]["counts"]["total"] == 3
    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert "study lr-study: 3 finished, 1 failed" in capsys.readouterr().out


def test_a_metric_no_run_logged_is_an_error_naming_the_logged_ones(lab, capsys):
    base = lab["base"]
    for argv in (["report", str(base / "B"), "--metric", "eval/return_men"],
                 ["compare", str(base / "A"), str(base / "B"), "--metric", "eval/nosuch"]):
        assert main([*argv, "--out", str(base / "typo")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        assert len(err.strip().splitlines()) == 2  # the error and its hint
        logged = err[err.index("logged:"):]
        assert logged.index("eval/return_mean") < logged.index("train/")  # closest first
    assert not (base / "typo").exists()


def test_a_report_folder_keeps_only_its_current_figures(lab):
    out = lab["base"] / "report-again"
    assert main(["report", str(lab["base"] / "B"), "--metric", "train/episode_return",
                 "--out", str(out)]) == 0
    assert list(out.glob("curves-*train-episode-return.png"))
    (out / "notes.png").write_bytes(b"")  # not the report's: stays
    (out / "curves-07-mine.png").write_bytes(b"")  # named like a figure, but the user's: stays
    assert main(["report", str(lab["base"] / "B"), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted([f["file"] for f in report["figures"]] + ["notes.png",
                                                                     "curves-07-mine.png"])


def test_the_extend_suggestion_goes_past_the_steps_already_trained(capsys):
    # PPO collects whole rollouts: asked for 1,000 steps it trains 4,096
    run_dir = run_experiment("pendulum-ppo", "env.id=CartPole-v1", "train.total_steps=1000",
                             "train.video_every=1000000", "tracking.mode=disabled")
    step = json.loads((run_dir / "run.json").read_text())["step"]
    assert step > 1000
    err = capsys.readouterr().err
    extend = int(re.search(r"extend: forgelab run --resume \S+ train.total_steps=(\d+)",
                           err).group(1))
    assert extend == 2 * step


def test_trials_of_a_live_or_killed_sweep_are_found_in_their_trial_folders(lab, tmp_path,
                                                                           capsys):
    # study.json records a trial's run directory only when its process ends: while a sweep
    # runs, and after it was killed outright, the runs are found in <study>/<trial id>/
    study = tmp_path / "runs" / "live"
    shutil.copytree(lab["a"][0], study / "c00-s0" / "cartpole-random" / lab["a"][0].name)
    trials = [{"id": f"c00-s{s}", "config_id": "c00", "seed": s, "status": "running",
               "run_dir": None, "params": {}} for s in (0, 1)]
    (study / "study.json").write_text(json.dumps({"name": "live", "trials": trials}))
    with _live_run(study / "c00-s1", seed=1):
        assert main(["report", str(study), "--reps", "100"]) == 0
        printed = capsys.readouterr().out
        report = json.loads((study / "report" / "report.json").read_text())
        assert report["trials_without_runs"] == [] and "left no run" not in printed
        (conf,) = report["configurations"]
        assert conf["counts"]["running"] == 1 and "unfinished" not in conf["counts"]
        assert "(seed 1) is running" in printed and "n=1 of 2 runs (1 running)" in printed
    assert main(["report", str(study), "--reps", "100"]) == 0  # killed outright: unfinished
    printed = capsys.readouterr().out
    assert "n=1 of 2 runs (1 unfinished)" in printed and "left no run" not in printed


def test_a_retried_trial_counts_once_and_every_configuration_has_the_study_metric(tmp_path,
                                                                                  capsys):
    # a real sweep: the 1e30 learning rate diverges at its first update, and is retried once
    proc = forgelab_cli("sweep", "cartpole-ppo", "agent.learning_rate=1e30,1e-3", "seed=0",
                        "train.total_steps=1024", "train.eval_episodes=2",
                        "train.video_every=1000000", "tracking.mode=disabled", "--retries", "1",
                        "--workers", "2", "--name", "div", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    study = tmp_path / "runs" / "div"
    assert len(list((study / "c00-s0").glob("cartpole-ppo/*/run.json"))) == 2  # two attempts
    assert main(["report", str(study), "--reps", "100"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((study / "report" / "report.json").read_text())
    diverged = next(c for c in report["configurations"] if c["config"][
        "agent_options.learning_rate"] == 1e30)
    assert diverged["counts"] == {"total": 1, "diverged": 1, "no_metric": 0}
    assert [r["seed"] for r in diverged["runs"]] == [0]
    assert not any("more than once" in f for f in diverged["flags"])
    assert any("1 earlier attempt" in f for f in diverged["flags"])
    assert len(diverged["earlier_attempts"]) == 1
    assert {c["metric"] for c in report["configurations"]} == {"eval/return_mean"}
    assert "n=0 of 1 runs (1 diverged)" in printed and "train/episode_return" not in printed


def test_labels_show_the_keys_that_tell_configurations_apart_first(tmp_path, capsys):
    # three configurations differing in four keys; only train.eval_episodes (last in
    # alphabetical order) tells the second and third apart
    shared = ["env.max_episode_steps=100", "env.num_envs=2", "threads=2"]
    for overrides in ([], [*shared, "train.eval_episodes=2"], [*shared]):
        run_experiment("cartpole-random", *FAST, "train.total_steps=500", *overrides,
                       output_dir=tmp_path / "runs")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--reps", "100"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("cartpole-random")]
    report = json.loads((tmp_path / "runs" / "report" / "report.json").read_text())
    labels = [c["label"] for c in report["configurations"]]
    assert len(set(labels)) == 3 and not any("[" in label for label in labels)
    assert sum("train.eval_episodes=" in label for label in labels) == 3
    for line, conf in zip(lines, report["configurations"], strict=True):
        assert line.count(conf["hash"]) == 1


def test_the_curve_legend_counts_the_runs_the_summary_counts(lab, tmp_path, capsys):
    # three runs evaluated every 500 steps and a shorter one evaluated at its end only: no
    # step has all four, but the IQM curve is drawn from four runs, as n=4 of 4 says
    from forgelab.core.report_figures import curve_legend

    for run in lab["b"]:
        shutil.copytree(run, tmp_path / "runs" / run.name)
    run_experiment("cartpole-random", "seed=3", "env.num_envs=2", *FAST,
                   "train.total_steps=400", output_dir=tmp_path / "runs")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--reps", "100"]) == 0
    assert "n=4 of 4 runs" in capsys.readouterr().out
    (conf,) = json.loads((tmp_path / "runs" / "report" / "report.json").read_text())[
        "configurations"]
    assert max(conf["curve"]["n"]) == 3
    legend = curve_legend(conf)
    assert "IQM of 4 runs" in legend and "seeds" not in legend


def test_a_generative_threshold_is_in_epochs(tmp_path, capsys):
    run_experiment("digits-vae", "train.epochs=2", "train.eval_every=1", "model.nll_samples=5",
                   "tracking.mode=disabled", output_dir=tmp_path / "runs")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--threshold", "1000", "--reps", "100"]) == 0
    printed = capsys.readouterr().out
    assert "reached 1,000: 1/1 seeds" in printed and "median epochs to it 2\n" in printed
    html = (tmp_path / "runs" / "report" / "index.html").read_text()
    assert "median epochs to threshold" in html


def test_compare_warns_about_the_same_runs_and_different_budgets(lab, tmp_path, capsys):
    base = lab["base"]
    assert main(["compare", str(base / "B"), str(base / "B"), "--out", str(tmp_path / "same"),
                 "--reps", "100"]) == 0
    printed = capsys.readouterr().out
    assert "! A and B share 3 of their runs" in printed
    warnings = json.loads((tmp_path / "same" / "report.json").read_text())["comparison"][
        "warnings"]
    assert len(warnings) == 1
    for seed in (0, 1):
        run_experiment("cartpole-random", f"seed={seed}", "env.num_envs=2", *FAST,
                       "train.total_steps=1000", output_dir=tmp_path / "short")
    capsys.readouterr()
    assert main(["compare", str(base / "B"), str(tmp_path / "short"), "--out",
                 str(tmp_path / "budgets"), "--reps", "100"]) == 0
    printed = capsys.readouterr().out
    assert "! A and B were trained with different budgets: A 2,000, B 1,000" in printed
    assert "different budgets" in (tmp_path / "budgets" / "index.html").read_text()


def test_a_sweep_file_beside_the_runs_folder_makes_no_retried_trials(lab, capsys):
    """`forgelab sweep study.yaml` is the documented use: a study.yaml at the project root does
    not make runs/<experiment>/ a retried trial folder (only trials a study.json lists are)."""
    base = lab["base"]
    sweep_file = base / "study.yaml"
    sweep_file.write_text("experiment: cartpole-random\ngrid: {seed: [0, 1]}\n")
    try:
        assert main(["report", str(base / "A"), "--out", str(base / "report-sweep-file")]) == 0
    finally:
        sweep_file.unlink()
    printed = capsys.readouterr().out
    assert "n=5 of 7 runs" in printed and "retried" not in printed
