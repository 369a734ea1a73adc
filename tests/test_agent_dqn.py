"""The native DQN agent: it learns CartPole, rejects bad configs before training, resumes
exactly, runs its Double/dueling/Polyak/MSE options; and the env-state snapshot it relies on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    forgelab_cli,
    latest_state,
    read_metrics,
    run_experiment,
    stop_after_first_checkpoint,
)

from forgelab.core import hookimpl, runner


def dqn_config(**options) -> dict:
    """A small, fast DQN experiment on CartPole (tests override what they need)."""
    return {
        "name": "dqn-test", "agent": "dqn",
        "agent_options": {"learning_rate": 1e-3, "batch_size": 32, "buffer_size": 5000,
                          "learning_starts": 100, "train_freq": 4, "gradient_steps": 1,
                          "target_update_interval": 100, "net_arch": [32, 32], **options},
        "env": {"id": "CartPole-v1", "num_envs": 1}, "seed": 3, "device": "cpu",
        "train": {"total_steps": 1000, "log_every": 200},
        "tracking": {"mode": "offline"},
    }


def final_state(run_dir: Path) -> dict:
    """The component's state in the run's ``latest`` checkpoint."""
    return latest_state(run_dir)["component"]


# --------------------------------------------------------------------------------- learning
def test_dqn_learns_cartpole() -> None:
    """RL Zoo's CartPole settings (experiments/cartpole-dqn.yaml) with 25k of its 50k steps
    learn far beyond a random policy (~22). Reaching 475 within this budget is a coin flip over
    seeds (benchmarks/learning_bounds.py --cases dqn), so the bound is on the best evaluation."""
    run_dir = run_experiment("cartpole-dqn", "seed=0", "device=cpu", "train.total_steps=25000",
                             "train.eval_every=1000", "train.video_every=null",
                             "train.checkpoint_every=null", "tracking.mode=offline")
    rows = read_metrics(run_dir)
    means = [row["eval/return_mean"] for row in rows if "eval/return_mean" in row]
    assert len(means) == 25
    # seeds 0-9: best evaluation min 245, median 448, max 500 (4 of 10 reach 475); bound 150
    assert max(means) >= 150, means
    logged = {key for row in rows for key in row}
    assert {"train/episode_return", "train/episode_length", "train/td_loss", "train/q_mean",
            "train/epsilon", "perf/sps"} <= logged
    assert (run_dir / "checkpoints" / "best").is_file()


# ---------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(("overrides", "expected"), [
    (["env=Pendulum-v1"], ["Discrete action space", "Pendulum-v1", "ppo"]),
    (["agent.learning_rate=-0.001"], ["learning_rate", "greater than 0"]),
    (["agent.batch_size=512", "agent.buffer_size=100"], ["batch_size (512)", "buffer_size (100)"]),
])
def test_config_errors_are_readable(overrides: list[str], expected: list[str]) -> None:
    result = forgelab_cli("run", "--no-progress", "cartpole-dqn", "train.total_steps=100",
                          *overrides)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert not list(Path("runs").glob("*/*/checkpoints/latest"))  # nothing trained


# ------------------------------------------------------------------------------------ resume
def test_interrupted_and_resumed_run_ends_with_identical_parameters() -> None:
    """Stop at N/2, resume to N: the networks, the optimizer and the step counters equal
    those of an uninterrupted N-step run. Two envs, so the vector env's state is restored too;
    a constant ε, since an ε schedule over ``train.total_steps`` would differ by construction."""
    config = dqn_config(save_replay_buffer=True, exploration_initial_eps=0.2,
                        exploration_final_eps=0.2, tau=0.5, target_update_interval=40)
    config["env"]["num_envs"] = 2
    config["train"].update(eval_every=500)
    straight = run_experiment(config, "train.total_steps=1200")
    interrupted = run_experiment(config, "train.total_steps=600")
    assert final_state(interrupted)["step"] == 600
    resumed = runner.resume(interrupted, ["train.total_steps=1200"], show_progress=False)

    a, b = final_state(straight), final_state(resumed)
    assert a["step"] == b["step"] == 1200
    assert a["n_updates"] == b["n_updates"] > 200
    for net in ("q_net", "target_net"):
        assert a[net].keys() == b[net].keys()
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name} differs"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"])
    assert torch.equal(a["obs"], b["obs"])
    # the resumed run kept logging into the same metrics file, past the interruption
    steps = [row["global_step"] for row in read_metrics(resumed) if "train/td_loss" in row]
    assert max(steps) == 1200 and 600 in steps


def test_resume_without_replay_buffer_refills_it_and_finishes() -> None:
    """Without ``save_replay_buffer`` the checkpoint is small and learning restarts from an
    empty buffer (so parameters cannot match an uninterrupted run exactly)."""
    config = dqn_config(save_replay_buffer=False)  # the default is True: exact resume
    interrupted = run_experiment(config, "train.total_steps=400")
    state = final_state(interrupted)
    assert "buffer" not in state and state["step"] == 400
    resumed = runner.resume(interrupted, ["train.total_steps=800"], show_progress=False)
    after = final_state(resumed)
    assert after["step"] == 800 and after["n_updates"] > state["n_updates"]
    assert all(torch.isfinite(p).all() for p in after["q_net"].values())


class InterruptedDQN:
    """A plugin registering `dqn-interrupted`: DQN whose first run stops right after its first
    periodic checkpoint, as Ctrl-C would."""

    @hookimpl
    def register_agents(self, register):
        from forgelab.agents.dqn import DQN, DQNConfig

        def interrupted_dqn(options: DQNConfig, ctx) -> DQN:
            agent = DQN(options, ctx)
            stop_after_first_checkpoint(ctx)
            return agent

        register("dqn-interrupted", interrupted_dqn, config=DQNConfig,
                 description="DQN that stops after its first checkpoint (test)")


def test_resume_without_replay_buffer_waits_for_learning_starts_transitions(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Resumed without its buffer, DQN collects learning_starts new transitions before its next
    gradient step (before, it trained at once on batches drawn from 1-4 stored transitions)."""
    from forgelab.core.config import validate_experiment
    from forgelab.core.pluginhost import PluginHost

    data = dqn_config(save_replay_buffer=False)  # learning_starts 100, train_freq 4
    data.update(agent="dqn-interrupted", output_dir=str(Path.cwd() / "runs"))
    data["train"].update(checkpoint_every=300, log_every=20)
    host = PluginHost(strict=False).load_entry_points()
    host.add_plugin(InterruptedDQN(), "test-interrupt")
    run_dir = runner.train(validate_experiment(data), host=host, show_progress=False)
    stopped = final_state(run_dir)
    assert stopped["step"] == 300 and stopped["n_updates"] == (300 - 100) // 4
    capsys.readouterr()
    runner.resume(run_dir, host=host, show_progress=False)
    said = capsys.readouterr().err

    updates = {row["global_step"]: row["train/n_updates"] for row in read_metrics(run_dir)
               if "train/n_updates" in row}
    # the buffer holds 100 transitions again at step 400: its first gradient step after the resume
    assert [updates[s] for s in range(320, 400, 20)] == [stopped["n_updates"]] * 4
    assert updates[400] == stopped["n_updates"] + 1
    assert final_state(run_dir)["n_updates"] == stopped["n_updates"] + (1000 - 400) // 4 + 1
    assert "training pauses until it holds 100 new transitions" in said


