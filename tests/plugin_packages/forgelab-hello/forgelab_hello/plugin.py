from forgelab.core import hookimpl


@hookimpl
def register_agents(register):
    register("constant", "forgelab_hello.agent:ConstantAgent",
             config="forgelab_hello.agent:ConstantConfig",
             description="Always takes the same discrete action.")
