"""What the native agents need of their environment and options, checked before a run starts.

Each function is a registration ``check=`` (see ``plugins/agents.py``): the runner calls it with
the validated options, the experiment and the env's ``(observation_space, action_space)`` before
a run directory, lock or W&B run exists, and ``forgelab run ... --dry-run`` runs exactly these
checks, so a dry run fails exactly when the run would. The agents' constructors call the same
functions, so an agent built directly (tests, notebooks) fails with the same message.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from forgelab.core.errors import ConfigError

Spaces = tuple[gym.Space, gym.Space]


def _check_encoder(space: gym.Space, encoder: str, normalize_obs: bool = False) -> bool:
    """The observation encoder ``encoder`` fits ``space``; returns whether it is a CNN."""
    from forgelab.agents.encoders import make_encoder

    try:
        cnn = make_encoder(space, encoder) is not None
    except ValueError as exc:  # EncoderError (images too small) brings its own hint
        raise ConfigError(f"agent.encoder: {exc}",
                          hint=getattr(exc, "hint", "use encoder: mlp")) from None
    if cnn and normalize_obs:
        raise ConfigError("agent.normalize_obs does not apply to image observations (the "
                          "encoder scales them to [0, 1])", hint="set normalize_obs: false")
    return cnn


def check_dqn(options: Any, config: Any, spaces: Spaces) -> None:
    """DQN: ``Discrete`` actions, ``Box`` observations, an encoder that fits them, and a
    buffer that splits evenly over the envs when next observations are stored once."""
    obs_space, act_space = spaces
    env_id = config.env.id
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError(
            f"agent 'dqn' needs a Discrete action space, but {env_id} has {act_space}",
            hint="use a policy-gradient agent for continuous actions (agent=ppo, a2c or "
                 "reinforce)")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(
            f"agent 'dqn' needs a Box observation space, but {env_id} has {obs_space}",
            hint="add `env.wrappers: [flatten_observation]` (one-hot for Discrete)")
    _check_encoder(obs_space, options.encoder)
    num_envs = config.env.num_envs
    if options.optimize_memory_usage and options.buffer_size % num_envs:
        raise ConfigError(f"agent.optimize_memory_usage needs agent.buffer_size "
                          f"({options.buffer_size}) divisible by env.num_envs ({num_envs})",
                          hint="pick a multiple of env.num_envs")


def check_policy_gradient(options: Any, config: Any, spaces: Spaces) -> None:
    """REINFORCE, A2C and PPO: ``Discrete`` or ``Box`` actions and observations, and an
    encoder that fits the observations."""
    obs_space, action_space = spaces
    name, env_id = config.agent, config.env.id
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ConfigError(f"agent {name!r} needs a Discrete or Box action space; "
                          f"{env_id} has {action_space}",
                          hint="use an env with Discrete or Box actions")
    if not isinstance(obs_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ConfigError(f"agent {name!r} needs Box or Discrete observations; "
                          f"{env_id} has {obs_space}",
                          hint="add the flatten_observation wrapper to env.wrappers")
    _check_encoder(obs_space, options.encoder, options.normalize_obs)


def check_ppo(options: Any, config: Any, spaces: Spaces) -> None:
    """PPO: the policy-gradient checks, minibatches that divide the rollout, and NumPy
    gradients only where they apply."""
    rollout = options.n_steps * config.env.num_envs
    if rollout % options.batch_size:
        raise ConfigError(
            f"agent.batch_size: {options.batch_size} does not divide the rollout "
            f"n_steps * env.num_envs = {options.n_steps} * {config.env.num_envs} = "
            f"{rollout}", hint="pick a batch_size that divides it, e.g. "
            f"{divisor_near(rollout, options.batch_size)}")
    check_policy_gradient(options, config, spaces)
    if options.gradients == "numpy":
        from forgelab.agents.ppo_numpy import numpy_unsupported
        from forgelab.core.device import resolve_device

        reason = numpy_unsupported(options, resolve_device(config.device),
                                   _check_encoder(spaces[0], options.encoder))
        if reason is not None:
            raise ConfigError(f"agent.gradients: numpy does not apply here: {reason}",
                              hint="use gradients: auto (numpy where it applies) or autograd")


def divisor_near(n: int, k: int) -> int:
    """The divisor of ``n`` closest to ``k`` (for the batch-size hint)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))
