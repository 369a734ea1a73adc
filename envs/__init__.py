"""forgelab's own gymnasium environments.

Importing this package registers the ids into gymnasium's registry, so plain gymnasium code
works without forgelab's runner::

    import gymnasium
    import forgelab.envs  # noqa: F401  (registers forgelab/GridWorld-v0, forgelab/PointMass-v0)

    env = gymnasium.make("forgelab/GridWorld-v0", slip_prob=0.1, render_mode="ansi")

forgelab's runner does not need this import: the built-in ``envs`` plugin
(:mod:`forgelab.plugins.envs`) registers the same ids with the *same entry-point strings*, and
the plugin host skips an id that gymnasium already has with the same entry point, so the two
paths never clash. The environment classes themselves are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgelab.envs.gridworld import GridWorldEnv
    from forgelab.envs.pointmass import PointMassEnv

__all__ = ["BUILTIN_ENVS", "GridWorldEnv", "PointMassEnv", "register_builtin_envs"]

# id -> (entry point, default episode limit). Kept identical to the plugin's registrations
# (tests/test_env_plugins.py checks it); the default kwargs are the constructors' defaults.
BUILTIN_ENVS: dict[str, tuple[str, int]] = {
    "forgelab/GridWorld-v0": ("forgelab.envs.gridworld:GridWorldEnv", 100),
    "forgelab/PointMass-v0": ("forgelab.envs.pointmass:PointMassEnv", 100),
}

_LAZY = {"GridWorldEnv": "forgelab.envs.gridworld", "PointMassEnv": "forgelab.envs.pointmass"}


def register_builtin_envs() -> None:
    """Put forgelab's environments into gymnasium's registry (ids already there are kept)."""
    import gymnasium

    for env_id, (entry_point, max_episode_steps) in BUILTIN_ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point,
                               max_episode_steps=max_episode_steps)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_builtin_envs()
