"""Advantage Actor-Critic (A2C), the synchronous variant of A3C.

Mnih, Badia, Mirza, Graves, Lillicrap, Harley, Silver, Kavukcuoglu (2016), "Asynchronous Methods
for Deep Reinforcement Learning", https://arxiv.org/abs/1602.01783 — synchronous over N vector
envs as in OpenAI Baselines / SB3, with Generalized Advantage Estimation (Schulman et al. 2016,
https://arxiv.org/abs/1506.02438).

One iteration:

1. Collect ``n_steps`` steps in each of the N envs with the current policy.
2. Advantages with GAE: δ_t = r_t + γ V(s_{t+1})(1 − done_t) − V(s_t),
   A_t = δ_t + γλ(1 − done_t) A_{t+1}; with λ = 1 (the default) A_t is the n-step advantage
   Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n}) − V(s_t) of the paper.
3. One gradient step on

       L = −E_t[A_t log π_θ(a_t|s_t)] + c_v E_t[(V_θ(s_t) − R_t)²] − c_e E_t[H[π_θ(·|s_t)]]

   (A_t is a constant: no gradient flows into it), with the gradient's global norm clipped.
4. Report the update: ``ctx.update`` logs it, evaluates when due, checkpoints, moves the bar.

Collection, the time-limit bootstrap and GAE are PPO's too (:mod:`forgelab.agents.common`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgelab.agents.common import (
    PolicyConfig,
    PolicyGradientAgent,
    Rollout,
    approx_kl,
)
from forgelab.core.component import RunContext
from forgelab.core.device import fast_adam


class A2CConfig(PolicyConfig):
    """A2C hyperparameters (defaults: SB3's).

    :param learning_rate: optimizer step size (initial value when ``anneal_lr``).
    :param anneal_lr: decay the learning rate linearly to 0 over ``train.total_steps``.
    :param optimizer: ``rmsprop`` (the paper's and SB3's) or ``adam``.
    :param rms_prop_eps: ε of RMSprop (1e-5 as in SB3) or Adam.
    :param n_steps: steps collected per env before each update.
    :param gamma: discount factor γ.
    :param gae_lambda: GAE λ; 1 gives the paper's n-step returns.
    :param normalize_advantage: standardise advantages in each batch.
    :param ent_coef: entropy bonus coefficient c_e.
    :param vf_coef: value-loss coefficient c_v.
    :param max_grad_norm: global gradient-norm clip.
    """

    linear_schedules: ClassVar[dict[str, str]] = {"learning_rate": "anneal_lr"}

    learning_rate: PositiveFloat = Field(7e-4, description="optimizer step size (lin_<x>: "
                                         "annealed)")
    anneal_lr: bool = Field(False, description="decay the learning rate linearly to 0")
    optimizer: Literal["rmsprop", "adam"] = Field("rmsprop", description="rmsprop or adam")
    rms_prop_eps: PositiveFloat = Field(1e-5, description="optimizer epsilon")
    n_steps: PositiveInt = Field(5, description="steps per env per update")
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount factor")
    gae_lambda: float = Field(1.0, ge=0.0, le=1.0, description="GAE lambda (1: n-step returns)")
    normalize_advantage: bool = Field(False, description="standardise advantages per batch")
    ent_coef: NonNegativeFloat = Field(0.0, description="entropy bonus coefficient")
    vf_coef: NonNegativeFloat = Field(0.5, description="value loss coefficient")
    max_grad_norm: PositiveFloat = Field(0.5, description="global gradient norm clip")


class A2C(PolicyGradientAgent):
    """Synchronous advantage actor-critic over vectorized environments.

    :param options: :class:`A2CConfig`.
    :param ctx: the run context (env builders, device, tracker, checkpoints).
    :raises ConfigError: for an unsupported action or observation space.
    """

    def __init__(self, options: A2CConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.opt = options
        if options.optimizer == "rmsprop":  # alpha 0.99 as in the paper's code and SB3
            self.optimizer = torch.optim.RMSprop(self.policy.parameters(),
                                                 lr=options.learning_rate, alpha=0.99,
                                                 eps=options.rms_prop_eps)
        else:
            self.optimizer = fast_adam(self.policy.parameters(), lr=options.learning_rate,
                                       eps=options.rms_prop_eps)
        self.rollout = Rollout(self, options.n_steps)  # preallocated, refilled every iteration

    def fit(self) -> None:
        ctx = self.ctx
        self.start_envs()
        while self.step < ctx.budget and not ctx.stop_requested:
            # 1. Collect n_steps in each env (shared with PPO: common.Rollout).
            self.collect(self.rollout)
            log = self.log_due()  # the approximate KL costs a forward pass: only when logged
            # 2.-3. Advantages and one gradient step.
            metrics = self.update(self.rollout, max(0.0, 1.0 - self.step / ctx.budget),
                                  diagnostics=log)
            self.updates += 1
            # 4. Log, evaluate when due, checkpoint, progress: the one call per update.
            ctx.update(self, self.step, metrics if log else None, rows=self.take_episodes(),
                       show=self.shown())

    def update(self, rollout: Rollout, progress_remaining: float,
               diagnostics: bool = True) -> dict[str, float]:
        """Advantages by GAE, then one gradient step on L; ``diagnostics`` adds the update's
        approximate KL (one more forward pass, so only when the metrics get logged)."""
        opt, policy = self.opt, self.policy
        lr = opt.learning_rate * (progress_remaining if opt.anneal_lr else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        obs, actions = rollout.flat()
        logp, entropy, values = policy.evaluate_actions(obs, actions)
        advantages, returns = self.advantages(rollout, values, opt.gamma, opt.gae_lambda)
        if opt.normalize_advantage and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        policy_loss = -(advantages * logp).mean()  # −E[A_t log π(a_t|s_t)]
        value_loss = (values - returns).pow(2).mean()  # E[(V(s_t) − R_t)²]
        entropy = entropy.mean()
        loss = policy_loss + opt.vf_coef * value_loss - opt.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), opt.max_grad_norm)
        self.optimizer.step()
        metrics = {"train/policy_loss": policy_loss.item(), "train/value_loss": value_loss.item(),
                   "train/entropy": entropy.item(), "train/learning_rate": lr}
        if diagnostics:
            metrics["train/approx_kl"] = approx_kl(policy, obs, actions, logp.detach())
        return metrics
