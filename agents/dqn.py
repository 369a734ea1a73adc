"""Deep Q-Network (DQN), with Double DQN and dueling heads as options.

Papers:

* Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature 518.
  https://www.nature.com/articles/nature14236 (replay buffer, target network, ε-greedy).
* van Hasselt, Guez & Silver 2016, "Deep Reinforcement Learning with Double Q-learning".
  https://arxiv.org/abs/1509.06461 (``double_q``).
* Wang et al. 2016, "Dueling Network Architectures for Deep Reinforcement Learning".
  https://arxiv.org/abs/1511.06581 (``dueling``).

The method, in one screen. Q_θ(s, ·) is an MLP with one output per action; Q_θ⁻ is a lagged
copy of it (the *target network*). Transitions (s, a, r, s', d) from an ε-greedy policy go into a
replay buffer D; every ``train_freq`` env steps we take ``gradient_steps`` steps of gradient
descent on minibatches B ~ D of::

    DQN target:        y = r + γ (1 − d) max_a' Q_θ⁻(s', a')
    Double DQN target: y = r + γ (1 − d) Q_θ⁻(s', argmax_a' Q_θ(s', a'))
    loss:              L(θ) = mean_B ℓ(Q_θ(s, a) − y),  ℓ = Huber (δ = 1) or ½·squared error

where d = 1 only when the episode *terminated*: a time-limit truncation still bootstraps from
s' (the true last observation, not the first one of the next episode). The dueling head splits
Q into a state value and advantages, Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a').

The target network follows the online one every ``target_update_interval`` env steps, either by
a hard copy (τ = 1) or by Polyak averaging θ⁻ ← τ θ + (1 − τ) θ⁻. ε decays linearly from
``exploration_initial_eps`` to ``exploration_final_eps`` over the first ``exploration_fraction``
of training; before ``learning_starts`` the buffer is filled by uniformly random actions.

Counting follows Stable-Baselines3 so that RL Zoo hyperparameters carry over: ``train_freq``,
``target_update_interval`` and ``learning_starts`` count env steps (all envs together), and
training starts once more than ``learning_starts`` steps have been collected (after a resume
without the saved replay buffer, once it holds ``learning_starts`` new transitions again).

Speed notes (why the code looks the way it does):

* Acting runs the MLP in NumPy on views of the CPU weights (a copy on CUDA), about 4x cheaper
  per env step than a batch-of-one torch call.
* A training phase draws all its minibatch indices at once and moves the whole phase's data to
  the device in one transfer. The target network does not change during a phase, so the
  bootstrap term max_a' Q_θ⁻(s', a') is computed for every minibatch in one batched forward.
* Losses are averaged on the device and read once per phase (no per-step ``.item()``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch import nn

from forgelab.agents.checks import check_dqn
from forgelab.agents.common import clip_grad_norm, episode_rows
from forgelab.agents.encoders import make_encoder
from forgelab.agents.evaluation import PolicyEvaluator
from forgelab.core.component import RunContext
from forgelab.core.device import fast_adam
from forgelab.core.errors import ConfigError
from forgelab.envs.building import final_observations
from forgelab.envs.snapshots import restore_env, snapshot_env


# ---------------------------------------------------------------------------- options
class DQNConfig(BaseModel):
    """DQN hyperparameters (defaults follow Stable-Baselines3's DQN, except a 100k buffer).

    :param learning_rate: Adam step size.
    :param buffer_size: replay buffer capacity in transitions.
    :param learning_starts: env steps of uniformly random play before learning starts.
    :param batch_size: transitions per gradient step.
    :param gamma: discount factor γ.
    :param tau: Polyak coefficient of the target update (1 = hard copy).
    :param target_update_interval: env steps between target-network updates.
    :param train_freq: env steps between training phases.
    :param gradient_steps: gradient steps per training phase (-1: as many as env steps collected).
    :param exploration_fraction: fraction of ``train.total_steps`` over which ε decays.
    :param exploration_initial_eps: ε at the start of the decay.
    :param exploration_final_eps: ε after the decay.
    :param max_grad_norm: clip the global gradient norm to this value (None: no clipping).
    :param loss: ``huber`` (smooth L1, δ = 1, as in Mnih et al.) or ``mse``.
    :param double_q: use the Double DQN target.
    :param dueling: use a dueling head V(s) + A(s, a) − mean A.
    :param net_arch: hidden layer widths of the Q-network.
    :param activation: hidden-layer non-linearity.
    :param save_replay_buffer: put the replay buffer in checkpoints (exact resume; larger files).

    CPU threads are the experiment's top-level ``threads`` key (``torch_threads`` here is read
    as an alias of it).
    """

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-4, gt=0, description="Adam step size")
    buffer_size: PositiveInt = Field(100_000, description="replay buffer capacity (transitions)")
    learning_starts: int = Field(100, ge=0, description="random env steps before learning")
    batch_size: PositiveInt = Field(32, description="transitions per gradient step")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    tau: float = Field(1.0, gt=0, le=1, description="target update coefficient (1 = hard copy)")
    target_update_interval: PositiveInt = Field(10_000, description="env steps between target "
                                                "updates")
    train_freq: PositiveInt = Field(4, description="env steps between training phases")
    gradient_steps: int = Field(1, ge=-1, description="gradient steps per training phase "
                                "(-1: one per env step collected)")
    exploration_fraction: float = Field(0.1, ge=0, le=1, description="fraction of training over "
                                        "which epsilon decays")
    exploration_initial_eps: float = Field(1.0, ge=0, le=1, description="initial epsilon")
    exploration_final_eps: float = Field(0.05, ge=0, le=1, description="final epsilon")
    max_grad_norm: float | None = Field(10.0, gt=0, description="gradient-norm clip (null: off)")
    loss: Literal["huber", "mse"] = Field("huber", description="TD loss")
    double_q: bool = Field(False, description="Double DQN target (van Hasselt et al. 2016)")
    dueling: bool = Field(False, description="dueling head (Wang et al. 2016)")
    net_arch: list[PositiveInt] = Field([64, 64], min_length=1, description="hidden layer widths")
    activation: Literal["relu", "tanh"] = Field("relu", description="hidden non-linearity")
    encoder: Literal["auto", "mlp", "nature", "minatar"] = Field(
        "auto", description="observation encoder: auto (a CNN for uint8/bool images: nature "
        "for 84x84 frames, minatar for small grids; else mlp), or one of them")
    # On by default: a resume is then the exact continuation of the uninterrupted run (without
    # the buffer, a CartPole run stopped half-way ended at return 118 instead of 227).
    save_replay_buffer: bool = Field(True, description="include the replay buffer in "
                                     "checkpoints (exact resume; false: smaller checkpoints)")
    optimize_memory_usage: bool = Field(False, description="store each observation once (s' "
                                        "is read from the next slot; half the memory for "
                                        "images; needs buffer_size divisible by env.num_envs)")

    @model_validator(mode="after")
    def _consistent(self) -> DQNConfig:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size "
                             f"({self.buffer_size})")
        if self.gradient_steps == 0:
            raise ValueError("gradient_steps must be positive, or -1 for one per env step")
        return self


# ----------------------------------------------------------------------- replay buffer
class ReplayBuffer:
    """A ring buffer of transitions (s, a, r, s', terminated) in preallocated NumPy arrays.

    Observations keep the env's dtype (uint8 images stay small) and are cast for training.

    :param capacity: maximum number of transitions; the oldest are overwritten.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
                 optimize_memory: bool = False, n_envs: int = 1) -> None:
        from forgelab.core.faults import check_memory

        # Checked before allocating: Linux hands out np.zeros of any size and kills the
        # process when the buffer fills up, hours later.
        copies = 1 if optimize_memory else 2
        per_item = copies * int(np.prod(obs_shape)) * np.dtype(obs_dtype).itemsize + 8 + 4 + 4
        check_memory(capacity * per_item, "the replay buffer", "agent.buffer_size")
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        # optimize_memory: s' of slot i is the observation in slot i + n_envs (the same env's
        # next step), except for the newest n_envs slots (their s' is kept in `latest`) and for
        # transitions that ended an episode (their true last observation is kept in `finals`).
        self.optimize_memory, self.n_envs = optimize_memory, n_envs
        self.next_obs = None if optimize_memory else np.zeros((capacity, *obs_shape),
                                                              dtype=obs_dtype)
        self.latest = np.zeros((n_envs, *obs_shape), dtype=obs_dtype)
        self.finals: dict[int, np.ndarray] = {}
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0  # next slot to write
        self.size = 0  # filled slots

    def add(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
            rewards: np.ndarray, terminated: np.ndarray,
            ended: np.ndarray | None = None) -> None:
        """Store one transition per env (arrays with a leading ``num_envs`` axis).

        :param ended: (optimize_memory) which envs' episodes ended on this step: their
            ``next_obs`` is the true last observation, not the one the env continues from.
        """
        n = len(actions)
        if self.pos + n <= self.capacity:  # the common case: one contiguous slice
            slots: slice | np.ndarray = slice(self.pos, self.pos + n)
        else:
            slots = (self.pos + np.arange(n)) % self.capacity
        self.obs[slots] = obs
        if self.next_obs is not None:
            self.next_obs[slots] = next_obs
        else:
            for slot in range(self.pos, self.pos + n):
                self.finals.pop(slot % self.capacity, None)  # that slot's old transition
            if ended is not None:
                for i in np.flatnonzero(ended):
                    self.finals[(self.pos + int(i)) % self.capacity] = np.array(next_obs[i])
            self.latest[...] = next_obs
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.terminated[slots] = terminated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def next_observations(self, idx: np.ndarray) -> np.ndarray:
        """s' of the transitions in slots ``idx`` (any shape)."""
        if self.next_obs is not None:
            return self.next_obs[idx]
        n = self.n_envs
        out = self.obs[(idx + n) % self.capacity]
        flat, shape = out.reshape(-1, *self.obs.shape[1:]), idx.shape
        for k, slot in enumerate(idx.reshape(-1).tolist()):
            if slot in self.finals:
                flat[k] = self.finals[slot]
            elif (self.pos - slot - 1) % self.capacity < n:  # newest: s' not written yet
                flat[k] = self.latest[slot % n]
        return flat.reshape(*shape, *self.obs.shape[1:])

    def state_dict(self) -> dict[str, Any]:
        n = self.size  # the filled part only
        state = {"pos": self.pos, "size": n, "obs": self.obs[:n].copy(),
                 "actions": self.actions[:n].copy(),
                 "rewards": self.rewards[:n].copy(), "terminated": self.terminated[:n].copy()}
        if self.next_obs is not None:
            state["next_obs"] = self.next_obs[:n].copy()
        else:
            slots = sorted(self.finals)
            state.update(latest=self.latest.copy(), final_slots=np.array(slots, np.int64),
                         finals=np.stack([self.finals[i] for i in slots]) if slots else
                         np.zeros((0, *self.obs.shape[1:]), self.obs.dtype))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        names = ["obs", "actions", "rewards", "terminated"]
        for name in names + (["next_obs"] if self.next_obs is not None else []):
            getattr(self, name)[:n] = _numpy(state[name])
        if self.next_obs is None:
            self.latest[...] = _numpy(state["latest"])
            finals = _numpy(state["finals"])
            self.finals = {int(s): finals[k].copy()
                           for k, s in enumerate(_numpy(state["final_slots"]).tolist())}
        self.pos, self.size = int(state["pos"]), n


