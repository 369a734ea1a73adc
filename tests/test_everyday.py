"""Everyday use: the `threads` setting, the Python API (`import forgelab`), loading a trained
agent or model, `forgelab eval` with episodes / videos / checkpoints, `forgelab watch`, and the
CLI's rough edges (pipes, option listings, schedules, resuming a finished run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    forgelab_cli,
    read_metrics,
    run_experiment,
    user_env,
    wandb_config,
    wandb_records,
)
from threadpoolctl import threadpool_info, threadpool_limits

import forgelab
from forgelab.core import runner
from forgelab.core.config import load_experiment
from forgelab.core.errors import ConfigError, ForgelabError

RANDOM_SHORT = ("train.total_steps=200", "train.eval_every=100", "train.eval_episodes=2",
                "train.video_every=null", "env.num_envs=2")
PPO = {"train": {"total_steps": 512, "eval_every": 256, "eval_episodes": 3, "video_every": None},
       "env": {"num_envs": 4}, "agent": {"n_steps": 32, "batch_size": 64, "n_epochs": 2}}


@pytest.fixture
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs whose W&B side is not under test skip it (seconds per run on a busy machine)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("experiment,overrides", [
    ("cartpole-dqn", ("train.total_steps=300", "train.eval_every=300", "train.eval_episodes=1",
                      "train.video_every=null", "train.log_every=100", "agent.learning_starts=100",
                      "agent.buffer_size=1000", "train.checkpoint_every=null")),
    ("cartpole-sb3-ppo", ("train.total_steps=128", "train.eval_every=128", "env.num_envs=2",
                          "train.eval_episodes=1", "train.video_every=null", "agent.n_steps=32",
                          "agent.batch_size=64", "agent.n_epochs=1")),
    ("digits-ae", ("train.epochs=1", "train.eval_every=1", "train.checkpoint_every=null")),
])
def test_threads_is_applied_by_the_runner_to_every_family(experiment, overrides, capsys,
                                                          no_wandb) -> None:
    assert torch.get_num_threads() == 1  # conftest's setting for this worker
    config = load_experiment(experiment, [*overrides, "threads=2",
                                          f"output_dir={Path.cwd() / 'runs'}"])
    with threadpool_limits(limits=3, user_api="blas"):  # (restored after the test)
        run_dir = runner.train(config, show_progress=True)
        assert torch.get_num_threads() == 2
        # NumPy's BLAS on one thread: with two, its threads and torch's fought over the
        # cores and PPO's NumPy gradients ran 35x slower
        assert {pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "blas"} == {1}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["threads"] == 2
    # The progress bar counts a unit that advances smoothly and shows what a user watches.
    bars = [line for line in capsys.readouterr().err.splitlines()
            if re.search(r"\d+/\d+ \[", line)]
    bar = bars[-1]  # the final state, drawn when the bar closes
    done, total = map(int, re.search(r"(\d+)/(\d+) \[", bar).groups())
    assert done == total
    if experiment == "digits-ae":  # one epoch, counted in batches
        assert total > 10 and "batch/s" in bar and "loss=" in bar, bar
    else:
        assert total == config.train.total_steps and "step/s" in bar and "return=" in bar, bar


def test_torch_threads_in_old_files_is_an_alias_of_threads(tmp_path: Path) -> None:
    old = yaml.safe_load(Path(runner.__file__).parent.parent.joinpath(
        "experiments", "cartpole-ppo.yaml").read_text())
    old["agent_options"]["torch_threads"] = 3
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    prepared = runner.prepare(load_experiment(str(path)))
    assert prepared.config.threads == 3
    assert "torch_threads" not in prepared.resolved_config()["agent_options"]
    assert load_experiment("cartpole-dqn", ["agent.torch_threads=2"]).threads == 2
    assert load_experiment("digits-vae").threads == 1  # the default
    assert load_experiment("digits-vae", ["threads=null"]).threads is None


# ------------------------------------------------------------------------ Python API
def test_train_load_and_predict_with_a_native_agent(no_wandb) -> None:
    blas_threads = {pool["num_threads"] for pool in threadpool_info()
                    if pool["user_api"] == "blas"}
    run = forgelab.train("cartpole-ppo", {"agent.learning_rate": 1e-3}, seed=1, progress=False,
                         output_dir=str(Path.cwd() / "runs"), **PPO)
    assert isinstance(run, forgelab.Run) and run.dir.is_dir() and run.status == "finished"
    assert run.config["seed"] == 1 and run.config["agent_options"]["learning_rate"] == 1e-3
    assert run.config["train"]["eval_every"] == 256  # a dict override keeps the other keys
    assert torch.get_num_threads() == 1  # the caller's setting is given back
    assert blas_threads == {pool["num_threads"] for pool in threadpool_info()
                            if pool["user_api"] == "blas"}  # and NumPy's BLAS setting
    steps, returns = run.series("eval/return_mean")
    assert steps == [256, 512] and len(returns) == 2
    assert run.metrics["eval/return_mean"] == returns[-1]
    assert run.metrics["eval/best_return_mean"] == max(returns)
    assert any("train/episode_return" in row for row in run.history)

    with forgelab.load(run.dir) as policy:  # the best checkpoint
        assert isinstance(policy, forgelab.Policy) and policy.checkpoint.name.startswith("step-")
        # Acting from outside reproduces the evaluation that chose this checkpoint.
        env = policy.make_env()
        total = 0.0
        for episode in range(3):
            obs, _ = env.reset(seed=run.config["seed"] + 100_000 + episode)
            done = False
            while not done:
                action = policy.predict(obs)
                assert isinstance(action, int)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
        assert total / 3 == run.metrics["eval/best_return_mean"]
        batch = np.stack([obs] * 64)
        assert policy.predict(batch).shape == (64,)
        sampled = policy.predict(batch, deterministic=False)
        assert set(sampled.tolist()) <= {0, 1}
    latest = run.load("latest")
    assert latest.step == 512
    latest.close()


def test_load_gives_the_same_policy_api_for_an_sb3_agent(no_wandb) -> None:
    run_dir = run_experiment("cartpole-sb3-ppo", "train.total_steps=256", "train.eval_every=256",
                             "train.eval_episodes=2", "train.video_every=null",
                             "env.num_envs=2", "agent.n_steps=64", "agent.batch_size=64",
                             "agent.n_epochs=1")
    folder = forgelab.Run(run_dir).checkpoint("best")
    policy = forgelab.load(folder)  # a checkpoint folder works as well as the run
    from stable_baselines3 import PPO

    model = PPO.load(folder / "model.zip", device="cpu")
    env = policy.make_env(seed=5)
    obs, _ = env.reset(seed=5)
    assert policy.predict(obs) == int(model.predict(obs, deterministic=True)[0])
    assert isinstance(policy.predict(obs, deterministic=False), int)
    policy.close()
    with pytest.raises(ForgelabError, match="do not also pass"):
        forgelab.load(folder, checkpoint="latest")


def test_a_generative_run_loads_as_a_sampler(tmp_path: Path, no_wandb) -> None:
    run = forgelab.train("digits-vae", progress=False, output_dir=str(Path.cwd() / "runs"),
                         train={"epochs": 1, "eval_every": 1, "checkpoint_every": None},
                         model={"nll_samples": 5})
    sampler = forgelab.load(run.dir)
    assert isinstance(sampler, forgelab.Sampler)
    a, b, c = sampler.sample(6, seed=0), sampler.sample(6, seed=0), sampler.sample(6, seed=1)
    assert a.shape[0] == 6 and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert sampler.to_file(6, tmp_path / "s.png").stat().st_size > 0
    sampler.close()


def test_train_errors_and_overrides_forms(no_wandb) -> None:
    with pytest.raises(ConfigError, match="did you mean 'total_steps'"):
        forgelab.train("cartpole-random", train={"totl_steps": 5})
    with pytest.raises(ConfigError, match="unknown experiment"):
        forgelab.train("no-such-experiment")
    assert not Path("runs").exists()  # nothing was created
    run = forgelab.train({"agent": "random", "env": "CartPole-v1", "name": "inline",
                          "train": {"total_steps": 50}}, ["seed=4"], progress=False)
    assert run.name == "inline" and run.config["seed"] == 4


def test_import_forgelab_is_light_and_python_m_forgelab_runs() -> None:
    code = "import sys, forgelab; print(forgelab.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=user_env())
    version, heavy = out.stdout.split()
    assert version[0].isdigit() and heavy == "False"
    out = subprocess.run([sys.executable, "-m", "forgelab", "--version"], capture_output=True,
                         text=True, env=user_env())
    assert out.returncode == 0 and out.stdout.strip() == f"forgelab {version}"


# ------------------------------------------------------------------------- eval, watch
def test_eval_plays_n_episodes_records_n_videos_from_any_checkpoint() -> None:
    run_dir = run_experiment("cartpole-random", *RANDOM_SHORT, "train.checkpoint_every=100")
    result = forgelab_cli("eval", str(run_dir), "--episodes", "5", "--video", "2",
                          "--checkpoint", "100", "--stochastic", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["eval/episodes"] == 5 and len(metrics["videos"]) == 2
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in metrics["videos"])
    job = next((run_dir / "evals").iterdir())
    logged = wandb_config(wandb_records(job))
    assert logged["checkpoint"] == "step-000000100" and logged["eval"]["stochastic"] is True
    from forgelab.core.loading import checkpoint_dir

    with pytest.raises(ForgelabError, match="no checkpoint at step 150") as bad:
        checkpoint_dir(run_dir, "150")  # what `--checkpoint 150` reports, exit code 2
    assert bad.value.hint == "saved steps: 100, 200" and bad.value.exit_code == 2


def test_watch_without_a_display_writes_a_video_and_says_where(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio.v2 as imageio

    from forgelab.core.playback import has_display

    run_dir = run_experiment("cartpole-random", *RANDOM_SHORT)
    # A DISPLAY without a screen behind it (SDL would fall back to offscreen): a video.
    result = forgelab_cli("watch", str(run_dir), "--episodes", "2",
                          env={"DISPLAY": ":97", "SDL_VIDEODRIVER": ""})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1].split(" to ", 1)[1])
    assert path.is_file() and path.parent == run_dir / "videos"
    returns = [float(r) for r in result.stdout.splitlines()[0].split(": ")[1].split(", ")]
    frames = imageio.get_reader(path).count_frames()
    assert frames == sum(int(r) for r in returns) + 2  # CartPole: return = length; + reset frames
    # With a display it renders to a window (SDL's dummy driver stands in for a screen here).
    from forgelab.core import playback

    returns, video = playback.watch(run_dir, episodes=1, window=True)
    assert len(returns) == 1 and video is None
    assert has_display() is False  # SDL_VIDEODRIVER=dummy, as in the test session
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.setenv("DISPLAY", ":0")
    assert has_display() is True
    if sys.platform.startswith("linux"):
        monkeypatch.delenv("DISPLAY")
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        assert has_display() is False


# ------------------------------------------------------------------------ rough edges
@pytest.mark.parametrize("argv", [["list"], ["plugins"]])
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    exe = str(Path(sys.executable).parent / "forgelab")
    read, write = os.pipe()
    os.close(read)  # the reader (`head`) has already left
    try:
        proc = subprocess.run([exe, *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                              env=user_env(), timeout=300)
    finally:
        os.close(write)
    assert "Error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_list_agents_shows_types_as_a_reader_writes_them(capsys) -> None:
    from forgelab.core.cli import main

    assert main(["list", "agents"]) == 0
    out = capsys.readouterr().out
    for noise in ("AfterValidator", "Annotated[", "<function"):
        assert noise not in out
    assert "hidden_sizes: list[int > 0] = [64, 64]" in out
    assert "learning_rate: float | str = 0.0003" in out  # sb3-ppo's schedule option


def test_native_agents_read_linear_schedules_like_the_sb3_agents() -> None:
    options = runner.prepare(load_experiment(
        "cartpole-ppo", ["agent.learning_rate=lin_1e-3", "agent.clip_range=lin_0.2"])).options
    assert (options.learning_rate, options.anneal_lr) == (1e-3, True)
    assert (options.clip_range, options.anneal_clip_range) == (0.2, True)
    a2c = runner.prepare(load_experiment("cartpole-a2c", ["agent.learning_rate=lin_7e-4"]))
    assert (a2c.options.learning_rate, a2c.options.anneal_lr) == (7e-4, True)
    # REINFORCE too, and its logged learning rate falls linearly with the steps trained
    run_dir = run_experiment("cartpole-reinforce", "agent.learning_rate=lin_1e-3",
                             "train.total_steps=2000", "train.eval_every=2000",
                             "train.eval_episodes=1", "train.log_every=1",
                             "train.video_every=null", "tracking.mode=disabled")
    rates = [(row["global_step"], row["train/learning_rate"]) for row in read_metrics(run_dir)
             if "train/learning_rate" in row]
    assert len(rates) > 3 and rates[0][1] < 1e-3 and rates[-1][1] < rates[0][1]
    for step, lr in rates:
        assert lr == pytest.approx(1e-3 * (1 - step / 2000))
    with pytest.raises(ConfigError, match="anneal_lr is false"):
        runner.prepare(load_experiment("cartpole-ppo", ["agent.learning_rate=lin_1e-3",
                                                        "agent.anneal_lr=false"]))


def test_resuming_a_finished_run_says_why_and_opens_no_wandb_run() -> None:
    run_dir = run_experiment("cartpole-random", *RANDOM_SHORT)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    result = forgelab_cli("run", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "nothing to resume" in result.stderr and "train.total_steps=400" in result.stderr
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1



def test_the_budget_suggested_for_more_training_is_above_the_steps_reached() -> None:
    # One rollout of 4 envs x 32 steps overshoots a budget of 50: the run ends at 128.
    run_dir = run_experiment("cartpole-ppo", "env.num_envs=4", "agent.n_steps=32",
                             "agent.batch_size=64", "agent.n_epochs=1", "train.total_steps=50",
                             "train.eval_episodes=1", "train.video_every=null",
                             "tracking.mode=disabled")
    result = forgelab_cli("run", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "finished at step 128 of train.total_steps=50" in result.stderr
    assert "train.total_steps=256" in result.stderr  # twice the step reached, not 100

def test_rollout_videos_need_no_moviepy(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import wandb_history

    from forgelab.core.tracking import Tracker

    monkeypatch.setitem(sys.modules, "moviepy", None)  # `import moviepy` fails
    run_dir = Path("run").resolve()  # W&B's service process has a cwd of its own
    run_dir.mkdir()
    tracker = Tracker(run_dir, mode="offline", run_id="nomoviepy", project="forgelab")
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    tracker.log_video("rollout/video", frames, fps=4, global_step=1)
    tracker.finish(quiet=True)
    rows = wandb_history(wandb_records(run_dir))
    assert any(r.get("rollout/video._type") == "video-file" for r in rows)
