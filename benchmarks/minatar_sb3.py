"""forgelab's DQN vs Stable-Baselines3's DQN on MinAtar Breakout, same network and settings.

    python benchmarks/minatar_sb3.py [--steps 30000] [--seeds 2] [--device cpu]

Both train ``breakout-minatar-dqn``'s hyperparameters (Young & Tian 2019's network: conv 16 3x3
on the 10x10x4 grid, a 128 hidden layer; Adam 2.5e-4, batch 32, replay 100k, target copy every
1,000 steps, one gradient step per env step, ε 1 -> 0.1 over the first 10%) for ``--steps`` env
steps; SB3 gets the identical network as a features extractor (its CnnPolicy's NatureCNN does
not fit a 10x10 input), no gradient clipping (forgelab's experiment has none) and forgelab's
environment (the same MinAtar wrapper, so the same observations and rewards). Reported per
framework (medians over seeds, frameworks alternating who goes first): training wall and CPU
seconds (forgelab's run set-up included, evaluation left out for both), SPS, the mean training
return of the last 50 episodes, and the final deterministic 10-episode evaluation (seeds
``seed + 100000 + i``, forgelab's evaluation seeds), then the ratios forgelab / SB3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HYPER = {"learning_rate": 2.5e-4, "batch_size": 32, "buffer_size": 100_000,
         "learning_starts": 5000, "gamma": 0.99, "target_update_interval": 1000,
         "train_freq": 1, "gradient_steps": 1, "exploration_fraction": 0.1,
         "exploration_initial_eps": 1.0, "exploration_final_eps": 0.1}
ENV_ID = "MinAtar/Breakout-v1"


def run_forgelab(seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import json

    from forgelab.core import runner
    from forgelab.core.config import find_experiment, load_experiment

    config = load_experiment(find_experiment("breakout-minatar-dqn"), [
        f"seed={seed}", f"device={args.device}", f"train.total_steps={args.steps}",
        f"train.eval_every={args.steps}", "train.eval_episodes=10", "train.video_every=null",
        "train.checkpoint_every=null", "tracking.mode=disabled", f"train.log_every={args.steps}",
        f"output_dir={out}"])
    from forgelab.agents.evaluation import PolicyEvaluator

    spent = [0.0, 0.0]  # evaluation wall and CPU seconds, left out as for SB3
    evaluate = PolicyEvaluator.evaluate

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return evaluate(self, *a, **k)
        finally:
            spent[0] += time.perf_counter() - w
            spent[1] += time.process_time() - c

    PolicyEvaluator.evaluate = timed  # type: ignore[method-assign]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        run_dir = runner.train(config, show_progress=False)
        wall, cpu = time.perf_counter() - wall - spent[0], time.process_time() - cpu - spent[1]
    finally:
        PolicyEvaluator.evaluate = evaluate  # type: ignore[method-assign]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = [r["train/episode_return"] for r in rows if "train/episode_return" in r]
    evals = [r["eval/return_mean"] for r in rows if "eval/return_mean" in r]
    return {"framework": "forgelab", "seed": seed, "wall": wall, "cpu": cpu,
            "train_return": statistics.fmean(returns[-50:]), "eval_return": evals[-1]}


def run_sb3(seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from forgelab.agents.evaluation import run_episodes
    from forgelab.agents.experiment import EnvSpec
    from forgelab.envs.building import make_env

    class MinAtarCNN(BaseFeaturesExtractor):
        """forgelab's MinAtar encoder: HxWxC grid -> conv 16 3x3 -> ReLU -> flatten."""

        def __init__(self, space: gym.spaces.Box) -> None:
            from forgelab.agents.encoders import ImageEncoder

            encoder = ImageEncoder(space.shape, "minatar", 1.0)
            super().__init__(space, encoder.out_features)
            self.encoder = encoder

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.encoder(obs)

    spec = EnvSpec(id=ENV_ID)
    returns: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    env = DummyVecEnv([lambda: make_env(spec)])
    model = DQN("MlpPolicy", env, seed=seed, device=args.device, verbose=0,
                max_grad_norm=1e10,  # no clipping, as forgelab's experiment (max_grad_norm: null)
                policy_kwargs={"features_extractor_class": MinAtarCNN, "net_arch": [128],
                               "normalize_images": False}, **HYPER)
    model.set_logger(Logger(folder=None, output_formats=[]))

    from stable_baselines3.common.callbacks import BaseCallback

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            infos = self.locals["infos"][0]
            if "episode" in infos:
                returns.append(float(infos["episode"]["r"]))
            return True

    model.learn(total_timesteps=args.steps, callback=Episodes())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    eval_env = make_env(spec, for_eval=True)
    episodes = run_episodes(eval_env, lambda o: int(model.predict(o, deterministic=True)[0]),
                            10, seed=seed + 100_000)
    eval_env.close()
    env.close()
    return {"framework": "sb3", "seed": seed, "wall": wall, "cpu": cpu,
            "train_return": statistics.fmean(returns[-50:]) if returns else float("nan"),
            "eval_return": float(np.mean(episodes.returns))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.pop("WANDB_MODE", None)
    import torch

    torch.set_num_threads(1)  # forgelab's default `threads`, for both
    from forgelab.core.device import configure_cpu_math

    configure_cpu_math()  # forgelab's runner does this for every job; SB3 gets it too here
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            order = [run_forgelab, run_sb3] if seed % 2 == 0 else [run_sb3, run_forgelab]
            for run in order:
                r = run(seed, args, Path(tmp))
                r["sps"] = args.steps / r["wall"]
                results.append(r)
                print(f"{r['framework']:<8} seed {seed}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s "
                      f"CPU, {r['sps']:.0f} SPS, last-50 train return {r['train_return']:.2f}, "
                      f"eval {r['eval_return']:.2f}", file=sys.stderr, flush=True)
    keys = ["wall", "cpu", "sps", "train_return", "eval_return"]
    med = {fw: {k: statistics.median(r[k] for r in results if r["framework"] == fw)
                for k in keys} for fw in ("forgelab", "sb3")}
    print(f"{ENV_ID}, DQN, {args.steps} env steps, device {args.device}, medians over "
          f"{args.seeds} seeds")
    print(f"{'framework':<10} {'wall s':>8} {'CPU s':>8} {'SPS':>8} {'train ret':>10} "
          f"{'eval ret':>9}")
    for fw in ("forgelab", "sb3"):
        m = med[fw]
        print(f"{fw:<10} {m['wall']:>8.1f} {m['cpu']:>8.1f} {m['sps']:>8.0f} "
              f"{m['train_return']:>10.2f} {m['eval_return']:>9.2f}")
    ratio = {k: med["forgelab"][k] / med["sb3"][k] if med["sb3"][k] else float("nan")
             for k in keys}
    print(f"{'fl / sb3':<10} {ratio['wall']:>7.2f}x {ratio['cpu']:>7.2f}x {ratio['sps']:>7.2f}x "
          f"{ratio['train_return']:>9.2f}x {ratio['eval_return']:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
