"""Typed options of the Stable-Baselines3 agents (``sb3-dqn``, ``sb3-ppo``, ...).

Each class mirrors the keyword arguments of one SB3 constructor, with SB3's defaults, so an
experiment file reads like the SB3 call it stands for::

    agent: sb3-ppo
    agent_options: {n_steps: 32, batch_size: 256, learning_rate: lin_0.001, clip_range: lin_0.2}

What forgelab decides for every agent is *not* an option here: ``env`` (the experiment's
``env`` section), ``seed`` and ``device`` (top-level keys), ``verbose`` / ``tensorboard_log``
(forgelab's tracker replaces SB3's logger), ``_init_setup_model``, and arguments whose value is a
Python class (``replay_buffer_class``, ``rollout_buffer_class``). Values that are Python objects
in SB3 are written the way the RL Zoo writes them in its YAML files:

- schedules: ``learning_rate: lin_7.3e-4`` decays linearly from 7.3e-4 to 0 over training;
- ``policy_kwargs``: a mapping, with ``activation_fn: relu`` (or ``nn.ReLU``) and
  ``optimizer_class: AdamW`` as names; the Zoo's string form
  ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` is accepted too;
- ``action_noise: normal`` (+ ``action_noise_std``), the Zoo's ``noise_type`` / ``noise_std``.

This module imports pydantic only (no torch, no SB3), so ``forgelab list agents`` stays fast.
The adapter that turns these options into an SB3 algorithm is :mod:`forgelab.agents.sb3`.
"""

from __future__ import annotations

import ast
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

# ------------------------------------------------------------------------ schedules
_LINEAR = re.compile(r"^lin_(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")


def _check_schedule(value: float | str) -> float | str:
    """A number, or ``lin_<x>``: a value that decays linearly from ``x`` to 0 (RL Zoo)."""
    if isinstance(value, str):
        match = _LINEAR.match(value.strip())
        if match is None:
            try:
                return float(value)
            except ValueError:
                raise ValueError("must be a number or a linear schedule written 'lin_<start>', "
                                 "e.g. lin_0.001") from None
        if float(match["value"]) <= 0:
            raise ValueError("a linear schedule must start above 0")
        return value.strip()
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


#: A positive number or an RL Zoo linear schedule ``lin_<start>``.
Schedule = Annotated[float | str, AfterValidator(_check_schedule)]


def schedule_start(value: float | str) -> float:
    """The initial value of a :data:`Schedule` (``lin_0.001`` -> 0.001)."""
    if isinstance(value, str):
        match = _LINEAR.match(value)
        return float(match["value"]) if match else float(value)
    return float(value)


# ------------------------------------------------------------------ policy_kwargs
#: ``activation_fn`` names -> class names in ``torch.nn``
ACTIVATIONS = {
    "relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "leakyrelu": "LeakyReLU", "leaky_relu":
    "LeakyReLU", "gelu": "GELU", "silu": "SiLU", "selu": "SELU", "sigmoid": "Sigmoid",
    "mish": "Mish", "softplus": "Softplus",
}
#: ``optimizer_class`` names -> class names in ``torch.optim``
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "sgd": "SGD",
              "radam": "RAdam", "nadam": "NAdam", "adamax": "Adamax"}
# policy_kwargs whose SB3 value is a class: only the two above can be named from YAML.
_CLASS_KWARGS = {"features_extractor_class", "net_arch_class", "share_features_extractor_class"}


