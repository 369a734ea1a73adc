"""A uniform random agent: the baseline every learning curve is compared with.

It samples actions uniformly from any gymnasium action space, and goes through the whole
runner path (vector envs, episode statistics, periodic evaluation, rollout videos, checkpoints),
so it also serves as the smallest complete example of a forgelab agent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from forgelab.agents.common import episode_rows
from forgelab.agents.evaluation import PolicyEvaluator
from forgelab.core.component import RunContext
from forgelab.envs.snapshots import restore_env, snapshot_env


class RandomAgentConfig(BaseModel):
    """The random agent has no hyperparameters."""

    model_config = ConfigDict(extra="forbid")


class RandomAgent:
    """Uniform random actions.

    :param options: :class:`RandomAgentConfig` (empty).
    :param ctx: the run context.
    """

    def __init__(self, options: RandomAgentConfig, ctx: RunContext) -> None:
        self.ctx = ctx
        self.envs = ctx.inputs.make_vec_env()
        self.rng = np.random.default_rng(ctx.seed)
        self.step = 0
        self.evaluator = PolicyEvaluator.for_run(ctx)
        self.eval_space = self.envs.single_action_space
        self.eval_space.seed(ctx.inputs.eval_seed)
        self.recent: list[float] = []  # returns of the last episodes, for the progress bar
        self._started = False  # envs reset and seeded; a resumed run continues mid-episode
        self._closed_envs: dict[str, Any] | None = None  # their last state, once fit closed them

    def _eval_policy(self, obs: np.ndarray) -> Any:
        return self.eval_space.sample()

    def actions(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Uniformly random actions for a batch of observations (never deterministic)."""
        return np.stack([self.eval_space.sample() for _ in range(len(obs))])

    def fit(self) -> None:
        ctx = self.ctx
        if not self._started:
            self.envs.action_space.seed(int(self.rng.integers(2**31)))
            self.envs.reset(seed=ctx.seed)
            self._started = True
        while self.step < ctx.budget and not ctx.stop_requested:
            # 1. One uniformly random action in every env.
            _, _, _, _, infos = self.envs.step(self.envs.action_space.sample())
            self.step += self.envs.num_envs
            episodes = episode_rows(infos, self.step)
            self.recent = (self.recent + [r["train/episode_return"] for r, _ in episodes])[-20:]
            # 2. Log (only perf/sps: nothing is learned), evaluate when due, checkpoint,
            #    progress: the one call per step.
            shown = {"return": float(np.mean(self.recent))} if self.recent else {}
            ctx.update(self, self.step, {} if ctx.log_due(self.step) else None, rows=episodes,
                       show=shown)
        # Async workers exit now rather than at interpreter shutdown; the runner's final
        # checkpoint still needs the envs' state, so it is taken before they close.
        self._closed_envs = snapshot_env(self.envs) if self._started else None
        self.envs.close()
        self.evaluator.close()

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        """The training loop's scheduled evaluation: random episodes, ``eval/*``."""
        return self.evaluator.evaluate(self._eval_policy, self.step, video)

    def evaluate(self) -> dict[str, float]:
        """``forgelab eval``: one evaluation now, with a video."""
        return self.evaluator.evaluate(self._eval_policy, self.step, video=True)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rng": self.rng.bit_generator.state,
                # the envs mid-episode, with their spaces' RNGs: resume is exact
                "envs": (self._closed_envs if self._closed_envs is not None
                         else snapshot_env(self.envs) if self._started else None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        if state.get("envs") is not None:
            restore_env(self.envs, state["envs"])
            self._started = True
