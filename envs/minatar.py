"""MinAtar games (Young & Tian 2019, https://arxiv.org/abs/1903.03176) as gymnasium envs.

Registered by the built-in env plugin as ``MinAtar/Breakout-v1`` etc. when the ``minatar``
package is installed (``pip install forgelab[atari]``). Observations are the game's 10x10xC
boolean grid (one channel per object kind), actions the game's minimal action set; rewards and
episode ends are the game's own. ``rgb_array`` frames are the grid upscaled to 160x160 with one
colour per channel, so rollout videos show the game.

Unlike ``minatar.gym`` this needs neither seaborn nor matplotlib to render. Exact resume
(:mod:`forgelab.envs.snapshots`) covers the game: its variables and its ``RandomState`` (sticky
actions and the game's own draws) are captured by :meth:`MinAtarEnv.get_resume_state`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# one colour per channel (the last channel that is set wins), background black
_PALETTE = np.array([[230, 230, 230], [250, 80, 80], [80, 200, 120], [90, 140, 250],
                     [250, 200, 60], [200, 90, 220], [60, 220, 220], [250, 140, 60],
                     [160, 160, 160], [120, 90, 60]], dtype=np.uint8)


class MinAtarEnv(gym.Env):
    """One MinAtar game.

    :param game: ``breakout``, ``asterix``, ``freeway``, ``seaquest`` or ``space_invaders``.
    :param sticky_action_prob: probability of repeating the last action (MinAtar's default 0.1).
    :param difficulty_ramping: let the game speed up over an episode (MinAtar's default).
    :param render_mode: ``rgb_array`` or None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str = "breakout", sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, render_mode: str | None = None) -> None:
        from minatar import Environment

        if not 0.0 <= sticky_action_prob < 1.0:  # MinAtar takes any float
            raise ValueError(f"sticky_action_prob must be in [0, 1) (got {sticky_action_prob}; "
                             "MinAtar's default is 0.1)")
        self.game = Environment(env_name=game, sticky_action_prob=sticky_action_prob,
                                difficulty_ramping=difficulty_ramping)
        self.action_set = list(self.game.minimal_action_set())
        self.action_space = gym.spaces.Discrete(len(self.action_set))
        self.observation_space = gym.spaces.Box(0, 1, shape=self.game.state_shape(),
                                                dtype=np.bool_)
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)
        self.game.reset()
        return self.game.state().astype(np.bool_), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, done = self.game.act(self.action_set[int(action)])
        return self.game.state().astype(np.bool_), float(reward), bool(done), False, {}

    # Exact resume: the game's state lives in minatar's objects (the Environment, which draws
    # sticky actions, and the game it runs), not in attributes of this env.
    def get_resume_state(self) -> dict[str, Any]:
        from forgelab.envs.snapshots import capture_attributes

        return {"environment": capture_attributes(self.game),
                "game": capture_attributes(self.game.env),
                # after seed() both draw from one generator; a fresh game has two
                "shared_random": self.game.env.random is self.game.random}

    def set_resume_state(self, state: dict[str, Any]) -> None:
        from forgelab.envs.snapshots import restore_attributes

        if state["shared_random"]:
            self.game.env.random = self.game.random
        restore_attributes(self.game, state["environment"], "MinAtar environment")
        restore_attributes(self.game.env, state["game"], f"MinAtar {self.game.env_name}")

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()
        frame = np.zeros((*state.shape[:2], 3), np.uint8)
        for channel in range(state.shape[2]):
            frame[state[..., channel].astype(bool)] = _PALETTE[channel % len(_PALETTE)]
        return np.kron(frame, np.ones((16, 16, 1), np.uint8))  # 10x10 -> 160x160
