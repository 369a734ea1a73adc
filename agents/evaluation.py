"""Deterministic policy evaluation and rollout videos, shared by every RL agent (native, SB3,
plugins), so their dashboards read the same.

The schedule (when to evaluate, when to record a video, which evaluation is the ``best``
checkpoint) is not here: it is the training loop's (:mod:`forgelab.core.loop`), which calls
the component's ``periodic_evaluation(video)``; an agent answers it with
:meth:`PolicyEvaluator.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from forgelab.core.component import RunContext
    from forgelab.core.tracking import Tracker

Policy = Callable[[np.ndarray], Any]  # one observation -> one action
BatchPolicy = Callable[[np.ndarray], Any]  # observations (B, ...) -> their B actions


@dataclass
class EpisodeResults:
    """Returns and lengths of played episodes, and the frames of the recorded ones."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[list[np.ndarray]] = field(default_factory=list)  # frames of each recorded one

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        returns = np.asarray(self.returns, dtype=np.float64)
        return {
            f"{prefix}/return_mean": float(returns.mean()),
            f"{prefix}/return_std": float(returns.std()),
            f"{prefix}/length_mean": float(np.mean(self.lengths)),
            f"{prefix}/episodes": len(self.returns),
        }


MAX_EPISODE_STEPS = 100_000  # an env without a time limit must not hang an evaluation
MAX_EVAL_ENVS = 16  # envs a batched evaluation plays at once (train.eval_envs's default)


def run_episodes(env: gym.Env, policy: Policy, episodes: int, seed: int, record: int = 0,
                 max_frames: int = 1000, should_stop: Callable[[], bool] | None = None,
                 max_steps: int = MAX_EPISODE_STEPS) -> EpisodeResults:
    """Play ``episodes`` full episodes with ``policy``, one after the other; episode ``i`` is
    reset with ``seed + i``. ``forgelab watch`` and the random agent play through here;
    training evaluations and ``forgelab eval`` through :func:`run_episodes_batched`.

    :param record: keep ``env.render()`` frames of the first ``record`` episodes (needs
        ``render_mode="rgb_array"``), at most ``max_frames`` per episode, as ``videos``.
    :param should_stop: checked every step (Ctrl-C / SIGTERM): the evaluation ends at once and
        the results hold the episodes finished so far.
    :param max_steps: an episode is cut (counted as truncated) after this many steps.
    """
    return _play([env], lambda observations: [policy(observations[0])], episodes, seed,
                 record, max_frames, should_stop, max_steps)


def run_episodes_batched(envs: Sequence[gym.Env], policy: BatchPolicy, episodes: int, seed: int,
                         record: int = 0, max_frames: int = 1000,
                         should_stop: Callable[[], bool] | None = None,
                         max_steps: int = MAX_EPISODE_STEPS) -> EpisodeResults:
    """The episodes of :func:`run_episodes`, played ``len(envs)`` at a time with one ``policy``
    call per step for all of them (observations stacked by :func:`stack_observations`).

    Why: with the small networks of CartPole-sized tasks a batch-of-one policy call costs more
    than the env step, and an evaluation every few thousand steps costs as much as the training
    between them. An episode depends only on its seed and the policy, so a deterministic policy
    scores every episode as :func:`run_episodes` does (up to float ties between actions); a
    stochastic one draws its actions in another order.
    """
    return _play(envs, lambda observations: policy(stack_observations(observations)), episodes,
                 seed, record, max_frames, should_stop, max_steps)


