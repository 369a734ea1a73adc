"""Playing whole episodes with a trained policy: ``forgelab eval --episodes/--video/--stochastic``
and ``forgelab watch`` (through the RL family's support, :mod:`forgelab.agents.family`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class Episodes:
    """Returns and lengths of played episodes, and the frames of the recorded ones."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[np.ndarray] = field(default_factory=list)


def play(env: gym.Env, act: Callable[[Any], Any], episodes: int, seed: int, record: int = 0,
         max_frames: int = 2000) -> Episodes:
    """Play ``episodes`` episodes; episode ``i`` is reset with ``seed + i`` (the seeds of the
    training run's evaluations), and the first ``record`` are kept as frames.

    :param act: one observation -> one action.
    """
    result = Episodes()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        frames = [np.asarray(env.render())] if episode < record else None
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            length += 1
            done = bool(terminated or truncated)
            if frames is not None and len(frames) < max_frames:
                frames.append(np.asarray(env.render()))
        result.returns.append(total)
        result.lengths.append(length)
        if frames is not None:
            result.videos.append(np.stack(frames))
    return result


def act_one(act: Callable[..., Any], obs: Any, deterministic: bool) -> Any:
    """One action from a batch-of-one ``act(obs_batch, deterministic=...)`` call, as the env
    accepts it."""
    action = np.asarray(act(np.asarray(obs)[None], deterministic=deterministic))[0]
    return action.item() if action.ndim == 0 else action


def render_fps(env: gym.Env) -> int:
    """The frame rate an env's videos play at."""
    return int(env.metadata.get("render_fps", 30) or 30)
