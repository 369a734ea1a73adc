from forgelab.core import hookimpl


@hookimpl
def register_agents(register):
    register("constant", "forgelab_hello.agent:ConstantAgent",
             config="forgelab_hello.agent:ConstantConfig",
             check="forgelab_hello.agent:check_discrete",
             description="Always takes the same discrete action.")