# --------------------------------------------------------------------------- Q-network
class QNetwork(nn.Module):
    """Q_θ(s, ·): an MLP over the flattened observation, one output per action.

    With ``dueling``: Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a') on a shared body (the
    mean-subtracted form of Wang et al., eq. 9, which makes V and A identifiable).
    """

    def __init__(self, obs_dim: int, n_actions: int, net_arch: list[int], activation: str,
                 dueling: bool, encoder: nn.Module | None = None) -> None:
        super().__init__()
        # A convolutional encoder (agents/encoders.py) for images: raw uint8/bool batches in,
        # features out; the MLP below then works on its features.
        self.encoder = encoder
        if encoder is not None:
            obs_dim = encoder.out_features
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = []
        sizes = [obs_dim, *net_arch]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), act()]
        self.body = nn.Sequential(*layers)
        self.dueling = dueling
        self.head = nn.Linear(sizes[-1], n_actions)  # Q(s, ·), or A(s, ·) when dueling
        self.value = nn.Linear(sizes[-1], 1) if dueling else None
        self._linears = [m for m in self.body if isinstance(m, nn.Linear)]
        self._act = torch.relu if activation == "relu" else torch.tanh

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # The layers called directly (the same F.linear and activation nn.Sequential calls):
        # at batch 32-64 the module-call overhead is a visible part of a gradient step.
        if self.encoder is not None:
            h = self.encoder(obs)
        else:  # (a vector batch is already flat: no call)
            h = obs if obs.dim() == 2 else obs.flatten(1)
        for layer in self._linears:
            h = self._act(F.linear(h, layer.weight, layer.bias))
        out = F.linear(h, self.head.weight, self.head.bias)
        if self.value is not None:
            out = F.linear(h, self.value.weight, self.value.bias) + out - out.mean(dim=1,
                                                                                 keepdim=True)
        return out


