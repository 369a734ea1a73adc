"""The forgelab hook specifications: the whole plugin contract in one small module.

A plugin is any module with functions marked ``@forgelab.core.hookimpl`` whose names match the
specs below. Each hook receives a ``register`` callable bound to the plugin, so every
registration records where it came from (the pattern of simonw/llm's ``register_models``)::

    from forgelab.core import hookimpl

    @hookimpl
    def register_agents(register):
        register("my-agent", "my_package.agent:MyAgent", config="my_package.agent:MyConfig",
                 description="One line shown by `forgelab list agents`.")

Factories and config classes may be given as ``"module:attribute"`` strings so that heavy
libraries (torch, SB3) are imported only when a component is actually built.

Each ``register`` has the exact signature of the Protocol below (:class:`RegisterComponent`,
:class:`RegisterEnv`, :class:`RegisterDataset`, :class:`RegisterExperiments`); a keyword it does
not know (``chek=`` for ``check=``) is an error that names the closest keyword, and the plugin is
reported and skipped rather than silently losing the setting.

Agents and models may also pass ``check=`` (a callable or import string): the runner calls
``check(options, config, spaces)`` before any run directory or W&B run exists (and on
``--dry-run``), with ``spaces = (observation_space, action_space)`` of the experiment's env for
agents and the experiment's dataset (its ``Splits``, loaded once for the check) for models, and
it raises ``forgelab.core.errors.ConfigError`` for a combination the component cannot handle
(e.g. DQN on a continuous action space, a CVAE on unlabelled data).

``conformance=`` (agents, models, datasets) is a mapping of experiment keys that
:mod:`forgelab.testing` merges into the tiny experiments it runs for this component (small
options, an env or dataset it needs, a budget), e.g.
``{"agent_options": {"n_steps": 16}, "env": "CartPole-v1", "train": {"total_steps": 64}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "forgelab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Factory = Callable[..., Any] | str  # a callable, or "module:attribute" imported on first use


class RegisterComponent(Protocol):
    """The ``register`` of ``register_agents`` and ``register_generative_models``."""

    def __call__(self, name: str, factory: Factory, *, config: type | str | None = None,
                 description: str = "", check: Callable[..., None] | str | None = None,
                 conformance: Mapping[str, Any] | None = None) -> None:
        """Register one agent or generative model.

        :param name: lowercase name used in experiment files (``agent: my-agent``).
        :param factory: ``factory(options, ctx) -> Component`` (see
            :mod:`forgelab.core.component`), or its ``"module:attr"`` import string.
        :param config: pydantic model of the options (or its import string); None: no options.
        :param description: one line for ``forgelab list``.
        :param check: ``check(options, config, spaces)`` raising ``ConfigError`` before a run.
        :param conformance: experiment keys for :mod:`forgelab.testing`'s tiny runs.
        """


class RegisterDataset(Protocol):
    """The ``register`` of ``register_datasets``."""

    def __call__(self, name: str, factory: Factory, *, config: type | str | None = None,
                 description: str = "", conformance: Mapping[str, Any] | None = None) -> None:
        """Register one dataset.

        :param factory: ``factory(options, seed) -> forgelab.generative.datasets.Splits``.
        :param conformance: ``{"dataset_options": {...}}`` for :mod:`forgelab.testing`.
        """


class RegisterEnv(Protocol):
    """The ``register`` of ``register_envs``."""

    def __call__(self, env_id: str, entry_point: Factory, *,
                 kwargs: Mapping[str, Any] | None = None, max_episode_steps: int | None = None,
                 reward_threshold: float | None = None,
                 nondeterministic: bool = False, description: str = "") -> None:
        """Register one gymnasium environment (``gymnasium.register``'s arguments).

        :param env_id: ``"namespace/Name-v0"``.
        :param entry_point: the env class or ``"module:Class"`` (imported when made).
        :param kwargs: default constructor arguments (experiments override them).
        :param max_episode_steps: the time limit gymnasium wraps around the env.
        """


class RegisterExperiments(Protocol):
    """The ``register`` of ``register_experiments``."""

    def __call__(self, path: str | Path) -> None:
        """Ship experiment files: ``path`` is one YAML file or a folder of them (``*.yaml``),
        usually ``Path(__file__).parent / "experiments"`` inside the plugin's package."""


@hookspec
def register_agents(register: RegisterComponent) -> None:
    """Register RL agents: ``register(name, factory, *, config=None, description="",
    check=None, conformance=None)`` (:class:`RegisterComponent`).

    ``factory(options, ctx)`` returns a :class:`forgelab.core.component.Component`.
    """


@hookspec
def register_generative_models(register: RegisterComponent) -> None:
    """Register generative models: same ``register`` as :func:`register_agents`.

    ``factory(options, ctx)`` returns a :class:`forgelab.core.component.Component`.
    """


@hookspec
def register_envs(register: RegisterEnv) -> None:
    """Register gymnasium environments.

    ``register(id, entry_point, *, kwargs=None, max_episode_steps=None, description="")``
    (:class:`RegisterEnv`) puts the id into gymnasium's registry, so ``gymnasium.make(id)`` works
    as well as forgelab's runner.
    """


@hookspec
def register_datasets(register: RegisterDataset) -> None:
    """Register datasets: ``register(name, factory, *, config=None, description="")``.

    ``factory(options, seed)`` returns a :class:`forgelab.generative.datasets.Splits`.
    """


@hookspec
def register_experiments(register: RegisterExperiments) -> None:
    """Ship experiment files with the plugin: ``register(path)`` for a YAML file or a folder.

    ``forgelab list experiments`` shows them with the plugin, and ``forgelab run NAME`` finds
    them after the local ``experiments/`` folder and forgelab's own experiments.
    """


@hookspec
def register_launchers(register):
    """Register study launchers: ``register(name, factory, *, description="")``.

    ``factory()`` returns an object with ``launch(ctx) -> int | None`` that runs
    ``ctx.trials`` of a :class:`forgelab.core.launchers.LaunchContext`, each as a real
    ``forgelab run`` process (see :mod:`forgelab.core.launchers`); ``forgelab sweep
    --launcher NAME`` picks one.
    """


@hookspec
def register_components(register):
    """Register components of any family: ``register(kind, name, factory, *, config=None,
    description="", check=None, conformance=None)`` where ``kind`` is the family's component
    key (the experiment key naming the component, e.g. ``"learner"``). The keywords are those
    of :class:`RegisterComponent`; ``register_agents`` and ``register_generative_models`` are
    this hook for the two built-in families.
    """


@hookspec
def register_families(register):
    """Register families of components: ``register(family)`` with a
    :class:`forgelab.core.family.Family` (its key, step unit, budget, W&B axes, best metric
    and the import path of its support module).

    The runner treats every family the same way; forgelab's own RL and generative families are
    registered by its built-in plugins through this hook. A plugin adding a new family also
    registers its components with the family's ``component_key`` as their kind.
    """