def _zoo_value(node: ast.AST) -> Any:
    """A literal, ``nn.ReLU`` / ``th.optim.Adam`` (kept as the name), or a nested ``dict()``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            raise ValueError("dict(...) takes keyword arguments only")
        return {kw.arg: _zoo_value(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_zoo_value(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {ast.literal_eval(k): _zoo_value(v) for k, v in zip(node.keys, node.values,
                                                                    strict=True)}
    if isinstance(node, ast.Attribute):
        return node.attr  # nn.ReLU -> "ReLU", th.optim.Adam -> "Adam"
    if isinstance(node, ast.Name) and node.id in {"True", "False", "None"}:
        return ast.literal_eval(node)
    return ast.literal_eval(node)  # raises ValueError for anything that is not a literal


def parse_zoo_dict(text: str) -> dict[str, Any]:
    """Read the RL Zoo's ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` strings.

    Parsed with :mod:`ast`, never evaluated: only literals, ``dict(...)`` and dotted names.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        value = _zoo_value(tree)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read {text!r} as a mapping ({exc}); write it as a YAML "
                         "mapping, e.g. {net_arch: [64, 64], activation_fn: relu}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a mapping")
    return value


def _named(value: Any, table: dict[str, str], what: str) -> str:
    name = str(value).rsplit(".", 1)[-1]  # "torch.nn.ReLU" / "nn.ReLU" -> "ReLU"
    key = name.lower()
    if key not in table:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(sorted(table))}")
    return table[key]


def _net_arch_ok(value: Any) -> bool:
    def sizes(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(n, int) and n > 0 for n in v)

    if isinstance(value, dict):
        return all(isinstance(k, str) and sizes(v) for k, v in value.items())
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return _net_arch_ok(value[0])  # SB3 < 1.8 form [dict(pi=[..], vf=[..])]
    return sizes(value)


