from pydantic import BaseModel, ConfigDict, Field

from forgelab.agents.evaluation import PolicyEvaluator


class ConstantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: int = Field(0, ge=0, description="the action to take every step")


def check_discrete(options, config, spaces):
    """Refuse a non-Discrete action space before a run starts (and on --dry-run)."""
    from forgelab.core.errors import ConfigError

    action_space = spaces[1]
    if type(action_space).__name__ != "Discrete" or options.action >= action_space.n:
        raise ConfigError(f"constant needs a Discrete action space with action "
                          f"{options.action}; {config.env.id} has {action_space}")


class ConstantAgent:
    def __init__(self, options, ctx):
        self.options, self.ctx, self.step = options, ctx, 0
        self.evaluator = PolicyEvaluator.for_run(ctx)

    def _policy(self, obs):
        return self.options.action

    def fit(self):
        envs = self.ctx.inputs.make_vec_env()
        envs.reset(seed=self.ctx.seed)
        while self.step < self.ctx.budget and not self.ctx.stop_requested:
            envs.step([self.options.action] * envs.num_envs)
            self.step += envs.num_envs
            self.ctx.update(self, self.step)  # evaluates at the end, checkpoints, progress

    def periodic_evaluation(self, video):
        return self.evaluator.evaluate(self._policy, self.step, video=False)

    def evaluate(self):
        return self.evaluator.evaluate(self._policy, self.step, video=False)

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]
