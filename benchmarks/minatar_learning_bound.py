"""Measure the MinAtar learning test's statistic over seeds (tests/test_minatar_learning.py).

    python benchmarks/minatar_learning_bound.py [--seeds 10] [--first-seed 0] [--steps 49152]

Trains ``breakout-minatar-ppo`` for ``--steps`` env steps per seed (the test's settings: CPU, no
W&B, no videos or checkpoints) and prints, per seed, the mean training return of the first and
of the last 50 episodes, then the minimum of the last ones: the test's bound must sit well
below that minimum and well above what an untrained policy scores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

OVERRIDES = ["device=cpu", "train.video_every=null", "train.checkpoint_every=null",
             "tracking.mode=disabled", "train.eval_episodes=1"]


def episode_returns(run_dir: Path) -> list[float]:
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train/episode_return"] for row in rows if "train/episode_return" in row]


def train(seed: int, steps: int, output: Path) -> Path:
    from forgelab.core import runner
    from forgelab.core.config import find_experiment, load_experiment

    config = load_experiment(find_experiment("breakout-minatar-ppo"),
                             [*OVERRIDES, f"seed={seed}", f"train.total_steps={steps}",
                              f"train.eval_every={steps}", f"output_dir={output}"])
    return runner.train(config, show_progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=49_152)
    args = parser.parse_args(argv)
    last = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            returns = episode_returns(train(seed, args.steps, Path(tmp)))
            first, final = statistics.fmean(returns[:50]), statistics.fmean(returns[-50:])
            last.append(final)
            print(f"seed {seed}: {len(returns)} episodes, mean return first 50 {first:.2f}, "
                  f"last 50 {final:.2f}", flush=True)
    print(f"last-50 mean return over {args.seeds} seeds: min {min(last):.2f}, "
          f"median {statistics.median(last):.2f}, max {max(last):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
