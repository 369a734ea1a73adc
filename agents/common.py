"""Building blocks shared by the policy-gradient agents (REINFORCE, A2C, PPO).

What lives here is everything that is *not* the learning rule: the networks and their action
distributions, observation normalisation, on-policy rollouts, time-limit bootstrapping, GAE,
episode rows and the bookkeeping every agent needs (envs, evaluation, checkpoints). The
learning rule of each method stays in its own file (``reinforce.py``, ``a2c.py``, ``ppo.py``),
readable top to bottom.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from torch import nn
from torch.nn import functional as F

from forgelab.agents.checks import check_policy_gradient
from forgelab.agents.encoders import make_encoder
from forgelab.agents.evaluation import PolicyEvaluator
from forgelab.core.component import RunContext
from forgelab.core.errors import ConfigError
from forgelab.envs.building import completed_episodes
from forgelab.envs.snapshots import restore_env, snapshot_env

LOG_2PI = math.log(2.0 * math.pi)
_LINEAR = re.compile(r"^lin_([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class PolicyConfig(BaseModel):
    """Options every policy-gradient agent shares: the networks and observation scaling.

    :param hidden_sizes: widths of the hidden layers of the actor and of the critic.
    :param activation: hidden-layer non-linearity.
    :param log_std_init: initial log standard deviation of the Gaussian policy (Box actions).
    :param normalize_obs: scale observations by a running mean / std (continuous control).
    :param obs_clip: clip normalised observations to ``[-obs_clip, obs_clip]``.

    CPU threads are the experiment's top-level ``threads`` key, set by the runner for every job
    (``agent_options.torch_threads`` in older files is read as an alias of it).
    """

    model_config = ConfigDict(extra="forbid")

    hidden_sizes: list[PositiveInt] = Field([64, 64], min_length=1,
                                            description="hidden layer widths (actor and critic)")
    activation: Literal["tanh", "relu"] = Field("tanh", description="hidden non-linearity")
    log_std_init: float = Field(0.0, description="initial log-std of the Gaussian (Box actions)")
    normalize_obs: bool = Field(False, description="running mean/std observation normalisation")
    obs_clip: PositiveFloat = Field(10.0, description="clip normalised observations to ±obs_clip")
    encoder: Literal["auto", "mlp", "nature", "minatar"] = Field(
        "auto", description="observation encoder: auto (a CNN shared by actor and critic for "
        "uint8/bool images: nature for 84x84 frames, minatar for small grids; else mlp)")

    #: option -> its anneal switch: ``learning_rate: lin_1e-3`` (RL Zoo's and the SB3 agents'
    #: syntax) means ``learning_rate: 1e-3, anneal_lr: true``
    linear_schedules: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _linear_schedules(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, switch in cls.linear_schedules.items():
            value = data.get(key)
            match = _LINEAR.match(value) if isinstance(value, str) else None
            if match is None:
                continue
            if data.get(switch) is False:
                raise ValueError(f"{key}: {value} decays linearly, but {switch} is false; "
                                 f"write {key}: {match.group(1)} for a constant value")
            data = {**data, key: float(match.group(1)), switch: True}
        return data


# ------------------------------------------------------------------------------ networks
class MLP(nn.Module):
    """A tanh/ReLU multilayer perceptron with orthogonal initialisation: gain √2 on hidden
    layers, ``out_gain`` on the last one.

    Orthogonal init with a small policy-output gain (0.01) makes the first policy close to
    uniform, one of the PPO implementation details that matter (Engstrom et al. 2020). The
    forward pass calls ``F.linear`` directly: with layers this small, the per-module call
    overhead of ``nn.Sequential`` is a measurable part of the time.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int],
                 activation: str = "tanh", out_gain: float = 1.0) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        gains = [math.sqrt(2)] * len(hidden) + [out_gain]
        self.layers = nn.ModuleList(_ortho(nn.Linear(a, b), g)
                                    for a, b, g in zip(sizes[:-1], sizes[1:], gains, strict=True))
        self.activation = ACTIVATIONS[activation]
        self.in_features = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


