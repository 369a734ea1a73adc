"""REINFORCE with a value baseline clearly learns CartPole-v1 within a small budget."""

from __future__ import annotations

from conftest import read_metrics, run_experiment

from forgelab.core.checkpoints import CheckpointManager


def test_reinforce_learns_cartpole() -> None:
    run_dir = run_experiment("cartpole-reinforce", "device=cpu", "seed=0",
                             "train.total_steps=40000", "train.eval_every=5000",
                             "train.video_every=null", "train.checkpoint_every=null")
    rows = read_metrics(run_dir)
    evals = [row["eval/return_mean"] for row in rows if "eval/return_mean" in row]
    assert max(evals) >= 195, f"deterministic eval means over training: {evals}"
    best, _ = CheckpointManager(run_dir / "checkpoints").load("best")
    steps = [row["global_step"] for row in rows if "eval/return_mean" in row]
    assert best["step"] == steps[evals.index(max(evals))]  # the best model was kept
    # every update is a batch of complete episodes (8 by default)
    batches = [row["train/batch_episodes"] for row in rows if "train/batch_episodes" in row]
    assert batches and min(batches[:-1]) >= 8  # (the last one may be cut by the budget)
    returns = [row["train/episode_return"] for row in rows if "train/episode_return" in row]
    assert sum(returns[-50:]) / 50 > 2 * sum(returns[:50]) / 50  # training returns grew too
