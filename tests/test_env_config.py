"""Experiment files configure environments fully (id, kwargs, num_envs, sync/async, wrappers),
and every mistake there is a readable ConfigError / exit code 2 without a traceback."""

from __future__ import annotations

import gc
import multiprocessing
import textwrap
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from conftest import forgelab_cli, latest_state, read_metrics, run_experiment

from forgelab.agents.experiment import EnvSpec
from forgelab.core.config import load_experiment
from forgelab.core.errors import ConfigError
from forgelab.envs.building import (
    check_env_spec,
    completed_episodes,
    make_env,
    make_vec_env,
)

# A 6x6 open grid: the goal is 10 moves away, so a 6-step limit always truncates first.
EXPERIMENT = """
    agent: random
    env:
      id: forgelab/GridWorld-v0
      kwargs: {size: 6, slip_prob: 0.5, step_reward: -1.0}
      num_envs: 3
      vectorization: async
      wrappers:
        - normalize_observation
        - {name: normalize_reward, gamma: 0.9}
        - {name: frame_stack, stack_size: 2}
        - {name: time_limit, max_episode_steps: 6}
    seed: 0
    device: cpu
    train: {total_steps: 36, eval_every: 36, eval_episodes: 2, log_every: 12}
    tracking: {mode: offline}
"""


def _write(tmp_path: Path, text: str, name: str = "grid-config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _chain(env: gymnasium.Env) -> list[str]:
    names = []
    while isinstance(env, gymnasium.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_env_section_builds_the_configured_vector_env(tmp_path):
    config = load_experiment(_write(tmp_path, EXPERIMENT))
    envs = make_vec_env(config.env)
    try:
        assert isinstance(envs, gymnasium.vector.AsyncVectorEnv) and envs.num_envs == 3
        assert envs.single_observation_space.shape == (2, 36)  # 2 stacked one-hot 6x6 grids
        obs, _ = envs.reset(seed=0)
        episodes = []
        for step in range(1, 7):
            obs, rewards, terminated, truncated, infos = envs.step(np.array([0, 1, 2]))
            episodes += completed_episodes(infos)
            assert truncated.all() == (step == 6) and not terminated.any()
        # Episode statistics see the time limit and the raw reward, under the normalisation.
        assert episodes == [(-6.0, 6)] * 3
        assert not np.allclose(rewards, -1.0)  # the agent sees normalised rewards
        assert not np.isin(obs, [0.0, 1.0]).all()  # and normalised observations
    finally:
        envs.close()

    chain = _chain(make_env(config.env))
    assert chain[:5] == ["FrameStackObservation", "NormalizeReward", "NormalizeObservation",
                         "RecordEpisodeStatistics", "TimeLimit"]
    eval_chain = _chain(make_env(config.env, for_eval=True))
    assert "NormalizeReward" not in eval_chain and "NormalizeObservation" in eval_chain
    grid = make_env(config.env).unwrapped
    assert (grid.rows, grid.slip_prob, grid.step_reward) == (6, 0.5, -1.0)


def test_configured_env_trains_end_to_end_from_the_cli(tmp_path):
    result = forgelab_cli("run", str(_write(tmp_path, EXPERIMENT)), "--no-progress")
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "runs" / "grid-config").iterdir())
    rows = read_metrics(run_dir)
    episodes = [(r["train/episode_return"], r["train/episode_length"])
                for r in rows if "train/episode_return" in r]
    assert episodes == [(-6.0, 6)] * 6  # 3 envs x 2 episodes of 6 steps in 36 steps
    evals = [r for r in rows if "eval/return_mean" in r]
    assert evals and evals[-1]["eval/return_mean"] == -6.0  # eval envs keep the raw reward


# A tiny run on two async workers (its agent's own options follow).
ASYNC_RUN = ["env.vectorization=async", "env.num_envs=2", "train.total_steps=128",
             "train.eval_every=128", "train.eval_episodes=1", "train.video_every=null",
             "tracking.mode=disabled"]
