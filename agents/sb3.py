"""Stable-Baselines3 algorithms run as forgelab agents.

SB3 (Raffin et al. 2021, "Stable-Baselines3: Reliable Reinforcement Learning Implementations",
JMLR 22(268), https://jmlr.org/papers/v22/20-1364.html) implements each algorithm carefully and
has been benchmarked for years; this adapter lets it run through forgelab's runner unchanged, so
an SB3 run and a native run of the same experiment are compared metric for metric. The
algorithms' equations are in the option classes' docstrings (:mod:`forgelab.agents.sb3_options`)
and, in full, in SB3's source.

What the adapter does, top to bottom:

1. **Environment.** The experiment's ``env`` section is built with forgelab's own
   :func:`~forgelab.envs.building.make_env` (same wrappers, raw episode statistics) and
   wrapped in SB3's ``DummyVecEnv`` (``vectorization: sync``) or ``SubprocVecEnv`` (``async``).
   The algorithm is constructed with ``seed=ctx.seed``, so sub-env ``i`` is reset with
   ``seed + i``, as in forgelab's own vector envs. An algorithm that cannot act in the env's
   action space (DQN on ``Box``, SAC on ``Discrete``) is a :class:`ConfigError` here, before
   any SB3 code runs.
2. **Logging.** SB3's ``Logger`` gets one output format, :class:`TrackerWriter`, that renames
   SB3's keys to forgelab's metric names (:data:`METRIC_NAMES`) and keeps the rows for the
   next ``ctx.update``. Because a logger is given before ``learn``, SB3 never creates its default
   ``$TMPDIR/SB3-<date>`` folder.
3. **Training loop hooks.** A ``BaseCallback`` runs after every vector step and makes the
   step's one ``ctx.update``: SB3's rows and the finished episodes (``train/episode_return``)
   are logged, the loop evaluates when due (:class:`~forgelab.agents.evaluation.PolicyEvaluator`:
   deterministic episodes, rollout videos; the loop keeps the ``best`` checkpoint), writes
   periodic checkpoints and moves the progress bar. It returns ``False`` once Ctrl-C / SIGTERM
   asked the run to stop, which makes SB3's ``learn`` return so the runner can checkpoint.
4. **Checkpoints.** ``save_files`` writes SB3's own ``model.zip`` (usable with
   ``PPO.load("model.zip")`` outside forgelab) and, with ``save_replay_buffer: true``, the
   replay buffer as a NumPy ``.npz``. ``load_files`` reads only the ``.pth`` tensors inside the
   zip (SB3 loads those with ``torch.load(weights_only=True)``) and the ``.npz`` with
   ``allow_pickle=False``: nothing pickled is ever unpickled. (``PPO.load`` would also read the
   zip's ``data`` entry, whose non-JSON values, such as schedules and spaces, are cloudpickled,
   so it must not be used on untrusted files; forgelab never calls it.) Step counters, SB3's
   episode window and the exploration RNG go in ``state_dict``.

Resuming continues the step counter (``learn(..., reset_num_timesteps=False)``) with the saved
networks, optimizers and counters; the environments start fresh episodes (seeded with
``seed + step``), and an on-policy rollout that was cut by the checkpoint is collected again.
Without a saved replay buffer, an off-policy run refills ``learning_starts`` transitions first.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from forgelab.agents.evaluation import PolicyEvaluator
from forgelab.agents.experiment import EnvSpec
from forgelab.agents.sb3_options import OPTIONS, SB3Options, schedule_start
from forgelab.core.component import RunContext
from forgelab.core.config import ExperimentConfig
from forgelab.core.errors import ConfigError, ForgelabError
from forgelab.envs.building import make_env

MODEL_FILE = "model.zip"
BUFFER_FILE = "replay_buffer.npz"

# ---------------------------------------------------------------------- metric names
#: SB3 logger key -> forgelab metric name; None drops the key (it is the step axis itself).
#: Keys not listed keep their name when they are in a forgelab namespace (``train/...``).
METRIC_NAMES: dict[str, str | None] = {
    "time/fps": "perf/sps",
    "time/total_timesteps": None,
    "time/time_elapsed": "perf/time_elapsed",
    "time/iterations": "train/iterations",
    "time/episodes": "train/episodes",
    "rollout/ep_rew_mean": "train/episode_return_mean",  # SB3's rolling mean (100 episodes)
    "rollout/ep_len_mean": "train/episode_length_mean",
    "rollout/success_rate": "train/success_rate",
    "rollout/exploration_rate": "train/epsilon",
    "train/policy_gradient_loss": "train/policy_loss",
}
NAMESPACES = ("train", "eval", "rollout", "perf")


def forgelab_metric(key: str, value: Any,
                    renames: dict[str, str | None]) -> tuple[str, float] | None:
    """``(forgelab name, value)`` of one SB3 logger entry, or None when it is not logged."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (int, float)):  # SB3 can log videos, figures, text: not scalars
        return None
    if key == "train/entropy_loss":
        # SB3 logs the loss term -H(pi); forgelab logs the entropy H itself.
        return "train/entropy", -float(value)
    name = renames.get(key, METRIC_NAMES.get(key, key))
    if name is None:
        return None
    if name.split("/", 1)[0] not in NAMESPACES:  # e.g. a user callback's "custom/x"
        name = "train/" + name.replace("/", "_")
    return name, value


