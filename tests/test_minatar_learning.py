"""PPO learns MinAtar Breakout from its 10x10x4 grids through the shared CNN (a short run)."""

from __future__ import annotations

import statistics

from conftest import read_metrics, run_experiment


def test_ppo_learns_minatar_breakout() -> None:
    run_dir = run_experiment("breakout-minatar-ppo", "device=cpu", "seed=0",
                             "train.total_steps=49152", "train.eval_every=49152",
                             "train.eval_episodes=1", "train.video_every=null",
                             "train.checkpoint_every=null", "tracking.mode=disabled")
    returns = [row["train/episode_return"] for row in read_metrics(run_dir)
               if "train/episode_return" in row]
    first, last = statistics.fmean(returns[:50]), statistics.fmean(returns[-50:])
    # Measured (benchmarks/minatar_learning_bound.py --seeds 10, 49,152 steps): first-50 mean
    # 0.20-0.60 (untrained), last-50 mean min 1.22, median 1.5, max 1.74; bound 0.8 between.
    assert last >= 0.8, f"mean return of the last 50 episodes {last:.2f} (first 50: {first:.2f})"
    assert first < 0.8  # the bound is not met before learning
