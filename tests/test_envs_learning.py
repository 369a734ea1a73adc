"""Native DQN and PPO solve forgelab's own environments with fixed seeds, and their rollout
videos reach W&B. The experiments are the shipped files in experiments/, unchanged."""

from __future__ import annotations

import imageio.v2 as imageio
import pytest
from conftest import last_metric, read_metrics, run_experiment, wandb_records

# experiment -> eval/return_mean it must reach by the end of its (short) budget.
# GridWorld: the optimal 8-step path returns 1 - 7 * 0.01 = 0.93; a policy that never reaches
# the goal returns -1.0. PointMass: a random policy scores about -100, a PD controller -3.3.
# Measured with benchmarks/learning_bounds.py over seeds 0-9 (the files' budgets):
SOLVED = {
    "gridworld-dqn": 0.93 - 1e-6,  # first evaluation -1.0 and last 0.93 on every seed
    "gridworld-ppo": 0.93 - 1e-6,  # first evaluation -1.0 and last 0.93 on every seed
    "pointmass-ppo": -7.0,  # last evaluation min -4.93, median -3.58, max -1.99
}
# How much the last evaluation must beat the first. PointMass's first evaluation (after 4k
# steps) ranges -67.0 to -7.6 and the gain from min 4.1 (median 20); GridWorld's is 1.93.
GAIN = 1.0

# Rendered frame size: 5x5 cells of 32 px, and PointMass's 256 px arena.
FRAME = {"gridworld-dqn": (160, 160, 3), "gridworld-ppo": (160, 160, 3),
         "pointmass-ppo": (256, 256, 3)}


@pytest.mark.parametrize("experiment", sorted(SOLVED))
def test_native_agents_solve_builtin_envs(experiment):
    run_dir = run_experiment(experiment, "tracking.mode=offline")
    evals = [row["eval/return_mean"] for row in read_metrics(run_dir) if "eval/return_mean" in row]
    assert len(evals) >= 2
    assert evals[-1] >= evals[0] + GAIN, evals  # it learned during the run
    assert last_metric(run_dir, "eval/return_mean") >= SOLVED[experiment]

    # The rollout video of the final evaluation: an MP4 of the env's own frames, and a video
    # in the W&B run's history.
    video = run_dir / last_metric(run_dir, "rollout/video")
    frames = imageio.mimread(video)
    assert len(frames) >= 2 and frames[0].shape == FRAME[experiment]
    items = [r["history"]["item"] for r in wandb_records(run_dir) if r.get("type") == "history"]
    videos = [item for item in items if item.get("rollout/video._type") == "video-file"]
    assert videos, "no rollout/video in the W&B history"
    assert videos[-1]["rollout/video.path"].endswith(".mp4")