class TrackerWriter(KVWriter):
    """An SB3 logger output format that keeps SB3's rows, renamed to forgelab's metric names,
    for the run's next ``ctx.update`` (:meth:`take`).

    Rows are kept at most once per ``train.log_every`` env steps, like the native agents'
    ``train/`` rows (on-policy SB3 dumps its logger after every rollout, which can be often).

    :param renames: per-algorithm renames on top of :data:`METRIC_NAMES`.
    :param log_every: env steps between kept rows.
    """

    def __init__(self, renames: dict[str, str | None], log_every: int) -> None:
        self.renames = renames
        self.log_every = log_every
        self._last_step: int | None = None
        self._rows: list[tuple[dict[str, float], int]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
              step: int = 0) -> None:
        every = self.log_every
        if self._last_step is not None and step // every <= self._last_step // every:
            return
        metrics = dict(filter(None, (forgelab_metric(k, v, self.renames)
                                     for k, v in key_values.items())))
        if metrics:
            self._rows.append((metrics, int(step)))
            self._last_step = step

    def take(self) -> list[tuple[dict[str, float], int]]:
        """The rows written since the last call, as ``(row, step)``."""
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- environments
def _make_one(spec: EnvSpec) -> gym.Env:
    """One training env; in a ``SubprocVecEnv`` worker, plugin envs are registered first."""
    if spec.id not in gym.registry:
        from forgelab.envs.registration import apply_env_registrations

        apply_env_registrations()
    return make_env(spec)


def make_sb3_vec_env(spec: EnvSpec) -> VecEnv:
    """``spec.num_envs`` forgelab envs as an SB3 VecEnv (seeded later by the algorithm)."""
    thunks = [partial(_make_one, spec) for _ in range(spec.num_envs)]
    return SubprocVecEnv(thunks) if spec.vectorization == "async" else DummyVecEnv(thunks)


def check_action_space(agent: str, options: SB3Options, env_id: str, space: gym.Space) -> None:
    """Raise a :class:`ConfigError` when the algorithm cannot act in ``space``."""
    kind = type(space).__name__
    if kind in options.action_spaces:
        return
    fitting = sorted(name for name, cls in OPTIONS.items() if kind in cls.action_spaces)
    raise ConfigError(
        f"agent {agent!r} ({options.algorithm}) needs a {' or '.join(options.action_spaces)} "
        f"action space, but {env_id} has {space}",
        hint=(f"agents for {kind} actions: {', '.join(fitting)}" if fitting
              else f"no SB3 agent here supports {kind} actions"),
    )


def check_policy(agent: str, options: SB3Options, env_id: str, space: gym.Space) -> None:
    """``MultiInputPolicy`` is for ``Dict`` observations and only it is (SB3 fails obscurely)."""
    is_dict = isinstance(space, gym.spaces.Dict)
    if is_dict != (options.policy == "MultiInputPolicy"):
        raise ConfigError(
            f"agent {agent!r}: policy {options.policy} does not fit {env_id}'s observation "
            f"space {space}",
            hint=("use policy: MultiInputPolicy for Dict observations" if is_dict else
                  "MultiInputPolicy is for Dict observations; use MlpPolicy (or CnnPolicy "
                  "for images)"))