def _ortho(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs with a categorical or diagonal-Gaussian policy head.

    * ``Discrete(n)``: π(a|s) = softmax(logits(s))_a.
    * ``Box``: π(a|s) = N(μ(s), diag σ²) with a state-independent learned log σ; the sampled
      action is clipped to the bounds only when it is sent to the env (the log-probability is
      that of the unclipped sample, as in SB3 and CleanRL).

    :param obs_dim: size of the (flattened) observation vector.
    :param action_space: ``Discrete`` or ``Box``.
    """

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: Sequence[int],
                 activation: str = "tanh", log_std_init: float = 0.0,
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        # Image observations: one convolutional encoder (agents/encoders.py) shared by the
        # actor and the critic, as in the PPO Atari reference code; the MLPs take its features.
        self.encoder = encoder
        if encoder is not None:
            obs_dim = encoder.out_features
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.actor = MLP(obs_dim, out, hidden, activation, out_gain=0.01)
        self.critic = MLP(obs_dim, 1, hidden, activation, out_gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """What the actor and critic MLPs take: the observation itself, or the encoder's
        features of an image."""
        return obs if self.encoder is None else self.encoder(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape (B,)."""
        return self.critic(self.features(obs)).squeeze(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s) for a batch of observations (no log-prob: that is computed in batch later).

        Categorical sampling inverts the CDF with one uniform per row, which is several times
        cheaper per call than ``torch.multinomial`` or a ``Categorical`` object.
        """
        out = self.actor(self.features(obs))
        if self.discrete:
            cdf = torch.softmax(out, dim=-1).cumsum(dim=-1)
            u = torch.rand(cdf.shape[0], 1, device=cdf.device)
            return (cdf < u).sum(dim=-1).clamp_(max=cdf.shape[-1] - 1)
        return out + self.log_std.exp() * torch.randn_like(out)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action: argmax of the logits, or the Gaussian mean."""
        out = self.actor(self.features(obs))
        return out.argmax(dim=-1) if self.discrete else out

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, entropy: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """log π(a|s), entropy H[π(·|s)] (None unless ``entropy``) and V(s), each of shape (B,)."""
        features = self.features(obs)  # the encoder runs once for actor and critic
        out = self.actor(features)
        h = None
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            if entropy:
                h = -(logp_all.exp() * logp_all).sum(-1)  # H = −Σ_a π(a) log π(a)
        else:
            # log N(a; μ, σ) = −½((a−μ)/σ)² − log σ − ½ log 2π, summed over action dims
            log_std = self.log_std.expand_as(out)
            z = (actions - out) / log_std.exp()
            logp = (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
            if entropy:
                h = (0.5 + 0.5 * LOG_2PI + log_std).sum(-1)  # H = Σ (½ + ½ log 2π + log σ)
        return logp, h, self.critic(features).squeeze(-1)


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float,
                   rarely_clipped: bool = False) -> None:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)`` for parameters on one
    device with one dtype: g ← g · min(1, max_norm / (‖g‖ + 1e-6)), the same values without
    its grouping and checks (which cost as much as the clipping itself with networks this small).

    ``rarely_clipped`` (CPU only): first bound ‖g‖ with one NumPy dot product per gradient and
    return at once when it is clearly below ``max_norm`` (nothing would change); only a norm
    near or above it goes on to torch's exact computation. A third of the cost when most steps
    are not clipped (DQN's max norm 10), an extra 10 µs when they are (PPO's 0.5).

    On the CPU the coefficient is computed on the read-back norm in float32, the very operations
    torch makes (``reciprocal(‖g‖ + 1e-6) * max_norm``, clamped), which saves four tensor ops
    per step, and the multiply is skipped when the coefficient is 1 (x · 1 = x exactly): most
    steps are not clipped at DQN's settings. On an accelerator reading the norm back would
    stall the stream, so it stays a tensor there.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if rarely_clipped and grads[0].device.type == "cpu":
        # float32 dot products are off by ~1e-6 relative at these sizes: 1e-3 is a wide margin
        squares = sum(float(np.dot(a, a)) for a in (g.numpy().reshape(-1) for g in grads))
        if math.sqrt(squares) < max_norm * (1 - 1e-3):
            return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if total.device.type != "cpu" or total.dtype != torch.float32:
        torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))
        return
    f32 = np.float32
    coef = min(f32(1.0) / (f32(total.item()) + f32(1e-6)) * f32(max_norm), f32(1.0))
    if not coef >= 1.0:  # (a NaN norm multiplies by NaN, as torch does)
        torch._foreach_mul_(grads, float(coef))


