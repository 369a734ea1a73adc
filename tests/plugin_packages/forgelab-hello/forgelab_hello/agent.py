from pydantic import BaseModel, ConfigDict, Field

from forgelab.core.evaluation import PeriodicEvaluator


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
        self.evaluator = PeriodicEvaluator(ctx, self)

    def _policy(self, obs):
        return self.options.action

    def fit(self):
        envs = self.ctx.make_vec_env()
        envs.reset(seed=self.ctx.seed)
        while self.step < self.ctx.config.train.total_steps and not self.ctx.stop_requested:
            envs.step([self.options.action] * envs.num_envs)
            self.step += envs.num_envs
            self.ctx.progress.update(self.step)
        self.evaluator.evaluate(self._policy, self.step, video=False)

    def evaluate(self):
        return self.evaluator.evaluate(self._policy, self.step, video=False, save_best=False)

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]
