"""The ray launcher on a real multi-node Ray cluster started on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import read_metrics, user_env
from test_sweep import _progress, forgelab_exe, wait_for


def test_a_trial_whose_ray_node_dies_resumes_on_another_node_and_finishes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.cluster_utils import Cluster

    # Ray's sockets live under $TMPDIR and a Unix socket path has at most 107 bytes.
    short = tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", short)

    # A head that only schedules, and one worker node with one CPU: the trial must go there.
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    sweep = None
    try:
        node_a = cluster.add_node(num_cpus=1)
        sweep = subprocess.Popen(
            [forgelab_exe(), "sweep", "cartpole-random", "seed=0", "train.total_steps=40000",
             "train.video_every=null", "train.eval_every=null", "train.checkpoint_every=2000",
             "--name", "onray", "--launcher", "ray", "--address", cluster.address],
            env={**user_env(), "WANDB_MODE": "disabled"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        root = Path("runs/onray/c00-s0")
        wait_for(lambda: any(root.glob("*/*/checkpoints/latest")), "the trial's checkpoint",
                 timeout=300)
        # Hold the trial where it is (mid-run), then lose its node: the worker dies, the
        # trial's process gets SIGTERM (it dies with its parent) and saves a checkpoint once it
        # runs again; Ray runs the task again on the node that is left.
        pid = int((root / "trial.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        node_b = cluster.add_node(num_cpus=1)
        cluster.remove_node(node_a)
        os.kill(pid, signal.SIGCONT)
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, out + err
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
        cluster.shutdown()
        shutil.rmtree(short, ignore_errors=True)
    trial = json.loads(Path("runs/onray/study.json").read_text())["trials"][0]
    assert trial["status"] == "finished" and trial["resumed"]
    assert trial["node"].endswith(node_b.node_id)
    run_dirs = list(root.glob("*/*/run.json"))
    assert len(run_dirs) == 1  # one run, continued: not a second run from scratch
    run_dir = run_dirs[0].parent
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    log = (root / "trial.log").read_text()
    assert "stopped at step" in log and f"--resume {run_dir.resolve()}" in log
    steps = [row["global_step"] for row in read_metrics(run_dir) if "global_step" in row]
    assert max(steps) >= 40000


def test_ctrl_c_reaches_the_trials_of_a_ray_sweep_which_checkpoint_and_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    short = tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp")  # Ray's socket paths are short
    monkeypatch.setenv("TMPDIR", short)
    ids = ["c00-s0", "c00-s1"]
    # Far more steps than the test waits for: a trial that ignores the stop never ends in time.
    sweep = subprocess.Popen(
        [forgelab_exe(), "sweep", "cartpole-random", "seed=0:2", "train.total_steps=50000000",
         "train.video_every=null", "train.eval_every=null", "--name", "rayint",
         "--launcher", "ray"],
        env={**user_env(), "WANDB_MODE": "disabled"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # A logged row, not the file alone: metrics.jsonl is created before the runner
        # installs its stop handler, and a SIGTERM before it would end the trial uncheckpointed.
        wait_for(lambda: all(_progress(Path(f"runs/rayint/{i}")) > 0 for i in ids),
                 "both trials to train", timeout=300)
        sweep.send_signal(signal.SIGINT)
        out, err = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        shutil.rmtree(short, ignore_errors=True)
    assert sweep.returncode == 130, out + err
    assert "resume with: forgelab sweep --resume" in err
    record = json.loads(Path("runs/rayint/study.json").read_text())
    for trial in record["trials"]:
        assert (trial["status"], trial["exit_code"]) == ("interrupted", 143), trial
        info = json.loads((Path(trial["run_dir"]) / "run.json").read_text())
        assert info["status"] == "interrupted" and info["stop_signal"] == signal.SIGTERM
        assert (Path(trial["run_dir"]) / "checkpoints" / "latest").is_file()
