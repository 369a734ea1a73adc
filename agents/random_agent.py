"""A uniform random agent: the baseline every learning curve is compared with.

It samples actions uniformly from any gymnasium action space, and goes through the whole
runner path (vector envs, episode statistics, periodic evaluation, rollout videos, checkpoints),
so it also serves as the smallest complete example of a forgelab agent.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from forgelab.core.component import RunContext
from forgelab.core.evaluation import PeriodicEvaluator
from forgelab.envs.building import completed_episodes
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
        self.envs = ctx.make_vec_env()
        self.rng = np.random.default_rng(ctx.seed)
        self.step = 0
        self.evaluator = PeriodicEvaluator(ctx, self)
        self.eval_space = self.envs.single_action_space
        self.eval_space.seed(ctx.eval_seed)
        self.recent: list[float] = []  # returns of the last episodes, for the progress bar
        self._started = False  # envs reset and seeded; a resumed run continues mid-episode
        self._closed_envs: dict[str, Any] | None = None  # their last state, once fit closed them

    def _eval_policy(self, obs: np.ndarray) -> Any:
        return self.eval_space.sample()

    def actions(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Uniformly random actions for a batch of observations (never deterministic)."""
        return np.stack([self.eval_space.sample() for _ in range(len(obs))])

    def fit(self) -> None:
        ctx, train = self.ctx, self.ctx.config.train
        total = int(train.total_steps)
        if not self._started:
            self.envs.action_space.seed(int(self.rng.integers(2**31)))
            self.envs.reset(seed=ctx.seed)
            self._started = True
        start_step, start_time = self.step, time.perf_counter()
        while self.step < total and not ctx.stop_requested:
            last = self.step
            _, _, _, _, infos = self.envs.step(self.envs.action_space.sample())
            self.step += self.envs.num_envs
            for episode_return, length in completed_episodes(infos):
                ctx.tracker.log({"train/episode_return": episode_return,
                                 "train/episode_length": length}, global_step=self.step)
                self.recent = (self.recent + [episode_return])[-20:]
                ctx.progress.update(self.step, **{"return": float(np.mean(self.recent))})
            if self.step // train.log_every > last // train.log_every:
                sps = (self.step - start_step) / max(time.perf_counter() - start_time, 1e-9)
                ctx.tracker.log({"perf/sps": sps}, global_step=self.step)
            self.evaluator.maybe_evaluate(self._eval_policy, self.step, last)
            ctx.maybe_checkpoint(self, self.step, last)
            ctx.progress.update(self.step)
        if self.step >= total and self.evaluator.evaluations == 0:
            self.evaluator.evaluate(self._eval_policy, self.step, video=True)
        # Async workers exit now rather than at interpreter shutdown; the runner's final
        # checkpoint still needs the envs' state, so it is taken before they close.
        self._closed_envs = snapshot_env(self.envs) if self._started else None
        self.envs.close()
        self.evaluator.close()

    def evaluate(self) -> dict[str, float]:
        return self.evaluator.evaluate(self._eval_policy, self.step, video=True, save_best=False)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rng": self.rng.bit_generator.state,
                "evaluator": self.evaluator.state_dict(),
                # the envs mid-episode, with their spaces' RNGs: resume is exact
                "envs": (self._closed_envs if self._closed_envs is not None
                         else snapshot_env(self.envs) if self._started else None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        self.evaluator.load_state_dict(state["evaluator"])
        if state.get("envs") is not None:
            restore_env(self.envs, state["envs"])
            self._started = True