def _check_policy_kwargs(value: Any) -> dict[str, Any]:
    """Check the entries whose type we know; the policy constructor checks the rest."""
    if isinstance(value, str):
        value = parse_zoo_dict(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping, e.g. {net_arch: [64, 64], activation_fn: tanh}")
    value = dict(value)
    if "activation_fn" in value:
        value["activation_fn"] = _named(value["activation_fn"], ACTIVATIONS, "activation_fn")
    if "optimizer_class" in value:
        value["optimizer_class"] = _named(value["optimizer_class"], OPTIMIZERS, "optimizer_class")
    if "net_arch" in value and not _net_arch_ok(value["net_arch"]):
        raise ValueError("net_arch must be a list of layer sizes, e.g. [64, 64], or a mapping "
                         "of lists, e.g. {pi: [64, 64], vf: [64, 64]}")
    for key in _CLASS_KWARGS & set(value):
        raise ValueError(f"{key} takes a Python class and cannot be set from an experiment file")
    return value


def _zoo_mapping(value: Any) -> Any:
    return parse_zoo_dict(value) if isinstance(value, str) else ({} if value is None else value)


PolicyKwargs = Annotated[dict[str, Any], BeforeValidator(_check_policy_kwargs)]
ExtraKwargs = Annotated[dict[str, Any], BeforeValidator(_zoo_mapping)]
TrainFreq = PositiveInt | tuple[PositiveInt, Literal["step", "episode"]]
Discount = Annotated[float, Field(gt=0, le=1)]


# ------------------------------------------------------------------------ options
class SB3Options(BaseModel):
    """What every SB3 algorithm takes.

    :param policy: SB3's policy alias: ``MlpPolicy`` (vectors), ``CnnPolicy`` (images) or
        ``MultiInputPolicy`` (``Dict`` observations).
    :param policy_kwargs: passed to the policy (``net_arch``, ``activation_fn``, ...).
    """

    model_config = ConfigDict(extra="forbid")

    #: the SB3 class these options are for, e.g. "PPO" (not an option)
    algorithm: ClassVar[str] = ""

    policy: Literal["MlpPolicy", "CnnPolicy", "MultiInputPolicy"] = Field(
        "MlpPolicy", description="MlpPolicy (vectors), CnnPolicy (images), MultiInputPolicy "
        "(Dict observations)")
    policy_kwargs: PolicyKwargs = Field(
        default_factory=dict, description="policy options, e.g. {net_arch: [64, 64], "
        "activation_fn: tanh}; RL Zoo's 'dict(...)' strings are accepted")

    #: options that are forgelab's own, not SB3 constructor arguments
    FORGELAB_ONLY: ClassVar[frozenset[str]] = frozenset()

    def sb3_kwargs(self) -> dict[str, Any]:
        """The SB3 constructor keyword arguments these options stand for (names unresolved:
        schedules and class names are turned into objects by the adapter)."""
        return {k: v for k, v in self.model_dump().items() if k not in self.FORGELAB_ONLY}


    #: gymnasium action-space classes the algorithm supports (checked against the env)
    action_spaces: ClassVar[tuple[str, ...]] = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")


# ------------------------------------------------------------------- on-policy
class OnPolicyOptions(SB3Options):
    """Options shared by the on-policy actor-critics (A2C, PPO).

    Each update uses the last ``n_steps`` transitions of every env, with advantages from GAE:
    ``A_t = sum_l (gamma * lambda)^l * delta_{t+l}``, ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``.
    """

    learning_rate: Schedule = Field(3e-4, description="optimizer step size, or lin_<start>")
    n_steps: PositiveInt = Field(2048, description="env steps per env between updates")
    gamma: Discount = Field(0.99, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (1 = Monte-Carlo)")
    ent_coef: NonNegativeFloat = Field(0.0, description="entropy bonus weight in the loss")
    vf_coef: NonNegativeFloat = Field(0.5, description="value-loss weight in the loss")
    max_grad_norm: PositiveFloat = Field(0.5, description="gradient clipping (global L2 norm)")
    use_sde: bool = Field(False, description="generalized State-Dependent Exploration (Box)")
    sde_sample_freq: int = Field(-1, ge=-1, description="resample gSDE noise every n steps "
                                 "(-1: only at the start of a rollout)")
    rollout_buffer_kwargs: ExtraKwargs = Field(default_factory=dict,
                                               description="passed to the rollout buffer")
    normalize_advantage: bool = Field(True, description="standardize advantages per batch")
    stats_window_size: PositiveInt = Field(100, description="episodes in SB3's rolling means")


class PPOOptions(OnPolicyOptions):
    """:class:`stable_baselines3.PPO`: the clipped surrogate objective
    ``L = E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]``, ``r_t = pi(a|s) / pi_old(a|s)``
    (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)."""

    algorithm: ClassVar[str] = "PPO"

    batch_size: PositiveInt = Field(64, description="minibatch size")
    n_epochs: PositiveInt = Field(10, description="passes over each rollout")
    clip_range: Schedule = Field(0.2, description="eps of the clipped ratio, or lin_<start>")
    clip_range_vf: Schedule | None = Field(None, description="clip the value change too "
                                           "(None: no clipping)")
    target_kl: PositiveFloat | None = Field(None, description="stop an update's epochs early "
                                            "when the approximate KL exceeds this")

    @model_validator(mode="after")
    def _batch_for_normalization(self) -> PPOOptions:
        if self.normalize_advantage and self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 when normalize_advantage is true "
                             "(advantages are standardized per minibatch)")
        return self


class A2COptions(OnPolicyOptions):
    """:class:`stable_baselines3.A2C`: synchronous advantage actor-critic, one gradient step per
    rollout on ``-log pi(a|s) A - ent_coef H + vf_coef (R - V)^2``
    (Mnih et al. 2016, https://arxiv.org/abs/1602.01783)."""

    algorithm: ClassVar[str] = "A2C"

    learning_rate: Schedule = Field(7e-4, description="optimizer step size, or lin_<start>")
    n_steps: PositiveInt = Field(5, description="env steps per env between updates")
    gae_lambda: float = Field(1.0, ge=0, le=1, description="GAE lambda (1 = n-step returns)")
    normalize_advantage: bool = Field(False, description="standardize advantages per batch")
    rms_prop_eps: PositiveFloat = Field(1e-5, description="RMSprop epsilon")
    use_rms_prop: bool = Field(True, description="RMSprop as in the paper (else Adam)")


# ------------------------------------------------------------------ off-policy
class OffPolicyOptions(SB3Options):
    """Options shared by the replay-buffer algorithms (DQN, SAC, TD3, DDPG).

    ``save_replay_buffer`` is forgelab's own: checkpoints then include the replay buffer (as a
    NumPy ``.npz``, loaded without pickle), so a resumed run continues with its experience.
    """

    FORGELAB_ONLY: ClassVar[frozenset[str]] = frozenset({"save_replay_buffer"})

    learning_rate: Schedule = Field(3e-4, description="optimizer step size, or lin_<start>")
    buffer_size: PositiveInt = Field(1_000_000, description="replay buffer capacity")
    learning_starts: NonNegativeInt = Field(100, description="env steps of experience "
                                            "collected before the first update")
    batch_size: PositiveInt = Field(256, description="transitions per gradient step")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak coefficient of the target "
                       "update: theta' <- tau theta + (1 - tau) theta' (1 = hard copy)")
    gamma: Discount = Field(0.99, description="discount factor")
    train_freq: TrainFreq = Field(1, description="update every n env steps, or [n, episode]")
    gradient_steps: int = Field(1, ge=-1, description="gradient steps per update (-1: as many "
                                "as env steps collected)")
    replay_buffer_kwargs: ExtraKwargs = Field(default_factory=dict,
                                              description="passed to the replay buffer")
    optimize_memory_usage: bool = Field(False, description="store each observation once")
    n_steps: PositiveInt = Field(1, description="n-step returns in the replay buffer")
    save_replay_buffer: bool = Field(False, description="forgelab: include the replay buffer in "
                                     "checkpoints so a resumed run keeps its experience")

    @model_validator(mode="after")
    def _batch_fits_buffer(self) -> OffPolicyOptions:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) is larger than buffer_size "
                             f"({self.buffer_size})")
        return self


