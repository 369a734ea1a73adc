"""``forgelab/GridWorld-v0``: a small, configurable grid world for teaching and testing agents.

The agent walks on a grid of ``rows x cols`` cells, some of them walls, from a start cell to a
goal cell. Four actions move it one cell (``0`` up, ``1`` right, ``2`` down, ``3`` left); a move
into a wall or off the grid leaves it where it is. Reaching the goal ends the episode
(``terminated``); the episode limit (``max_episode_steps`` of the registration) truncates it.

Rewards::

    r_t = goal_reward   if s_{t+1} == goal
          step_reward   otherwise                 (a small negative cost favours short paths)

Slip (stochastic dynamics, the classic "slippery" grid of Sutton & Barto, ch. 3-4): with
probability ``slip_prob`` the chosen action is replaced by one of its two perpendicular actions,
picked uniformly, so the optimal policy has to account for the noise.

Observation (the choice matters for function approximation):

* ``"onehot"`` (default): a float32 vector of length ``rows * cols`` with a 1 at the agent's
  cell. Every state gets its own input unit, so an MLP agent can represent any value function
  exactly (a "tabular" problem in neural clothing) -- the right default for checking that DQN or
  PPO *learn*, independent of how well they generalise.
* ``"coords"``: ``(row / (rows - 1), col / (cols - 1))`` in ``[0, 1]^2``; compact, and it makes
  the agent generalise across cells (useful to show what function approximation can and cannot
  do, e.g. around walls).

Layouts can be given as a string (or list of row strings)::

    layout: |
      S..#.
      .#...
      .#.#.
      ...#G

with ``.`` free, ``#`` wall, ``S`` start and ``G`` goal; or as ``size`` + ``walls`` (a list of
``[row, col]``) + ``start`` + ``goal``. Everything is deterministic under ``reset(seed=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Cell = tuple[int, int]

# action -> (d_row, d_col): up, right, down, left (clockwise, so perpendicular = +-1 mod 4)
MOVES: tuple[Cell, ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
ACTION_NAMES = ("up", "right", "down", "left")

# The default 5x5 map: a short detour around two wall segments (optimal path: 8 steps).
DEFAULT_LAYOUT = """
S....
.###.
...#.
.#...
.#..G
"""

# RGB colours of the rendering
_FLOOR = (235, 235, 235)
_WALL = (60, 60, 70)
_GRID = (200, 200, 200)
_GOAL = (70, 180, 90)
_START = (170, 200, 240)
_AGENT = (220, 60, 50)


def parse_layout(layout: str | Sequence[str]) -> tuple[Cell, set[Cell], Cell | None, Cell | None]:
    """Parse a layout into ``((rows, cols), walls, start, goal)``.

    :param layout: rows of ``.``/``#``/``S``/``G`` as one string (blank lines ignored) or a list.
    """
    lines = layout.splitlines() if isinstance(layout, str) else list(layout)
    rows = [line.strip() for line in lines if line.strip()]
    if not rows:
        raise ValueError("layout is empty")
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        lengths = [len(r) for r in rows]
        raise ValueError(f"layout rows must all have the same length (got {lengths})")
    walls: set[Cell] = set()
    start = goal = None
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            if char == "#":
                walls.add((r, c))
            elif char in "Ss":
                if start is not None:
                    raise ValueError("layout has more than one start 'S'")
                start = (r, c)
            elif char in "Gg":
                if goal is not None:
                    raise ValueError("layout has more than one goal 'G'")
                goal = (r, c)
            elif char != ".":
                raise ValueError(f"layout: unknown character {char!r} at row {r}, column {c} "
                                 "(use '.' free, '#' wall, 'S' start, 'G' goal)")
    return (len(rows), width), walls, start, goal


def _cell(value: Any, name: str) -> Cell:
    try:
        row, col = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a [row, col] pair (got {value!r})") from None
    return row, col


class GridWorldEnv(gym.Env[np.ndarray, np.int64]):
    """A grid world with walls, a goal, a step cost and optional slippery moves.

    :param size: grid size, an int (square) or ``[rows, cols]``, for an open grid with ``walls``.
        With none of ``size``, ``walls``, ``layout`` the 5x5 ``DEFAULT_LAYOUT`` is used.
    :param walls: wall cells as ``[row, col]`` pairs (with ``size``).
    :param layout: a map string / list of rows (see the module docstring); sets size, walls,
        and (when ``start``/``goal`` are not given) the start and goal.
    :param start: start cell ``[row, col]`` (default: top-left, or the layout's ``S``).
    :param goal: goal cell ``[row, col]`` (default: bottom-right, or the layout's ``G``).
    :param goal_reward: reward on the step that reaches the goal.
    :param step_reward: reward on every other step (negative: a cost per step).
    :param slip_prob: probability that an action is replaced by a random perpendicular one.
    :param observation: ``"onehot"`` (rows*cols vector) or ``"coords"`` (normalised row, col).
    :param render_mode: ``"rgb_array"`` (``cell_px`` pixels per cell) or ``"ansi"``.
    :param cell_px: pixels per cell of ``rgb_array`` frames (32 gives readable videos).
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}

    def __init__(self, size: int | Sequence[int] | None = None,
                 walls: Sequence[Sequence[int]] | None = None,
                 layout: str | Sequence[str] | None = None, start: Sequence[int] | None = None,
                 goal: Sequence[int] | None = None, goal_reward: float = 1.0,
                 step_reward: float = -0.01, slip_prob: float = 0.0,
                 observation: Literal["onehot", "coords"] = "onehot",
                 render_mode: str | None = None, cell_px: int = 32) -> None:
        if layout is None and walls is None and size is None:
            layout = DEFAULT_LAYOUT
        if layout is not None:
            if walls is not None or size is not None:
                raise ValueError("give either 'layout' or 'size' (+ 'walls'), not both")
            (rows, cols), wall_set, layout_start, layout_goal = parse_layout(layout)
            start = start if start is not None else layout_start
            goal = goal if goal is not None else layout_goal
        else:
            if size is None:
                rows = cols = 5
            elif isinstance(size, int | np.integer):
                rows = cols = int(size)
            else:
                rows, cols = _cell(size, "size")
            wall_set = {_cell(w, "each wall") for w in (walls or [])}
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(f"the grid needs at least 2 cells (got {rows}x{cols})")
        self.rows, self.cols = rows, cols
        self.start: Cell = _cell(start, "start") if start is not None else (0, 0)
        self.goal: Cell = _cell(goal, "goal") if goal is not None else (rows - 1, cols - 1)
        for name, cell in (("start", self.start), ("goal", self.goal), *(
                ("wall", w) for w in sorted(wall_set))):
            if not self._inside(cell):
                raise ValueError(f"{name} {list(cell)} is outside the {rows}x{cols} grid")
        for name, cell in (("start", self.start), ("goal", self.goal)):
            if cell in wall_set:
                raise ValueError(f"{name} {list(cell)} is a wall")
        if self.start == self.goal:
            raise ValueError("start and goal are the same cell")
        if not 0.0 <= slip_prob <= 1.0:
            raise ValueError(f"slip_prob must be in [0, 1] (got {slip_prob})")
        if observation not in ("onehot", "coords"):
            raise ValueError(f"observation must be 'onehot' or 'coords' (got {observation!r})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} "
                             f"(got {render_mode!r})")
        self.walls = frozenset(wall_set)
        self.goal_reward = float(goal_reward)
        self.step_reward = float(step_reward)
        self.slip_prob = float(slip_prob)
        self.observation_kind = observation
        self.render_mode = render_mode
        self.cell_px = int(cell_px)

        self.action_space = spaces.Discrete(4)
        if observation == "onehot":
            self.observation_space = spaces.Box(0.0, 1.0, shape=(rows * cols,), dtype=np.float32)
        else:
            self.observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.agent: Cell = self.start

    # ------------------------------------------------------------------ dynamics
    def _inside(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.rows and 0 <= cell[1] < self.cols

    def _obs(self) -> np.ndarray:
        row, col = self.agent
        if self.observation_kind == "onehot":
            obs = np.zeros(self.rows * self.cols, dtype=np.float32)
            obs[row * self.cols + col] = 1.0
            return obs
        return np.array([row / max(self.rows - 1, 1), col / max(self.cols - 1, 1)],
                        dtype=np.float32)

    def _info(self, action_taken: int | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"cell": self.agent}
        if action_taken is not None:
            info["action_taken"] = action_taken  # differs from the chosen one after a slip
        return info

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random (the slips) on the first / seeded reset
        self.agent = self.start
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; actions are 0..3 (up/right/down/left)")
        # Draw the slip every step (even when p = 0) so the random stream does not depend on p.
        slip, side = self.np_random.random(), self.np_random.integers(2)
        if slip < self.slip_prob:
            action = (action + (1 if side else 3)) % 4  # one of the two perpendicular moves
        d_row, d_col = MOVES[action]
        target = (self.agent[0] + d_row, self.agent[1] + d_col)
        if self._inside(target) and target not in self.walls:
            self.agent = target
        terminated = self.agent == self.goal
        reward = self.goal_reward if terminated else self.step_reward
        return self._obs(), reward, terminated, False, self._info(action)

    # ----------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | str | None:
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        return None

    def _render_text(self) -> str:
        lines = []
        for r in range(self.rows):
            chars = []
            for c in range(self.cols):
                cell = (r, c)
                chars.append("A" if cell == self.agent else "#" if cell in self.walls
                             else "G" if cell == self.goal else "S" if cell == self.start else ".")
            lines.append("".join(chars))
        return "\n".join(lines) + "\n"

    def _render_rgb(self) -> np.ndarray:
        px = self.cell_px
        frame = np.empty((self.rows * px, self.cols * px, 3), dtype=np.uint8)
        frame[:] = _FLOOR

        def fill(cell: Cell, colour: tuple[int, int, int], margin: int = 0) -> None:
            r, c = cell
            frame[r * px + margin:(r + 1) * px - margin,
                  c * px + margin:(c + 1) * px - margin] = colour

        fill(self.start, _START)
        fill(self.goal, _GOAL)
        for wall in self.walls:
            fill(wall, _WALL)
        frame[::px, :] = _GRID  # grid lines on each cell's top and left edge
        frame[:, ::px] = _GRID
        # The agent: a filled disc in its cell.
        yy, xx = np.mgrid[0:px, 0:px]
        centre = (px - 1) / 2.0
        disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= (0.35 * px) ** 2
        r, c = self.agent
        frame[r * px:(r + 1) * px, c * px:(c + 1) * px][disc] = _AGENT
        return frame
