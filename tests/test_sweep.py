"""`forgelab sweep` end to end: real `forgelab run` processes, real signals, real W&B (offline)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    forgelab_cli,
    last_metric,
    read_metrics,
    user_env,
    wandb_of_type,
    wandb_records,
)

# Short trials: a random agent on CartPole, no videos, a small evaluation.
SHORT = ["train.total_steps=600", "train.video_every=null", "train.eval_episodes=2"]


def forgelab_exe() -> str:
    return shutil.which("forgelab", path=str(Path(sys.executable).parent)) or "forgelab"


def study(name: str) -> dict[str, Any]:
    return json.loads(Path(f"runs/{name}/study.json").read_text())


def trials(name: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in study(name)["trials"]}


def run_info(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    """Poll for a state of files on disk (not a timing assumption), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_grid_with_seeds_records_every_trial_retries_a_failure_and_reruns_only_it() -> None:
    # A file where one trial's run folder must go: that trial fails in its own process.
    blocker = Path("runs/grid/c01-s0/cartpole-random")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way\n")
    args = ["sweep", "cartpole-random", "env.num_envs=1,2", "seed=0:2", *SHORT,
            "--name", "grid", "--workers", "2", "--retries", "1"]
    result = forgelab_cli(*args)
    assert result.returncode == 1, result.stderr
    assert "failed c01-s0 after 2 attempt(s)" in result.stderr
    # the progress count counts trials; the retry is the same trial, said to be a retry
    progress = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 5, progress  # 4 trials, one of them ended twice
    assert {line.split()[0] for line in progress} == {"[1/4]", "[2/4]", "[3/4]", "[4/4]"}
    retried = [line for line in progress if " c01-s0 " in line]
    assert retried[0].split()[0] == retried[1].split()[0], retried
    assert "retry" not in retried[0] and "retry 1/1" in retried[1], retried
    record = study("grid")
    assert record["summary"]["finished"] == 3 and record["summary"]["failed"] == 1
    by_id = trials("grid")
    failed = by_id["c01-s0"]
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert failed["exit_code"] not in (0, None) and failed["error"]
    for trial_id, num_envs, seed in (("c00-s0", 1, 0), ("c00-s1", 1, 1), ("c01-s1", 2, 1)):
        trial = by_id[trial_id]
        assert (trial["status"], trial["exit_code"], trial["attempts"]) == ("finished", 0, 1)
        run_dir = Path(trial["run_dir"])
        assert run_dir.parent.parent == Path(f"runs/grid/{trial_id}").resolve()
        assert run_info(run_dir)["status"] == "finished"
        config = (run_dir / "config.yaml").read_text()
        assert f"seed: {seed}\n" in config and f"num_envs: {num_envs}\n" in config
        assert trial["params"] == {"env.num_envs": num_envs} and trial["seed"] == seed
    # seeds are replicates: a configuration's seeds start before the next configuration's
    assert max(by_id[t]["started"] for t in ("c00-s0", "c00-s1")) <= min(
        by_id[t]["started"] for t in ("c01-s0", "c01-s1"))
    # W&B: the group is study + configuration (seeds of one configuration), tagged with the study
    run = wandb_of_type(wandb_records(Path(by_id["c00-s1"]["run_dir"])), "run")[0]
    assert run["run_group"] == "grid-c00" and "grid" in run["tags"]

    blocker.unlink()  # the cause is fixed: the same command finishes only what is unfinished
    finished_before = {t: by_id[t]["run_dir"] for t in ("c00-s0", "c00-s1", "c01-s1")}
    result = forgelab_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "1 of 4 trial(s) to run" in result.stdout
    after = trials("grid")
    assert all(t["status"] == "finished" for t in after.values())
    assert {t: after[t]["run_dir"] for t in finished_before} == finished_before
    assert all(after[t]["attempts"] == 1 for t in finished_before)
    assert after["c01-s0"]["attempts"] == 3
    assert run_info(after["c01-s0"]["run_dir"])["status"] == "finished"


