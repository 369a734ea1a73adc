"""Deterministic policy evaluation and rollout videos, shared by every RL agent (native, SB3,
plugins), so their dashboards read the same.

The schedule (when to evaluate, when to record a video, which evaluation is the ``best``
checkpoint) is not here: it is the training loop's (:mod:`forgelab.core.loop`), which calls
the component's ``periodic_evaluation(video)``; an agent answers it with
:meth:`PolicyEvaluator.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from forgelab.core.component import RunContext
    from forgelab.core.tracking import Tracker

Policy = Callable[[np.ndarray], Any]  # one observation -> one action


@dataclass
class EpisodeResults:
    """Returns and lengths of played episodes, and the frames of the recorded ones."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[np.ndarray] = field(default_factory=list)  # (frames, H, W, C) per recorded episode

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        returns = np.asarray(self.returns, dtype=np.float64)
        return {
            f"{prefix}/return_mean": float(returns.mean()),
            f"{prefix}/return_std": float(returns.std()),
            f"{prefix}/length_mean": float(np.mean(self.lengths)),
            f"{prefix}/episodes": len(self.returns),
        }


MAX_EPISODE_STEPS = 100_000  # an env without a time limit must not hang an evaluation


def run_episodes(env: gym.Env, policy: Policy, episodes: int, seed: int, record: int = 0,
                 max_frames: int = 1000, should_stop: Callable[[], bool] | None = None,
                 max_steps: int = MAX_EPISODE_STEPS) -> EpisodeResults:
    """Play ``episodes`` full episodes with ``policy``; episode ``i`` is reset with ``seed + i``.

    Training evaluations (:class:`PolicyEvaluator`), ``forgelab eval --episodes/--video`` and
    ``forgelab watch`` all play through here.

    :param record: keep ``env.render()`` frames of the first ``record`` episodes (needs
        ``render_mode="rgb_array"``), at most ``max_frames`` per episode, as ``videos``.
    :param should_stop: checked every step (Ctrl-C / SIGTERM): the evaluation ends at once and
        the results hold the episodes finished so far.
    :param max_steps: an episode is cut (counted as truncated) after this many steps.
    """
    results = EpisodeResults()
    for episode in range(episodes):
        if should_stop is not None and should_stop():
            break
        obs, _ = env.reset(seed=seed + episode)
        frames = [np.asarray(env.render())] if episode < record else None
        total, length, done = 0.0, 0, False
        while not done:
            if should_stop is not None and should_stop():
                return results  # the unfinished episode is not counted
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            length += 1
            done = bool(terminated or truncated) or length >= max_steps
            if frames is not None and len(frames) < max_frames:
                frames.append(np.asarray(env.render()))
        results.returns.append(total)
        results.lengths.append(length)
        if frames is not None:
            results.videos.append(np.stack(frames))
    return results


def act_one(act: Callable[..., Any], obs: Any, deterministic: bool) -> Any:
    """One action from a batch-of-one ``act(obs_batch, deterministic=...)`` call, as the env
    accepts it."""
    action = np.asarray(act(np.asarray(obs)[None], deterministic=deterministic))[0]
    return action.item() if action.ndim == 0 else action


def render_fps(env: gym.Env) -> int:
    """The frame rate an env's videos play at."""
    return int(env.metadata.get("render_fps", 30) or 30)


class PolicyEvaluator:
    """Evaluates a policy over the same seeded episodes each time, logs ``eval/*`` and, when
    asked, the first episode as ``rollout/video``.

    :param make_env: builds the evaluation env (with ``render_mode="rgb_array"`` for videos);
        called on the first evaluation.
    :param tracker: where ``eval/*`` and the video are logged.
    :param episodes: episodes per evaluation (``train.eval_episodes``).
    :param seed: episode ``i`` is reset with ``seed + i`` (the run's evaluation seed): the same
        seeds at every evaluation make successive numbers comparable.
    :param should_stop: Ctrl-C / SIGTERM: stop part-way (the partial result is not logged).
    """

    def __init__(self, make_env: Callable[[], gym.Env], tracker: Tracker, episodes: int,
                 seed: int, should_stop: Callable[[], bool] | None = None) -> None:
        self.make_env, self.tracker = make_env, tracker
        self.episodes, self.seed, self.should_stop = episodes, seed, should_stop
        self._env: gym.Env | None = None

    @classmethod
    def for_run(cls, ctx: RunContext) -> PolicyEvaluator:
        """The evaluator of a run: its eval env, tracker, ``train.eval_episodes`` and seeds."""
        inputs = ctx.inputs
        return cls(lambda: inputs.make_eval_env(render_mode="rgb_array"), ctx.tracker,
                   ctx.train.eval_episodes, inputs.eval_seed, lambda: ctx.stop_requested)

    @property
    def env(self) -> gym.Env:
        if self._env is None:
            self._env = self.make_env()
        return self._env

    def evaluate(self, policy: Policy, step: int, video: bool = False) -> dict[str, float]:
        """Evaluate now, log ``eval/*`` (and the video) at ``step`` and return the metrics."""
        results = run_episodes(self.env, policy, self.episodes, seed=self.seed,
                               record=int(video), should_stop=self.should_stop)
        if len(results.returns) < self.episodes:
            # Stopped part-way (Ctrl-C / SIGTERM): a partial evaluation is neither logged nor
            # compared with the best one.
            return {"eval/episodes": len(results.returns)}
        metrics = results.metrics("eval")
        self.tracker.log(metrics, global_step=step)
        if results.videos:
            self.tracker.log_video("rollout/video", results.videos[0], fps=render_fps(self.env),
                                   caption=f"step {step}, return {results.returns[0]:.1f}",
                                   global_step=step)
        return metrics

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
