"""Built-in plugin: forgelab's native RL agents (DQN, REINFORCE, A2C, PPO).

Factories and config classes are import strings, so listing agents never imports torch.
"""

from forgelab.core import hookimpl
from forgelab.core.family import Family

# How the runner treats every agent (native, SB3 or a plugin's): env steps against
# `train.total_steps`, one `global_step` axis, the best checkpoint by mean evaluation return.
RL = Family(
    name="rl", component_key="agent", unit="step", budget_key="total_steps",
    axes=(("global_step", ("train/*", "eval/*", "rollout/*", "perf/*")),),
    inputs=(("env", "env.id"),), experiment="forgelab.agents.experiment:RLExperiment",
    support="forgelab.agents.family",
    best_metric="eval/return_mean", best_mode="max", best_summary="eval/best_return_mean",
    throughput_key="perf/sps", unit_label="env steps",
    headline_metrics=("eval/return_mean", "train/episode_return"),
    description="reinforcement learning: an agent trained on a gymnasium env for "
    "train.total_steps env steps")

_AGENTS = {
    "dqn": ("forgelab.agents.dqn", "DQN",
            "Deep Q-Network with replay buffer, target network, Double DQN and dueling options "
            "(Mnih et al. 2015)."),
    "reinforce": ("forgelab.agents.reinforce", "Reinforce",
                  "Monte-Carlo policy gradient with a learned value baseline (Williams 1992)."),
    "a2c": ("forgelab.agents.a2c", "A2C",
            "n-step advantage actor-critic over vector envs with GAE (Mnih et al. 2016)."),
    "ppo": ("forgelab.agents.ppo", "PPO",
            "Proximal Policy Optimization: clipped surrogate, GAE, minibatch epochs "
            "(Schulman et al. 2017)."),
}


# Tiny options for forgelab.testing's conformance runs (64 env steps): a few updates each.
# DQN keeps its replay buffer in checkpoints, which is what makes its resume exact.
_CONFORMANCE = {
    "dqn": {"learning_starts": 16, "buffer_size": 256, "batch_size": 8,
            "target_update_interval": 32, "net_arch": [16], "save_replay_buffer": True},
    "reinforce": {"episodes_per_update": 1, "hidden_sizes": [16]},
    "a2c": {"hidden_sizes": [16]},
    "ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 2, "hidden_sizes": [16]},
}


# What each agent needs of its env and options, checked before a run starts (and by --dry-run).
_CHECKS = {"dqn": "check_dqn", "reinforce": "check_policy_gradient",
           "a2c": "check_policy_gradient", "ppo": "check_ppo"}


@hookimpl
def register_agents(register):
    for name, (module, cls, description) in _AGENTS.items():
        register(name, f"{module}:{cls}", config=f"{module}:{cls}Config",
                 description=description, check=f"forgelab.agents.checks:{_CHECKS[name]}",
                 conformance={"agent_options": _CONFORMANCE[name]})


@hookimpl
def register_families(register):
    register(RL)