# ------------------------------------------------------------------ observation scaling
class RunningMeanStd:
    """Running mean and variance of observations (Chan et al.'s parallel update).

    Observations are scaled as clip((o − μ) / √(σ² + ε), −c, c). Statistics update on training
    observations only; evaluation uses them frozen. Their state goes in the checkpoint.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4
        self.clip, self.eps = clip, eps

    def update(self, batch: np.ndarray) -> None:
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var, self.count = m2 / total, total

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        scaled = (obs - self.mean) / np.sqrt(self.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": torch.from_numpy(self.mean.copy()),
                "var": torch.from_numpy(self.var.copy()), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


# ---------------------------------------------------------------------------- returns
def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    Arrays are (T, N): T steps of N envs. ``dones[t]`` is 1 when the episode ended *at* step t,
    so s_{t+1} (``values[t+1]``) already belongs to the next episode and must not be used::

        δ_t = r_t + γ V(s_{t+1}) (1 − done_t) − V(s_t)
        A_t = δ_t + γ λ (1 − done_t) A_{t+1}
        R_t = A_t + V(s_t)                      (the critic's regression target)

    λ = 1 gives Monte-Carlo-like returns bootstrapped at the rollout's end; λ = 0 gives TD(0).
    Time-limit truncations are not terminal: their reward already holds + γ V(s_final)
    (:func:`truncation_bootstrap`), so ``done`` only stops the bootstrap across the reset.
    """
    advantages = np.zeros_like(rewards)
    next_adv = np.zeros_like(last_values)
    next_value = last_values
    for t in reversed(range(rewards.shape[0])):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        next_adv = delta + gamma * lam * nonterminal * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


def truncated_final_obs(terminated: np.ndarray, truncated: np.ndarray,
                        infos: dict[str, Any]) -> list[tuple[int, np.ndarray]]:
    """(env index, true last observation) of sub-envs cut by a time limit on this step.

    With SAME_STEP autoreset the returned observation is already the next episode's first one,
    so the last one comes from ``info["final_obs"]``. A truncated episode did not end, so its
    last reward is bootstrapped: r_t ← r_t + γ V(s_final) (Pardo et al. 2018).
    """
    cut = np.flatnonzero(truncated & ~terminated)
    if cut.size == 0 or "final_obs" not in infos:
        return []
    return [(int(i), np.asarray(infos["final_obs"][i])) for i in cut]


@torch.no_grad()
def approx_kl(policy: ActorCritic, obs: torch.Tensor, actions: torch.Tensor,
              old_logp: torch.Tensor) -> float:
    """How far an update moved the policy on its batch: KL(π_old‖π_new) ≈ E[(r − 1) − log r]
    with r = π_new(a|s) / π_old(a|s) (unbiased and never negative; Schulman 2020)."""
    new_logp, _, _ = policy.evaluate_actions(obs, actions, entropy=False)
    log_ratio = new_logp - old_logp
    return (log_ratio.exp() - 1 - log_ratio).mean().item()


def episode_rows(infos: dict[str, Any], step: int) -> list[tuple[dict[str, float], int]]:
    """``(row, step)`` of every episode that ended on this vector step (its raw return and
    length), as ``ctx.update(..., rows=...)`` takes them."""
    return [({"train/episode_return": episode_return, "train/episode_length": length}, step)
            for episode_return, length in completed_episodes(infos)]