class NumpyGreedy:
    """argmax_a Q_θ(s, a) computed in NumPy from the network's weights (fast batch-of-one acting).

    On CPU the arrays are views of the parameters, so they follow every optimizer step; on
    another device :meth:`sync` copies them back after each training phase.
    """

    def __init__(self, net: QNetwork, activation: str) -> None:
        self.net = net
        self.tanh = activation == "tanh"
        self.sync()

    def sync(self) -> None:
        def arr(p: torch.Tensor) -> np.ndarray:
            return p.detach().cpu().numpy() if p.device.type != "cpu" else p.detach().numpy()

        linears = [m for m in self.net.body if isinstance(m, nn.Linear)]
        self.body = [(arr(m.weight).T, arr(m.bias)) for m in linears]
        self.head = (arr(self.net.head.weight).T, arr(self.net.head.bias))
        self.value = None if self.net.value is None else (arr(self.net.value.weight).T,
                                                          arr(self.net.value.bias))

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        h = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for w, b in self.body:
            h = h @ w
            h += b  # in place: one array fewer per layer (the same sums)
            np.tanh(h, out=h) if self.tanh else np.maximum(h, 0, out=h)
        q = h @ self.head[0]
        q += self.head[1]
        if self.value is not None:
            q = h @ self.value[0] + self.value[1] + q - q.mean(axis=1, keepdims=True)
        return q

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