def stack_observations(observations: list[Any]) -> Any:
    """Observations of several envs as one batch: arrays stacked on a new first axis; those of
    ``Dict`` and ``Tuple`` spaces entry by entry (as vector envs and SB3's MultiInputPolicy
    take them)."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: stack_observations([obs[key] for obs in observations]) for key in first}
    if isinstance(first, tuple):
        return tuple(stack_observations([obs[i] for obs in observations])
                     for i in range(len(first)))
    return np.stack(observations)


def _play(envs: Sequence[gym.Env], act: Callable[[list[Any]], Any], episodes: int, seed: int,
          record: int, max_frames: int, should_stop: Callable[[], bool] | None,
          max_steps: int) -> EpisodeResults:
    """The loop of both: every env plays an episode, ``act(observations of the playing envs)``
    gives their actions; an env whose episode ends starts the next unplayed one (so one env
    plays the episodes in order). Results are in episode order; when ``should_stop`` ends the
    play early they hold the episodes finished so far."""
    width = min(len(envs), episodes)
    results: dict[int, tuple[float, int, list[np.ndarray] | None]] = {}
    playing = [-1] * width  # the episode each env plays (-1: none left)
    obs: list[Any] = [None] * width
    totals, lengths = [0.0] * width, [0] * width
    frames: list[list[np.ndarray] | None] = [None] * width
    upcoming = iter(range(episodes))

    def start(slot: int) -> None:
        episode = playing[slot] = next(upcoming, -1)
        if episode < 0:
            return
        env = envs[slot]
        obs[slot], _ = env.reset(seed=seed + episode)
        totals[slot], lengths[slot] = 0.0, 0
        frames[slot] = [np.asarray(env.render())] if episode < record else None

    for slot in range(width):
        if should_stop is not None and should_stop():
            break
        start(slot)
    while True:
        active = [slot for slot in range(width) if playing[slot] >= 0]
        if not active or (should_stop is not None and should_stop()):
            break
        actions = act([obs[slot] for slot in active])
        for slot, action in zip(active, actions, strict=True):
            env = envs[slot]
            obs[slot], reward, terminated, truncated, _ = env.step(
                np.asarray(action).item() if np.ndim(action) == 0 else action)
            totals[slot] += float(reward)
            lengths[slot] += 1
            kept = frames[slot]
            if kept is not None and len(kept) < max_frames:
                kept.append(np.asarray(env.render()))
            if terminated or truncated or lengths[slot] >= max_steps:
                results[playing[slot]] = (totals[slot], lengths[slot], kept)
                start(slot)
    played = EpisodeResults()
    for episode in sorted(results):
        total, length, video = results[episode]
        played.returns.append(total)
        played.lengths.append(length)
        if video is not None:
            played.videos.append(video)
    return played


ATARI_FPS = 60  # the Atari 2600's frame rate: ALE's own metadata says 30 whatever the skip


def render_fps(env: gym.Env) -> int:
    """The frame rate an env's videos play at: its ``render_fps``, except under gymnasium's
    ``AtariPreprocessing``, where each recorded frame is ``frame_skip`` emulator frames (Pong at
    frame skip 4 plays in real time at 15 frames/s, not twice as fast at ALE's 30)."""
    from gymnasium.wrappers import AtariPreprocessing

    layer: Any = env
    while layer is not None:
        if isinstance(layer, AtariPreprocessing):
            return max(1, ATARI_FPS // max(1, int(layer.frame_skip)))
        layer = getattr(layer, "env", None)
    return int(env.metadata.get("render_fps", 30) or 30)


class PolicyEvaluator:
    """Evaluates a policy over the same seeded episodes each time, logs ``eval/*`` and, when
    asked, the first episode as ``rollout/video``.

    :param make_env: builds an evaluation env (with ``render_mode="rgb_array"`` for videos);
        called on the first evaluation, once per env played at a time.
    :param tracker: where ``eval/*`` and the video are logged.
    :param episodes: episodes per evaluation (``train.eval_episodes``).
    :param seed: episode ``i`` is reset with ``seed + i`` (the run's evaluation seed): the same
        seeds at every evaluation make successive numbers comparable.
    :param should_stop: Ctrl-C / SIGTERM: stop part-way (the partial result is not logged).
    :param max_envs: how many envs a batched evaluation plays at once (each holds a copy of
        the game).
    """

    def __init__(self, make_env: Callable[[], gym.Env], tracker: Tracker, episodes: int,
                 seed: int, should_stop: Callable[[], bool] | None = None,
                 max_envs: int = MAX_EVAL_ENVS) -> None:
        self.make_env, self.tracker = make_env, tracker
        self.episodes, self.seed, self.should_stop = episodes, seed, should_stop
        self.max_envs = max(1, max_envs)
        self._envs: list[gym.Env] = []

    @classmethod
    def for_run(cls, ctx: RunContext) -> PolicyEvaluator:
        """The evaluator of a run: its eval env, tracker, ``train.eval_episodes`` and
        ``train.eval_envs``, and seeds."""
        inputs = ctx.inputs
        return cls(lambda: inputs.make_eval_env(render_mode="rgb_array"), ctx.tracker,
                   ctx.train.eval_episodes, inputs.eval_seed, lambda: ctx.stop_requested,
                   max_envs=ctx.train.eval_envs)

    def envs(self, count: int) -> list[gym.Env]:
        """The first ``count`` evaluation envs, built when first needed and then kept."""
        while len(self._envs) < count:
            self._envs.append(self.make_env())
        return self._envs[:count]

    @property
    def env(self) -> gym.Env:
        """The first evaluation env (the one a batch-of-one policy plays)."""
        return self.envs(1)[0]

    def evaluate(self, policy: Policy | BatchPolicy, step: int, video: bool = False, *,
                 batched: bool = False) -> dict[str, float]:
        """Evaluate now, log ``eval/*`` (and the video) at ``step`` and return the metrics.

        :param policy: one observation → one action; with ``batched``, a batch of
            observations → their actions (an agent's ``actions(obs)``), and up to ``max_envs``
            episodes are played at once (:func:`run_episodes_batched`: the same episodes, fewer
            policy calls).
        """
        if batched:
            results = run_episodes_batched(
                self.envs(min(self.episodes, self.max_envs)), policy, self.episodes,
                seed=self.seed, record=int(video), should_stop=self.should_stop)
        else:
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
        envs, self._envs = self._envs, []
        for env in envs:
            env.close()
