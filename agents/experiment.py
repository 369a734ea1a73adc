"""The keys an RL experiment adds to :class:`forgelab.core.config.ExperimentConfig`: the agent,
its options and the environment (with its wrappers). Pure pydantic: validating a file imports
neither torch nor gymnasium."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator

from forgelab.core.config import ExperimentConfig, StrictModel


class WrapperSpec(StrictModel):
    """One environment wrapper: ``{name: normalize_observation}`` plus the wrapper's kwargs."""

    model_config = ConfigDict(extra="allow")
    name: str


class EnvSpec(StrictModel):
    """The environment of an RL experiment."""

    id: str = Field(description="gymnasium id, e.g. CartPole-v1 or forgelab/GridWorld-v0")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to gymnasium.make")
    # Bounded: 100000 sync copies took minutes to build before the first step (and async
    # copies are processes).
    num_envs: int = Field(1, ge=1, le=4096, description="parallel copies in the vector env")
    vectorization: Literal["sync", "async", "vector"] = Field(
        "sync", description="sync/async: num_envs copies of the env; vector: gymnasium's native "
        "batch env (e.g. CartPole), SAME_STEP autoreset, no per-env wrappers")
    max_episode_steps: PositiveInt | None = Field(None, description="override the time limit")
    wrappers: list[WrapperSpec] = Field(default_factory=list)

    @field_validator("wrappers", mode="before")
    @classmethod
    def _wrapper_shorthand(cls, value: Any) -> Any:
        # `- normalize_observation` is short for `- {name: normalize_observation}`
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value


class RLExperiment(ExperimentConfig):
    """An RL experiment: ``agent:`` (a registered agent), ``agent_options:`` and ``env:``;
    training lasts ``train.total_steps`` env steps."""

    component_key: ClassVar[str] = "agent"
    required_inputs: ClassVar[dict[str, str]] = {"env": "env: {id: CartPole-v1}"}

    agent: str = Field(description="a registered agent (forgelab list agents)")
    agent_options: dict[str, Any] = Field(default_factory=dict)
    env: EnvSpec

    @field_validator("env", mode="before")
    @classmethod
    def _env_shorthand(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value
