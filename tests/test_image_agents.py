"""Image observations: encoders chosen from the space, uint8/bool buffers, Atari and MinAtar
through the env hook and the image wrappers, DQN/PPO/A2C on them, and the memory-optimised
replay buffer (s' stored once) giving the very same run as the plain one."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import forgelab_cli, read_metrics, run_experiment

from forgelab.agents.encoders import choose_encoder, make_encoder
from forgelab.agents.experiment import EnvSpec
from forgelab.core.checkpoints import CheckpointManager
from forgelab.core.errors import ConfigError
from forgelab.envs.building import check_env_spec, make_env

QUICK = ["device=cpu", "train.video_every=null", "train.checkpoint_every=null",
         "tracking.mode=disabled", "train.eval_episodes=1"]


def test_encoder_is_chosen_from_the_observation_space() -> None:
    frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    grid = gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    vector = gym.spaces.Box(-1, 1, (4,), np.float32)
    assert [choose_encoder(s, "auto") for s in (frames, grid, vector)] == \
        ["nature", "minatar", "mlp"]
    nature, small = make_encoder(frames, "auto"), make_encoder(grid, "auto")
    assert make_encoder(vector, "auto") is None
    assert (nature.out_features, small.out_features) == (3136, 1024)  # 64x7x7, 16x8x8
    # raw uint8 / bool batches in: scaled to [0, 1] and put channels first on the device
    assert nature(torch.full((2, 4, 84, 84), 255, dtype=torch.uint8)).shape == (2, 3136)
    assert small(torch.ones((3, 10, 10, 4), dtype=torch.bool)).shape == (3, 1024)
    with pytest.raises(ValueError, match="needs image observations"):
        make_encoder(vector, "nature")


def test_atari_pipeline_from_the_experiment_file_gives_stacked_uint8_frames() -> None:
    spec = EnvSpec(id="ALE/Pong-v5", kwargs={"frameskip": 1},
                   wrappers=[{"name": "atari_preprocessing", "noop_max": 30},
                             {"name": "frame_stack", "stack_size": 4},
                             {"name": "clip_reward", "min_reward": -1, "max_reward": 1}])
    obs_space, _ = check_env_spec(spec)
    assert obs_space.shape == (4, 84, 84) and obs_space.dtype == np.uint8
    env = make_env(EnvSpec(id="ALE/Breakout-v5", kwargs={"frameskip": 1}, wrappers=[
        {"name": "atari_preprocessing", "screen_size": 64, "grayscale_obs": False}]))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    env.close()
    with pytest.raises(ConfigError, match="resize_observation.shape"):
        check_env_spec(EnvSpec(id="CartPole-v1",
                               wrappers=[{"name": "resize_observation", "shape": [84]}]))


def test_dqn_learns_from_minatar_grids_with_a_cnn_and_bool_replay() -> None:
    run_dir = run_experiment("breakout-minatar-dqn", *QUICK, "train.total_steps=600",
                             "agent.learning_starts=300", "agent.buffer_size=1000",
                             "train.eval_every=600", "train.checkpoint_every=600",
                             "train.log_every=300")
    state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
    agent = state["component"]
    assert agent["q_net"]["encoder.net.0.weight"].shape == (16, 4, 3, 3)  # MinAtar conv
    assert agent["buffer"]["obs"].dtype == torch.bool  # stored as the env gives it
    assert any("train/td_loss" in row for row in read_metrics(run_dir))


@pytest.mark.parametrize("agent", ["ppo", "a2c", "reinforce"])
def test_policy_gradient_agents_share_a_cnn_on_minatar(agent: str) -> None:
    options: dict = {"hidden_sizes": [128], "activation": "relu"}
    if agent != "reinforce":
        options["n_steps"] = 32
    if agent == "ppo":
        options.update(batch_size=32, n_epochs=2)
    data = {"name": f"minatar-{agent}", "agent": agent, "agent_options": options,
            "env": {"id": "MinAtar/Breakout-v1", "num_envs": 2},
            "train": {"total_steps": 256, "eval_every": 256, "checkpoint_every": 256,
                      "log_every": 128}}
    run_dir = run_experiment(data, *QUICK[:2], *QUICK[3:])
    state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
    policy = state["component"]["policy"]
    assert policy["encoder.net.0.weight"].shape == (16, 4, 3, 3)  # chosen by encoder: auto
    assert policy["actor.layers.0.weight"].shape[1] == 1024  # the heads read the CNN features
    assert any("eval/return_mean" in row for row in read_metrics(run_dir))


def _metrics(run_dir: Path) -> list[str]:
    rows = []
    for row in read_metrics(run_dir):
        row.pop("perf/sps", None)
        row.pop("_time", None)
        rows.append(json.dumps(row, sort_keys=True))
    return rows


def test_memory_optimised_replay_buffer_gives_the_same_run() -> None:
    # 3 envs, a buffer that wraps around, episodes cut at 20 steps: every case of s' occurs
    # (next slot, newest slots, episode ends, overwritten slots).
    common = [*QUICK, "seed=5", "env.num_envs=3", "env.max_episode_steps=20",
              "agent.buffer_size=300", "agent.learning_starts=60", "agent.train_freq=6",
              "agent.gradient_steps=2", "train.total_steps=900", "train.eval_every=900",
              "train.log_every=150"]
    plain = run_experiment("cartpole-dqn", *common, output_dir=Path.cwd() / "plain")
    optimized = run_experiment("cartpole-dqn", *common, "agent.optimize_memory_usage=true",
                               output_dir=Path.cwd() / "optimized")
    assert _metrics(plain) == _metrics(optimized)
    assert sum("train/td_loss" in row for row in read_metrics(plain)) >= 4


def test_a_cnn_on_vector_observations_is_one_clear_error() -> None:
    result = forgelab_cli("run", "cartpole-dqn", "agent.encoder=nature", "train.total_steps=10",
                          "tracking.mode=disabled", "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "agent.encoder: encoder 'nature' needs image observations" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("experiment", ["breakout-minatar-dqn", "breakout-minatar-ppo"])
def test_a_nature_cnn_on_small_images_is_one_clear_error(experiment: str) -> None:
    result = forgelab_cli("run", experiment, "agent.encoder=nature", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "the Nature CNN needs images of at least 36x36, not 10x10" in result.stderr
    assert "hint: use encoder: minatar" in result.stderr
    assert "Traceback" not in result.stderr
    # 36 comes from its layers: the smallest image that leaves one pixel after the last conv
    assert make_encoder(gym.spaces.Box(0, 255, (36, 36), np.uint8), "nature").out_features == 64
    with pytest.raises(ValueError, match="at least 36x36, not 35x36"):
        make_encoder(gym.spaces.Box(0, 255, (35, 36), np.uint8), "nature")


@pytest.mark.parametrize("game", ["Breakout", "Asterix", "Freeway", "SpaceInvaders", "Seaquest"])
def test_minatar_grids_are_read_channels_last(game: str) -> None:
    # MinAtar gives HxWxC; Seaquest's 10x10x10 is a cube, which must not read as CxHxW
    env = make_env(EnvSpec(id=f"MinAtar/{game}-v1"))
    obs, _ = env.reset(seed=0)
    env.close()
    encoder = make_encoder(env.observation_space, "auto")
    assert encoder.channels_last and encoder.net[0].in_channels == obs.shape[-1]
    channels_first = torch.as_tensor(obs).permute(2, 0, 1).float()
    with torch.no_grad():  # the conv sees the channels, not the rows, as its input planes
        expected = encoder.net(channels_first.unsqueeze(0))
        assert torch.allclose(encoder(torch.as_tensor(obs).unsqueeze(0)), expected)
