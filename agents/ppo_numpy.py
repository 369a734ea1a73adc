"""PPO's minibatch gradients derived by hand and computed in NumPy: the CPU fast path.

Why: with CartPole-sized networks (two MLPs of 64x64, minibatches of 256) a PPO gradient step is
~13 MFLOP, about 70 µs of arithmetic on one core, but torch takes ~720 µs for it: ~45 forward and
backward ops at 5-15 µs of dispatch and autograd bookkeeping each, and a ``torch.tanh`` that
costs 35 µs per 256x64 array in the CPU builds measured here (NumPy's: 3 µs). The same forward
pass and its hand-written backward pass in NumPy take ~230 µs, and PPO at RL Zoo's CartPole
settings (20 epochs over every 256-step rollout) spends most of its time there.

What is computed (the loss of :mod:`forgelab.agents.ppo`, the same equations):

    L = −mean_i min(r_i A_i, clip(r_i, 1 − ε, 1 + ε) A_i) + c_v mean_i (V(s_i) − R_i)²
        − c_e mean_i H_i
    r_i = exp(log π(a_i|s_i) − log π_old(a_i|s_i))

and its gradient, layer by layer (chain rule, batch rows i):

* surrogate: ∂L/∂log π_i = −r_i A_i / B where the unclipped term is the smaller one (or they
  tie: inside the clip range both terms pass the same gradient), else 0;
* categorical head, z = logits: log π(a|s) = z_a − log Σ_j exp z_j, so ∂log π_i/∂z_j =
  [j = a_i] − π_j, and H = −Σ_j π_j log π_j gives ∂H/∂z_j = −π_j (log π_j + H);
* Gaussian head, μ = actor output, state-independent log σ: with u = (a − μ)/σ,
  log π = Σ_k (−u_k²/2 − log σ_k − log(2π)/2), ∂log π/∂μ_k = u_k/σ_k, ∂log π/∂log σ_k =
  u_k² − 1, and H = Σ_k (1/2 + log(2π)/2 + log σ_k) gives ∂H/∂log σ_k = 1;
* value: ∂L/∂V_i = 2 c_v (V_i − R_i) / B;
* each linear layer y = h Wᵀ + b: ∂L/∂W = gᵀ h, ∂L/∂b = Σ_i g_i, ∂L/∂h = g W, and through
  h = tanh(u): ∂L/∂u = ∂L/∂h · (1 − h²); through h = relu(u): ∂L/∂u = ∂L/∂h · [h > 0].

The gradients go into the parameters' ``.grad`` tensors (NumPy views of them), where the
gradient-norm clipping and torch's fused Adam take over, so checkpoints, the optimizer state
and every other part of the agent are those of the torch path. The numbers differ from the
torch path's in the last bits (other summation orders, NumPy's tanh), so a seed gives another,
equally reproducible run; tests check these gradients against autograd's.

Used for ``gradients: auto`` (the default) when the policy is an MLP actor-critic on the CPU
without value clipping; ``gradients: autograd`` always uses torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from forgelab.agents.common import ActorCritic

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def numpy_unsupported(options: Any, device: torch.device, images: bool) -> str | None:
    """Why the NumPy gradients cannot serve this PPO configuration (None: they can).

    :param options: the PPO options (``clip_range_vf`` is autograd-only).
    :param device: the run's torch device.
    :param images: whether the policy has a convolutional encoder.
    """
    if device.type != "cpu":
        return f"the device is {device.type}, not the CPU"
    if images:
        return "the policy has a convolutional encoder (image observations)"
    if options.clip_range_vf is not None:
        return "agent.clip_range_vf is set (the clipped value loss is autograd-only)"
    return None


class NumpyPPOGradients:
    """Computes one PPO minibatch's loss gradients into ``policy``'s ``.grad`` tensors.

    :param policy: an :class:`ActorCritic` without an encoder, float32, on the CPU.
    :param activation: ``"tanh"`` or ``"relu"`` (the hidden layers' non-linearity).
    """

    def __init__(self, policy: ActorCritic, activation: str) -> None:
        self.policy, self.tanh = policy, activation == "tanh"
        self.params = list(policy.parameters())
        # Gradient tensors allocated once, as views of one flat buffer (clipping is then one
        # dot product and one multiply), written in place through NumPy views; the optimizer
        # reads them as the parameters' .grad.
        self.flat_grad = torch.zeros(sum(p.numel() for p in self.params))
        sizes = [p.numel() for p in self.params]
        self.grad_tensors = [chunk.view_as(p) for chunk, p in
                             zip(self.flat_grad.split(sizes), self.params, strict=True)]
        self._ones = np.ones(0, np.float32)  # Σ over the batch as a product: ones · g
        grads = {id(p): g.numpy() for p, g in zip(self.params, self.grad_tensors, strict=True)}

        def layers(mlp: torch.nn.Module) -> list[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]]:
            # (W, b, ∂L/∂W, ∂L/∂b) per layer; W and b are views: they follow every Adam step
            return [(m.weight.detach().numpy(), m.bias.detach().numpy(), grads[id(m.weight)],
                     grads[id(m.bias)]) for m in mlp.layers]

        self.actor, self.critic = layers(policy.actor), layers(policy.critic)
        self.discrete = policy.discrete
        if not self.discrete:
            self.log_std = policy.log_std.detach().numpy()
            self.log_std_grad = grads[id(policy.log_std)]

    # ------------------------------------------------------------------------- the MLPs
    def _forward(self, x: np.ndarray, layers: list) -> tuple[list[np.ndarray], np.ndarray]:
        """The MLP's hidden activations (input first) and its output."""
        hidden = [x]
        for w, b, _, _ in layers[:-1]:
            h = x @ w.T
            h += b
            np.tanh(h, out=h) if self.tanh else np.maximum(h, 0, out=h)
            hidden.append(h)
            x = h
        w, b, _, _ = layers[-1]
        out = x @ w.T
        out += b
        return hidden, out

    def _backward(self, hidden: list[np.ndarray], g: np.ndarray, layers: list) -> None:
        """Back-propagate ∂L/∂output ``g`` through the MLP into its layers' gradients."""
        for k in range(len(layers) - 1, -1, -1):
            w, _, grad_w, grad_b = layers[k]
            h = hidden[k]
            np.dot(g.T, h, out=grad_w)  # ∂L/∂W = gᵀ h (np.dot: faster than matmul for Aᵀ B)
            np.dot(self._ones, g, out=grad_b)  # ∂L/∂b = Σ_i g_i (5x faster than np.sum)
            if k == 0:
                break  # (no gradient with respect to the observations)
            g = g @ w  # ∂L/∂h
            if self.tanh:
                g *= 1 - h * h  # tanh'(u) = 1 − tanh(u)²
            else:
                g *= h > 0  # relu'(u) = [u > 0] = [h > 0]

    # --------------------------------------------------------------------- the policy head
    def _head(self, out: np.ndarray, actions: np.ndarray, want_entropy: bool
              ) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """log π(a|s) and the entropy (None unless ``want_entropy``) from the actor's output,
        and what the backward pass reuses: (π, log π(·|s), row indices) for a categorical
        policy, (u, σ) for a Gaussian."""
        n = len(out)
        if self.discrete:
            z = out - out.max(axis=1, keepdims=True)
            e = np.exp(z)
            total = e.sum(axis=1, keepdims=True)
            probs = e / total
            logp_all = z - np.log(total)
            rows = np.arange(n)
            entropy = -(probs * logp_all).sum(axis=1) if want_entropy else None
            return logp_all[rows, actions], entropy, (probs, logp_all, rows)
        std = np.exp(self.log_std)
        u = (actions - out) / std
        logp = (-0.5 * u * u - self.log_std - _HALF_LOG_2PI).sum(axis=1)
        entropy = (np.full(n, (0.5 + _HALF_LOG_2PI + self.log_std).sum(), np.float32)
                   if want_entropy else None)
        return logp, entropy, (u, std)

    def evaluate(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log π(a|s) and V(s) of a batch (π_old and V_old of a rollout)."""
        _, out = self._forward(obs, self.actor)
        _, values = self._forward(obs, self.critic)
        return self._head(out, actions, want_entropy=False)[0], values[:, 0]

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s) as :meth:`ActorCritic.sample` draws it (the same uniforms or normals
        from torch's generator), with the actor's forward pass in NumPy."""
        _, out = self._forward(obs.numpy(), self.actor)
        if not self.discrete:
            noise = torch.randn(out.shape).numpy()
            return torch.from_numpy(out + np.exp(self.log_std) * noise)
        e = np.exp(out - out.max(axis=1, keepdims=True))
        cdf = np.cumsum(e / e.sum(axis=1, keepdims=True), axis=1)
        u = torch.rand(len(out), 1).numpy()  # inverse-CDF sampling, one uniform per row
        return torch.from_numpy(np.minimum((cdf < u).sum(axis=1), out.shape[1] - 1))

    # ------------------------------------------------------------------------- one step
    def step(self, obs: np.ndarray, actions: np.ndarray, old_logp: np.ndarray,
             advantages: np.ndarray, returns: np.ndarray, clip: float, vf_coef: float,
             ent_coef: float, kl_limit: float | None = None,
             diagnostics: bool = False) -> dict[str, float] | None:
        """Write ∂L/∂θ of one minibatch into the parameters' ``.grad``.

        :param kl_limit: stop before the gradient when the approximate KL exceeds it (SB3's
            ``target_kl`` rule): returns None and leaves the gradients alone.
        :param diagnostics: also return the losses, mean entropy, approximate KL and clip
            fraction (as :class:`forgelab.agents.ppo.Minibatch`'s names).
        :return: the diagnostics (an empty dict when not asked for), or None when stopped.
        """
        n = len(obs)
        if len(self._ones) != n:
            self._ones = np.ones(n, np.float32)
        hidden_a, out = self._forward(obs, self.actor)
        hidden_c, values = self._forward(obs, self.critic)
        values = values[:, 0]
        logp, entropy, saved = self._head(out, actions, ent_coef > 0 or diagnostics)

        log_ratio = logp - old_logp
        ratio = np.exp(log_ratio)
        approx_kl = None
        if kl_limit is not None or diagnostics:
            approx_kl = float(np.mean((ratio - 1) - log_ratio))  # KL(π_old‖π) ≈ E[(r−1) − log r]
            if kl_limit is not None and approx_kl > kl_limit:
                return None
        unclipped = ratio * advantages
        clipped = np.clip(ratio, 1 - clip, 1 + clip) * advantages
        # ∂L/∂log π_i: −r_i A_i / B where the unclipped term is the minimum, else 0
        g_logp = np.where(unclipped <= clipped, unclipped * np.float32(-1.0 / n), np.float32(0))

        if self.discrete:
            probs, logp_all, rows = saved
            g_out = probs * -g_logp[:, None]
            g_out[rows, actions] += g_logp  # g_logp · ([j = a] − π_j)
            if ent_coef > 0:
                g_out += probs * (logp_all + entropy[:, None]) * np.float32(ent_coef / n)
        else:
            u, std = saved
            g_out = g_logp[:, None] * u / std  # ∂log π/∂μ = u / σ
            # ∂log π/∂log σ = u² − 1, and −c_e ∂mean H/∂log σ = −c_e
            self.log_std_grad[...] = (g_logp[:, None] * (u * u - 1)).sum(axis=0) - ent_coef
        self._backward(hidden_a, g_out, self.actor)
        g_values = (values - returns) * np.float32(2 * vf_coef / n)  # ∂L/∂V
        self._backward(hidden_c, g_values[:, None], self.critic)

        for p, g in zip(self.params, self.grad_tensors, strict=True):
            if p.grad is not g:  # (the autograd path, or a reload, may have replaced it)
                p.grad = g
        if not diagnostics:
            return {}
        return {"policy_loss": -float(np.minimum(unclipped, clipped).mean()),
                "value_loss": float(np.mean((values - returns) ** 2)),
                "entropy": float(entropy.mean()), "approx_kl": approx_kl,
                "clip_fraction": float(np.mean(np.abs(ratio - 1) > clip))}

    def clip_grad_norm(self, max_norm: float) -> None:
        """g ← g · min(1, max_norm / (‖g‖ + 1e-6)) over all gradients (torch's rule)."""
        flat = self.flat_grad.numpy()
        coef = max_norm / (math.sqrt(float(np.dot(flat, flat))) + 1e-6)
        if coef < 1.0:
            flat *= np.float32(coef)
