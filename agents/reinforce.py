"""REINFORCE: Monte-Carlo policy gradient with a learned value baseline.

Williams (1992), "Simple Statistical Gradient-Following Algorithms for Connectionist
Reinforcement Learning", Machine Learning 8, https://link.springer.com/article/10.1007/BF00992696
(the baseline as in Sutton & Barto, "Reinforcement Learning: An Introduction", 2nd ed., §13.4).

Play whole episodes with π_θ, then for every step t of every episode

    G_t = r_t + γ r_{t+1} + γ² r_{t+2} + … = r_t + γ G_{t+1}       (G_T = 0 at termination)

and follow the policy gradient, with the baseline b(s_t) = V_φ(s_t) subtracted to lower its
variance without biasing it:

    ∇_θ J(θ) = E[ Σ_t ∇_θ log π_θ(a_t|s_t) (G_t − V_φ(s_t)) ]
    L(θ, φ)  = −mean_t[(G_t − V_φ(s_t)) log π_θ(a_t|s_t)] + c_v mean_t[(V_φ(s_t) − G_t)²]

An episode cut by a time limit did not end: its return is bootstrapped, G_T = V_φ(s_T).

With N vector envs, episodes finish at different times. An update happens as soon as
``episodes_per_update`` episodes are complete; episodes still running continue under the updated
policy (their first steps came from the previous one, a small off-policy error most vectorized
implementations accept).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgelab.agents.common import (
    PolicyConfig,
    PolicyGradientAgent,
    approx_kl,
    truncated_final_obs,
)
from forgelab.core.component import RunContext
from forgelab.core.device import fast_adam


class ReinforceConfig(PolicyConfig):
    """REINFORCE hyperparameters.

    :param learning_rate: Adam step size (policy and baseline; initial value when
        ``anneal_lr``).
    :param anneal_lr: decay the learning rate linearly to 0 over ``train.total_steps``.
    :param gamma: discount factor γ.
    :param episodes_per_update: complete episodes in each gradient step's batch.
    :param normalize_advantage: standardise G_t − V(s_t) over the batch (lower variance).
    :param ent_coef: entropy bonus coefficient.
    :param vf_coef: weight of the baseline's regression loss.
    :param max_grad_norm: global gradient-norm clip (None: no clipping).
    """

    linear_schedules: ClassVar[dict[str, str]] = {"learning_rate": "anneal_lr"}

    learning_rate: PositiveFloat = Field(1e-3, description="Adam step size (lin_<x>: annealed)")
    anneal_lr: bool = Field(False, description="decay the learning rate linearly to 0")
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount factor")
    episodes_per_update: PositiveInt = Field(8, description="complete episodes per update")
    normalize_advantage: bool = Field(True, description="standardise G_t - V(s_t) per batch")
    ent_coef: NonNegativeFloat = Field(0.0, description="entropy bonus coefficient")
    vf_coef: NonNegativeFloat = Field(0.5, description="baseline loss coefficient")
    max_grad_norm: PositiveFloat | None = Field(0.5, description="gradient norm clip (None: off)")


class Reinforce(PolicyGradientAgent):
    """Monte-Carlo policy gradient (REINFORCE) with a value baseline, over vector envs.

    :param options: :class:`ReinforceConfig`.
    :param ctx: the run context (env builders, device, tracker, checkpoints).
    :raises ConfigError: for an unsupported action or observation space.
    """

    def __init__(self, options: ReinforceConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.opt = options
        self.optimizer = fast_adam(self.policy.parameters(), lr=options.learning_rate, eps=1e-8)
        # The episode each env is playing: lists of (preprocessed) observations, actions, rewards,
        # and the complete episodes waiting for the next update (both go in checkpoints).
        self.running: list[dict[str, Any]] = [self._empty() for _ in range(self.num_envs)]
        self.finished: list[dict[str, Any]] = []

    @staticmethod
    def _empty() -> dict[str, list[Any]]:
        return {"obs": [], "actions": [], "rewards": []}

    def fit(self) -> None:
        ctx, opt = self.ctx, self.opt
        self.start_envs()
        reported = self.step  # the step of the last ctx.update
        while self.step < ctx.budget and not ctx.stop_requested:
            # 1. Play until episodes_per_update episodes are complete.
            while (len(self.finished) < opt.episodes_per_update and self.step < ctx.budget
                   and not ctx.stop_requested):
                self.finished += self.play_step()
            if len(self.finished) >= opt.episodes_per_update or (
                    self.finished and self.step >= ctx.budget):
                # 2. Returns G_t and one gradient step on their batch.
                log = self.log_due()
                metrics = self.update(self.finished)
                self.finished = []
                self.updates += 1
                # 3. Log, evaluate when due, checkpoint, progress: the one call per update.
                ctx.update(self, self.step, metrics if log else None,
                           rows=self.take_episodes(), show=self.shown())
                reported = self.step
        if self.step != reported:
            # Steps played since the last update (stopped, or the budget ran out with no
            # complete episode to learn from): their episodes, and the final evaluation.
            ctx.update(self, self.step, rows=self.take_episodes(), show=self.shown())

    def play_step(self) -> list[dict[str, Any]]:
        """One vector step; returns the episodes it completed (with G_T's bootstrap value)."""
        obs = self.obs_tensor(self.obs, update=True)
        actions = self.policy.sample(obs)
        self.obs, rewards, terminated, truncated, infos = self.envs.step(self.env_action(actions))
        self.step += self.num_envs
        cut = dict(truncated_final_obs(terminated, truncated, infos))
        done: list[dict[str, Any]] = []
        for i, episode in enumerate(self.running):
            episode["obs"].append(obs[i])
            episode["actions"].append(actions[i])
            episode["rewards"].append(float(rewards[i]))
            if terminated[i] or truncated[i]:
                final = self.obs_tensor(cut[i][None])[0] if i in cut else None
                done.append({**episode, "final_obs": final})
                self.running[i] = self._empty()
        if done:
            self.record_episodes(infos)
        return done

    def update(self, episodes: list[dict[str, Any]]) -> dict[str, float]:
        opt, policy = self.opt, self.policy
        lr = opt.learning_rate
        if opt.anneal_lr:  # linearly to 0 over the budget, from where training has got to
            lr *= max(0.0, 1.0 - self.step / self.ctx.budget)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        # G_T: 0 after a termination, V(s_T) after a time-limit truncation
        with torch.no_grad():
            tails = [0.0 if ep["final_obs"] is None else policy.value(ep["final_obs"][None]).item()
                     for ep in episodes]
        returns = []
        for episode, g in zip(episodes, tails, strict=True):
            rewards = episode["rewards"]
            g_t = np.empty(len(rewards), np.float32)
            for t in reversed(range(len(rewards))):  # G_t = r_t + γ G_{t+1}
                g = rewards[t] + opt.gamma * g
                g_t[t] = g
            returns.append(g_t)
        obs = torch.stack([o for ep in episodes for o in ep["obs"]])
        actions = torch.stack([a for ep in episodes for a in ep["actions"]])
        returns_t = torch.as_tensor(np.concatenate(returns), device=self.device)

        logp, entropy, values = policy.evaluate_actions(obs, actions)
        advantages = returns_t - values.detach()  # G_t − b(s_t): the baseline gets no policy grad
        if opt.normalize_advantage and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * logp).mean()
        value_loss = (values - returns_t).pow(2).mean()
        entropy = entropy.mean()
        loss = policy_loss + opt.vf_coef * value_loss - opt.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), opt.max_grad_norm)
        self.optimizer.step()
        return {"train/policy_loss": policy_loss.item(), "train/value_loss": value_loss.item(),
                "train/entropy": entropy.item(), "train/learning_rate": lr,
                "train/approx_kl": approx_kl(policy, obs, actions, logp.detach()),
                "train/batch_episodes": len(episodes), "train/batch_steps": len(returns_t)}

    # ------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "running": [_pack(ep) for ep in self.running],
                "finished": [_pack(ep) for ep in self.finished]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.running = [_unpack(ep, self.device) for ep in state["running"]]
        self.finished = [_unpack(ep, self.device) for ep in state["finished"]]


def _pack(episode: dict[str, Any]) -> dict[str, Any]:
    """An episode as checkpoint-safe data (stacked tensors instead of lists of rows)."""
    packed = {key: torch.stack(episode[key]).cpu() if episode[key] else None
              for key in ("obs", "actions")}
    final = episode.get("final_obs")
    return {**packed, "rewards": list(episode["rewards"]),
            "final_obs": None if final is None else final.cpu(), "done": "final_obs" in episode}


def _unpack(packed: dict[str, Any], device: torch.device) -> dict[str, Any]:
    episode: dict[str, Any] = {key: [] if packed[key] is None else list(packed[key].to(device))
                               for key in ("obs", "actions")}
    episode["rewards"] = [float(r) for r in packed["rewards"]]
    if packed["done"]:
        final = packed["final_obs"]
        episode["final_obs"] = None if final is None else final.to(device)
    return episode
