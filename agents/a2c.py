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
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgelab.agents.common import (
    PolicyConfig,
    PolicyGradientAgent,
    approx_kl,
    gae,
    truncated_final_obs,
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
        t, n = options.n_steps, self.num_envs
        act_shape = () if self.policy.discrete else (int(np.prod(self.action_space.shape)),)
        self.buf_obs = self.obs_buffer(t)  # float vectors, or images as uint8/bool
        self.buf_actions = torch.zeros((t, n, *act_shape), device=self.device,
                                       dtype=torch.long if self.policy.discrete else torch.float32)
        self.buf_rewards = np.zeros((t, n), np.float32)
        self.buf_dones = np.zeros((t, n), np.float32)

    def fit(self) -> None:
        ctx, opt = self.ctx, self.opt
        total = int(ctx.config.train.total_steps)
        self.start_envs()
        while self.step < total and not ctx.stop_requested:
            last_step = self.step
            # ---- 1. rollout: n_steps in each env (log-probs and values come later, batched)
            truncations = []
            for t in range(opt.n_steps):
                obs = self.obs_tensor(self.obs, update=True)
                actions = self.policy.sample(obs)
                self.obs, rewards, terminated, truncated, infos = self.envs.step(
                    self.env_action(actions))
                self.buf_obs[t], self.buf_actions[t] = obs, actions
                self.buf_rewards[t] = rewards
                self.buf_dones[t] = terminated | truncated
                self.step += self.num_envs
                for i, final in truncated_final_obs(terminated, truncated, infos):
                    truncations.append((t, i, self.obs_tensor(final[None])[0]))
                if "episode" in infos.get("final_info", ()):
                    self.log_episodes(infos)
            # ---- 2. + 3. advantages and one gradient step
            metrics = self.update(truncations, max(0.0, 1.0 - self.step / total),
                                  diagnostics=self.log_due(last_step))
            self.updates += 1
            self.after_update(last_step, metrics)

    def update(self, truncations: list[tuple[int, int, torch.Tensor]],
               progress_remaining: float, diagnostics: bool = True) -> dict[str, float]:
        """Advantages by GAE, then one gradient step on L; ``diagnostics`` adds the update's
        approximate KL (one more forward pass, so only when the metrics get logged)."""
        opt, policy = self.opt, self.policy
        lr = opt.learning_rate * (progress_remaining if opt.anneal_lr else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t, n = opt.n_steps, self.num_envs
        obs = self.buf_obs.flatten(0, 1)  # (t * n, d) or (t * n, *image_shape)
        actions = self.buf_actions.view(t * n, *self.buf_actions.shape[2:])

        logp, entropy, values = policy.evaluate_actions(obs, actions)
        with torch.no_grad():
            last_values = policy.value(self.obs_tensor(self.obs)).cpu().numpy()
            rewards = self.buf_rewards.copy()
            if truncations:  # r_t ← r_t + γ V(s_final) where a time limit cut the episode
                final = policy.value(torch.stack([s for _, _, s in truncations])).cpu().numpy()
                for (step, env, _), v in zip(truncations, final, strict=True):
                    rewards[step, env] += opt.gamma * v
        advantages, returns = gae(rewards, values.detach().view(t, n).cpu().numpy(),
                                  self.buf_dones, last_values, opt.gamma, opt.gae_lambda)
        advantages = torch.as_tensor(advantages.reshape(-1), device=self.device)
        returns = torch.as_tensor(returns.reshape(-1), device=self.device)
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