TINY = {"ppo": ["agent.n_steps=32", "agent.batch_size=64", "agent.n_epochs=1"],
        "dqn": ["agent.learning_starts=32", "agent.train_freq=32"]}


def test_async_workers_left_to_the_end_of_a_run_exit_quietly(tmp_path):
    # A worker still alive at exit is terminated by multiprocessing; one that kept forgelab's
    # SIGTERM handler printed a traceback.
    result = forgelab_cli("run", "cartpole-ppo", *ASYNC_RUN, *TINY["ppo"],
                          f"output_dir={tmp_path}", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("agent", ["ppo", "dqn"])
def test_a_run_closes_its_async_workers_when_it_ends(agent):
    # In-process (a notebook, a Ray worker): the run's env processes end with the run, after
    # its last checkpoint took their state, not at garbage collection or interpreter exit.
    # The garbage collector is off, so only the run itself can have closed them (the agent
    # sits in reference cycles that only a collection would free).
    gc.collect()
    gc.disable()
    try:
        run_dir = run_experiment(f"cartpole-{agent}", *ASYNC_RUN, *TINY[agent])
        assert not multiprocessing.active_children()
    finally:
        gc.enable()
    assert latest_state(run_dir)["step"] == 128  # the final checkpoint, envs included


@pytest.mark.parametrize("env, expected", [
    (dict(id="forgelab/GridWorld-v9"),
     ["env.id", "did you mean 'forgelab/GridWorld-v0'"]),
    (dict(id="forgelab/GridWorld-v0", kwargs={"slip_prb": 0.1}),
     ["'slip_prb'", "did you mean 'slip_prob'", "Its options: size, walls"]),
    (dict(id="forgelab/GridWorld-v0", kwargs={"slip_prob": 2}),
     ["env.kwargs", "slip_prob must be in [0, 1]"]),
    (dict(id="CartPole-v1", kwargs={"gravity": 3}),
     ["'gravity'", "Its options: sutton_barto_reward, render_mode"]),
    (dict(id="forgelab/GridWorld-v0", wrappers=["normalise_observation"]),
     ["env.wrappers[0]", "did you mean 'normalize_observation'", "frame_stack"]),
    (dict(id="forgelab/GridWorld-v0", wrappers=["clip_action", {"name": "frame_stack",
                                                                  "stack_siz": 3}]),
     ["env.wrappers[1].frame_stack.stack_siz", "did you mean 'stack_size'"]),
    (dict(id="forgelab/GridWorld-v0", wrappers=[{"name": "frame_stack", "stack_size": "four"}]),
     ["env.wrappers[0].frame_stack.stack_size", "valid integer", "'four'"]),
    (dict(id="forgelab/GridWorld-v0", wrappers=["time_limit"]),
     ["env.wrappers[0].time_limit.max_episode_steps", "required"]),
    (dict(id="forgelab/GridWorld-v0", wrappers=[{"name": "rescale_action", "min_action": 0,
                                                  "max_action": 1}]),
     ["env.wrappers[0] (rescale_action)", "Box action space"]),
])
def test_wrong_env_sections_are_config_errors(env, expected):
    with pytest.raises(ConfigError) as info:
        check_env_spec(EnvSpec(**env))
    for text in expected:
        assert text in str(info.value)


ATARI = {"name": "atari_preprocessing", "frame_skip": 4, "screen_size": 84}


@pytest.mark.parametrize("env, expected, hint", [
    # the wrapper meets the RAM vector only on reset: the check resets the env too
    (dict(id="ALE/Pong-v5", kwargs={"frameskip": 1, "obs_type": "ram"}, wrappers=[ATARI]),
     "fails on reset", "image wrapper needs image observations"),
    (dict(id="ALE/Pong-v5", kwargs={"frameskip": 4}, wrappers=[ATARI]),
     "(atari_preprocessing) cannot wrap", "env.kwargs.frameskip: 1"),
    (dict(id="MinAtar/Breakout-v1", wrappers=["grayscale_observation"]),
     "(grayscale_observation) cannot wrap", "(H, W, 3) RGB frames"),
    (dict(id="ALE/Pong-v5", kwargs={"frameskip": 1, "repeat_action_probability": 1.5}),
     "repeat_action_probability: 1.5 is not a probability", "0 turns sticky actions off"),
    (dict(id="MinAtar/Breakout-v1", kwargs={"sticky_action_prob": 2}),
     "sticky_action_prob must be in [0, 1)", None),
])
def test_pixel_env_mistakes_are_config_errors_with_a_way_on(env, expected, hint):
    """Each of these trained (or crashed with a traceback) before."""
    with pytest.raises(ConfigError) as info:
        check_env_spec(EnvSpec(**env))
    assert expected in str(info.value)
    if hint is not None:
        assert hint in (info.value.hint or "")


def test_cli_reports_env_mistakes_with_exit_code_2_and_no_traceback(tmp_path):
    wrong_id = forgelab_cli("run", "cartpole-random", "env=forgelab/GridWorld-v9", "--dry-run")
    assert wrong_id.returncode == 2
    assert "did you mean 'forgelab/GridWorld-v0'" in wrong_id.stderr
    assert "Traceback" not in wrong_id.stderr

    experiment = EXPERIMENT.replace("stack_size: 2", "stack_sise: 2")
    wrong_option = forgelab_cli("run", str(_write(tmp_path, experiment)), "--no-progress")
    assert wrong_option.returncode == 2
    assert wrong_option.stderr.count("error: ") == 1
    assert "unknown key 'env.wrappers[2].frame_stack.stack_sise'" in wrong_option.stderr
    assert "Traceback" not in wrong_option.stderr


@pytest.mark.parametrize("env", [
    {"id": "CartPole-v1", "num_envs": 1},
    {"id": "CartPole-v1", "num_envs": 3, "max_episode_steps": 20},
    {"id": "Pendulum-v1", "num_envs": 2, "max_episode_steps": 15},  # Box actions
    {"id": "forgelab/GridWorld-v0", "num_envs": 2, "kwargs": {"size": 4, "slip_prob": 0.3},
     "wrappers": [{"name": "frame_stack", "stack_size": 2}, "normalize_reward"]},
    {"id": "FrozenLake-v1", "num_envs": 2},  # a Discrete observation: the stock step
])
def test_lean_sync_env_steps_exactly_like_gymnasiums(env):
    """forgelab's sync vector env (a leaner SAME_STEP step) returns what gymnasium's
    SyncVectorEnv returns, step for step: observations, rewards, ends and every info (final
    observations, episode statistics), across several episode ends."""
    spec = EnvSpec(**env)
    ours = make_vec_env(spec)
    stock = gymnasium.vector.SyncVectorEnv([lambda: make_env(spec)] * spec.num_envs,
                                           autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    assert type(ours) is not gymnasium.vector.SyncVectorEnv
    for envs in (ours, stock):
        envs.reset(seed=7)
        envs.action_space.seed(3)
    ends = 0
    for _ in range(120):
        actions = stock.action_space.sample()
        a, b = ours.step(actions), stock.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y, strict=True)
        assert a[4].keys() == b[4].keys()
        if "final_obs" in b[4]:
            ends += int(b[4]["_final_obs"].sum())
            np.testing.assert_array_equal(a[4]["_final_obs"], b[4]["_final_obs"])
            for x, y in zip(a[4]["final_obs"], b[4]["final_obs"], strict=True):
                assert (x is None and y is None) or np.array_equal(x, y)
            assert completed_episodes(a[4]) == completed_episodes(b[4])
    assert ends >= 3  # the autoreset path ran
    ours.close()
    stock.close()
