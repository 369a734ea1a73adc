"""Batched evaluation plays the same episodes as one-at-a-time evaluation: same seeds, same
returns, lengths and frames, in episode order; fewer policy calls; and a stop part-way keeps
only finished episodes."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from forgelab.agents.evaluation import PolicyEvaluator, run_episodes, run_episodes_batched
from forgelab.core.tracking import Tracker

# A fixed linear policy that keeps CartPole up for a while, a different while in every episode,
# so envs finish at different steps and start the next episode at different times.
WEIGHTS = np.array([0.0, 0.0, 1.0, 0.0])  # pole angle only: 25-56 steps


def one(obs: np.ndarray) -> int:
    return int(obs @ WEIGHTS > 0)


class Batches:
    """The batch version of :func:`one`, counting calls and batch sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.sizes.append(len(obs))
        return (obs @ WEIGHTS > 0).astype(np.int64)


def cartpoles(n: int) -> list[gym.Env]:
    return [gym.make("CartPole-v1", render_mode="rgb_array") for _ in range(n)]


def test_batched_episodes_equal_one_at_a_time_ones() -> None:
    [single] = cartpoles(1)
    expected = run_episodes(single, one, 7, seed=100, record=2, max_frames=30)
    assert len(set(expected.lengths)) > 2  # the episodes differ, or the test proves little
    envs = cartpoles(3)  # fewer envs than episodes: envs are reused for later episodes
    policy = Batches()
    got = run_episodes_batched(envs, policy, 7, seed=100, record=2, max_frames=30)
    assert got.returns == expected.returns
    assert got.lengths == expected.lengths
    assert len(got.videos) == 2
    for frames, want in zip(got.videos, expected.videos, strict=True):
        assert len(frames) == len(want) == 30  # max_frames
        assert np.array_equal(np.stack(frames), np.stack(want))
    # One call per step for all playing envs: the longest chain of episodes, not their sum.
    assert len(policy.sizes) < sum(expected.lengths) / 2
    assert max(policy.sizes) == 3 and sum(policy.sizes) == sum(expected.lengths)


def test_batched_play_stopped_part_way_keeps_finished_episodes() -> None:
    policy = Batches()
    [single] = cartpoles(1)
    expected = run_episodes(single, one, 6, seed=7)
    shortest = min(expected.lengths)
    got = run_episodes_batched(cartpoles(6), policy, 6, seed=7,
                               should_stop=lambda: len(policy.sizes) >= shortest)
    finished = [i for i, length in enumerate(expected.lengths) if length <= shortest]
    assert got.lengths == [expected.lengths[i] for i in finished]
    assert got.returns == [expected.returns[i] for i in finished]


def test_evaluator_batched_and_one_at_a_time_log_the_same_metrics(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, mode="disabled", run_id="x")
    made: list[gym.Env] = []

    def make() -> gym.Env:
        made.append(gym.make("CartPole-v1", render_mode="rgb_array"))
        return made[-1]

    evaluator = PolicyEvaluator(make, tracker, episodes=5, seed=3, max_envs=4)
    batched = evaluator.evaluate(Batches(), step=10, batched=True)
    assert len(made) == 4  # at most max_envs envs, kept for the next evaluation
    evaluator.evaluate(Batches(), step=20, batched=True)
    assert len(made) == 4
    assert evaluator.evaluate(one, step=30) == batched
    evaluator.close()
    tracker.finish()
    assert all(env.unwrapped.screen is None for env in made)  # closed: pygame freed