def _progress(trial_dir: Path) -> int:
    """Rows in the metrics.jsonl of the trial's run (0 before it exists)."""
    files = list(trial_dir.glob("*/*/metrics.jsonl"))
    return len(read_metrics(files[0].parent)) if files else 0


def _statuses(name: str, ids: list[str]) -> list[str | None]:
    out = []
    for trial_id in ids:
        files = list(Path(f"runs/{name}/{trial_id}").glob("*/*/run.json"))
        out.append(json.loads(files[0].read_text()).get("status") if files else None)
    return out


def hold_each(roots: list[Path], ready) -> list[int]:
    """SIGSTOP each trial's process as soon as ``ready(root)`` holds, until all are held, so
    that one trial cannot finish while another is still starting (a loaded machine)."""
    held: dict[Path, int] = {}

    def check() -> bool:
        for root in roots:
            if root not in held and ready(root):
                held[root] = int((root / "trial.pid").read_text())
                os.kill(held[root], signal.SIGSTOP)
        return len(held) == len(roots)

    wait_for(check, "every trial to be ready")
    return list(held.values())


def release(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)  # a signal sent meanwhile is handled now


def test_a_killed_sweep_resumes_its_trials_from_their_checkpoints() -> None:
    args = [forgelab_exe(), "sweep", "cartpole-random", "seed=0:2", "train.total_steps=100000",
            "train.video_every=null", "train.eval_every=null", "--name", "long",
            "--workers", "2"]
    env = {**user_env(), "WANDB_MODE": "disabled"}
    ids = ["c00-s0", "c00-s1"]
    roots = [Path(f"runs/long/{i}") for i in ids]

    # 1. SIGTERM (what `kill` and schedulers send): trials checkpoint, the sweep exits 143
    sweep = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    held = hold_each(roots, lambda root: _progress(root) > 0)
    second = subprocess.run([forgelab_exe(), "sweep", "--resume", "runs/long"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "being run by another" in second.stderr  # never twice
    sweep.send_signal(signal.SIGTERM)  # forwarded to both, handled once they run again
    release(held)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err
    by_id = trials("long")
    for trial_id in ids:
        assert (by_id[trial_id]["status"], by_id[trial_id]["exit_code"]) == ("interrupted", 143)
        info = run_info(by_id[trial_id]["run_dir"])
        assert info["status"] == "interrupted" and info["stop_signal"] == signal.SIGTERM
    rows = [_progress(r) for r in roots]

    # 2. SIGKILL mid-way: the sweep cannot forward anything; the kernel sends its children
    # SIGTERM (PR_SET_PDEATHSIG) and they checkpoint on their own.
    sweep = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progressed = dict(zip(roots, rows, strict=True))
    held = hold_each(roots, lambda root: _statuses("long", [root.name]) == ["running"]
                     and _progress(root) > progressed[root])
    sweep.kill()
    sweep.wait(timeout=60)
    release(held)
    wait_for(lambda: _statuses("long", ids) == ["interrupted", "interrupted"],
             "the orphaned trials to checkpoint and stop")
    assert {t["status"] for t in trials("long").values()} == {"running"}  # what it knew

    # 3. `--resume STUDY_DIR` (or the same command) finishes both, each in its one run directory.
    result = subprocess.run([forgelab_exe(), "sweep", "--resume", "runs/long"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for trial_id, root in zip(ids, roots, strict=True):
        trial = trials("long")[trial_id]
        assert trial["status"] == "finished" and trial["resumed"] and trial["attempts"] == 3
        assert len(list(root.glob("*/*/run.json"))) == 1
        assert run_info(trial["run_dir"])["status"] == "finished"
        steps = [row["global_step"] for row in read_metrics(Path(trial["run_dir"]))
                 if "global_step" in row]
        assert max(steps) >= 100000


def test_forgelab_run_under_a_wandb_agent_adopts_its_ids_and_is_requeued() -> None:
    # The environment `wandb agent` gives the command of a sweep (offline: no server here).
    env = {**user_env(), "WANDB_MODE": "offline", "WANDB_SWEEP_ID": "swp123",
           "WANDB_RUN_ID": "agentrun7", "WANDB_PROJECT": "sweep-project"}
    command = [forgelab_exe(), "run", "cartpole-random", "seed=3", "train.total_steps=60000",
               "train.video_every=null", "train.eval_every=null", "--no-progress"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: _progress(Path("runs")) > 0, "the run to log")
    os.kill(proc.pid, signal.SIGSTOP)  # mid-run, however slow this machine is
    run_dirs = list(Path("runs/cartpole-random").glob("*"))
    assert [p.name.endswith("-agentrun7") for p in run_dirs] == [True]
    proc.send_signal(signal.SIGTERM)  # how an agent stops a run (then requeues it if marked)
    release([proc.pid])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    info = run_info(run_dirs[0])
    assert (info["run_id"], info["sweep_id"], info["wandb_project"], info["status"]) == (
        "agentrun7", "swp123", "sweep-project", "interrupted")
    records = wandb_records(run_dirs[0])
    run = wandb_of_type(records, "run")[0]
    assert (run["run_id"], run["project"], run["sweep_id"]) == (
        "agentrun7", "sweep-project", "swp123")
    assert run["run_group"].startswith("sweep-swp123-")  # the configuration's seeds together
    assert wandb_of_type(records, "preempting"), "the agent would not requeue the run"

    # The agent requeues it with the same run id: the run continues from its checkpoint.
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert list(Path("runs/cartpole-random").glob("*")) == run_dirs
    info = run_info(run_dirs[0])
    assert (info["run_id"], info["status"]) == ("agentrun7", "finished")
    steps = [row["global_step"] for row in read_metrics(run_dirs[0]) if "global_step" in row]
    assert max(steps) >= 60000


def test_optuna_search_requeues_the_trial_a_killed_sweep_left_running() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # What a killed sweep leaves: an Optuna trial RUNNING forever in the journal file.
    Path("runs/opt").mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend("runs/opt/optuna.log"))
    left = optuna.create_study(study_name="opt", storage=storage, direction="maximize")
    left.ask({"env.num_envs": CategoricalDistribution(["1", "2"])})
    stale = left.trials[0].params

    result = forgelab_cli("sweep", "cartpole-random", "env.num_envs=1,2", "seed=0:2", *SHORT,
                          "train.eval_every=300", "--search", "optuna", "--trials", "2",
                          "--name", "opt", "--workers", "2")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="opt", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]  # failed, requeued, then one more
    assert study.trials[1].params == stale  # the requeued configuration ran first
    record = json.loads(Path("runs/opt/study.json").read_text())
    assert record["spec"]["search"]["requeued"] == [0]
    # the objective is the mean over the configuration's seeds, both of which ran
    best = record["spec"]["search"]["best"]
    seeds = [t for t in record["trials"] if t["config_id"] == best["config_id"]]
    assert sorted(t["seed"] for t in seeds) == [0, 1]
    assert all(t["status"] == "finished" for t in seeds)
    values = [last_metric(Path(t["run_dir"]), "eval/return_mean") for t in seeds]
    assert best["value"] == pytest.approx(sum(values) / 2)


def test_a_resume_reports_trials_that_finished_before_it_as_already_finished() -> None:
    args = ["sweep", "cartpole-random", "seed=0:2", *SHORT, "--name", "stale", "--workers", "2"]
    assert forgelab_cli(*args).returncode == 0
    # What a SIGKILLed sweep leaves when a trial finishes after the kill: its run finished,
    # the study file still says running.
    path = Path("runs/stale/study.json")
    record = json.loads(path.read_text())
    record["trials"][0]["status"] = "running"
    path.write_text(json.dumps(record))
    finished_at = record["trials"][0]["ended"]

    result = forgelab_cli("sweep", "--resume", "runs/stale")
    assert result.returncode == 0, result.stderr
    assert "0 of 2 trial(s) to run" in result.stdout
    assert "c00-s0 already finished before this sweep" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert "2 finished (this sweep ran 0 trial(s) in" in result.stdout
    trial = trials("stale")["c00-s0"]
    assert (trial["status"], trial["attempts"]) == ("finished", 1)
    assert trial["ended"] <= finished_at + 5  # when it finished, not when the resume looked


def test_an_optuna_resume_reports_only_what_it_runs() -> None:
    args = [forgelab_exe(), "sweep", "cartpole-random", "env.num_envs=1,2", "seed=0:2",
            "train.total_steps=100000", "train.video_every=null", "train.eval_every=50000",
            "train.eval_episodes=2", "--search", "optuna", "--trials", "1", "--name", "optint",
            "--workers", "2"]
    env = {**user_env(), "WANDB_MODE": "disabled"}
    sweep = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for(lambda: Path("runs/optint/study.json").is_file()
             and len(study("optint")["trials"]) == 2, "the configuration's trials")
    roots = [Path(f"runs/optint/{t}") for t in trials("optint")]
    held = hold_each(roots, lambda root: _progress(root) > 0)
    sweep.send_signal(signal.SIGINT)
    release(held)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert {t["status"] for t in trials("optint").values()} == {"interrupted"}

    result = subprocess.run([forgelab_exe(), "sweep", "--resume", "runs/optint"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert sorted(line.split()[2] for line in progress) == ["finished", "finished"], progress
    assert "interrupted" not in result.stdout  # the last sweep's ends are not news


def test_a_resume_keeps_the_command_that_made_the_study_and_records_itself_apart() -> None:
    args = ["sweep", "cartpole-random", "seed=0", *SHORT, "--name", "cmd"]
    assert forgelab_cli(*args).returncode == 0
    assert study("cmd")["command"] == ["forgelab", *args] and study("cmd")["reruns"] == []
    assert forgelab_cli("sweep", "--resume", "runs/cmd").returncode == 0
    record = study("cmd")
    assert record["command"] == ["forgelab", *args]  # still what the study is
    assert [r["command"] for r in record["reruns"]] == [
        ["forgelab", "sweep", "--resume", "runs/cmd"]]


def test_more_seeds_under_the_same_name_run_only_the_new_ones() -> None:
    # what README's "Studies" says: the name, not the command, keeps the trials already done
    assert forgelab_cli("sweep", "cartpole-random", "seed=0", *SHORT, "--name", "grow"
                        ).returncode == 0
    done = trials("grow")["c00-s0"]["run_dir"]
    result = forgelab_cli("sweep", "cartpole-random", "seed=0:2", *SHORT, "--name", "grow")
    assert result.returncode == 0 and "1 of 2 trial(s) to run" in result.stdout
    assert trials("grow")["c00-s0"]["run_dir"] == done
    unnamed = forgelab_cli("sweep", "cartpole-random", "seed=0:2", *SHORT, "--dry-run")
    assert "runs/grow" not in unnamed.stdout and "0 finished" in unnamed.stdout  # a new study


def test_a_stop_after_every_trial_finished_says_there_is_nothing_to_resume(capsys) -> None:
    """A Ctrl-C that lands as the last trials end: exit 130 (it was stopped), but the study is
    complete, so no 'resume with' (resuming would find nothing to do)."""
    from forgelab.core.study import FINISHED, INTERRUPTED, Trial, spec_from_items
    from forgelab.core.sweep import _report

    spec = spec_from_items("cartpole-random", ["seed=0:2"], name="done")
    trials = [Trial(id=f"c00-s{i}", config_id="c00", params={}, seed=i, status=FINISHED)
              for i in range(2)]
    assert _report(spec, trials, signal.SIGINT, 1.0, 2) == 130
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "resume with" not in err
    trials[1].status = INTERRUPTED
    assert _report(spec, trials, signal.SIGINT, 1.0, 2) == 130
    assert "resume with: forgelab sweep --resume" in capsys.readouterr().err