def check_experiment(options: SB3Options, config: ExperimentConfig,
                     spaces: tuple[gym.Space, gym.Space]) -> None:
    """Registration check: the runner calls it before a run directory exists (and on
    ``--dry-run``), so a mismatched algorithm fails in a second, not after W&B started."""
    observation_space, action_space = spaces
    check_action_space(config.agent, options, config.env.id, action_space)
    check_policy(config.agent, options, config.env.id, observation_space)


def _first_lines(message: str, n: int = 2) -> str:
    """SB3's own messages can run to many lines of links; the first ones say what is wrong."""
    return "\n".join(str(message).strip().splitlines()[:n])


# ------------------------------------------------------------------- SB3 arguments
class LinearSchedule:
    """RL Zoo's ``lin_<start>``: ``value(p) = start * p``, where SB3's ``p`` is the fraction of
    training remaining (1 at the start, 0 at the end)."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining

    def __repr__(self) -> str:
        return f"lin_{self.start}"


def sb3_arguments(options: SB3Options, action_space: gym.Space) -> dict[str, Any]:
    """The SB3 constructor's keyword arguments: schedules, class names and the action noise
    turned into the Python objects SB3 expects."""
    kwargs = options.sb3_kwargs()
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = LinearSchedule(schedule_start(kwargs[key]))
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = getattr(torch.nn, policy_kwargs["activation_fn"])
    if "optimizer_class" in policy_kwargs:
        policy_kwargs["optimizer_class"] = getattr(torch.optim, policy_kwargs["optimizer_class"])
    kwargs["policy_kwargs"] = policy_kwargs or None
    for key in ("replay_buffer_kwargs", "rollout_buffer_kwargs"):
        if key in kwargs:
            kwargs[key] = kwargs[key] or None
    if kwargs.get("action_noise"):
        # SB3 adds the noise to actions scaled to [-1, 1], so the std is a fraction of the range.
        n_actions = int(np.prod(action_space.shape))
        mean, sigma = np.zeros(n_actions), options.action_noise_std * np.ones(n_actions)
        noise_class = (NormalActionNoise if kwargs["action_noise"] == "normal"
                       else OrnsteinUhlenbeckActionNoise)
        kwargs["action_noise"] = noise_class(mean=mean, sigma=sigma)
    return kwargs


# ------------------------------------------------------------------------ callback
class _RunCallback(BaseCallback):
    """Runs after every vector step inside SB3's ``learn``: the step's ``ctx.update`` (SB3's
    logged rows, finished episodes, evaluation, checkpoints, progress) and the stop request.

    Steps past the budget (an on-policy rollout is always collected whole) are reported once,
    after ``learn`` returns, so training ends on an evaluation of the final model."""

    def __init__(self, agent: SB3Agent) -> None:
        super().__init__(verbose=0)
        self.agent = agent

    def _on_step(self) -> bool:
        agent, ctx = self.agent, self.agent.ctx
        step = int(self.model.num_timesteps)
        agent.step = step
        agent.rows += agent.writer.take()  # on-policy: the row SB3 dumped after its rollout
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")  # set by RecordEpisodeStatistics: the raw return
            if episode is not None:
                agent.rows.append(({"train/episode_return": float(episode["r"]),
                                    "train/episode_length": int(episode["l"])}, step))
                agent.recent = (agent.recent + [float(episode["r"])])[-20:]
        if agent.off_policy and ctx.log_due(step):
            # Off-policy SB3 dumps its logger only when episodes end (every `log_interval`
            # episodes); forgelab logs train/ rows every `log_every` env steps instead.
            self.model.dump_logs()
            agent.rows += agent.writer.take()
        if step < ctx.budget:
            agent.report()
        return not ctx.stop_requested  # False makes SB3's learn() return


# --------------------------------------------------------------------------- agent
#: SB3 attributes that make up its training position (saved in ``state_dict``)
COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining",
            "_n_calls", "exploration_rate")


class SB3Agent:
    """A Stable-Baselines3 algorithm as a forgelab component.

    Subclasses name the SB3 class (:attr:`algorithm_class`) and any metric renames specific to
    it; everything else is shared.

    :param options: the algorithm's options (:mod:`forgelab.agents.sb3_options`).
    :param ctx: the run context (env config, seed, device, tracker, checkpoints).
    """

    algorithm_class: ClassVar[type[BaseAlgorithm]]
    renames: ClassVar[dict[str, str | None]] = {}
    #: a resumed SB3 run starts new episodes (SB3 cannot restore its envs mid-episode), so it is
    #: not bit-identical to an uninterrupted one; forgelab.testing checks it resumes to the end
    exact_resume: ClassVar[bool] = False

    def __init__(self, options: SB3Options, ctx: RunContext) -> None:
        self.ctx = ctx
        self.options = options
        spec = ctx.config.env
        probe = make_env(spec)  # raises ConfigError for a bad env section, in this process
        action_space, observation_space = probe.action_space, probe.observation_space
        probe.close()
        check_action_space(ctx.config.agent, options, spec.id, action_space)
        check_policy(ctx.config.agent, options, spec.id, observation_space)
        self.envs = make_sb3_vec_env(spec)
        try:
            self.model = self.algorithm_class(
                env=self.envs, seed=ctx.seed, device=ctx.device, verbose=0,
                **sb3_arguments(options, action_space))
        except (ValueError, TypeError, AssertionError, KeyError) as exc:
            # SB3 checks the combination of options and env (policy vs. observation space,
            # policy_kwargs names, n_steps * n_envs > 1, ...) with asserts and ValueErrors.
            self.envs.close()
            raise ConfigError(f"agent_options: {options.algorithm} rejects these options for "
                              f"{spec.id}: {_first_lines(exc)}",
                              hint=f"`forgelab list agents` shows {ctx.config.agent}'s options"
                              ) from None
        self.writer = TrackerWriter(self.renames, ctx.train.log_every)
        self.model.set_logger(Logger(folder=None, output_formats=[self.writer]))
        self.step = 0
        self.evaluator = PolicyEvaluator.for_run(ctx)
        self._buffer_restored = False
        self.rows: list[tuple[dict[str, float], int]] = []  # rows not yet reported
        self.recent: list[float] = []  # returns of the last episodes, for the progress bar

    @property
    def off_policy(self) -> bool:
        return isinstance(self.model, OffPolicyAlgorithm)

    def actions(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations (SB3's ``predict``)."""
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    # ------------------------------------------------------------------ training
    def report(self) -> None:
        """The one ``ctx.update`` of a step: SB3's rows and the episodes that ended since the
        last one, in the order SB3 produced them."""
        rows = self.rows + self.writer.take()
        self.rows = []
        shown = {"return": float(np.mean(self.recent))} if self.recent else {}
        self.ctx.update(self, self.step, rows=rows, show=shown)

    def fit(self) -> None:
        ctx = self.ctx
        total = ctx.budget
        try:
            if self.step < total and not ctx.stop_requested:
                if self.step > 0:  # resumed: new episodes rather than a replay of the first ones
                    self.model.env.seed(ctx.seed + self.step)
                    if self.off_policy and not self._buffer_restored:
                        # the replay buffer starts empty: collect experience before updating
                        self.model.learning_starts = self.step + self.options.learning_starts
                # SB3 adds num_timesteps to the budget when reset_num_timesteps is False.
                # On-policy: SB3 dumps its logger after every rollout (log_interval=1);
                # off-policy: the callback dumps it every train.log_every steps.
                log_interval = None if self.off_policy else 1
                self.model.learn(total - self.step, callback=_RunCallback(self),
                                 log_interval=log_interval, reset_num_timesteps=False,
                                 progress_bar=False)
                self.step = int(self.model.num_timesteps)
                if self.step >= total:  # the steps at and past the budget, the final model
                    self.report()
        finally:
            self.envs.close()
            self.evaluator.close()

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        """The training loop's scheduled evaluation: deterministic episodes, ``eval/*``."""
        return self.evaluator.evaluate(self.actions, self.step, video, batched=True)

    def evaluate(self) -> dict[str, float]:
        """``forgelab eval``: one evaluation now, with a video."""
        return self.evaluator.evaluate(self.actions, self.step, video=True, batched=True)

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        model = self.model
        return {
            "step": self.step,
            "algorithm": self.options.algorithm,
            "counters": {name: getattr(model, name) for name in COUNTERS if hasattr(model, name)},
            "episodes": [[float(e["r"]), int(e["l"])] for e in (model.ep_info_buffer or ())],
            "action_space_rng": model.action_space.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("algorithm") != self.options.algorithm:
            raise ForgelabError(f"checkpoint is for {state.get('algorithm')}, "
                                f"not {self.options.algorithm}")
        self.step = int(state["step"])
        for name, value in state["counters"].items():
            setattr(self.model, name, value)
        window = self.model._stats_window_size
        self.model.ep_info_buffer = deque(({"r": r, "l": n} for r, n in state["episodes"]),
                                          maxlen=window)
        self.model.ep_success_buffer = deque(maxlen=window)  # SB3 sets both or neither
        self.model.action_space.np_random.bit_generator.state = state["action_space_rng"]

    @property
    def resume_note(self) -> str | None:
        """Said when a run resumes: SB3 runs continue closely but not bit for bit."""
        buffer = (" and its replay buffer is empty (set agent.save_replay_buffer=true to keep "
                  "it)" if self.off_policy and not self.options.save_replay_buffer else "")
        return ("an SB3 agent starts new episodes when it resumes" + buffer
                + ": this resume is not an exact continuation of the stopped run")

    def save_files(self, directory: Path) -> None:
        self.model.save(Path(directory) / MODEL_FILE)
        if self.off_policy and self.options.save_replay_buffer:
            save_replay_buffer(self.model.replay_buffer, Path(directory) / BUFFER_FILE)

    def load_files(self, directory: Path) -> None:
        path = Path(directory) / MODEL_FILE
        if not path.is_file():
            raise ForgelabError(f"checkpoint {directory} has no {MODEL_FILE}")
        # load_data=False: only the zip's tensors (torch.load weights_only=True), never the
        # cloudpickled "data" entry.
        _, params, variables = load_from_zip_file(path, device=self.model.device,
                                                  load_data=False)
        self.model.set_parameters(params, exact_match=True, device=self.model.device)
        for name, value in (variables or {}).items():  # e.g. SAC's log_ent_coef
            if value is not None:
                recursive_setattr(self.model, f"{name}.data", value.data)
        buffer = Path(directory) / BUFFER_FILE
        if self.off_policy and buffer.is_file() and self.ctx.job_type == "train":
            load_replay_buffer(self.model.replay_buffer, buffer)
            self._buffer_restored = True


# ------------------------------------------------------------------- replay buffer
_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """The buffer's arrays by name (``observations.<key>`` for Dict observations)."""
    arrays = {}
    for field in _BUFFER_FIELDS:
        value = getattr(buffer, field, None)
        if isinstance(value, dict):
            arrays.update({f"{field}.{key}": array for key, array in value.items()})
        elif value is not None:  # next_observations is None with optimize_memory_usage
            arrays[field] = value
    return arrays


def save_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Write the filled part of an SB3 replay buffer as an ``.npz`` (no pickle)."""
    size = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: array[:size] for name, array in _buffer_arrays(buffer).items()}
    with open(path, "wb") as file:
        np.savez(file, pos=np.asarray(buffer.pos), full=np.asarray(buffer.full), **arrays)


def load_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill an SB3 replay buffer from :func:`save_replay_buffer`'s file."""
    targets = _buffer_arrays(buffer)
    with np.load(path, allow_pickle=False) as data:
        for name in data.files:
            if name in {"pos", "full"}:
                continue
            array, target = data[name], targets.get(name)
            if target is None or array.shape[1:] != target.shape[1:] or len(array) > len(target):
                raise ForgelabError(f"{path}: {name} does not fit this run's replay buffer "
                                    f"(saved {array.shape}, buffer "
                                    f"{None if target is None else target.shape})")
            target[: len(array)] = array
        buffer.pos, buffer.full = int(data["pos"]), bool(data["full"])


# ------------------------------------------------------------------ the six agents
class SB3DQN(SB3Agent):
    """``sb3-dqn``: :class:`stable_baselines3.DQN`."""

    algorithm_class = DQN
    renames: ClassVar[dict[str, str | None]] = {"train/loss": "train/td_loss"}


class SB3PPO(SB3Agent):
    """``sb3-ppo``: :class:`stable_baselines3.PPO`."""

    algorithm_class = PPO


class SB3A2C(SB3Agent):
    """``sb3-a2c``: :class:`stable_baselines3.A2C`."""

    algorithm_class = A2C


class SB3SAC(SB3Agent):
    """``sb3-sac``: :class:`stable_baselines3.SAC`."""

    algorithm_class = SAC


class SB3TD3(SB3Agent):
    """``sb3-td3``: :class:`stable_baselines3.TD3`."""

    algorithm_class = TD3


class SB3DDPG(SB3Agent):
    """``sb3-ddpg``: :class:`stable_baselines3.DDPG`."""

    algorithm_class = DDPG

