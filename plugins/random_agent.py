"""Built-in plugin: the uniform random agent."""

from forgelab.core import hookimpl


@hookimpl
def register_agents(register):
    register(
        "random",
        "forgelab.agents.random_agent:RandomAgent",
        config="forgelab.agents.random_agent:RandomAgentConfig",
        description="Uniform random actions on any gymnasium action space (a baseline).",
    )
