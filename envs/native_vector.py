"""``env.vectorization: vector``: gymnasium's natively vectorized environments.

Some gymnasium environments ship a *vector entry point*: one NumPy environment that steps a whole
batch of copies at once (``gymnasium.make_vec(id, num_envs=N, vectorization_mode=
"vector_entry_point")``; CartPole's is ``CartPoleVectorEnv``). A batch step then costs about as
much as one step of one copy, instead of N Python steps through N wrapper chains.

forgelab's agents expect what its sync and async vector envs give (:func:`make_vec_env` in
``envs/building.py``): SAME_STEP autoreset (a finished sub-env's next observation is already
the first of its next episode, the last one in ``info["final_obs"]``) and episode statistics in
``info["final_info"]["episode"]``. gymnasium's native envs autoreset on the NEXT step and record
no statistics, so :class:`SameStepNative` resets the finished copies right after the step that
ended them (the same random draws, in the same order, as the native env's own deferred reset)
and keeps the episode returns and lengths itself, in the very layout of the sync env.

Resetting a single copy needs to know the env's state variables, so only the native envs listed
in :data:`PARTIAL_RESETS` can be used; an experiment naming another one gets a ConfigError.

Differences from ``sync`` worth knowing:

* Seeding: ``reset(seed=s)`` seeds one generator for the whole batch (sync seeds copy i with
  s + i), so a seed gives other (equally reproducible) episodes than ``sync``.
* Wrappers: per-copy wrappers cannot go around a batch env; only ``time_limit`` (passed to the
  env as its ``max_episode_steps``) is accepted.
* Evaluation and rollout videos use the ordinary single env (``make_env``), as with ``sync``.
* Exact resume: the native env's state (physics, step counters, generator) and the episode
  statistics here are plain arrays, captured by :mod:`forgelab.envs.snapshots` like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from forgelab.agents.experiment import EnvSpec
from forgelab.core.errors import ConfigError


def _reset_cartpole(env: Any, mask: np.ndarray) -> np.ndarray:
    """Reset the copies in ``mask`` of a ``CartPoleVectorEnv``; return their new observations.

    The draw is the one ``CartPoleVectorEnv.step`` makes on its next call for the copies that
    ended (``uniform(low, high, size=(4, k))``), made now instead.
    """
    env.state[:, mask] = env.np_random.uniform(low=env.low, high=env.high,
                                               size=(4, int(mask.sum())))
    env.steps[mask] = 0
    env.prev_done[mask] = False
    return env.state.T[mask].astype(np.float32)


def _partial_resets() -> dict[type, Callable[[Any, np.ndarray], np.ndarray]]:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    return {CartPoleVectorEnv: _reset_cartpole}


def native_ids() -> list[str]:
    """Registered env ids whose native vector env forgelab can use."""
    resets = _partial_resets()
    out = []
    for env_id, spec in gym.registry.items():
        entry = spec.vector_entry_point
        if isinstance(entry, str) and not entry.startswith("gymnasium.envs.phys2d"):
            try:
                from gymnasium.envs.registration import load_env_creator

                if load_env_creator(entry) in resets:
                    out.append(env_id)
            except Exception:  # an entry point that does not import (e.g. needs jax)
                continue
    return sorted(out)


def check_native(spec: EnvSpec) -> None:
    """Raise a ConfigError unless ``spec`` can run with ``vectorization: vector``."""
    from gymnasium.envs.registration import load_env_creator

    gym_spec = gym.registry.get(spec.id)
    entry = None if gym_spec is None else gym_spec.vector_entry_point
    creator = None
    if entry is not None:
        try:
            creator = load_env_creator(entry) if isinstance(entry, str) else entry
        except Exception:
            creator = None
    if creator not in _partial_resets():
        raise ConfigError(f"env.vectorization: vector: {spec.id!r} has no native vector env "
                          f"forgelab can use (those that do: {', '.join(native_ids())})",
                          hint="use env.vectorization: sync (or async)")
    others = [w.name for w in spec.wrappers if w.name != "time_limit"]
    if others:
        raise ConfigError(f"env.vectorization: vector takes no per-env wrappers, but env.wrappers "
                          f"has {', '.join(others)} (only time_limit, which becomes the native "
                          "env's max_episode_steps)", hint="use env.vectorization: sync for them")


def make_native_vec_env(spec: EnvSpec) -> gym.vector.VectorEnv:
    """The native vector env of ``spec.id`` with ``spec.num_envs`` copies, SAME_STEP autoreset
    and episode statistics (see the module docstring).

    :raises ConfigError: when the env has no usable native vector env, takes wrappers it cannot,
        or rejects a kwarg.
    """
    check_native(spec)
    from forgelab.envs.building import _wrapper_options

    kwargs = dict(spec.kwargs)
    limit = spec.max_episode_steps or gym.registry[spec.id].max_episode_steps
    for index, wrapper in enumerate(spec.wrappers):
        # time_limit -> the env's own limit (the smaller one wins, as when stacked under sync)
        steps = _wrapper_options(wrapper, index)[1]["max_episode_steps"]
        limit = steps if limit is None else min(limit, steps)
    if limit is not None:
        kwargs["max_episode_steps"] = limit
    try:
        env = gym.make_vec(spec.id, num_envs=spec.num_envs,
                           vectorization_mode="vector_entry_point", **kwargs)
    except TypeError as exc:
        raise ConfigError(f"env.kwargs for {spec.id!r} (vectorization: vector): {exc}") from None
    return SameStepNative(env, _partial_resets()[type(env.unwrapped)])


class SameStepNative(gym.vector.VectorWrapper):
    """A native NEXT_STEP vector env turned into forgelab's SAME_STEP layout, with episode
    statistics ``info["final_info"]["episode"]`` = {r, l, t} as the sync env reports them.

    :param env: a native vector env (NEXT_STEP autoreset).
    :param reset_copies: ``reset_copies(unwrapped_env, mask) -> new observations of mask``.
    """

    def __init__(self, env: gym.vector.VectorEnv,
                 reset_copies: Callable[[Any, np.ndarray], np.ndarray]) -> None:
        super().__init__(env)
        self._reset_copies = reset_copies
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.episode_returns = np.zeros(self.num_envs, np.float64)
        self.episode_lengths = np.zeros(self.num_envs, np.int64)

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.episode_returns[:] = 0
        self.episode_lengths[:] = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, Any]]:
        # (the native env returns a fresh observation array each step: edited in place below)
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self.episode_returns += rewards
        self.episode_lengths += 1
        done = terminated | truncated
        if not done.any():
            return obs, rewards, terminated, truncated, infos
        final_obs = np.empty(self.num_envs, dtype=object)  # as the sync env: None where not done
        for i in np.flatnonzero(done):
            final_obs[i] = obs[i].copy()
        zero = np.zeros(self.num_envs)
        episode = {"r": np.where(done, self.episode_returns, 0.0), "_r": done,
                   "l": np.where(done, self.episode_lengths, 0), "_l": done,
                   "t": zero, "_t": done}  # "t": wall time, not kept here (nothing reads it)
        infos = {**infos, "final_obs": final_obs, "_final_obs": done,
                 "final_info": {"episode": episode, "_episode": done}, "_final_info": done}
        obs[done] = self._reset_copies(self.env.unwrapped, done)
        self.episode_returns[done] = 0
        self.episode_lengths[done] = 0
        return obs, rewards, terminated, truncated, infos
