"""The RL family's support functions (:class:`forgelab.core.family.FamilySupport`): what the
runner asks of an agent's experiment before the run (its env's spaces) and what an agent
receives as ``ctx.inputs`` (the env builders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgelab.core.component import RunContext
    from forgelab.core.config import ExperimentConfig
    from forgelab.core.pluginhost import PluginHost
    from forgelab.core.registry import Registration


def check_inputs(config: ExperimentConfig, host: PluginHost, registration: Registration) -> Any:
    """Build the experiment's env once (with its wrappers) and return its
    ``(observation_space, action_space)`` for the agent's check; an unknown id, bad kwargs or
    an unknown wrapper is a ConfigError."""
    from forgelab.envs.building import check_env_spec

    host.apply_env_registrations()
    return check_env_spec(config.env)


def run_inputs(config: ExperimentConfig, ctx: RunContext) -> Any:
    """The env builders of the run (training vector env, single envs, evaluation env)."""
    from forgelab.envs.building import Environments

    return Environments(config.env, ctx.seed)


def input_origin(kind: str, name: str) -> dict[str, Any] | None:
    """Where a gymnasium id no plugin registered comes from (gymnasium's own registry, or a
    package that registers on import), for ``run.json``'s provenance."""
    if kind != "env":
        return None
    from forgelab.core.pluginhost import _env_distribution

    return _env_distribution(name)
