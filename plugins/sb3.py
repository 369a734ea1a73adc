"""Built-in plugin: Stable-Baselines3's algorithms as forgelab agents (``sb3-ppo``, ...).

Factories and option classes are import strings, so listing agents imports neither SB3 nor
torch: the options live in :mod:`forgelab.agents.sb3_options` (pydantic only) and the adapter in
:mod:`forgelab.agents.sb3` is imported when a run starts.
"""

from forgelab.core import hookimpl

# name -> (adapter class, options class, one-line description)
_AGENTS = {
    "sb3-dqn": ("SB3DQN", "DQNOptions", "Stable-Baselines3 DQN (Discrete actions)."),
    "sb3-ppo": ("SB3PPO", "PPOOptions", "Stable-Baselines3 PPO (Box, Discrete, Multi*)."),
    "sb3-a2c": ("SB3A2C", "A2COptions", "Stable-Baselines3 A2C (Box, Discrete, Multi*)."),
    "sb3-sac": ("SB3SAC", "SACOptions", "Stable-Baselines3 SAC (Box actions)."),
    "sb3-td3": ("SB3TD3", "TD3Options", "Stable-Baselines3 TD3 (Box actions)."),
    "sb3-ddpg": ("SB3DDPG", "DDPGOptions", "Stable-Baselines3 DDPG (Box actions)."),
}


_SMALL_NET = {"policy_kwargs": {"net_arch": [16]}}
_OFF_POLICY = {**_SMALL_NET, "learning_starts": 16, "buffer_size": 256, "batch_size": 8}
# Tiny options for forgelab.testing's conformance runs (64 env steps): a few updates each.
_CONFORMANCE = {
    "sb3-dqn": {**_OFF_POLICY, "target_update_interval": 32},
    "sb3-ppo": {**_SMALL_NET, "n_steps": 16, "batch_size": 16, "n_epochs": 2},
    "sb3-a2c": _SMALL_NET,
    "sb3-sac": _OFF_POLICY,
    "sb3-td3": _OFF_POLICY,
    "sb3-ddpg": _OFF_POLICY,
}


@hookimpl
def register_agents(register):
    for name, (adapter, options, description) in _AGENTS.items():
        register(
            name,
            f"forgelab.agents.sb3:{adapter}",
            config=f"forgelab.agents.sb3_options:{options}",
            description=description,
            check="forgelab.agents.sb3:check_experiment",
            conformance={"agent_options": _CONFORMANCE[name]},
        )
