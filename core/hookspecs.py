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

Agents and models may also pass ``check=`` (a callable or import string): the runner calls
``check(options, config, spaces)`` before any run directory or W&B run exists (and on
``--dry-run``), with ``spaces = (observation_space, action_space)`` of the experiment's env for
agents and None for models, and it raises ``forgelab.core.errors.ConfigError`` for a combination
the component cannot handle (e.g. DQN on a continuous action space).
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "forgelab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_agents(register):
    """Register RL agents: ``register(name, factory, *, config=None, description="")``.

    ``factory(options, ctx)`` returns a :class:`forgelab.core.component.Component`.
    """


@hookspec
def register_generative_models(register):
    """Register generative models: ``register(name, factory, *, config=None, description="")``.

    ``factory(options, ctx)`` returns a :class:`forgelab.core.component.Component`.
    """


@hookspec
def register_envs(register):
    """Register gymnasium environments.

    ``register(id, entry_point, *, kwargs=None, max_episode_steps=None, description="")`` puts the
    id into gymnasium's registry, so ``gymnasium.make(id)`` works as well as forgelab's runner.
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, factory, *, config=None, description="")``.

    ``factory(options, seed)`` returns the dataset object the generative models consume.
    """


@hookspec
def register_launchers(register):
    """Register study launchers: ``register(name, factory, *, description="")``.

    ``factory()`` returns an object with ``launch(ctx) -> int | None`` that runs
    ``ctx.trials`` of a :class:`forgelab.core.launchers.LaunchContext`, each as a real
    ``forgelab run`` process (see :mod:`forgelab.core.launchers`); ``forgelab sweep
    --launcher NAME`` picks one.
    """
