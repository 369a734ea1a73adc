"""Exact resume of environments whose state lives outside plain attributes: MinAtar's game
objects and their RandomState, ALE's emulator (with its sticky-action RNG), and frame stacks.
A fresh env restored from a snapshot (through a weights_only checkpoint round trip) continues
exactly as the original, and a MinAtar DQN run stopped halfway and resumed ends with the
parameters of one that ran straight through."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import latest_state, run_experiment
from test_agent_dqn import dqn_config

from forgelab.agents.experiment import EnvSpec
from forgelab.core import runner
from forgelab.envs.building import make_env, make_vec_env
from forgelab.envs.snapshots import restore_env, snapshot_env

ENVS = {
    "minatar-breakout": {"id": "MinAtar/Breakout-v1", "num_envs": 2},  # sticky actions 0.1
    "minatar-seaquest": {"id": "MinAtar/Seaquest-v1", "num_envs": 1},  # lists of objects
    # worker processes: the game goes through the pipe as a pickled copy and back
    "minatar-breakout-async": {"id": "MinAtar/Breakout-v1", "num_envs": 2,
                               "vectorization": "async"},
    # its map is an array of bytes, which torch has no tensor for; slippery: random moves
    "frozenlake": {"id": "FrozenLake-v1", "num_envs": 2},
    "cartpole-frame-stack": {"id": "CartPole-v1", "num_envs": 2,
                             "wrappers": [{"name": "frame_stack", "stack_size": 3}]},
    "ale-pong": {"id": "ALE/Pong-v5", "num_envs": 1,
                 # as pong-dqn: sticky actions off
                 "kwargs": {"frameskip": 1, "repeat_action_probability": 0.0},
                 "wrappers": [{"name": "atari_preprocessing", "noop_max": 30, "frame_skip": 4,
                               "screen_size": 84},
                              {"name": "frame_stack", "stack_size": 4}]},
    # v5's default sticky actions (0.25 per frame), which forgelab moves out of the emulator
    "ale-breakout-sticky": {"id": "ALE/Breakout-v5", "num_envs": 2, "kwargs": {"frameskip": 1},
                            "wrappers": [{"name": "atari_preprocessing", "frame_skip": 4,
                                          "screen_size": 84}]},
}


@pytest.mark.parametrize("name", list(ENVS))
def test_restored_env_continues_the_same_trajectory(name: str) -> None:
    spec = EnvSpec(**ENVS[name])
    original, copy = make_vec_env(spec), make_vec_env(spec)
    rng = np.random.default_rng(0)
    n_actions = int(original.single_action_space.n)
    try:
        original.reset(seed=5)
        for _ in range(60):
            original.step(rng.integers(n_actions, size=spec.num_envs))
        buffer = io.BytesIO()
        torch.save(snapshot_env(original), buffer)
        buffer.seek(0)
        restore_env(copy, torch.load(buffer, weights_only=True))
        seen = False
        for _ in range(300):  # several episode ends for the short games
            actions = rng.integers(n_actions, size=spec.num_envs)
            expected, got = original.step(actions), copy.step(actions)
            for x, y in zip(expected[:4], got[:4], strict=True):
                np.testing.assert_array_equal(x, y)
            seen |= bool(expected[0].any())
        assert seen  # the compared observations were not blank
    finally:
        original.close()
        copy.close()


def test_minatar_dqn_stopped_and_resumed_ends_with_identical_parameters() -> None:
    """MinAtar Breakout with its sticky actions: stop at 300 steps, resume to 600; networks
    and optimizer equal those of a straight 600-step run (a constant ε, as in the CartPole
    resume test)."""
    config = dqn_config(save_replay_buffer=True, exploration_initial_eps=0.3,
                        exploration_final_eps=0.3, learning_starts=50, buffer_size=1000,
                        net_arch=[32], target_update_interval=50)
    config["env"] = {"id": "MinAtar/Breakout-v1", "num_envs": 1}
    config["train"].update(eval_every=600, eval_episodes=1)
    straight = run_experiment(config, "train.total_steps=600")
    interrupted = run_experiment(config, "train.total_steps=300")
    resumed = runner.resume(interrupted, ["train.total_steps=600"], show_progress=False)
    a, b = latest_state(straight)["component"], latest_state(resumed)["component"]
    assert a["step"] == b["step"] == 600
    for name in a["q_net"]:
        assert torch.equal(a["q_net"][name], b["q_net"][name]), f"q_net.{name} differs"
    assert torch.equal(a["obs"], b["obs"])


def test_ale_sticky_actions_move_out_of_the_emulator_at_frameskip_1() -> None:
    """ALE's saved state lacks the action its sticky actions repeat: with frameskip 1 the
    same per-frame stickiness is a StickyAction wrapper (resumable); with ALE's own frame
    skipping, a wrapper would repeat whole agent steps, so ALE keeps them."""
    per_frame = make_env(EnvSpec(id="ALE/Breakout-v5", kwargs={"frameskip": 1}))
    skipping = make_env(EnvSpec(id="ALE/Breakout-v5"))
    try:
        sticky = per_frame.env
        assert isinstance(sticky, gym.wrappers.StickyAction)
        assert sticky.repeat_action_probability == 0.25  # v5's default
        assert per_frame.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
        assert skipping.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
        assert not isinstance(skipping.env, gym.wrappers.StickyAction)
    finally:
        per_frame.close()
        skipping.close()
