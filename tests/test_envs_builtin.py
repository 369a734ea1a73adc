"""forgelab's own environments: API checks, determinism, dynamics and rendering."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import forgelab.envs  # noqa: F401  (registers the ids)
from forgelab.envs.gridworld import GridWorldEnv, parse_layout
from forgelab.envs.pointmass import PointMassEnv

GRID = "forgelab/GridWorld-v0"
POINT = "forgelab/PointMass-v0"


@pytest.mark.parametrize("env_id, kwargs", [
    (GRID, {}),
    (GRID, {"observation": "coords", "slip_prob": 0.2}),
    (POINT, {}),
])
def test_envs_pass_gymnasium_and_sb3_checkers(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        for render_mode in ("rgb_array", None):
            env = gymnasium.make(env_id, render_mode=render_mode, **kwargs)
            gym_check_env(env.unwrapped)
            sb3_check_env(env.unwrapped, warn=True)
            env.close()


def _trajectory(env_id: str, seed: int, steps: int = 60, **kwargs) -> tuple[np.ndarray, ...]:
    env = gymnasium.make(env_id, **kwargs)
    env.action_space.seed(123)  # same actions for every seed: differences come from the env
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("env_id, kwargs", [(GRID, {"slip_prob": 0.3}), (POINT, {})])
def test_same_seed_same_trajectory(env_id, kwargs):
    first = _trajectory(env_id, seed=7, **kwargs)
    again = _trajectory(env_id, seed=7, **kwargs)
    other = _trajectory(env_id, seed=8, **kwargs)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])  # slips / start and target depend on the seed


def test_gridworld_moves_walls_rewards_and_episode_limit():
    env = gymnasium.make(GRID)  # the default 5x5 map, limit 100 steps
    assert env.spec.max_episode_steps == 100
    obs, info = env.reset(seed=0)
    assert info["cell"] == (0, 0) and obs.shape == (25,) and obs[0] == 1.0
    _, reward, terminated, _, info = env.step(2)  # down to (1, 0)
    assert (info["cell"], reward, terminated) == ((1, 0), -0.01, False)
    _, _, _, _, info = env.step(1)  # right: (1, 1) is a wall, so the agent stays
    assert info["cell"] == (1, 0)
    _, _, _, _, info = env.step(3)  # left: off the grid, stays
    assert info["cell"] == (1, 0)
    # An optimal path: right along the top row, then down the right column (8 moves).
    env.reset(seed=0)
    total, steps, terminated = 0.0, 0, False
    for action in [1, 1, 1, 1, 2, 2, 2, 2]:
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
    assert terminated and info["cell"] == (4, 4) and obs[24] == 1.0
    assert total == pytest.approx(1.0 - 7 * 0.01)
    # Walking into a wall forever is truncated by the registered limit.
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated
        steps += 1
    assert steps == 100


def test_gridworld_layouts_and_size_walls():
    env = GridWorldEnv(layout=["S.#", "..G"], goal_reward=5.0, step_reward=-1.0,
                       observation="coords")
    obs, _ = env.reset(seed=0)
    assert (env.rows, env.cols, env.walls) == (2, 3, frozenset({(0, 2)}))
    np.testing.assert_allclose(obs, [0.0, 0.0])
    for action, expected in [(1, [0.0, 0.5]), (1, [0.0, 0.5]), (2, [1.0, 0.5])]:
        obs, reward, terminated, _, _ = env.step(action)
        np.testing.assert_allclose(obs, expected)
        assert (reward, terminated) == (-1.0, False)
    _, reward, terminated, _, _ = env.step(1)
    assert (reward, terminated) == (5.0, True)

    open_grid = GridWorldEnv(size=[3, 4], walls=[[1, 1]], start=[2, 0], goal=[0, 3])
    assert open_grid.observation_space.shape == (12,)
    assert open_grid.reset(seed=0)[1]["cell"] == (2, 0)
    assert parse_layout("\n S#\n .G\n") == ((2, 2), {(0, 1)}, (0, 0), (1, 1))
    for bad in [dict(layout="S.\n.x"), dict(size=3, walls=[[0, 0]]), dict(slip_prob=1.5),
                dict(layout="S.G", walls=[[0, 1]]), dict(size=3, goal=[5, 5]),
                dict(observation="pixels")]:
        with pytest.raises(ValueError):
            GridWorldEnv(**bad)


def _moves(slip_prob: float, action: int, n: int, seed: int = 0) -> np.ndarray:
    """Which move was taken, over n single steps from the centre of an open 5x5 grid."""
    env = GridWorldEnv(size=5, start=[2, 2], goal=[0, 0], slip_prob=slip_prob)
    env.reset(seed=seed)
    taken = []
    for _ in range(n):
        env.agent = (2, 2)
        _, _, _, _, info = env.step(action)
        taken.append(info["action_taken"])
    return np.array(taken)


def test_gridworld_slip_probability():
    assert set(_moves(0.0, action=1, n=200)) == {1}
    always = _moves(1.0, action=1, n=400)  # right is always replaced by up or down
    assert set(always) == {0, 2}
    assert 0.4 < np.mean(always == 0) < 0.6
    slips = _moves(0.3, action=1, n=4000) != 1
    assert 0.27 < slips.mean() < 0.33


def test_gridworld_rendering():
    env = gymnasium.make(GRID, render_mode="rgb_array")
    assert env.metadata["render_fps"] > 0
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (5 * 32, 5 * 32, 3) and frame.dtype == np.uint8
    assert tuple(frame[16, 16]) == (220, 60, 50)  # the agent's disc at the start cell
    assert tuple(frame[4 * 32 + 16, 4 * 32 + 16]) == (70, 180, 90)  # the goal
    assert tuple(frame[32 + 16, 32 + 16]) == (60, 60, 70)  # a wall
    env.step(1)
    moved = env.render()
    assert tuple(moved[16, 32 + 16]) == (220, 60, 50) and tuple(moved[16, 16]) != (220, 60, 50)

    text = gymnasium.make(GRID, render_mode="ansi")
    text.reset(seed=0)
    text.step(2)
    assert text.render() == "S....\nA###.\n...#.\n.#...\n.#..G\n"


def _pd_controller(obs: np.ndarray) -> np.ndarray:
    """Push towards the target and brake with the velocity: what a learned policy should do."""
    velocity, to_target = obs[2:4], obs[4:6]
    return np.clip(3.0 * to_target - 1.0 * velocity, -1.0, 1.0)


def test_pointmass_dynamics_success_and_rendering():
    env = gymnasium.make(POINT, render_mode="rgb_array", target=[0.5, -0.5])
    assert env.spec.max_episode_steps == 100
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(obs[4:6], np.array([0.5, -0.5]) - obs[:2], atol=1e-6)
    np.testing.assert_array_equal(obs[2:4], [0.0, 0.0])  # starts at rest
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert env.metadata["render_fps"] == 10
    # Bounded forces: one step at full force from rest moves by dt^2 * F_max / m.
    obs2, reward, *_ = env.step(np.array([5.0, 0.0]))  # clipped to 1
    assert obs2[0] - obs[0] == pytest.approx(0.1 * 0.1 * 4.0, rel=1e-5)
    assert reward == pytest.approx(-np.linalg.norm(obs2[4:6]) - 0.01, rel=1e-5)

    returns = {}
    for name, policy in [("pd", _pd_controller), ("idle", lambda o: np.zeros(2))]:
        obs, _ = env.reset(seed=1)
        total, done, info = 0.0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns[name] = (total, info["is_success"], terminated)
    assert returns["pd"][1:] == (True, True)  # reaches the target and the episode ends
    assert returns["idle"][1:] == (False, False)
    assert returns["pd"][0] > -15 > returns["idle"][0]


def test_pointmass_walls_and_bad_kwargs():
    env = PointMassEnv(target=[0.0, 0.0])
    env.reset(seed=0)
    for _ in range(40):
        obs, *_ = env.step(np.array([1.0, 1.0]))
    np.testing.assert_allclose(obs[:2], [1.0, 1.0])  # pinned in the corner
    np.testing.assert_allclose(obs[2:4], [0.0, 0.0])  # the wall stopped it
    for bad in [dict(dt=0), dict(target=[2.0, 0.0]), dict(render_mode="human")]:
        with pytest.raises(ValueError):
            PointMassEnv(**bad)
