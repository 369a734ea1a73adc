"""env.vectorization: vector -- gymnasium's native batch CartPole behind forgelab's vector-env
contract (SAME_STEP autoreset, episode statistics), used by PPO and DQN, resumed exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from conftest import (
    EXPERIMENTS,
    InterruptedPPO,
    forgelab_cli,
    latest_state,
    read_metrics,
    train_straight_and_resumed,
)

from forgelab.agents.experiment import EnvSpec
from forgelab.core.config import apply_overrides, parse_overrides, validate_experiment
from forgelab.core.errors import ConfigError
from forgelab.envs.building import (
    check_env_spec,
    completed_episodes,
    final_observations,
    make_vec_env,
)


def test_native_env_keeps_the_sync_contract() -> None:
    spec = EnvSpec(id="CartPole-v1", num_envs=4, vectorization="vector",
                   wrappers=[{"name": "time_limit", "max_episode_steps": 30}])
    envs = make_vec_env(spec)
    sync = make_vec_env(EnvSpec(id="CartPole-v1", num_envs=4))
    assert envs.num_envs == 4 and envs.metadata["autoreset_mode"] == sync.metadata[
        "autoreset_mode"]
    assert envs.single_observation_space == sync.single_observation_space
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    returns, lengths = np.zeros(4), np.zeros(4, int)
    seen = {"terminated": 0, "truncated": 0}
    for _ in range(300):
        actions = rng.integers(2, size=4)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        returns += rewards
        lengths += 1
        done = terminated | truncated
        episodes = completed_episodes(infos)
        assert episodes == [(returns[i], lengths[i]) for i in np.flatnonzero(done)]
        if done.any():
            finals = final_observations(next_obs, infos)
            for i in np.flatnonzero(done):
                # s' of the ended episode is its real last state; the obs is a fresh reset
                assert np.all(np.abs(next_obs[i]) <= 0.05)
                if terminated[i]:
                    assert abs(finals[i][0]) > 2.4 or abs(finals[i][2]) > 0.2094
                    seen["terminated"] += 1
                else:
                    assert lengths[i] == 30
                    seen["truncated"] += 1
            returns[done], lengths[done] = 0, 0
    assert seen["terminated"] > 10 and seen["truncated"] > 0
    envs.close()
    sync.close()


def test_native_env_steps_the_same_physics_as_the_single_env() -> None:
    envs = make_vec_env(EnvSpec(id="CartPole-v1", num_envs=3, vectorization="vector"))
    obs, _ = envs.reset(seed=1)
    single = gym.make("CartPole-v1").unwrapped
    single.reset(seed=0)
    for action in (0, 1, 1, 0, 1):
        single.state = obs[1].astype(np.float64)
        expected, *_ = single.step(action)
        obs, *_ = envs.step(np.array([0, action, 1]))
        np.testing.assert_allclose(obs[1], expected, rtol=1e-6, atol=1e-6)


def test_envs_without_a_native_version_or_with_wrappers_are_refused() -> None:
    with pytest.raises(ConfigError, match="has no native vector env.*CartPole-v1"):
        check_env_spec(EnvSpec(id="Acrobot-v1", vectorization="vector"))
    with pytest.raises(ConfigError, match="takes no per-env wrappers.*normalize_observation"):
        check_env_spec(EnvSpec(id="CartPole-v1", vectorization="vector",
                               wrappers=["normalize_observation"]))
    result = forgelab_cli("run", "cartpole-ppo", "env.id=Acrobot-v1",
                          "env.vectorization=vector", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "env.vectorization: vector" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


def _config(agent: str):
    data = yaml.safe_load((EXPERIMENTS / "cartpole-ppo.yaml").read_text())
    data.update(name=agent, agent=agent, output_dir=str(Path.cwd() / "runs"))
    overrides = ["device=cpu", "seed=3", "env.num_envs=4", "env.vectorization=vector",
                 "agent.n_steps=16", "agent.batch_size=32", "agent.n_epochs=2",
                 "train.total_steps=2048", "train.checkpoint_every=768", "train.eval_every=1024",
                 "train.eval_episodes=1", "train.video_every=null"]
    return validate_experiment(apply_overrides(data, parse_overrides(overrides)))


def test_ppo_on_the_native_env_resumes_exactly() -> None:
    straight, interrupted, stopped = train_straight_and_resumed(_config, "ppo", InterruptedPPO())
    assert stopped["step"] == 768
    a, b = latest_state(straight), latest_state(interrupted)
    assert a["step"] == b["step"] == 2048
    for key, value in a["component"]["policy"].items():
        assert torch.equal(value, b["component"]["policy"][key]), key

    def episodes(run_dir: Path) -> list[float]:
        return [row["train/episode_return"] for row in read_metrics(run_dir)
                if "train/episode_return" in row and row["global_step"] > 768]

    assert episodes(straight) == episodes(interrupted) and episodes(straight)
    # evaluation runs on the ordinary single env, as with sync
    assert any("eval/return_mean" in row for row in read_metrics(straight))


def test_dqn_trains_on_the_native_env() -> None:
    from conftest import run_experiment

    run_dir = run_experiment("cartpole-dqn", "device=cpu", "env.num_envs=4",
                             "env.vectorization=vector", "agent.learning_starts=200",
                             "agent.train_freq=16", "agent.gradient_steps=4",
                             "train.total_steps=1200", "train.eval_every=1200",
                             "train.eval_episodes=1", "train.video_every=null",
                             "train.checkpoint_every=null", "tracking.mode=disabled")
    rows = read_metrics(run_dir)
    lengths = [row["train/episode_length"] for row in rows if "train/episode_length" in row]
    assert len(lengths) > 10 and all(8 <= n <= 500 for n in lengths)
    assert any("train/td_loss" in row for row in rows)


def test_rl_benchmark_has_native_vector_and_autograd_rows_beside_ppo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import benchmark_script

    rl_benchmark = benchmark_script("rl_vs_sb3")

    monkeypatch.delenv("WANDB_MODE", raising=False)  # main() drops it; restored after the test
    raw = tmp_path / "results.json"
    assert rl_benchmark.main(["--seeds", "1", "--algos", "ppo,ppo-vec,ppo-autograd",
                              "--frameworks", "forgelab", "--max-steps", "512",
                              "--eval-every", "512", "--full", "--json", str(raw)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^ppo-vec +forgelab", table, re.M), table  # (columns padded to fit)
    assert "forgelab ppo-vec / ppo: train SPS" in table
    assert "forgelab ppo-autograd / ppo: train SPS" in table
    rows = {r["algo"]: r for r in json.loads(raw.read_text())}
    assert rows["ppo"]["steps"] == rows["ppo-vec"]["steps"] == rows["ppo-autograd"]["steps"] == 512