# ----------------------------------------------------------------------------------- options
def test_double_dueling_polyak_mse_options_run() -> None:
    config = dqn_config(double_q=True, dueling=True, tau=0.05, target_update_interval=1,
                        loss="mse", max_grad_norm=None, activation="tanh", gradient_steps=-1)
    config["env"]["num_envs"] = 3
    config["train"].update(total_steps=450, eval_every=300, eval_episodes=2, video_every=450,
                           log_every=150)
    run_dir = run_experiment(config)
    rows = read_metrics(run_dir)
    losses = [row["train/td_loss"] for row in rows if "train/td_loss" in row]
    assert losses and all(np.isfinite(losses))
    assert any("rollout/video" in row for row in rows)
    state = final_state(run_dir)
    assert "q_net" in state and any(k.startswith("value.") for k in state["q_net"])
    # gradient_steps=-1: one gradient step per env step collected after learning_starts
    assert state["n_updates"] == pytest.approx(450 - 100, abs=12)


# ------------------------------------------------------------------------------- env state
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_env_snapshot_restores_the_exact_trajectory(vectorization: str) -> None:
    """snapshot_env / restore_env: a fresh env continues exactly as the original, mid-episode,
    through a weights_only checkpoint round trip (normalisation wrappers included)."""
    from forgelab.agents.experiment import EnvSpec
    from forgelab.envs.building import make_vec_env
    from forgelab.envs.snapshots import restore_env, snapshot_env

    spec = EnvSpec(id="CartPole-v1", num_envs=2, vectorization=vectorization,
                   wrappers=["normalize_observation", "normalize_reward"])
    original, copy = make_vec_env(spec), make_vec_env(spec)
    try:
        original.reset(seed=7)
        original.action_space.seed(1)
        for _ in range(150):
            original.step(original.action_space.sample())
        buffer = io.BytesIO()
        torch.save(snapshot_env(original), buffer)
        buffer.seek(0)
        restore_env(copy, torch.load(buffer, weights_only=True))
        for _ in range(200):  # crosses several episode ends (autoreset)
            expected = original.step(original.action_space.sample())
            got = copy.step(copy.action_space.sample())
            for x, y in zip(expected[:4], got[:4], strict=True):
                np.testing.assert_array_equal(x, y)
    finally:
        original.close()
        copy.close()