class TorchGreedy:
    """argmax_a Q_θ(s, a) with the torch network (image observations: convolutions are not
    worth redoing in NumPy); the same interface as :class:`NumpyGreedy`."""

    def __init__(self, net: QNetwork, device: torch.device) -> None:
        self.net, self.device = net, device

    def sync(self) -> None:
        pass  # it reads the live parameters

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        return self.net(torch.as_tensor(np.asarray(obs), device=self.device)).cpu().numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


# ------------------------------------------------------------------------------- agent
class DQN:
    """Deep Q-Network agent (discrete actions, one or several envs).

    :param options: validated :class:`DQNConfig`.
    :param ctx: the run context (envs, device, tracker, checkpoints, schedule).
    :raises ConfigError: when the env's action space is not ``Discrete`` or its observation
        space is not a ``Box``.
    """

    def __init__(self, options: DQNConfig, ctx: RunContext) -> None:
        self.options, self.ctx = options, ctx
        self.envs = ctx.inputs.make_vec_env()
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        try:  # the runner ran this check before the run began; an agent built directly too
            check_dqn(options, ctx.config, (obs_space, act_space))
        except ConfigError:
            self.envs.close()
            raise
        self.n_envs = self.envs.num_envs
        self.n_actions = int(act_space.n)
        self.device = ctx.device
        obs_dim = int(np.prod(obs_space.shape))

        # θ and θ⁻ start equal; θ⁻ never receives gradients.
        self.q_net = QNetwork(obs_dim, self.n_actions, options.net_arch, options.activation,
                              options.dueling,
                              make_encoder(obs_space, options.encoder)).to(self.device)
        self.target_net = QNetwork(obs_dim, self.n_actions, options.net_arch,
                                   options.activation, options.dueling,
                                   make_encoder(obs_space, options.encoder)).to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.params = list(self.q_net.parameters())  # listed once: clipping walks it every step
        self.optimizer = fast_adam(self.params, lr=options.learning_rate)
        # Images keep their dtype (uint8/bool) up to the device, where the encoder scales them.
        self.images = self.q_net.encoder is not None
        self.greedy = (TorchGreedy(self.q_net, self.device) if self.images else
                       NumpyGreedy(self.q_net, options.activation))
        self.buffer = ReplayBuffer(options.buffer_size, obs_space.shape, obs_space.dtype,
                                   options.optimize_memory_usage, self.n_envs)
        self.rng = np.random.default_rng(ctx.seed)  # ε-greedy and minibatch sampling

        self.step = 0  # env steps so far (all envs)
        self.n_updates = 0  # gradient steps so far
        self._collected = 0  # env steps since the last training opportunity
        self.obs: np.ndarray | None = None  # current observation of every env
        self._stats = np.zeros(3)  # Σ td_loss, Σ q_mean, count, since the last log row
        # Each gradient step's loss and Q(s, a), still tensors, and the training phases they
        # came in: read back (one transfer, a few tensor ops fewer per sparse-update phase)
        # when a row is logged or saved, or when many are pending (_fold_stats).
        self._losses: list[torch.Tensor] = []
        self._q_taken: list[torch.Tensor] = []
        self._phases: list[int] = []
        self.evaluator = PolicyEvaluator.for_run(ctx)
        self._recent: list[float] = []  # returns of the last episodes, for the progress bar

    # ------------------------------------------------------------------- schedules
    def epsilon(self, step: int) -> float:
        """ε(t) = ε₀ + (ε₁ − ε₀) · min(1, t / (fraction · T)), T = ``train.total_steps``."""
        o = self.options
        horizon = o.exploration_fraction * self.ctx.budget
        progress = 1.0 if horizon <= 0 else min(1.0, step / horizon)
        return o.exploration_initial_eps + progress * (o.exploration_final_eps -
                                                       o.exploration_initial_eps)

    # ---------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """ε-greedy: a uniformly random action with probability ε (per env), else argmax Q."""
        if self.n_envs == 1:
            # Scalar draws: the same numbers from the same stream as the size-1 arrays below,
            # at a third of the cost (a tenth of a sparse-update step went to these draws).
            random_action = self.rng.integers(self.n_actions)
            if self.rng.random() < epsilon:
                return np.array([random_action])
            return self.greedy(obs)
        random_actions = self.rng.integers(self.n_actions, size=self.n_envs)
        explore = self.rng.random(self.n_envs) < epsilon
        if explore.all():
            return random_actions  # skip the forward pass
        return np.where(explore, random_actions, self.greedy(obs))

    def actions(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations: greedy, or ε-greedy with the final ε
        (``exploration_final_eps``) when not ``deterministic``, as SB3's ``predict`` does."""
        obs = np.asarray(obs, dtype=np.float32)
        greedy = self.greedy(obs)
        if deterministic:
            return greedy
        explore = self.rng.random(len(obs)) < self.options.exploration_final_eps
        return np.where(explore, self.rng.integers(self.n_actions, size=len(obs)), greedy)

    # -------------------------------------------------------------------- training
    def fit(self) -> None:
        ctx, o = self.ctx, self.options
        if self.obs is None:  # a fresh run; a resumed one continues mid-episode
            self.obs, _ = self.envs.reset(seed=ctx.seed)
        # ε stays at its final value after the exploration horizon: computed once
        horizon, final_eps = o.exploration_fraction * ctx.budget, self.epsilon(ctx.budget)
        while self.step < ctx.budget and not ctx.stop_requested:
            last = self.step
            # 1. Act ε-greedily (uniformly at random while the buffer warms up).
            eps = (1.0 if self.step < o.learning_starts else
                   final_eps if self.step >= horizon else self.epsilon(self.step))
            actions = self.act(self.obs, eps)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
            # 2. Store (s, a, r, s', terminated); s' is the real last observation of an episode
            #    that just ended (the env already shows the next episode's first one).
            self.buffer.add(self.obs, final_observations(next_obs, infos), actions, rewards,
                            terminated, infos.get("_final_obs"))
            self.obs = next_obs
            self.step += self.n_envs
            episodes = episode_rows(infos, self.step)
            if episodes:
                self._recent = (self._recent + [r["train/episode_return"]
                                                for r, _ in episodes])[-20:]
            # 3. Target network: θ⁻ ← τ θ + (1 − τ) θ⁻ at every target_update_interval mark.
            crossed = self.step // o.target_update_interval - last // o.target_update_interval
            if crossed:
                self.update_target(crossed)
            # 4. Learn every train_freq env steps once learning_starts steps are collected.
            #    The buffer must hold min(learning_starts, capacity) transitions too: a resume
            #    without the saved buffer refills it first instead of sampling batches from a
            #    handful of transitions (in a fresh run the second test always holds).
            self._collected += self.n_envs
            if self.step // o.train_freq > last // o.train_freq:
                if (self.step > o.learning_starts
                        and self.buffer.size >= min(o.learning_starts, self.buffer.capacity)):
                    self.train(o.gradient_steps if o.gradient_steps > 0 else self._collected)
                self._collected = 0
            # 5. Log, evaluate when due, checkpoint, progress: the one call per env step.
            metrics = self.metrics(eps) if ctx.log_due(self.step) else None
            ctx.update(self, self.step, metrics, rows=episodes,
                       show=self.shown(metrics) if episodes or metrics else None)

    def update_target(self, times: int = 1) -> None:
        """Apply ``times`` Polyak updates at once: θ⁻ ← θ + (1 − τ)^times (θ⁻ − θ)."""
        weight = 1.0 - (1.0 - self.options.tau) ** times  # = τ for one update, 1 for a copy
        with torch.no_grad():
            for target, online in zip(self.target_net.parameters(), self.q_net.parameters(),
                                      strict=True):
                if weight >= 1.0:
                    target.copy_(online)
                else:
                    target.lerp_(online, weight)

    def train(self, gradient_steps: int) -> None:
        """``gradient_steps`` steps of minibatch gradient descent on the TD loss."""
        o, b = self.options, self.buffer
        # Indices for the whole phase at once; chunked so the gathered data stays small.
        per_step = o.batch_size * int(np.prod(b.obs.shape[1:]))
        chunk = max(1, min(gradient_steps, (1 << 22) // max(per_step, 1)))
        for start in range(0, gradient_steps, chunk):
            g = min(chunk, gradient_steps - start)
            # g minibatches of B, one after the other: (g·B, ...) tensors
            idx = self.rng.integers(0, b.size, size=g * o.batch_size)
            obs_dtype = None if self.images else torch.float32  # images: as stored
            obs = self._tensor(b.obs[idx], obs_dtype)  # (g·B, *obs_shape)
            next_obs = self._tensor(b.next_observations(idx), obs_dtype)
            actions = self._tensor(b.actions[idx], torch.int64).unsqueeze(-1)  # (g·B, 1)
            rewards = self._tensor(b.rewards[idx], torch.float32)  # (g·B,)
            # γ (1 − d) in NumPy: the same float32 values, two tensor ops fewer per phase
            discount = self._tensor(o.gamma * (1.0 - b.terminated[idx]), torch.float32)
            with torch.no_grad():  # θ⁻ is fixed for the whole phase: one batched forward
                next_q_target = self.target_net(next_obs)
                if not o.double_q:
                    # y = r + γ (1 − d) max_a' Q_θ⁻(s', a')
                    targets = rewards + discount * next_q_target.max(-1).values
            for i in range(g):
                # the i-th minibatch's rows (all of them, with no slicing call, when g is 1)
                rows = _all_rows if g == 1 else slice(i * o.batch_size, (i + 1) * o.batch_size)
                if o.double_q:
                    with torch.no_grad():
                        # y = r + γ (1 − d) Q_θ⁻(s', argmax_a' Q_θ(s', a'))
                        best = self.q_net(_take(next_obs, rows)).argmax(dim=1, keepdim=True)
                        y = _take(rewards, rows) + _take(discount, rows) * _take(
                            next_q_target, rows).gather(1, best).squeeze(1)
                else:
                    y = _take(targets, rows)
                q = self.q_net(_take(obs, rows)).gather(1, _take(actions, rows)).squeeze(1)
                loss = F.smooth_l1_loss(q, y) if o.loss == "huber" else 0.5 * F.mse_loss(q, y)
                for p in self.params:  # = optimizer.zero_grad(set_to_none=True), minus its
                    p.grad = None  # dispatch overhead (a tenth of a sparse-update step)
                loss.backward()
                if o.max_grad_norm is not None:
                    clip_grad_norm(self.params, o.max_grad_norm, rarely_clipped=True)
                self.optimizer.step()
                self._losses.append(loss.detach())
                self._q_taken.append(q.detach())
        self.n_updates += gradient_steps
        self._phases.append(gradient_steps)
        if len(self._losses) >= _MAX_PENDING:  # (a long log_every would hold them all)
            self._fold_stats()
        if self.device.type != "cpu":
            self.greedy.sync()

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cpu" and dtype in (None, tensor.dtype):
            return tensor  # already there: skip the call (five per sparse-update step)
        return tensor.to(self.device, dtype) if dtype is not None else tensor.to(self.device)

    def _fold_stats(self) -> None:
        """Add the pending phases' TD losses and mean Q(s, a) to the running sums, phase by
        phase: a phase's float32 sum (its value when it had one step), then float64 sums over
        phases, so the logged values do not depend on when the pending ones are read."""
        if not self._losses:
            return
        with torch.no_grad():
            q_means = torch.stack(self._q_taken).mean(dim=1)  # = each q.mean(), exactly
            if all(count == 1 for count in self._phases):  # sparse updates: one read
                per_phase = torch.stack([torch.stack(self._losses), q_means]).T.tolist()
            else:
                sums, start = [], 0
                for count in self._phases:
                    part = slice(start, start + count)
                    sums.append(torch.stack([torch.stack(self._losses[part]).sum(),
                                             torch.stack(list(q_means[part])).sum()]))
                    start += count
                per_phase = torch.stack(sums).tolist()
        for (loss_sum, q_sum), count in zip(per_phase, self._phases, strict=True):
            self._stats += (loss_sum, q_sum, count)
        self._losses, self._q_taken, self._phases = [], [], []

    def metrics(self, epsilon: float) -> dict[str, float]:
        """The training row: ε, gradient steps so far, and the mean TD loss and Q since the
        last row."""
        row = {"train/epsilon": epsilon, "train/n_updates": self.n_updates}
        self._fold_stats()
        loss_sum, q_sum, count = self._stats
        if count:
            row.update({"train/td_loss": loss_sum / count, "train/q_mean": q_sum / count})
        self._stats[:] = 0
        return row

    def shown(self, metrics: dict[str, float] | None) -> dict[str, float]:
        """The progress bar's values: the recent mean return; ε and the loss when logged."""
        shown = {"return": float(np.mean(self._recent))} if self._recent else {}
        if metrics is not None:
            shown.update(eps=round(metrics["train/epsilon"], 3),
                         loss=metrics.get("train/td_loss", float("nan")))
        return shown

    # ------------------------------------------------------------------ evaluation
    def close(self) -> None:
        """Close the training envs (async workers) and the evaluation env; the runner calls it
        after the run's last checkpoint."""
        self.envs.close()
        self.evaluator.close()

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        """The training loop's scheduled evaluation: greedy episodes, ``eval/*``."""
        return self.evaluator.evaluate(self.actions, self.step, video, batched=True)

    def evaluate(self) -> dict[str, float]:
        """``forgelab eval``: one evaluation now, with a video."""
        return self.evaluator.evaluate(self.actions, self.step, video=True, batched=True)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        self._fold_stats()
        state = {
            "step": self.step,
            "n_updates": self.n_updates,
            "collected": self._collected,
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "stats": self._stats.copy(),
        }
        if self.obs is not None:  # mid-episode state, to continue exactly where we stopped
            state["obs"] = self.obs.copy()
            state["envs"] = snapshot_env(self.envs)
        if self.options.save_replay_buffer:
            state["buffer"] = self.buffer.state_dict()
        return state

    @property
    def resume_note(self) -> str | None:
        """Said when a run resumes: without the saved buffer the continuation is not exact."""
        if self.options.save_replay_buffer:
            return None
        n = min(self.options.learning_starts, self.options.buffer_size)
        refill = f" and training pauses until it holds {n} new transitions" if n else ""
        return (f"agent.save_replay_buffer is false, so the replay buffer starts empty again"
                f"{refill}: this resume is not an exact continuation of the stopped run")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.n_updates = int(state["n_updates"])
        self._collected = int(state["collected"])
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self._stats = _numpy(state["stats"]).astype(np.float64)
        self._losses, self._q_taken, self._phases = [], [], []
        if "obs" in state:
            self.obs = _numpy(state["obs"])
            restore_env(self.envs, state["envs"])
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
        self.greedy.sync()


_all_rows = slice(None)
_MAX_PENDING = 4096  # gradient steps' stats held as tensors before they are read back


def _take(tensor: torch.Tensor, rows: slice) -> torch.Tensor:
    """``tensor[rows]``, or ``tensor`` itself for all rows (a sparse update's one minibatch:
    indexing would cost a tensor call for nothing)."""
    return tensor if rows is _all_rows else tensor[rows]


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

