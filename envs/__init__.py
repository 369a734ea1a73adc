"""forgelab's own gymnasium environments.

Importing this package registers the ids into gymnasium's registry, so plain gymnasium code
works without forgelab's runner::

    import gymnasium
    import forgelab.envs  # noqa: F401  (registers forgelab/GridWorld-v0, forgelab/PointMass-v0)

    env = gymnasium.make("forgelab/GridWorld-v0", slip_prob=0.1, render_mode="ansi")

forgelab's runner does not need this import. The ids, entry points and time limits are written
once, in the built-in ``envs`` plugin (:mod:`forgelab.plugins.envs`): this import applies that
plugin's registrations (:func:`forgelab.envs.registration.register_builtin_envs`), and the
plugin host skips an id that gymnasium already has with the same entry point, so the two paths
never clash. The environment classes themselves are imported on first use.

The RL side's gymnasium code lives here too: :mod:`~forgelab.envs.building` (envs and wrappers
from an experiment's ``env`` section), :mod:`~forgelab.envs.native_vector`,
:mod:`~forgelab.envs.snapshots` (exact resume) and :mod:`~forgelab.envs.registration` (plugin
envs into gymnasium's registry). Episodes are played by :mod:`forgelab.agents.evaluation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forgelab.envs.registration import register_builtin_envs

if TYPE_CHECKING:
    from forgelab.envs.gridworld import GridWorldEnv
    from forgelab.envs.pointmass import PointMassEnv

__all__ = ["GridWorldEnv", "PointMassEnv", "register_builtin_envs"]

_LAZY = {"GridWorldEnv": "forgelab.envs.gridworld", "PointMassEnv": "forgelab.envs.pointmass"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_builtin_envs()
