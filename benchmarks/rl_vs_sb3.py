"""forgelab vs Stable-Baselines3 on CartPole-v1: DQN and PPO with RL Zoo's hyperparameters.

Run (``make bench-rl`` runs the defaults)::

    python benchmarks/rl_vs_sb3.py [--seeds 5] [--algos dqn,ppo] [--max-steps N]

For every seed and algorithm it trains forgelab's agent (the very code ``forgelab run`` uses,
with the context the runner builds, tracking disabled) and SB3's, side by side in one
process, alternating which goes first. Both are evaluated the same way: every ``--eval-every``
env steps, after the learning update that crossed the mark, with 10 deterministic episodes on
a separately built evaluation env reset with seeds ``seed + 100000 + i`` (forgelab's
``ctx.inputs.eval_seed``). Evaluation time is excluded from every wall clock below.

It prints, per algorithm and framework, the median over seeds of the env steps and wall seconds
until the evaluation mean first reaches the threshold (475; a seed that never reaches it counts
as +inf), how many seeds reached it, the training speed in env steps per second (SPS), and the
ratios forgelab / SB3. By default a run stops when it reaches the threshold (``--full`` trains
the whole budget).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from forgelab.core.config import DEFAULT_THREADS

# RL Zoo (rl-baselines3-zoo, hyperparams/dqn.yml and ppo.yml), CartPole-v1.
ZOO: dict[str, dict[str, Any]] = {
    "dqn": {
        "n_envs": 1, "total_steps": 50_000,
        "forgelab": {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000,
                     "learning_starts": 1000, "gamma": 0.99, "target_update_interval": 10,
                     "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
                     "exploration_final_eps": 0.04, "net_arch": [256, 256]},
        "sb3": {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000,
                "learning_starts": 1000, "gamma": 0.99, "target_update_interval": 10,
                "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
                "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]}},
    },
    "ppo": {
        "n_envs": 8, "total_steps": 100_000,
        "forgelab": {"learning_rate": 1e-3, "anneal_lr": True, "n_steps": 32, "batch_size": 256,
                     "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
                     "clip_range": 0.2, "anneal_clip_range": True},
        "sb3": {"learning_rate": "lin_1e-3", "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8,
                "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0, "clip_range": "lin_0.2"},
    },
}
# Rows beside RL Zoo's settings (``agent``: which agent both frameworks train):
# * ppo-vec: PPO as above on gymnasium's native CartPole batch env (env.vectorization: vector);
#   SB3 has no such env, so its side is the same DummyVecEnv run as the ppo row (likewise for
#   ppo-autograd).
# * dqn-sparse: DQN with one gradient step every 10 env steps (train_freq 10) and SB3's default
#   [64, 64] network, a setting where acting, env steps and bookkeeping take much of the time.
ZOO["ppo-vec"] = {**ZOO["ppo"], "agent": "ppo", "env": {"vectorization": "vector"}}
# * ppo-autograd: PPO as in the ppo row with its minibatch gradients from torch's autograd
#   (agent.gradients: autograd) instead of the NumPy gradients the CPU uses by default.
ZOO["ppo-autograd"] = {**ZOO["ppo"], "agent": "ppo",
                       "forgelab": {**ZOO["ppo"]["forgelab"], "gradients": "autograd"}}
ZOO["dqn-sparse"] = {
    **ZOO["dqn"], "agent": "dqn",
    "forgelab": {**ZOO["dqn"]["forgelab"], "train_freq": 10, "gradient_steps": 1,
                 "target_update_interval": 250, "net_arch": [64, 64]},
    "sb3": {**ZOO["dqn"]["sb3"], "train_freq": 10, "gradient_steps": 1,
            "target_update_interval": 250, "policy_kwargs": {"net_arch": [64, 64]}},
}
ENV_ID = "CartPole-v1"
EVAL_SEED_OFFSET = 100_000  # forgelab's ctx.inputs.eval_seed


@dataclass
class Result:
    """One training run of one framework."""

    algo: str
    framework: str
    seed: int
    steps: int = 0  # env steps trained
    train_seconds: float = 0.0  # wall time minus evaluation time
    eval_seconds: float = 0.0
    train_cpu_seconds: float = 0.0  # process CPU time minus evaluation (robust to machine load)
    eval_cpu_seconds: float = 0.0
    threshold_step: int | None = None  # first evaluation at or above the threshold
    threshold_seconds: float | None = None
    threshold_cpu_seconds: float | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, mean return)

    @property
    def sps(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else float("nan")


class Clock:
    """Training wall time with evaluation intervals taken out, and the threshold bookkeeping."""

    def __init__(self, result: Result, threshold: float, every: int) -> None:
        self.result, self.threshold, self.every = result, threshold, every
        self.start()
        self.eval_start: tuple[float, float] | None = None
        self.reached = False

    def start(self) -> None:
        self.t0 = (time.perf_counter(), time.process_time())

    def begin_eval(self) -> None:
        self.eval_start = (time.perf_counter(), time.process_time())

    def end_eval(self, step: int, mean_return: float) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        begin_wall, begin_cpu = self.eval_start or (wall, cpu)
        result = self.result
        result.evals.append((step, mean_return))
        if not self.reached and mean_return >= self.threshold:
            self.reached = True
            result.threshold_step = step
            result.threshold_seconds = begin_wall - self.t0[0] - result.eval_seconds
            result.threshold_cpu_seconds = begin_cpu - self.t0[1] - result.eval_cpu_seconds
        result.eval_seconds += wall - begin_wall
        result.eval_cpu_seconds += cpu - begin_cpu
        self.eval_start = None

    def finish(self, steps: int) -> None:
        result = self.result
        result.steps = steps
        result.train_seconds = time.perf_counter() - self.t0[0] - result.eval_seconds
        result.train_cpu_seconds = time.process_time() - self.t0[1] - result.eval_cpu_seconds


# ------------------------------------------------------------------------------ forgelab
def run_forgelab(algo: str, seed: int, args: argparse.Namespace, workdir: Path) -> Result:
    """Train forgelab's agent through the registry, with the context ``forgelab run`` builds
    (:func:`forgelab.core.runner.build_context`), keeping no checkpoints."""
    from forgelab.core import runner
    from forgelab.core.config import validate_experiment

    zoo = ZOO[algo]
    total = min(zoo["total_steps"], args.max_steps or zoo["total_steps"])
    config = validate_experiment({
        "name": f"bench-{algo}", "agent": zoo.get("agent", algo),
        "agent_options": dict(zoo["forgelab"]),
        "env": {"id": ENV_ID, "num_envs": zoo["n_envs"], **zoo.get("env", {})}, "seed": seed,
        "device": args.device, "threads": args.threads,
        "train": {"total_steps": total, "eval_every": args.eval_every, "eval_episodes": 10,
                  "log_every": max(total, 1)},
        "tracking": {"mode": "disabled", "log_checkpoints": False},
        "output_dir": str(workdir),
    })
    prepared = runner.prepare(config)
    result = Result(algo, "forgelab", seed)
    clock = Clock(result, args.threshold, args.eval_every)

    run_dir = workdir / f"forgelab-{algo}-{seed}"
    run_dir.mkdir(parents=True)
    ctx = runner.build_context(prepared, run_dir, "bench", "train", False, {},
                               show_progress=False)
    ctx.checkpoints = _NoCheckpoints()
    # Evaluations are timed: a round starts at the eval env's first reset and ends when the
    # agent logs eval/return_mean; the agent stops at the threshold unless --full.
    make_eval_env, log = ctx.inputs.make_eval_env, ctx.tracker.log

    def timed_eval_env(render_mode: str | None = "rgb_array") -> gym.Env:
        return _TimedEvalEnv(make_eval_env(render_mode), clock, ctx.inputs.eval_seed)

    def timed_log(metrics: Any, **axes: int) -> None:
        log(metrics, **axes)
        if "eval/return_mean" in metrics:
            clock.end_eval(int(axes.get("global_step", 0)), float(metrics["eval/return_mean"]))
            if clock.reached and not args.full:
                ctx.request_stop()

    ctx.inputs.make_eval_env, ctx.tracker.log = timed_eval_env, timed_log
    clock.start()  # construction (envs, networks) counts as training time
    agent = prepared.factory(prepared.options, ctx)
    ctx.loop.start(int(agent.step))  # as the runner does before fit
    agent.fit()
    clock.finish(int(agent.step))
    ctx.progress.close()
    ctx.tracker.finish()
    return result


class _TimedEvalEnv(gym.Wrapper):
    """Marks the start of an evaluation round: ``run_episodes`` resets episode 0 with the
    evaluation seed."""

    def __init__(self, env: gym.Env, clock: Clock, eval_seed: int) -> None:
        super().__init__(env)
        self.clock, self.eval_seed = clock, eval_seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed == self.eval_seed:
            self.clock.begin_eval()
        return self.env.reset(seed=seed, options=options)


class _NoCheckpoints:
    """The benchmark keeps no checkpoints (``best`` included): it measures training only."""

    directory = None

    def save(self, component: Any, step: int | None = None, *, best: bool = False,
             metrics: dict[str, float] | None = None) -> None:
        return None

    def path(self, which: str = "latest") -> None:
        return None


# ----------------------------------------------------------------------------------- SB3
def run_sb3(algo: str, seed: int, args: argparse.Namespace, workdir: Path) -> Result:
    """Train SB3's DQN / PPO with the same hyperparameters and the same evaluation."""
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger

    from forgelab.agents.evaluation import run_episodes
    from forgelab.agents.experiment import EnvSpec
    from forgelab.envs.building import make_env

    zoo = ZOO[algo]
    total = min(zoo["total_steps"], args.max_steps or zoo["total_steps"])
    kwargs = {k: _sb3_schedule(v) for k, v in zoo["sb3"].items()}
    result = Result(algo, "sb3", seed)
    clock = Clock(result, args.threshold, args.eval_every)
    eval_env = make_env(EnvSpec(id=ENV_ID), for_eval=True)
    eval_seed = seed + EVAL_SEED_OFFSET

    class EvalCallback(BaseCallback):
        """Evaluates at the start of a rollout, i.e. right after the update that crossed an
        ``eval_every`` mark (where forgelab's agents evaluate too)."""

        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.last = 0
            self.stop = False

        def _on_rollout_start(self) -> None:
            step = self.num_timesteps
            if step // args.eval_every > self.last // args.eval_every:
                clock.begin_eval()
                episodes = run_episodes(eval_env, self._policy, 10, seed=eval_seed)
                clock.end_eval(step, float(np.mean(episodes.returns)))
                self.stop = clock.reached and not args.full
            self.last = step

        def _policy(self, obs: np.ndarray) -> Any:
            return self.model.predict(obs, deterministic=True)[0]

        def _on_step(self) -> bool:
            return not self.stop

        def _on_training_end(self) -> None:  # the final evaluation, as forgelab's agents do
            if self.num_timesteps >= total and (not result.evals or
                                                result.evals[-1][0] != self.num_timesteps):
                clock.begin_eval()
                episodes = run_episodes(eval_env, self._policy, 10, seed=eval_seed)
                clock.end_eval(self.num_timesteps, float(np.mean(episodes.returns)))

    # SB3 as it ships: torch's default denormal handling, unless asked to match forgelab's.
    torch.set_flush_denormal(args.sb3_flush_denormal)
    clock.start()
    env = make_vec_env(ENV_ID, n_envs=zoo["n_envs"], seed=seed)
    cls = {"dqn": DQN, "ppo": PPO}[zoo.get("agent", algo)]
    model = cls("MlpPolicy", env, seed=seed, device=args.device, verbose=0,
                tensorboard_log=None, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))  # no $TMPDIR/SB3-* folder
    callback = EvalCallback()
    model.learn(total_timesteps=total, callback=callback)
    clock.finish(int(model.num_timesteps))
    env.close()
    eval_env.close()
    return result