class DQNOptions(OffPolicyOptions):
    """:class:`stable_baselines3.DQN`: Q-learning with a replay buffer and a target network,
    loss ``Huber(Q(s, a) - (r + gamma max_a' Q_target(s', a')))``
    (Mnih et al. 2015, https://www.nature.com/articles/nature14236)."""

    algorithm: ClassVar[str] = "DQN"
    action_spaces: ClassVar[tuple[str, ...]] = ("Discrete",)

    learning_rate: Schedule = Field(1e-4, description="optimizer step size, or lin_<start>")
    batch_size: PositiveInt = Field(32, description="transitions per gradient step")
    tau: float = Field(1.0, gt=0, le=1, description="target update coefficient (1 = hard copy)")
    train_freq: TrainFreq = Field(4, description="update every n env steps, or [n, episode]")
    target_update_interval: PositiveInt = Field(10000, description="env steps between target "
                                                "network updates")
    exploration_fraction: float = Field(0.1, ge=0, le=1, description="fraction of training over "
                                        "which epsilon decays linearly")
    exploration_initial_eps: float = Field(1.0, ge=0, le=1, description="epsilon at the start")
    exploration_final_eps: float = Field(0.05, ge=0, le=1, description="epsilon at the end")
    max_grad_norm: PositiveFloat = Field(10, description="gradient clipping (global L2 norm)")
    stats_window_size: PositiveInt = Field(100, description="episodes in SB3's rolling means")

    @model_validator(mode="after")
    def _epsilon_decays(self) -> DQNOptions:
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ValueError("exploration_final_eps must not exceed exploration_initial_eps")
        return self


