"""Deterministic policy evaluation, rollout videos and the periodic-evaluation schedule that
every RL agent shares (native and SB3 alike), so their dashboards read the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from forgelab.core.component import Component, RunContext

Policy = Callable[[np.ndarray], Any]  # one observation -> one action


@dataclass
class EpisodeResults:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # of the first episode only

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        returns = np.asarray(self.returns, dtype=np.float64)
        return {
            f"{prefix}/return_mean": float(returns.mean()),
            f"{prefix}/return_std": float(returns.std()),
            f"{prefix}/length_mean": float(np.mean(self.lengths)),
            f"{prefix}/episodes": len(self.returns),
        }


MAX_EPISODE_STEPS = 100_000  # an env without a time limit must not hang an evaluation


def run_episodes(env: gym.Env, policy: Policy, episodes: int, seed: int,
                 record_first: bool = False, max_frames: int = 1000,
                 should_stop: Callable[[], bool] | None = None,
                 max_steps: int = MAX_EPISODE_STEPS) -> EpisodeResults:
    """Play ``episodes`` full episodes with ``policy``; episode ``i`` is reset with ``seed + i``.

    :param record_first: keep ``env.render()`` frames of the first episode (needs
        ``render_mode="rgb_array"``), at most ``max_frames`` of them.
    :param should_stop: checked every step (Ctrl-C / SIGTERM): the evaluation ends at once and
        the results hold the episodes finished so far.
    :param max_steps: an episode is cut (counted as truncated) after this many steps.
    """
    results = EpisodeResults()
    for episode in range(episodes):
        if should_stop is not None and should_stop():
            break
        obs, _ = env.reset(seed=seed + episode)
        record = record_first and episode == 0
        if record:
            results.frames.append(np.asarray(env.render()))
        total, length, done = 0.0, 0, False
        while not done:
            if should_stop is not None and should_stop():
                return results  # the unfinished episode is not counted
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            length += 1
            done = bool(terminated or truncated) or length >= max_steps
            if record and len(results.frames) < max_frames:
                results.frames.append(np.asarray(env.render()))
        results.returns.append(total)
        results.lengths.append(length)
    return results


class PeriodicEvaluator:
    """Evaluates every ``train.eval_every`` env steps, records a rollout video every
    ``train.video_every`` steps, and keeps the best model as the ``best`` checkpoint.

    :param ctx: the run context (env builder, tracker, checkpoints, train schedule).
    :param component: saved as ``best`` when the evaluation mean improves.
    """

    def __init__(self, ctx: RunContext, component: Component) -> None:
        self.ctx = ctx
        self.component = component
        self.best_return = -np.inf
        self.evaluations = 0
        self._env: gym.Env | None = None

    @property
    def env(self) -> gym.Env:
        if self._env is None:
            self._env = self.ctx.make_eval_env(render_mode="rgb_array")
        return self._env

    def evaluate(self, policy: Policy, step: int, video: bool = True,
                 save_best: bool = True) -> dict[str, float]:
        """Evaluate now over ``train.eval_episodes`` episodes and log ``eval/*`` (+ video)."""
        train = self.ctx.config.train
        # The same seeds at every evaluation make successive numbers comparable.
        results = run_episodes(self.env, policy, train.eval_episodes, seed=self.ctx.eval_seed,
                               record_first=video, should_stop=lambda: self.ctx.stop_requested)
        if len(results.returns) < train.eval_episodes:
            # Stopped part-way (Ctrl-C / SIGTERM): a partial evaluation is neither logged nor
            # compared with the best one.
            return {"eval/episodes": len(results.returns)}
        metrics = results.metrics("eval")
        self.ctx.tracker.log(metrics, global_step=step)
        if video and results.frames:
            fps = int(self.env.metadata.get("render_fps", 30) or 30)
            self.ctx.tracker.log_video("rollout/video", np.stack(results.frames), fps=fps,
                                       caption=f"step {step}, return {results.returns[0]:.1f}",
                                       global_step=step)
        self.evaluations += 1
        if save_best and metrics["eval/return_mean"] > self.best_return:
            self.best_return = metrics["eval/return_mean"]
            self.ctx.checkpoints.save(self.component, step, best=True, metrics=metrics)
        if self.best_return > -np.inf:
            self.ctx.tracker.summary({"eval/best_return_mean": self.best_return})
        return metrics

    def maybe_evaluate(self, policy: Policy, step: int, last_step: int) -> dict[str, float] | None:
        """Evaluate when ``step`` crossed an ``eval_every`` mark since ``last_step``; a video
        is recorded when it also crossed a ``video_every`` mark."""
        train = self.ctx.config.train
        crossed = _crossed(train.eval_every, step, last_step)
        video = _crossed(train.video_every, step, last_step)
        if not crossed and not video:
            return None
        return self.evaluate(policy, step, video=video)

    def state_dict(self) -> dict[str, Any]:
        return {"best_return": float(self.best_return), "evaluations": self.evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_return = float(state["best_return"])
        self.evaluations = int(state["evaluations"])

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _crossed(every: int | None, step: int, last_step: int) -> bool:
    return bool(every) and step // every > last_step // every
