"""Build gymnasium environments from an experiment's ``env`` section.

Episode statistics are recorded directly on top of the raw environment, *inside* the user's
wrappers, so ``train/episode_return`` is always the raw return even under reward normalisation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from forgelab.core.config import EnvSpec, WrapperSpec
from forgelab.core.errors import ConfigError, closest, unknown_name_message


def _frame_stack(env: gym.Env, stack_size: int = 4, **kw: Any) -> gym.Env:
    return gym.wrappers.FrameStackObservation(env, stack_size=stack_size, **kw)


# name in experiment files -> wrapper factory(env, **kwargs)
WRAPPERS: dict[str, Callable[..., gym.Env]] = {
    "time_limit": gym.wrappers.TimeLimit,
    "normalize_observation": gym.wrappers.NormalizeObservation,
    "normalize_reward": gym.wrappers.NormalizeReward,
    "frame_stack": _frame_stack,
    "record_episode_statistics": gym.wrappers.RecordEpisodeStatistics,
    "clip_action": gym.wrappers.ClipAction,
    "rescale_action": gym.wrappers.RescaleAction,
    "flatten_observation": gym.wrappers.FlattenObservation,
    "clip_reward": gym.wrappers.ClipReward,
}


def _apply_wrapper(env: gym.Env, spec: WrapperSpec, index: int) -> gym.Env:
    key = f"env.wrappers[{index}]"
    factory = WRAPPERS.get(spec.name)
    if factory is None:
        raise ConfigError(f"{key}: {unknown_name_message('wrapper', spec.name, WRAPPERS)}")
    kwargs = dict(spec.model_extra or {})
    if spec.name == "record_episode_statistics":
        return env  # always applied already, right above the raw environment
    try:
        inspect.signature(factory).bind(env, **kwargs)
    except TypeError as exc:
        params = [p for p in inspect.signature(factory).parameters if p not in {"env", "kw"}]
        raise ConfigError(f"{key} ({spec.name}): {exc}. Its options: {', '.join(params)}") from None
    return factory(env, **kwargs)


def make_env(spec: EnvSpec, render_mode: str | None = None, for_eval: bool = False) -> gym.Env:
    """``gymnasium.make`` the experiment's env, then add episode statistics and wrappers.

    :param spec: the experiment's ``env`` section.
    :param render_mode: e.g. ``"rgb_array"`` for rollout videos.
    :param for_eval: evaluation envs skip reward normalisation so returns stay raw.
    """
    kwargs = dict(spec.kwargs)
    if spec.max_episode_steps is not None:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if spec.id not in gym.registry:
        raise ConfigError(f"env.id: {unknown_name_message('environment', spec.id, _env_choices(spec.id))}",
                          hint="`forgelab list envs` shows every environment")
    try:
        env = gym.make(spec.id, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"env.kwargs for {spec.id!r}: {exc}") from None
    except gym.error.Error as exc:
        raise ConfigError(f"env {spec.id!r}: {exc}") from None
    env = gym.wrappers.RecordEpisodeStatistics(env)
    for index, wrapper in enumerate(spec.wrappers):
        if for_eval and wrapper.name in {"normalize_reward", "clip_reward"}:
            continue
        env = _apply_wrapper(env, wrapper, index)
    return env


def _env_choices(env_id: str) -> list[str]:
    """A short list of ids near ``env_id`` (gymnasium knows hundreds)."""
    ids = list(gym.registry)
    guess = closest(env_id, ids)
    near = [i for i in ids if i.split("-")[0].lower() == env_id.split("-")[0].lower()]
    return sorted(set(near + ([guess] if guess else []))) or sorted(
        i for i in ids if "/" not in i)[:20]


def make_vec_env(spec: EnvSpec, render_mode: str | None = None) -> gym.vector.VectorEnv:
    """``spec.num_envs`` copies of :func:`make_env` in a sync or async vector env.

    Autoreset is SAME_STEP: when a sub-env finishes, the returned observation is already the
    first of the next episode and the last one is in ``info["final_obs"]`` (the SB3 semantics).
    """
    make_env(spec, render_mode=render_mode).close()  # fail early, in this process, on bad config

    def thunk() -> gym.Env:
        return make_env(spec, render_mode=render_mode)

    cls = gym.vector.AsyncVectorEnv if spec.vectorization == "async" else gym.vector.SyncVectorEnv
    return cls([thunk] * spec.num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


def completed_episodes(infos: dict[str, Any]) -> list[tuple[float, int]]:
    """(return, length) of every episode that ended on this vector step.

    Works for SAME_STEP autoreset (stats under ``final_info``) and NEXT_STEP (top level).
    """
    source = infos.get("final_info") if "final_info" in infos else infos
    if not isinstance(source, dict) or "episode" not in source:
        return []
    episode = source["episode"]
    mask = np.asarray(source.get("_episode", np.ones_like(episode["r"], dtype=bool)))
    return [(float(r), int(n)) for r, n, done in zip(episode["r"], episode["l"], mask) if done]


def final_observations(next_obs: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """``next_obs`` with the true last observation put back for sub-envs that just finished.

    Off-policy agents store this as s' in the replay buffer.
    """
    if "final_obs" not in infos:
        return next_obs
    real = np.array(next_obs, copy=True)
    for i, done in enumerate(infos["_final_obs"]):
        if done:
            real[i] = infos["final_obs"][i]
    return real
