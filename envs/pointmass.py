"""``forgelab/PointMass-v0``: steer a point mass in a 2-D arena onto a target with bounded forces.

The smallest continuous-control task that still has dynamics: the action is a force, not a
velocity, so the agent must accelerate towards the target *and brake* before it. A PPO agent
solves it in a few tens of thousands of steps, which makes it a quick check of a continuous
(Gaussian) policy; a random policy stays far from the target.

State ``s = (p, v)`` with position ``p`` in the arena ``[-1, 1]^2`` and velocity ``v``; the
target ``g`` is drawn per episode (or fixed by ``target``). Semi-implicit Euler with time step
``dt`` and linear damping ``c``::

    a_t     = clip(action, -1, 1)                       (Box(-1, 1, (2,)))
    v_{t+1} = clip(v_t + dt * (F_max * a_t - c * v_t) / m, -v_max, v_max)
    p_{t+1} = clip(p_t + dt * v_{t+1}, -1, 1)            (hitting a wall stops that axis)

Reward, with ``d = ||g - p_{t+1}||``::

    r_t = -d - action_cost * ||a_t||^2  (+ success_bonus and termination when d < target_radius)

Observation (float32, 6 numbers): ``(p, v, g - p)``; the relative target makes the optimal
policy the same function everywhere in the arena, which MLPs learn quickly.
Deterministic under ``reset(seed=...)``; ``rgb_array`` rendering draws the arena with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

_BACKGROUND = (245, 245, 240)
_BORDER = (60, 60, 70)
_TARGET = (70, 180, 90)
_MASS = (220, 60, 50)
_FORCE = (40, 90, 200)


class PointMassEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point mass pushed by a bounded 2-D force towards a target.

    :param dt: integration time step in seconds (``render_fps = 1 / dt``).
    :param mass: the mass ``m``.
    :param max_force: ``F_max``, the force at action magnitude 1 per axis.
    :param damping: linear damping coefficient ``c`` (friction; bounds the speed at ``F_max/c``).
    :param max_speed: hard speed clip per axis ``v_max`` (keeps the observation bounded).
    :param target: fixed target ``[x, y]``; default: drawn uniformly in ``[-0.8, 0.8]^2``.
    :param target_radius: success radius around the target.
    :param action_cost: weight of the ``||a||^2`` penalty (small: prefer gentle forces).
    :param success_bonus: reward added on the step that reaches the target.
    :param terminate_on_success: end the episode on success (else keep going, e.g. to hover).
    :param render_mode: ``"rgb_array"``.
    :param frame_px: width and height of rendered frames in pixels.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, dt: float = 0.1, mass: float = 1.0, max_force: float = 4.0,
                 damping: float = 2.0, max_speed: float = 2.0,
                 target: Sequence[float] | None = None, target_radius: float = 0.1,
                 action_cost: float = 0.01, success_bonus: float = 1.0,
                 terminate_on_success: bool = True, render_mode: str | None = None,
                 frame_px: int = 256) -> None:
        for name, value in (("dt", dt), ("mass", mass), ("max_force", max_force),
                            ("max_speed", max_speed), ("target_radius", target_radius)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 (got {value})")
        if damping < 0 or action_cost < 0:
            raise ValueError("damping and action_cost must be >= 0")
        if target is not None:
            target = np.asarray(target, dtype=np.float64)
            if target.shape != (2,) or np.any(np.abs(target) > 1):
                raise ValueError(f"target must be [x, y] inside [-1, 1]^2 (got {target.tolist()})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} "
                             f"(got {render_mode!r})")
        self.dt, self.mass, self.max_force = float(dt), float(mass), float(max_force)
        self.damping, self.max_speed = float(damping), float(max_speed)
        self.fixed_target = target
        self.target_radius = float(target_radius)
        self.action_cost, self.success_bonus = float(action_cost), float(success_bonus)
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.frame_px = int(frame_px)
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / self.dt))}

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        high = np.array([1, 1, max_speed, max_speed, 2, 2], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.pos = np.zeros(2)
        self.vel = np.zeros(2)
        self.target = np.zeros(2)
        self.last_action = np.zeros(2)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel, self.target - self.pos]).astype(np.float32)

    def _distance(self) -> float:
        return float(np.linalg.norm(self.target - self.pos))

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        if self.fixed_target is not None:
            self.target = self.fixed_target.copy()
        else:
            self.target = rng.uniform(-0.8, 0.8, size=2)
        # Start at rest, away from the target (so no episode is won before it begins).
        while True:
            self.pos = rng.uniform(-0.9, 0.9, size=2)
            if self._distance() > 2 * self.target_radius:
                break
        self.vel = np.zeros(2)
        self.last_action = np.zeros(2)
        return self._obs(), {"distance": self._distance()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self.last_action = a
        accel = (self.max_force * a - self.damping * self.vel) / self.mass
        self.vel = np.clip(self.vel + self.dt * accel, -self.max_speed, self.max_speed)
        pos = self.pos + self.dt * self.vel
        hit = np.abs(pos) > 1.0
        self.vel[hit] = 0.0  # an inelastic wall: the mass stops along that axis
        self.pos = np.clip(pos, -1.0, 1.0)
        distance = self._distance()
        success = distance < self.target_radius
        reward = -distance - self.action_cost * float(a @ a) + (self.success_bonus if success
                                                                 else 0.0)
        terminated = bool(success and self.terminate_on_success)
        return self._obs(), float(reward), terminated, False, {"distance": distance,
                                                               "is_success": bool(success)}

    # ----------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        n = self.frame_px
        frame = np.empty((n, n, 3), dtype=np.uint8)
        frame[:] = _BACKGROUND
        border = max(2, n // 64)
        frame[:border], frame[-border:] = _BORDER, _BORDER
        frame[:, :border], frame[:, -border:] = _BORDER, _BORDER
        yy, xx = np.mgrid[0:n, 0:n]

        def to_px(point: np.ndarray) -> tuple[float, float]:
            # world x right, y up  ->  image column right, row down
            return (1.0 - point[1]) / 2.0 * (n - 1), (point[0] + 1.0) / 2.0 * (n - 1)

        def disc(point: np.ndarray, radius_px: float, colour: tuple[int, int, int]) -> None:
            row, col = to_px(point)
            frame[(yy - row) ** 2 + (xx - col) ** 2 <= radius_px ** 2] = colour

        disc(self.target, max(2.0, self.target_radius / 2.0 * (n - 1)), _TARGET)
        disc(self.pos, max(3.0, n / 40), _MASS)
        # The applied force as a short line from the mass (helps read a video).
        start = np.array(to_px(self.pos))
        end = start + np.array([-self.last_action[1], self.last_action[0]]) * n / 10
        for t in np.linspace(0.0, 1.0, num=max(2, n // 8)):
            row, col = np.round(start + t * (end - start)).astype(int)
            if 0 <= row < n and 0 <= col < n:
                frame[max(0, row - 1):row + 1, max(0, col - 1):col + 1] = _FORCE
        return frame