class ContinuousOffPolicyOptions(OffPolicyOptions):
    """Actor-critics for ``Box`` actions (SAC, TD3, DDPG), with optional exploration noise."""

    FORGELAB_ONLY: ClassVar[frozenset[str]] = frozenset({"save_replay_buffer",
                                                         "action_noise_std"})
    action_spaces: ClassVar[tuple[str, ...]] = ("Box",)

    action_noise: Literal["normal", "ornstein-uhlenbeck"] | None = Field(
        None, description="exploration noise added to actions (RL Zoo's noise_type)")
    action_noise_std: PositiveFloat = Field(0.1, description="noise std in the policy's [-1, 1] "
                                            "action scale (RL Zoo's noise_std)")


def _check_ent_coef(value: float | str) -> float | str:
    if isinstance(value, str):
        if value == "auto" or re.fullmatch(r"auto_\d*\.?\d+([eE][-+]?\d+)?", value):
            return value
        raise ValueError("must be a number, 'auto', or 'auto_<initial value>' e.g. auto_0.1")
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _check_target_entropy(value: float | str) -> float | str:
    if isinstance(value, str) and value != "auto":
        raise ValueError("must be a number or 'auto' (-dim(action space))")
    return value


class SACOptions(ContinuousOffPolicyOptions):
    """:class:`stable_baselines3.SAC`: soft actor-critic, maximizing
    ``E[sum_t r_t + alpha H(pi(.|s_t))]`` with twin Q critics and an automatically tuned
    temperature ``alpha`` (Haarnoja et al. 2018, https://arxiv.org/abs/1801.01290)."""

    algorithm: ClassVar[str] = "SAC"

    ent_coef: Annotated[float | str, AfterValidator(_check_ent_coef)] = Field(
        "auto", description="entropy temperature alpha: a number, 'auto' or 'auto_<init>'")
    target_update_interval: PositiveInt = Field(1, description="gradient steps between target "
                                                "network updates")
    target_entropy: Annotated[float | str, AfterValidator(_check_target_entropy)] = Field(
        "auto", description="entropy target of the automatic alpha ('auto': -dim(A))")
    use_sde: bool = Field(False, description="generalized State-Dependent Exploration")
    sde_sample_freq: int = Field(-1, ge=-1, description="resample gSDE noise every n steps")
    use_sde_at_warmup: bool = Field(False, description="gSDE instead of uniform random actions "
                                    "before learning_starts")
    stats_window_size: PositiveInt = Field(100, description="episodes in SB3's rolling means")


class TD3Options(ContinuousOffPolicyOptions):
    """:class:`stable_baselines3.TD3`: twin delayed DDPG: target ``r + gamma min_i Q_i'(s',
    pi'(s') + clip(noise))``, the actor updated every ``policy_delay`` critic updates
    (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477)."""

    algorithm: ClassVar[str] = "TD3"

    learning_rate: Schedule = Field(1e-3, description="optimizer step size, or lin_<start>")
    policy_delay: PositiveInt = Field(2, description="critic updates per actor update")
    target_policy_noise: PositiveFloat = Field(0.2, description="std of the target policy "
                                               "smoothing noise")
    target_noise_clip: NonNegativeFloat = Field(0.5, description="clip of that noise")
    stats_window_size: PositiveInt = Field(100, description="episodes in SB3's rolling means")


class DDPGOptions(ContinuousOffPolicyOptions):
    """:class:`stable_baselines3.DDPG`: deterministic policy gradient ``grad_theta Q(s,
    mu_theta(s))`` with one critic and target networks (Lillicrap et al. 2015,
    https://arxiv.org/abs/1509.02971)."""

    algorithm: ClassVar[str] = "DDPG"

    learning_rate: Schedule = Field(1e-3, description="optimizer step size, or lin_<start>")


#: forgelab agent name -> its options class
OPTIONS: dict[str, type[SB3Options]] = {
    "sb3-dqn": DQNOptions, "sb3-ppo": PPOOptions, "sb3-a2c": A2COptions,
    "sb3-sac": SACOptions, "sb3-td3": TD3Options, "sb3-ddpg": DDPGOptions,
}
