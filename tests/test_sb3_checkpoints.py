"""SB3 runs: checkpoints (SB3's .zip + a pickle-free replay buffer), Ctrl-C and resume,
and `forgelab eval` on a saved SB3 run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from conftest import (
    forgelab_cli,
    read_metrics,
    run_experiment,
    user_env,
    wandb_of_type,
    wandb_records,
)
from stable_baselines3.common.save_util import load_from_zip_file

from forgelab.core import runner
from forgelab.core.checkpoints import CheckpointManager

# Small and quick: two envs, short rollouts, few evaluation episodes.
PPO_SHORT = ("train.eval_episodes=2", "train.video_every=null", "env.num_envs=2",
             "agent.n_steps=64", "agent.batch_size=64", "agent.n_epochs=2")
DQN_SHORT = ("train.total_steps=600", "train.eval_every=600", "train.eval_episodes=2",
             "train.log_every=200",
             "train.video_every=null", "train.checkpoint_every=null", "agent.learning_starts=200",
             "agent.train_freq=100", "agent.gradient_steps=10", "agent.buffer_size=5000",
             "agent.policy_kwargs={net_arch: [32]}")


def _wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)  # polling a file written by the child, not timing anything


def _latest(run_dir: Path) -> tuple[dict, Path]:
    return CheckpointManager(run_dir / "checkpoints").load("latest")


def test_sigterm_checkpoints_an_sb3_run_and_resume_continues_it(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "forgelab")
    child = subprocess.Popen([exe, "run", "cartpole-sb3-ppo", "train.total_steps=100000000",
                              "train.log_every=128", *PPO_SHORT, "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=user_env())
    runs = tmp_path / "runs" / "cartpole-sb3-ppo"

    def trained_a_little() -> bool:  # a train/ row: SB3 has done at least one update
        return runs.is_dir() and any(
            (d / "metrics.jsonl").is_file() and "train/policy_loss" in
            (d / "metrics.jsonl").read_text() for d in runs.iterdir())

    _wait_for(trained_a_little)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, err  # 143: stopped, not finished
    assert "--resume" in err and "Traceback" not in err
    run_dir = next(runs.iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    state, checkpoint = _latest(run_dir)
    stopped = state["step"]
    assert 0 < stopped < 100000000
    assert (checkpoint / "model.zip").is_file()
    counters = state["component"]["counters"]
    assert counters["num_timesteps"] == stopped and counters["_n_updates"] > 0

    target = stopped + 512
    resumed = forgelab_cli("run", "--resume", str(run_dir), f"train.total_steps={target}",
                           "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    state, _ = _latest(run_dir)
    # SB3 collects whole rollouts (2 envs x 64 steps), so it may pass the target by < 128.
    assert target <= state["step"] < target + 128
    assert state["component"]["counters"]["_n_updates"] > counters["_n_updates"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    # the step axis continues where the first segment stopped
    steps = [row["global_step"] for row in read_metrics(run_dir) if "train/policy_loss" in row]
    assert max(steps) > stopped and steps == sorted(steps)
    # one W&B run id across both segments
    wandb_dirs = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(wandb_dirs) == 2
    records = [wandb_records(d) for d in wandb_dirs]
    assert {wandb_of_type(r, "run")[0]["run_id"] for r in records} == {info["run_id"]}
    # each segment's checkpoints are W&B artifacts holding SB3's model.zip
    for segment in records:
        artifacts = wandb_of_type(segment, "artifact")
        assert artifacts and all(a["type"] == "model" for a in artifacts)
        assert all({"model.zip", "state.pt"} <= {f["path"] for f in a["manifest"]["contents"]}
                   for a in artifacts)


def test_off_policy_resume_restores_the_replay_buffer_without_pickle() -> None:
    run_dir = run_experiment("cartpole-sb3-dqn", *DQN_SHORT)  # save_replay_buffer: true
    state, checkpoint = _latest(run_dir)
    assert state["step"] == 600
    # state.pt loads with weights_only=True; the buffer is a plain .npz
    torch.load(checkpoint / "state.pt", weights_only=True)
    with np.load(checkpoint / "replay_buffer.npz", allow_pickle=False) as data:
        assert int(data["pos"]) == 600 and not bool(data["full"])
        before = {name: data[name].copy() for name in data.files}
    assert before["observations"].shape == (600, 1, 4)
    counters = state["component"]["counters"]
    assert counters["_n_calls"] == 600 and counters["exploration_rate"] < 1.0
    # training updates after each 100-step collection once past learning_starts=200:
    # at 300, 400, 500 and 600 -> 4 x 10 gradient steps
    assert counters["_n_updates"] == 40

    keys = {key for row in read_metrics(run_dir) for key in row}
    assert {"train/td_loss", "train/epsilon"} <= keys and "train/loss" not in keys

    runner.resume(run_dir, ["train.total_steps=1000"], show_progress=False)
    state, checkpoint = _latest(run_dir)
    assert state["step"] == 1000
    with np.load(checkpoint / "replay_buffer.npz", allow_pickle=False) as data:
        assert int(data["pos"]) == 1000
        # the first 600 transitions are the restored ones, the next 400 are new
        for name in ("observations", "actions", "rewards", "dones"):
            np.testing.assert_array_equal(data[name][:600], before[name])
    counters = state["component"]["counters"]
    assert counters["_n_calls"] == 1000
    # the restored buffer lets updates continue at once: 700, 800, 900, 1000
    assert counters["_n_updates"] == 80


def test_a_checkpoint_loads_back_exactly() -> None:
    """save -> load -> save gives the same SB3 tensors (networks, optimizers, SAC's alpha)."""
    run_dir = run_experiment("pendulum-sb3-sac", "train.total_steps=300", "train.eval_every=300",
                             "train.eval_episodes=1", "train.video_every=null",
                             "agent.learning_starts=100", "agent.batch_size=16",
                             "agent.policy_kwargs={net_arch: [16]}")
    _, checkpoint = _latest(run_dir)
    _, params, variables = load_from_zip_file(checkpoint / "model.zip", load_data=False)
    assert variables["log_ent_coef"].item() != 0.0  # alpha was tuned away from its start, 1
    runner.resume(run_dir, show_progress=False)  # nothing left to train: load, then save
    _, again = _latest(run_dir)
    _, params2, variables2 = load_from_zip_file(again / "model.zip", load_data=False)
    assert torch.equal(variables["log_ent_coef"], variables2["log_ent_coef"])
    assert params.keys() == params2.keys()
    for key, value in params["policy"].items():
        assert torch.equal(value, params2["policy"][key]), key
    assert params["actor.optimizer"]["state"].keys() == params2["actor.optimizer"]["state"].keys()


def test_eval_reproduces_the_best_checkpoint_score_and_the_zip_is_plain_sb3() -> None:
    run_dir = run_experiment("cartpole-sb3-ppo", "train.total_steps=1024",
                             "train.eval_every=512", *PPO_SHORT)
    best, best_dir = CheckpointManager(run_dir / "checkpoints").load("best")
    result = forgelab_cli("eval", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    # deterministic policy, same evaluation seeds: exactly the score it was saved with
    assert metrics["eval/return_mean"] == best["metrics"]["eval/return_mean"]
    assert metrics["eval/episodes"] == 2
    job = wandb_of_type(wandb_records(next((run_dir / "evals").iterdir())), "run")[0]
    assert job["job_type"] == "eval"
    # the checkpoint's model.zip is SB3's own format: SB3 alone can load it
    from stable_baselines3 import PPO

    model = PPO.load(best_dir / "model.zip", device="cpu")
    assert model.num_timesteps == best["step"]
