"""Built-in plugin: forgelab's native RL agents (DQN, REINFORCE, A2C, PPO).

Factories and config classes are import strings, so listing agents never imports torch.
"""

from forgelab.core import hookimpl

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


@hookimpl
def register_agents(register):
    for name, (module, cls, description) in _AGENTS.items():
        register(name, f"{module}:{cls}", config=f"{module}:{cls}Config",
                 description=description)