def _sb3_schedule(value: Any) -> Any:
    """RL Zoo's ``lin_X``: X · progress_remaining."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


# ------------------------------------------------------------------------------- summary
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: list[Result], threshold: float) -> str:
    """The table: medians over seeds per algorithm and framework, then forgelab / SB3 ratios.

    CPU seconds (process time) are shown beside wall seconds: on a shared machine they are the
    steadier measure of the same work (both frameworks run single-threaded by default).
    """
    w = max([5, *(len(r.algo) for r in results)])  # width of the algo column
    lines = [f"CartPole-v1, threshold {threshold:g} (deterministic 10-episode evaluation mean); "
             "medians over seeds, evaluation time excluded",
             f"{'algo':<{w}} {'framework':<9} {'reached':>7} {'steps to thr':>13} "
             f"{'wall s to thr':>14} {'cpu s to thr':>13} {'train SPS':>10}"]
    forgelab_rows: dict[str, tuple[float, ...]] = {}
    for algo in dict.fromkeys(r.algo for r in results):
        medians: dict[str, tuple[float, ...]] = {}
        by_framework = {fw: [r for r in results if r.algo == algo and r.framework == fw]
                        for fw in ("forgelab", "sb3")}
        for framework, runs in by_framework.items():
            if not runs:
                continue
            reached = sum(r.threshold_step is not None for r in runs)

            def median_of(name: str, runs: list[Result] = runs) -> float:
                values = [getattr(r, name) for r in runs]
                return _median([math.inf if v is None else v for v in values])

            row = (_median(_threshold_steps(runs)), median_of("threshold_seconds"),
                   median_of("threshold_cpu_seconds"), _median([r.sps for r in runs]))
            medians[framework] = row
            lines.append(f"{algo:<{w}} {framework:<9} {reached:>3}/{len(runs):<3} "
                         f"{_fmt(row[0], 0):>13} {_fmt(row[1], 1):>14} {_fmt(row[2], 1):>13} "
                         f"{_fmt(row[3], 0):>10}")
        if len(medians) == 2:
            fl, sb = medians["forgelab"], medians["sb3"]
            ratios = [_ratio(a, b) for a, b in zip(fl, sb, strict=True)]
            lines.append(f"{algo:<{w}} {'fl / sb3':<9} {'':>7} {ratios[0]:>13} {ratios[1]:>14} "
                         f"{ratios[2]:>13} {ratios[3]:>10}")
            for framework, runs in by_framework.items():  # the spread behind the medians
                lines.append(f"      {framework} steps to thr per seed, sorted (k): "
                             + " ".join("never" if math.isinf(v) else f"{v / 1000:.1f}"
                                        for v in sorted(_threshold_steps(runs))))
            lines.append("      " + _sample_efficiency_test(
                _threshold_steps(by_framework["forgelab"]), _threshold_steps(by_framework["sb3"])))
            if all(math.isfinite(v) and v > 0 for v in (fl[1], sb[1], fl[2], sb[2])):
                lines.append(f"      -> forgelab {algo} reaches {threshold:g} {sb[1] / fl[1]:.2f}x "
                             f"faster in wall time ({sb[2] / fl[2]:.2f}x in CPU time), at "
                             f"{ratios[3]} SB3's SPS")
        if "forgelab" in medians:
            forgelab_rows[algo] = medians["forgelab"]
    for algo, row in forgelab_rows.items():  # a variant row beside its base (ppo-vec / ppo)
        base = ZOO.get(algo, {}).get("agent")
        if base in forgelab_rows:
            ratios = [_ratio(a, b) for a, b in zip(row, forgelab_rows[base], strict=True)]
            lines.append(f"forgelab {algo} / {base}: train SPS {ratios[3]}, steps to thr "
                         f"{ratios[0]}, cpu s to thr {ratios[2]} (medians)")
    return "\n".join(lines)


def _threshold_steps(runs: list[Result]) -> list[float]:
    """Steps to threshold per run; +inf for a run that never reached it."""
    return [math.inf if r.threshold_step is None else float(r.threshold_step) for r in runs]


def _sample_efficiency_test(a: list[float], b: list[float]) -> str:
    """Mean steps to threshold (``a``: forgelab, ``b``: SB3) and a two-sided Mann-Whitney U test
    of the two samples: per-seed steps spread widely, so say whether a difference in the medians
    is distinguishable from seed noise. Seeds that never reached the threshold rank last."""
    from scipy.stats import mannwhitneyu  # scikit-learn's dependency, installed with forgelab

    if len(a) < 2 or len(b) < 2:
        return "sample efficiency: too few seeds for a test"
    ranked = sorted(v for v in a + b if math.isfinite(v))
    cap = (ranked[-1] if ranked else 0.0) + 1.0  # "never" ranks after every finite value
    p = float(mannwhitneyu([min(v, cap) for v in a], [min(v, cap) for v in b]).pvalue)
    verdict = "no detectable difference" if p >= 0.05 else "a significant difference"

    def mean(values: list[float]) -> str:
        return "n/a" if any(math.isinf(v) for v in values) else f"{statistics.fmean(values):.0f}"

    return (f"sample efficiency: mean steps to thr forgelab {mean(a)}, sb3 {mean(b)}; "
            f"Mann-Whitney U p = {p:.2f} ({verdict} at the 5% level)")


def _fmt(value: float, digits: int) -> str:
    return "never" if math.isinf(value) else ("n/a" if math.isnan(value) else
                                              f"{value:.{digits}f}")


def _ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/rl_vs_sb3.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table of earlier --json results (several files are "
                             "pooled) instead of training")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, +1, ...")
    parser.add_argument("--algos", default="dqn,ppo", help="comma-separated: dqn, ppo, or the "
                        "variant rows dqn-sparse, ppo-vec, ppo-autograd")
    parser.add_argument("--frameworks", default="forgelab,sb3", help="forgelab, sb3 or both")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="cap the training budget (default: RL Zoo's)")
    parser.add_argument("--eval-every", type=int, default=1024,
                        help="env steps between evaluations (a multiple of both the DQN "
                             "train_freq and the PPO rollout, 256)")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--full", action="store_true",
                        help="train the whole budget instead of stopping at the threshold")
    parser.add_argument("--device", default="cpu", help="torch device for both frameworks")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch threads for both frameworks (default: forgelab's "
                             f"`threads` default, {DEFAULT_THREADS})")
    parser.add_argument("--sb3-flush-denormal", action="store_true",
                        help="give SB3 forgelab's CPU setting too (flush denormals to zero; "
                             "default: SB3 as it ships)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the raw results here (updated after every run)")
    args = parser.parse_args(argv)
    args.algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for algo in args.algos:
        if algo not in ZOO:
            parser.error(f"unknown algorithm {algo!r}; choose from {', '.join(ZOO)}")
    for framework in args.frameworks:
        if framework not in ("forgelab", "sb3"):
            parser.error(f"unknown framework {framework!r}; choose forgelab and/or sb3")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        results = [Result(**{**row, "evals": [tuple(e) for e in row["evals"]]})
                   for path in args.summarize for row in json.loads(path.read_text())]
        print(summarize(results, args.threshold))
        return 0
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.pop("WANDB_MODE", None)  # tracking is disabled in the config; keep it so
    import torch

    torch.set_num_threads(args.threads)
    # The first optimizer built in a process imports torch._dynamo (seconds); pay that once here
    # rather than charging it to whichever framework happens to run first.
    warm = torch.zeros(1, requires_grad=True)
    warm_optimizer = torch.optim.Adam([warm])
    warm.sum().backward()
    warm_optimizer.step()
    import stable_baselines3  # noqa: F401  (likewise SB3's import)

    import forgelab.agents.dqn  # noqa: F401
    import forgelab.agents.ppo  # noqa: F401
    workdir = Path(tempfile.mkdtemp(prefix="forgelab-bench-"))
    runners = {"forgelab": run_forgelab, "sb3": run_sb3}
    results: list[Result] = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for algo in args.algos:
                # Alternate who goes first, so slow drifts of machine load hit both alike.
                order = args.frameworks if seed % 2 == 0 else args.frameworks[::-1]
                for framework in order:
                    result = runners[framework](algo, seed, args, workdir)
                    results.append(result)
                    if args.json:  # rewritten after every run: an interrupted run keeps them
                        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1)
                                             + "\n")
                    print(f"{algo} {framework:<8} seed {seed}: "
                          f"threshold at step {result.threshold_step} "
                          f"({_fmt(result.threshold_seconds or math.inf, 1)} s), "
                          f"{result.steps} steps, {result.sps:.0f} SPS, "
                          f"best eval {max((r for _, r in result.evals), default=float('nan'))}",
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(summarize(results, args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