# ------------------------------------------------------------------------------ rollouts
class Rollout:
    """Preallocated storage for ``steps`` vector steps of on-policy experience (A2C, PPO):
    observations and actions on the training device (they feed the gradient steps), rewards
    and episode ends in NumPy (they feed GAE), and the time-limit truncations to bootstrap.

    :param agent: the agent collecting (its envs, spaces and device).
    :param steps: vector steps per rollout (``n_steps``).
    """

    def __init__(self, agent: PolicyGradientAgent, steps: int) -> None:
        n, policy = agent.num_envs, agent.policy
        act_shape = () if policy.discrete else (int(np.prod(agent.action_space.shape)),)
        self.steps, self.num_envs = steps, n
        self.obs = agent.obs_buffer(steps)  # float vectors, or images as uint8/bool
        self.actions = torch.zeros((steps, n, *act_shape), device=agent.device,
                                   dtype=torch.long if policy.discrete else torch.float32)
        self.rewards = np.zeros((steps, n), np.float32)
        self.dones = np.zeros((steps, n), np.float32)
        #: (t, env, s_final) of every episode a time limit cut during the rollout
        self.truncations: list[tuple[int, int, torch.Tensor]] = []

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Observations (T·N, d) or (T·N, *image_shape) and actions (T·N, ...) as one batch."""
        size = self.steps * self.num_envs
        return self.obs.flatten(0, 1), self.actions.view(size, *self.actions.shape[2:])


# -------------------------------------------------------------------------- the agent shell
class PolicyGradientAgent:
    """Everything a policy-gradient agent needs besides its learning rule.

    Subclasses set ``self.optimizer`` and implement ``fit()``; they call :meth:`start_envs`
    before collecting, :meth:`collect` (or their own loop with :meth:`obs_tensor` and
    :meth:`record_episodes`) for experience, and ``ctx.update(self, self.step, metrics,
    rows=self.take_episodes(), show=self.shown())`` once per update (logging, evaluation,
    checkpoints, progress: :mod:`forgelab.core.loop`).

    :param options: the agent's validated options (a :class:`PolicyConfig` subclass).
    :param ctx: the run context.
    """

    #: the pre-run check of :mod:`forgelab.agents.checks` (also the registration's ``check=``)
    check = staticmethod(check_policy_gradient)

    def __init__(self, options: PolicyConfig, ctx: RunContext) -> None:
        self.options, self.ctx, self.device = options, ctx, ctx.device
        self.envs = ctx.inputs.make_vec_env()
        self.num_envs = self.envs.num_envs
        obs_space = self.envs.single_observation_space
        action_space = self.envs.single_action_space
        try:  # the runner ran this check before the run began; an agent built directly too
            type(self).check(options, ctx.config, (obs_space, action_space))
        except ConfigError:
            self.envs.close()
            raise
        self.obs_space, self.action_space = obs_space, action_space
        self.one_hot = isinstance(obs_space, gym.spaces.Discrete)
        obs_dim = int(obs_space.n) if self.one_hot else int(np.prod(obs_space.shape))
        encoder = make_encoder(obs_space, options.encoder)
        # Images stay uint8/bool up to the device (rollout buffers too); the encoder scales them.
        self.images = encoder is not None
        self.policy = ActorCritic(obs_dim, action_space, options.hidden_sizes, options.activation,
                                  options.log_std_init, encoder).to(self.device)
        self.obs_rms = (RunningMeanStd((obs_dim,), clip=options.obs_clip)
                        if options.normalize_obs else None)
        if not self.policy.discrete:
            self.low, self.high = action_space.low, action_space.high
        self.evaluator = PolicyEvaluator.for_run(ctx)
        self.step = 0
        self.updates = 0
        self.obs: np.ndarray | None = None  # the current raw observation of every training env
        self.optimizer: torch.optim.Optimizer
        self._episodes: list[tuple[dict[str, float], int]] = []  # rows not yet reported
        self._recent: list[float] = []  # returns of the last episodes, for the progress bar

    def obs_buffer(self, steps: int) -> torch.Tensor:
        """Preallocated rollout storage for ``steps`` vector steps of observations: float
        vectors (steps, N, d), or images in their own dtype (steps, N, *shape)."""
        n = self.num_envs
        if not self.images:
            return torch.zeros((steps, n, self.policy.actor.in_features), device=self.device)
        dtype = torch.bool if self.obs_space.dtype == np.bool_ else torch.uint8
        return torch.zeros((steps, n, *self.obs_space.shape), dtype=dtype, device=self.device)

    # --------------------------------------------------------------- observations, actions
    def preprocess(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Raw observations (N, ...) → float32 vectors (N, d), one-hot or normalised (images:
        unchanged, in their own dtype)."""
        if self.images:
            return np.asarray(obs, dtype=self.obs_space.dtype)
        if self.one_hot:
            return np.eye(self.obs_space.n, dtype=np.float32)[np.asarray(obs, dtype=np.int64)]
        flat = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        if self.obs_rms is None:
            return flat
        if update:
            self.obs_rms.update(flat)
        return self.obs_rms.normalize(flat)

    def obs_tensor(self, obs: np.ndarray, update: bool = False) -> torch.Tensor:
        return torch.as_tensor(self.preprocess(obs, update), device=self.device)

    def env_action(self, actions: torch.Tensor) -> np.ndarray:
        """Policy output → what the env accepts (Box actions clipped to their bounds)."""
        actions = actions.cpu().numpy()
        if self.policy.discrete:
            return actions
        clipped = np.clip(actions, self.low, self.high)
        return clipped.reshape((len(actions), *self.action_space.shape))

    def actions(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations: the greedy action (argmax or Gaussian mean),
        or one sampled from π(·|s); for ``forgelab.load`` and ``forgelab eval --stochastic``."""
        tensor = self.obs_tensor(np.asarray(obs))
        chosen = self.policy.greedy(tensor) if deterministic else self.policy.sample(tensor)
        return self.env_action(chosen)

    # ------------------------------------------------------------------ collecting (A2C, PPO)
    def sample_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s) for the training envs' observations (``collect`` calls it every step)."""
        return self.policy.sample(obs)

    def start_envs(self) -> None:
        """Reset the training envs on a fresh run (a resumed one continues mid-episode)."""
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=self.ctx.seed)

    def collect(self, rollout: Rollout) -> None:
        """Fill ``rollout`` with ``rollout.steps`` vector steps of a ~ π(·|s) in the training
        envs (log π and V come later, batched: the policy does not change while collecting),
        keeping the true last observation of every episode a time limit cut."""
        rollout.truncations = []
        for t in range(rollout.steps):
            obs = self.obs_tensor(self.obs, update=True)
            actions = self.sample_actions(obs)
            self.obs, rewards, terminated, truncated, infos = self.envs.step(
                self.env_action(actions))
            rollout.obs[t] = obs
            rollout.actions[t] = actions
            rollout.rewards[t] = rewards
            rollout.dones[t] = terminated | truncated
            self.step += self.num_envs
            for i, final in truncated_final_obs(terminated, truncated, infos):
                rollout.truncations.append((t, i, self.obs_tensor(final[None])[0]))
            if "episode" in infos.get("final_info", ()):
                self.record_episodes(infos)

    @torch.no_grad()
    def bootstrapped_rewards(self, rollout: Rollout, gamma: float) -> np.ndarray:
        """The rollout's rewards with r_t ← r_t + γ V(s_final) where a time limit cut the
        episode at step t (a truncation is not a termination; Pardo et al. 2018)."""
        rewards = rollout.rewards.copy()
        if rollout.truncations:
            final = torch.stack([s for _, _, s in rollout.truncations])
            for (t, env, _), v in zip(rollout.truncations, self.policy.value(final).cpu().numpy(),
                                      strict=True):
                rewards[t, env] += gamma * v
        return rewards

    def advantages(self, rollout: Rollout, values: torch.Tensor, gamma: float,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages A_t and value targets R_t (flat, on the device) of a rollout whose
        states have the values ``values`` (T·N,): bootstrapped from V of the current
        observations at the rollout's end and from V(s_final) at time-limit truncations."""
        with torch.no_grad():
            last_values = self.policy.value(self.obs_tensor(self.obs)).cpu().numpy()
        rewards = self.bootstrapped_rewards(rollout, gamma)
        t, n = rollout.steps, rollout.num_envs
        advantages, returns = gae(rewards, values.detach().view(t, n).cpu().numpy(),
                                  rollout.dones, last_values, gamma, lam)
        return (torch.as_tensor(advantages.reshape(-1), device=self.device),
                torch.as_tensor(returns.reshape(-1), device=self.device))

    # ------------------------------------------------------------- what each update reports
    def record_episodes(self, infos: dict[str, Any]) -> None:
        """Keep the rows of the episodes that ended on this vector step, for the next
        ``ctx.update``."""
        rows = episode_rows(infos, self.step)
        self._episodes += rows
        self._recent = (self._recent + [row["train/episode_return"] for row, _ in rows])[-20:]

    def take_episodes(self) -> list[tuple[dict[str, float], int]]:
        """The episode rows recorded since the last call (``ctx.update``'s ``rows``)."""
        rows, self._episodes = self._episodes, []
        return rows

    def shown(self) -> dict[str, float]:
        """What the progress bar shows: the mean return of the last 20 episodes."""
        return {"return": float(np.mean(self._recent))} if self._recent else {}

    def log_due(self) -> bool:
        """Whether the update under way logs its metrics: it crossed a ``train.log_every``
        mark, or it is the run's first."""
        return self.updates == 0 or self.ctx.log_due(self.step)

    # ------------------------------------------------------------------------ evaluation
    def close(self) -> None:
        """Close the training envs (async workers) and the evaluation env; the runner calls it
        after the run's last checkpoint."""
        self.envs.close()
        self.evaluator.close()

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        """The training loop's scheduled evaluation: deterministic episodes, ``eval/*``."""
        return self.evaluator.evaluate(self.actions, self.step, video, batched=True)

    def evaluate(self) -> dict[str, float]:
        """``forgelab eval``: one evaluation now, with a video."""
        return self.evaluator.evaluate(self.actions, self.step, video=True, batched=True)

    # -------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "updates": self.updates,
            "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms else None,
            "obs": None if self.obs is None else torch.from_numpy(np.array(self.obs)),
            "envs": snapshot_env(self.envs) if self.obs is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.updates = int(state["step"]), int(state["updates"])
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if state["obs"] is not None:
            self.obs = state["obs"].numpy().copy()
            restore_env(self.envs, state["envs"])
