"""REINFORCE with a value baseline: learns CartPole-v1 within a small budget, resumes exactly."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from conftest import (
    EXPERIMENTS,
    latest_state,
    read_metrics,
    run_experiment,
    train_straight_and_resumed,
)

from forgelab.agents.reinforce import Reinforce, ReinforceConfig
from forgelab.core import hookimpl
from forgelab.core.checkpoints import CheckpointManager
from forgelab.core.config import apply_overrides, parse_overrides, validate_experiment


def test_reinforce_learns_cartpole() -> None:
    run_dir = run_experiment("cartpole-reinforce", "device=cpu", "seed=0",
                             "train.total_steps=40000", "train.eval_every=5000",
                             "train.video_every=null", "train.checkpoint_every=null")
    rows = read_metrics(run_dir)
    evals = [row["eval/return_mean"] for row in rows if "eval/return_mean" in row]
    # seeds 0-9: best evaluation min 337, median 489; bound 195 (CartPole-v0's "solved")
    assert max(evals) >= 195, f"deterministic eval means over training: {evals}"
    best, _ = CheckpointManager(run_dir / "checkpoints").load("best")
    steps = [row["global_step"] for row in rows if "eval/return_mean" in row]
    assert best["step"] == steps[evals.index(max(evals))]  # the best model was kept
    # every update is a batch of complete episodes (8 by default)
    batches = [row["train/batch_episodes"] for row in rows if "train/batch_episodes" in row]
    assert batches and min(batches[:-1]) >= 8  # (the last one may be cut by the budget)
    returns = [row["train/episode_return"] for row in rows if "train/episode_return" in row]
    # training returns grew too; seeds 0-9: last/first 50 episodes min 4.5x, median 5.8x
    assert sum(returns[-50:]) / 50 > 2 * sum(returns[:50]) / 50


class _StopMidCollection:
    """Registers `reinforce-interrupted`: REINFORCE whose first run is stopped (as by Ctrl-C)
    in the middle of collecting a batch, with complete episodes waiting for the update."""

    @hookimpl
    def register_agents(self, register):
        register("reinforce-interrupted", _interrupted, config=ReinforceConfig,
                 description="REINFORCE stopped mid-collection (test)")


def _interrupted(options: ReinforceConfig, ctx):
    agent = Reinforce(options, ctx)
    if not ctx.resumed:
        play = agent.play_step

        def play_step():
            done = play()
            if agent.step >= 2000 and agent.finished:
                ctx.request_stop()
            return done

        agent.play_step = play_step
    return agent


def _config(agent: str):
    data = yaml.safe_load((EXPERIMENTS / "cartpole-reinforce.yaml").read_text())
    data.update(name=agent, agent=agent, output_dir=str(Path.cwd() / "runs"))
    overrides = ["device=cpu", "seed=4", "env.num_envs=4", "agent.normalize_obs=true",
                 "train.total_steps=5000", "train.eval_every=2500", "train.eval_episodes=1",
                 "train.video_every=null", "train.checkpoint_every=null"]
    return validate_experiment(apply_overrides(data, parse_overrides(overrides)))


def test_stopped_mid_batch_and_resumed_run_ends_with_identical_parameters() -> None:
    straight, interrupted, stopped = train_straight_and_resumed(_config, "reinforce",
                                                                _StopMidCollection())
    assert stopped["component"]["finished"], "the stop should leave episodes waiting"
    assert any(ep["obs"] is not None for ep in stopped["component"]["running"])
    a, b = latest_state(straight), latest_state(interrupted)
    assert a["step"] == b["step"] == 5000
    for key, value in a["component"]["policy"].items():
        assert torch.equal(value, b["component"]["policy"][key]), f"{key} differs after resume"
