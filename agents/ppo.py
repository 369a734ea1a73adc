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
4. Report the update: ``ctx.update`` logs it, evaluates when due, checkpoints, moves the bar.

The learning rate and the clip range ε decay linearly to 0 over training when annealed (RL Zoo's
``lin_1e-3`` / ``lin_0.2``).

Why it is fast with networks this small (time goes to per-op overhead, not arithmetic): acting
only samples (log π_old and V_old are computed once per rollout, batched), the buffers are
preallocated, Adam is fused, the logged diagnostics are computed only on updates that log, and
torch runs on one CPU thread (the experiment's ``threads``). On the CPU, MLP policies get their
minibatch gradients from :mod:`forgelab.agents.ppo_numpy` (``gradients: auto``): the loss below,
differentiated by hand in NumPy, 3x faster per step than autograd at CartPole's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgelab.agents.checks import check_ppo
from forgelab.agents.common import (
    PolicyConfig,
    PolicyGradientAgent,
    Rollout,
    clip_grad_norm,
)
from forgelab.agents.ppo_numpy import NumpyPPOGradients, numpy_unsupported
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
    :param gradients: ``autograd`` (torch), ``numpy`` (the same gradients derived by hand,
        :mod:`forgelab.agents.ppo_numpy`; MLP policies on the CPU without ``clip_range_vf``) or
        ``auto`` (numpy where it applies). They differ in the last bits, so a seed gives
        another run with each.
    """

    linear_schedules: ClassVar[dict[str, str]] = {"learning_rate": "anneal_lr",
                                                  "clip_range": "anneal_clip_range"}
    #: a run saved before ``gradients`` existed resumes with the path it was made with
    resume_defaults: ClassVar[dict[str, Any]] = {"gradients": "autograd"}

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
    gradients: Literal["auto", "autograd", "numpy"] = Field(
        "auto", description="how minibatch gradients are computed: autograd (torch), numpy "
        "(derived by hand, agents/ppo_numpy.py: CPU MLP policies, 2-3x faster there), auto "
        "(numpy where it applies)")


@dataclass
class Minibatch:
    """What one minibatch step measured (tensors, read once per update by :func:`means`)."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def means(history: list[Minibatch]) -> dict[str, float]:
    """The update's mean of each :class:`Minibatch` value, by name (NaN when no step ran), read
    from the device in one transfer."""
    names = [f.name for f in fields(Minibatch)]
    if not history:
        return dict.fromkeys(names, float("nan"))
    with torch.no_grad():
        table = torch.stack([torch.stack([getattr(m, name) for name in names])
                             for m in history])
    return dict(zip(names, table.mean(0).tolist(), strict=True))


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
        self.rollout = Rollout(self, options.n_steps)  # preallocated, refilled every iteration
        self.params = list(self.policy.parameters())
        self.rollout_size = options.n_steps * self.num_envs
        self.numpy_gradients = self._numpy_gradients(options)

    # ------------------------------------------------------------------------------ training
    def fit(self) -> None:
        ctx = self.ctx
        self.start_envs()
        while self.step < ctx.budget and not ctx.stop_requested:
            # 1. Collect n_steps in each env with π_old (shared with A2C: common.Rollout).
            self.collect(self.rollout)
            log = self.log_due()  # the diagnostics cost time: computed only when logged
            # 2.-3. GAE, then n_epochs of minibatch steps on the clipped surrogate.
            metrics = self.update(self.rollout, max(0.0, 1.0 - self.step / ctx.budget),
                                  diagnostics=log)
            self.updates += 1
            # 4. Log, evaluate when due, checkpoint, progress: the one call per update.
            ctx.update(self, self.step, metrics if log else None, rows=self.take_episodes(),
                       show=self.shown())

    def update(self, rollout: Rollout, progress_remaining: float,
               diagnostics: bool = True) -> dict[str, float]:
        """GAE over the rollout, then ``n_epochs`` passes of minibatch steps on L.

        ``diagnostics``: also compute the losses, entropy, approximate KL and clip fraction to
        log (they cost a dozen small tensor ops per minibatch, so only when they get logged).
        """
        opt, policy = self.opt, self.policy
        lr = opt.learning_rate * (progress_remaining if opt.anneal_lr else 1.0)
        clip = opt.clip_range * (progress_remaining if opt.anneal_clip_range else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        size = rollout.steps * rollout.num_envs
        obs, actions = rollout.flat()

        # π_old and V_old of the whole rollout in one batched pass (the parameters did not
        # change while collecting, so this equals evaluating them step by step).
        if self.numpy_gradients is not None:
            old_logp, old_values = (torch.from_numpy(x) for x in
                                    self.numpy_gradients.evaluate(obs.numpy(), actions.numpy()))
        else:
            with torch.no_grad():
                old_logp, _, old_values = policy.evaluate_actions(obs, actions, entropy=False)
        advantages, returns = self.advantages(rollout, old_values, opt.gamma, opt.gae_lambda)

        if opt.normalize_advantage and opt.batch_size == size:
            advantages = _standardize(advantages)  # one minibatch per epoch: do it once

        batch = (obs, actions, old_logp, advantages, returns, old_values)
        fast = self.numpy_gradients is not None
        if fast:  # CPU tensors: NumPy views, no copies
            batch = tuple(t.numpy() for t in batch)
        kl_limit = None if opt.target_kl is None else 1.5 * opt.target_kl
        history: list[Minibatch] = []  # read once at the end (one device transfer)
        steps, stop = 0, False
        for _epoch in range(opt.n_epochs):
            for idx in self._minibatches(size):
                rows = idx.numpy() if fast and isinstance(idx, torch.Tensor) else idx
                minibatch = [x[rows] for x in batch]
                if fast:
                    measured = self._numpy_step(*minibatch, clip, kl_limit, diagnostics)
                else:
                    measured = self._autograd_gradients(*minibatch, clip, kl_limit, diagnostics)
                if measured is None:  # as SB3: the approximate KL passed 1.5 × target_kl:
                    stop = True  # skip this step and end the update's epochs
                    break
                self.optimizer.step()
                steps += 1
                if diagnostics:
                    history.append(Minibatch(**measured))
            if stop:
                break
        metrics = {"train/learning_rate": lr, "train/clip_range": clip,
                   "train/epochs": steps / (size // opt.batch_size)}
        if diagnostics:
            var_returns = returns.var().item()
            explained = (float("nan") if var_returns == 0 else
                         1 - (returns - old_values).var().item() / var_returns)
            metrics.update({f"train/{name}": value for name, value in means(history).items()})
            metrics["train/explained_variance"] = explained
        return metrics

    def sample_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s); with the NumPy gradients, the actor's forward pass in NumPy too."""
        if self.numpy_gradients is None:
            return self.policy.sample(obs)
        return self.numpy_gradients.sample(obs)

    def _autograd_gradients(self, obs: torch.Tensor, actions: torch.Tensor,
                            old_logp: torch.Tensor, advantages: torch.Tensor,
                            returns: torch.Tensor, old_values: torch.Tensor, clip: float,
                            kl_limit: float | None, diagnostics: bool
                            ) -> dict[str, torch.Tensor] | None:
        """∂L/∂θ of one minibatch into the parameters' ``.grad`` by autograd, norm-clipped.

        :return: the step's diagnostics (tensors; empty unless ``diagnostics``), or None when
            the approximate KL exceeds ``kl_limit`` (then no gradient is computed).
        """
        opt, policy = self.opt, self.policy
        logp, entropy, values = policy.evaluate_actions(
            obs, actions, entropy=opt.ent_coef > 0 or diagnostics)
        if opt.normalize_advantage and opt.batch_size < self.rollout_size:
            advantages = _standardize(advantages)
        log_ratio = logp - old_logp
        ratio = log_ratio.exp()  # r_t(θ) = π_θ(a|s) / π_old(a|s)
        # L^CLIP = E[min(r A, clip(r, 1−ε, 1+ε) A)]; we minimise its negative
        policy_loss = -torch.min(ratio * advantages,
                                 ratio.clamp(1 - clip, 1 + clip) * advantages).mean()
        if opt.clip_range_vf is None:
            value_loss = (values - returns).pow(2).mean()
        else:  # PPO2: max of the unclipped and the clipped squared errors
            v_clip = old_values + (values - old_values).clamp(-opt.clip_range_vf,
                                                              opt.clip_range_vf)
            value_loss = torch.max((values - returns).pow(2), (v_clip - returns).pow(2)).mean()
        approx_kl = None
        if diagnostics or kl_limit is not None:
            with torch.no_grad():
                # KL(π_old‖π) ≈ E[(r − 1) − log r] (unbiased, ≥ 0; Schulman 2020)
                approx_kl = ((ratio - 1) - log_ratio).mean()
            if kl_limit is not None and approx_kl.item() > kl_limit:
                return None
        loss = policy_loss + opt.vf_coef * value_loss
        if opt.ent_coef > 0:  # (left out of the graph when unused: less backward work)
            loss = loss - opt.ent_coef * entropy.mean()
        for p in self.params:  # = optimizer.zero_grad(set_to_none=True), minus its dispatch
            p.grad = None
        loss.backward()
        clip_grad_norm(self.params, opt.max_grad_norm)  # torch's ops, without its checks
        if not diagnostics:
            return {}
        with torch.no_grad():
            return {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                    "entropy": entropy.mean(), "approx_kl": approx_kl,
                    "clip_fraction": ((ratio - 1).abs() > clip).float().mean()}

    def _numpy_step(self, obs: np.ndarray, actions: np.ndarray, old_logp: np.ndarray,
                    advantages: np.ndarray, returns: np.ndarray, old_values: np.ndarray,
                    clip: float, kl_limit: float | None, diagnostics: bool
                    ) -> dict[str, torch.Tensor] | None:
        """The same as :meth:`_autograd_gradients`, with the gradients derived by hand in
        NumPy (:mod:`forgelab.agents.ppo_numpy`; ``old_values`` only serves clip_range_vf,
        which that path does not take)."""
        opt = self.opt
        if opt.normalize_advantage and opt.batch_size < self.rollout_size:
            advantages = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)
        measured = self.numpy_gradients.step(obs, actions, old_logp, advantages, returns, clip,
                                             opt.vf_coef, opt.ent_coef, kl_limit, diagnostics)
        if measured is None:
            return None
        self.numpy_gradients.clip_grad_norm(opt.max_grad_norm)
        return {name: torch.tensor(value) for name, value in measured.items()}

    def _numpy_gradients(self, options: PPOConfig) -> NumpyPPOGradients | None:
        """The NumPy gradients where ``gradients`` allows them and they apply, else None
        (``gradients: numpy`` where they cannot apply was refused by :func:`check_ppo`)."""
        if options.gradients == "autograd" or numpy_unsupported(options, self.device,
                                                                self.images):
            return None
        return NumpyPPOGradients(self.policy, options.activation)

    def _minibatches(self, size: int) -> list[torch.Tensor | slice]:
        """Indices of one epoch's shuffled minibatches (the whole rollout when it is one)."""
        if self.opt.batch_size == size:
            return [slice(None)]  # shuffling one minibatch changes nothing
        return list(torch.randperm(size, device=self.device).view(-1, self.opt.batch_size))


def _standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8)
