"""Proximal Policy Optimization (PPO-Clip).

Schulman, Wolski, Dhariwal, Radford, Klimov (2017), "Proximal Policy Optimization Algorithms",
https://arxiv.org/abs/1707.06347 — with Generalized Advantage Estimation (Schulman et al. 2016,
https://arxiv.org/abs/1506.02438) and the implementation details of SB3 / CleanRL.

One iteration:

1. Collect ``n_steps`` steps in each of the N vector envs with the current policy π_old.
2. Advantages with GAE: δ_t = r_t + γ V(s_{t+1})(1 − done_t) − V(s_t),
   A_t = δ_t + γλ(1 − done_t) A_{t+1}; value targets R_t = A_t + V_old(s_t).
3. For ``n_epochs`` epochs, over shuffled minibatches, minimise

       L = −L^CLIP + c_v L^V − c_e H[π]
       L^CLIP = E_t[ min(r_t(θ) A_t, clip(r_t(θ), 1 − ε, 1 + ε) A_t) ],
       r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)
       L^V    = E_t[ (V_θ(s_t) − R_t)² ]    (optionally clipped around V_old, as in PPO2)

   with the gradient's global norm clipped to ``max_grad_norm``; stop the epochs early when the
   approximate KL(π_old‖π_θ) exceeds 1.5 × ``target_kl``.

The learning rate and the clip range ε decay linearly to 0 over training when annealed (RL Zoo's
``lin_1e-3`` / ``lin_0.2``).

Why it is fast with networks this small (time goes to per-op overhead, not arithmetic): acting
only samples (log π_old and V_old are computed once per rollout, batched), the buffers are
preallocated, Adam is fused, the logged diagnostics are computed only on updates that log, and
torch runs on one CPU thread (the experiment's ``threads``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgelab.agents.checks import check_ppo
from forgelab.agents.common import (
    PolicyConfig,
    PolicyGradientAgent,
    clip_grad_norm,
    gae,
    truncated_final_obs,
)
from forgelab.core.component import RunContext
from forgelab.core.device import fast_adam


class PPOConfig(PolicyConfig):
    """PPO hyperparameters (defaults: SB3's).

    :param learning_rate: Adam step size (initial value when ``anneal_lr``).
    :param anneal_lr: decay the learning rate linearly to 0 over ``train.total_steps``.
    :param n_steps: steps collected per env before each update (rollout length).
    :param batch_size: minibatch size; must divide ``n_steps * env.num_envs``.
    :param n_epochs: passes over each rollout.
    :param gamma: discount factor γ.
    :param gae_lambda: GAE λ (1: Monte-Carlo returns, 0: one-step TD).
    :param clip_range: ε of the clipped surrogate (initial value when ``anneal_clip_range``).
    :param anneal_clip_range: decay ε linearly to 0 over training.
    :param clip_range_vf: clip the value update around the old values (None: no clipping).
    :param normalize_advantage: standardise advantages in each minibatch.
    :param ent_coef: entropy bonus coefficient c_e.
    :param vf_coef: value-loss coefficient c_v.
    :param max_grad_norm: global gradient-norm clip.
    :param target_kl: stop the update's epochs when approx. KL > 1.5 × target_kl (None: never).
    :param adam_eps: Adam's ε (1e-5 as in SB3 and the PPO reference code).
    """

    linear_schedules: ClassVar[dict[str, str]] = {"learning_rate": "anneal_lr",
                                                  "clip_range": "anneal_clip_range"}

    learning_rate: PositiveFloat = Field(3e-4, description="Adam step size (lin_<x>: annealed)")
    anneal_lr: bool = Field(False, description="decay the learning rate linearly to 0")
    n_steps: PositiveInt = Field(2048, description="steps per env per rollout")
    batch_size: int = Field(64, ge=2, description="minibatch size (divides n_steps*num_envs)")
    n_epochs: PositiveInt = Field(10, description="passes over each rollout")
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    clip_range: PositiveFloat = Field(0.2, description="surrogate clip epsilon (lin_<x>: "
                                      "annealed)")
    anneal_clip_range: bool = Field(False, description="decay clip_range linearly to 0")
    clip_range_vf: PositiveFloat | None = Field(None, description="value clip (None: off)")
    normalize_advantage: bool = Field(True, description="standardise advantages per minibatch")
    ent_coef: NonNegativeFloat = Field(0.0, description="entropy bonus coefficient")
    vf_coef: NonNegativeFloat = Field(0.5, description="value loss coefficient")
    max_grad_norm: PositiveFloat = Field(0.5, description="global gradient norm clip")
    target_kl: PositiveFloat | None = Field(None, description="early-stop KL (None: off)")
    adam_eps: PositiveFloat = Field(1e-5, description="Adam epsilon")


class PPO(PolicyGradientAgent):
    """PPO-Clip over vectorized environments, for ``Discrete`` and ``Box`` actions.

    :param options: :class:`PPOConfig`.
    :param ctx: the run context (env builders, device, tracker, checkpoints).
    :raises ConfigError: for an unsupported action space or a batch size that does not divide
        the rollout.
    """

    check = staticmethod(check_ppo)  # minibatches divide the rollout, and the shell's checks

    def __init__(self, options: PPOConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.opt = options
        self.optimizer = fast_adam(self.policy.parameters(), lr=options.learning_rate,
                                   eps=options.adam_eps)
        # Preallocated rollout storage: observations and actions on the training device (they
        # feed the minibatches), rewards and episode ends in NumPy (they feed GAE).
        t, n = options.n_steps, self.num_envs
        act_shape = () if self.policy.discrete else (int(np.prod(self.action_space.shape)),)
        self.buf_obs = self.obs_buffer(t)  # float vectors, or images as uint8/bool
        self.buf_actions = torch.zeros((t, n, *act_shape), device=self.device,
                                       dtype=torch.long if self.policy.discrete else torch.float32)
        self.buf_rewards = np.zeros((t, n), np.float32)
        self.buf_dones = np.zeros((t, n), np.float32)

    # ------------------------------------------------------------------------------ training
    def fit(self) -> None:
        ctx = self.ctx
        total = int(ctx.config.train.total_steps)
        self.start_envs()
        while self.step < total and not ctx.stop_requested:
            last_step = self.step
            truncations = self.collect_rollout()
            metrics = self.update(truncations, max(0.0, 1.0 - self.step / total),
                                  diagnostics=self.log_due(last_step))
            self.updates += 1
            self.after_update(last_step, metrics)

    def collect_rollout(self) -> list[tuple[int, int, torch.Tensor]]:
        """Fill the buffers with ``n_steps`` vector steps; return (t, env, s_final) of every
        time-limit truncation, to be bootstrapped with V(s_final) in :meth:`update`."""
        truncations = []
        for t in range(self.opt.n_steps):
            obs = self.obs_tensor(self.obs, update=True)
            actions = self.policy.sample(obs)
            self.obs, rewards, terminated, truncated, infos = self.envs.step(
                self.env_action(actions))
            self.buf_obs[t] = obs
            self.buf_actions[t] = actions
            self.buf_rewards[t] = rewards
            self.buf_dones[t] = terminated | truncated
            self.step += self.num_envs
            for i, final in truncated_final_obs(terminated, truncated, infos):
                truncations.append((t, i, self.obs_tensor(final[None])[0]))
            if "episode" in infos.get("final_info", ()):
                self.log_episodes(infos)
        return truncations

    def update(self, truncations: list[tuple[int, int, torch.Tensor]],
               progress_remaining: float, diagnostics: bool = True) -> dict[str, float]:
        """GAE over the rollout, then ``n_epochs`` passes of minibatch steps on L.

        ``diagnostics``: also compute the losses, entropy, approximate KL and clip fraction to
        log (they cost a dozen small tensor ops per minibatch, so only when they get logged).
        """
        opt, policy = self.opt, self.policy
        lr = opt.learning_rate * (progress_remaining if opt.anneal_lr else 1.0)
        clip = opt.clip_range * (progress_remaining if opt.anneal_clip_range else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t, n = opt.n_steps, self.num_envs
        obs = self.buf_obs.flatten(0, 1)  # (t * n, d) or (t * n, *image_shape)
        actions = self.buf_actions.view(t * n, *self.buf_actions.shape[2:])

        # π_old and V_old of the whole rollout in one batched pass (the parameters did not
        # change while collecting, so this equals evaluating them step by step).
        with torch.no_grad():
            old_logp, _, old_values = policy.evaluate_actions(obs, actions, entropy=False)
            last_values = policy.value(self.obs_tensor(self.obs)).cpu().numpy()
            rewards = self.buf_rewards.copy()
            if truncations:  # r_t ← r_t + γ V(s_final) where a time limit cut the episode
                bootstrap = policy.value(torch.stack([s for _, _, s in truncations])).cpu().numpy()
                for (step, env, _), v in zip(truncations, bootstrap, strict=True):
                    rewards[step, env] += opt.gamma * v
        values_np = old_values.view(t, n).cpu().numpy()
        advantages, returns = gae(rewards, values_np, self.buf_dones, last_values,
                                  opt.gamma, opt.gae_lambda)
        advantages = torch.as_tensor(advantages.reshape(-1), device=self.device)
        returns = torch.as_tensor(returns.reshape(-1), device=self.device)

        if opt.normalize_advantage and opt.batch_size == t * n:
            advantages = _standardize(advantages)  # one minibatch per epoch: do it once

        params = list(policy.parameters())
        check_kl = opt.target_kl is not None
        history: list[torch.Tensor] = []  # per minibatch diagnostics, read once at the end
        steps, stop = 0, False
        for _epoch in range(opt.n_epochs):
            for idx in self._minibatches(t * n):
                logp, entropy, values = policy.evaluate_actions(
                    obs[idx], actions[idx], entropy=opt.ent_coef > 0 or diagnostics)
                adv = advantages[idx]
                if opt.normalize_advantage and opt.batch_size < t * n:
                    adv = _standardize(adv)
                log_ratio = logp - old_logp[idx]
                ratio = log_ratio.exp()  # r_t(θ) = π_θ(a|s) / π_old(a|s)
                # L^CLIP = E[min(r A, clip(r, 1−ε, 1+ε) A)]; we minimise its negative
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                if opt.clip_range_vf is None:
                    value_loss = (values - returns[idx]).pow(2).mean()
                else:  # PPO2: max of the unclipped and the clipped squared errors
                    v_old = old_values[idx]
                    v_clip = v_old + (values - v_old).clamp(-opt.clip_range_vf, opt.clip_range_vf)
                    value_loss = torch.max((values - returns[idx]).pow(2),
                                           (v_clip - returns[idx]).pow(2)).mean()
                if diagnostics or check_kl:
                    with torch.no_grad():
                        # KL(π_old‖π) ≈ E[(r − 1) − log r] (unbiased, ≥ 0; Schulman 2020)
                        approx_kl = ((ratio - 1) - log_ratio).mean()
                    if check_kl and approx_kl.item() > 1.5 * opt.target_kl:
                        stop = True  # as SB3: skip this step and end the update's epochs
                        break
                loss = policy_loss + opt.vf_coef * value_loss
                if opt.ent_coef > 0:  # (left out of the graph when unused: less backward work)
                    loss = loss - opt.ent_coef * entropy.mean()
                for p in params:  # = optimizer.zero_grad(set_to_none=True), minus its dispatch
                    p.grad = None
                loss.backward()
                clip_grad_norm(params, opt.max_grad_norm)  # torch's ops, without its checks
                self.optimizer.step()
                steps += 1
                if diagnostics:
                    with torch.no_grad():
                        clipped = ((ratio - 1).abs() > clip).float().mean()
                        history.append(torch.stack([policy_loss, value_loss, entropy.mean(),
                                                    approx_kl, clipped]))
            if stop:
                break
        metrics = {"train/learning_rate": lr, "train/clip_range": clip,
                   "train/epochs": steps / (t * n // opt.batch_size)}
        if diagnostics:
            means = torch.stack(history).mean(0).tolist() if history else [float("nan")] * 5
            var_returns = returns.var().item()
            explained = (float("nan") if var_returns == 0 else
                         1 - (returns - old_values).var().item() / var_returns)
            metrics.update({"train/policy_loss": means[0], "train/value_loss": means[1],
                            "train/entropy": means[2], "train/approx_kl": means[3],
                            "train/clip_fraction": means[4],
                            "train/explained_variance": explained})
        return metrics

    def _minibatches(self, size: int) -> list[torch.Tensor | slice]:
        """Indices of one epoch's shuffled minibatches (the whole rollout when it is one)."""
        if self.opt.batch_size == size:
            return [slice(None)]  # shuffling one minibatch changes nothing
        return list(torch.randperm(size, device=self.device).view(-1, self.opt.batch_size))


def _standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8)
