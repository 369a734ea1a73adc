"""Built-in plugin: forgelab's own environments, `forgelab/GridWorld-v0` and `.../PointMass-v0`.

It registers them exactly as a third-party plugin would: an id, an ``"module:Class"`` entry point
(imported only when the environment is made), default kwargs, an episode limit and a description.
The RL side puts them into gymnasium's registry (:mod:`forgelab.envs.registration`), so
``gymnasium.make(id)`` works too.

These registrations are the one table of forgelab's own ids: ``import forgelab.envs`` applies
them too (same entry points, so whichever comes first wins and the other is skipped instead of
clashing). This module does not import :mod:`forgelab.envs` (which imports gymnasium): loading
plugins must stay instant.
"""

from forgelab.core import hookimpl

# MinAtar's games: the name in the id (MinAtar/<Name>-v1) -> the game module MinAtarEnv loads
MINATAR_GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway",
                 "Seaquest": "seaquest", "SpaceInvaders": "space_invaders"}


@hookimpl
def register_envs(register):
    register(
        "forgelab/GridWorld-v0",
        "forgelab.envs.gridworld:GridWorldEnv",
        # The constructor's defaults are the one source of truth (a 5x5 map with walls, goal
        # reward 1, step reward -0.01, no slip); experiment files override them in env.kwargs.
        kwargs={},
        max_episode_steps=100,
        description="Grid world: walls, goal, step cost, slippery moves (rgb_array, ansi).",
    )
    register(
        "forgelab/PointMass-v0",
        "forgelab.envs.pointmass:PointMassEnv",
        kwargs={},
        max_episode_steps=100,
        description="Push a 2-D point mass onto a target with bounded forces (rgb_array).",
    )
    # MinAtar games, when the optional `minatar` package is installed (forgelab[atari]);
    # find_spec looks for it without importing it. Atari itself comes from ale-py's own
    # registration (ALE/Pong-v5 ...), applied when an ALE/ id is made.
    import importlib.util

    if importlib.util.find_spec("minatar") is not None:
        for name, game in MINATAR_GAMES.items():
            register(f"MinAtar/{name}-v1", "forgelab.envs.minatar:MinAtarEnv",
                     kwargs={"game": game}, max_episode_steps=10_000,
                     description=f"MinAtar {name}: 10x10 grid of the game's objects "
                                 "(forgelab[atari]).")