def test_batched_play_takes_box_actions_list_actions_and_dict_observations() -> None:
    # Box actions: a (B, 1) array, one row per env (Pendulum).
    def push(obs: np.ndarray) -> np.ndarray:
        return np.clip(-2.0 * obs[..., 1:2] - 0.5 * obs[..., 2:3], -2.0, 2.0)

    [pendulum] = [gym.make("Pendulum-v1")]
    one_at_a_time = run_episodes(pendulum, lambda obs: push(obs[None])[0], 3, seed=1)
    batched = run_episodes_batched([gym.make("Pendulum-v1") for _ in range(2)], push, 3, seed=1)
    assert batched.returns == one_at_a_time.returns
    # A plugin's actions() may return a plain list of Python ints.
    listed = run_episodes_batched(cartpoles(3), lambda obs: Batches()(obs).tolist(), 5, seed=4)
    assert listed.returns == run_episodes(cartpoles(1)[0], one, 5, seed=4).returns
    # Dict observations (SB3's MultiInputPolicy) are stacked entry by entry.
    seen: list[dict] = []

    def from_dict(obs: dict) -> np.ndarray:
        seen.append(obs)
        return Batches()(obs["state"])

    def dict_cartpole() -> gym.Env:
        space = gym.spaces.Dict({"state": gym.make("CartPole-v1").observation_space})
        return gym.wrappers.TransformObservation(gym.make("CartPole-v1"),
                                                 lambda obs: {"state": obs}, space)

    dicts = run_episodes_batched([dict_cartpole() for _ in range(3)], from_dict, 5, seed=4)
    assert dicts.returns == listed.returns
    assert seen[0]["state"].shape == (3, 4)


def test_float_frames_given_one_by_one_are_scaled_as_one_video(tmp_path: Path) -> None:
    """A dark float frame of a [0, 255] video must not be taken for a [0, 1] one."""
    import imageio.v2 as imageio

    from forgelab.core.tracking import write_frames_mp4

    frames = [np.full((16, 16, 3), value, np.float32) for value in (0.5, 200.0, 200.0)]
    path = write_frames_mp4(tmp_path / "v.mp4", frames, fps=4)
    first = imageio.mimread(path)[0]
    assert first.mean() < 10  # 0.5 of 255: black, not 0.5 * 255 = 128


def test_train_eval_envs_sets_how_many_evaluation_envs_a_run_builds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's evaluations build min(eval_episodes, train.eval_envs) envs, once; 1 plays one
    episode at a time (an env that cannot run in copies), with the same scores."""
    from conftest import read_metrics, run_experiment

    from forgelab.envs.building import Environments

    made: list[int] = []
    make_eval_env = Environments.make_eval_env

    def counted(self, *args, **kwargs):
        made.append(1)
        return make_eval_env(self, *args, **kwargs)

    monkeypatch.setattr(Environments, "make_eval_env", counted)
    overrides = ["train.total_steps=600", "train.eval_every=200", "train.eval_episodes=4",
                 "train.video_every=null", "tracking.mode=disabled", "seed=1"]
    scores = []
    for extra, built in (([], 4), (["train.eval_envs=1"], 1)):
        made.clear()
        run_dir = run_experiment("cartpole-dqn", *overrides, *extra)
        assert len(made) == built
        scores.append([(r["global_step"], r["eval/return_mean"]) for r in read_metrics(run_dir)
                       if "eval/return_mean" in r])
    assert len(scores[0]) == 3 and scores[0] == scores[1]


def test_atari_videos_play_in_real_time() -> None:
    """Under atari_preprocessing each recorded frame is frame_skip emulator frames (60 a
    second): 15 frames/s at frame skip 4, not ALE's nominal 30; other envs keep theirs."""
    from forgelab.agents.evaluation import render_fps
    from forgelab.agents.experiment import EnvSpec
    from forgelab.envs.building import make_env

    pong = make_env(EnvSpec(id="ALE/Pong-v5", kwargs={"frameskip": 1}, wrappers=[
        {"name": "atari_preprocessing", "frame_skip": 4, "screen_size": 84},
        {"name": "frame_stack", "stack_size": 4}]))
    try:
        assert pong.metadata["render_fps"] == 30 and render_fps(pong) == 15
    finally:
        pong.close()
    assert render_fps(cartpoles(1)[0]) == 50
