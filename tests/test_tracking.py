"""Tracking: an offline W&B run read back with `wandb leet inspect --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    read_metrics,
    run_experiment,
    user_env,
    wandb_config,
    wandb_history,
    wandb_of_type,
    wandb_records,
)

from forgelab.core.tracking import Tracker, resolve_mode, wandb_host


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("runs")
    run_dir = run_experiment("cartpole-random", "train.total_steps=800", "train.eval_every=400",
                             "train.video_every=800", "train.eval_episodes=2", "env.num_envs=2",
                             output_dir=out)
    return run_dir, wandb_records(run_dir)


def test_config_versions_and_run_identity_reach_wandb(random_run) -> None:
    run_dir, records = random_run
    run = wandb_of_type(records, "run")[0]
    info = json.loads((run_dir / "run.json").read_text())
    assert run["run_id"] == info["run_id"]
    assert run["project"] == "forgelab"
    assert run["run_group"] == "cartpole-random"
    assert run["job_type"] == "train"
    assert {"random", "CartPole-v1"} <= set(run["tags"])
    config = wandb_config(records)
    assert config["agent"] == "random"
    assert config["train"]["total_steps"] == 800
    assert config["env"]["num_envs"] == 2
    assert config["versions"]["torch"] and config["versions"]["gymnasium"]
    axes = {m.get("glob_name"): m.get("step_metric") for m in wandb_of_type(records, "metric")}
    assert axes["eval/*"] == "global_step" and axes["train/*"] == "global_step"


def test_scalars_video_and_artifact_are_logged(random_run) -> None:
    run_dir, records = random_run
    rows = wandb_history(records)
    evals = [r for r in rows if "eval/return_mean" in r]
    assert [r["global_step"] for r in evals] == [400, 800]
    assert all(5 < r["eval/return_mean"] < 200 for r in evals)
    assert any("train/episode_return" in r for r in rows)
    videos = [r for r in rows if "rollout/video._type" in r]
    assert len(videos) == 1 and videos[0]["rollout/video._type"] == "video-file"
    assert videos[0]["rollout/video.path"].endswith(".mp4") and videos[0]["global_step"] == 800
    artifacts = wandb_of_type(records, "artifact")
    assert artifacts and all(a["type"] == "model" for a in artifacts)
    assert ["best", "latest"] in [sorted(a["aliases"]) for a in artifacts]
    assert artifacts[-1]["aliases"][0] == "latest"
    assert "state.pt" in [c["path"] for c in artifacts[0]["manifest"]["contents"]]
    assert wandb_of_type(records, "exit")[0]["exit_code"] == 0

    # The same numbers are in the local metrics.jsonl, and the video file is in the run dir.
    local = [r for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert [r["eval/return_mean"] for r in local] == [r["eval/return_mean"] for r in evals]
    video_rows = [r for r in read_metrics(run_dir) if "rollout/video" in r]
    assert (run_dir / video_rows[0]["rollout/video"]).stat().st_size > 1000


def test_tracker_logs_an_image_and_defines_step_axes(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, mode="offline", run_id="imgtest1", project="forgelab",
                      job_type="sample", config={"what": "image"})
    tracker.define_axis("epoch", ["samples/*"])
    image = np.zeros((3, 16, 24), dtype=np.float32)
    image[0] = 1.0  # red
    path = tracker.log_image("samples/grid", image, caption="red", epoch=3)
    tracker.summary({"test/score": 0.5})
    tracker.finish()
    from PIL import Image

    assert Image.open(path).size == (24, 16)
    records = wandb_records(tmp_path)
    grid = next(r for r in wandb_history(records) if "samples/grid._type" in r)
    assert grid["samples/grid._type"] == "image-file" and grid["epoch"] == 3
    assert grid["samples/grid.caption"] == "red"
    axes = {m.get("glob_name"): m.get("step_metric") for m in wandb_of_type(records, "metric")}
    assert axes["samples/*"] == "epoch"
    summaries = [s["update"] for s in wandb_of_type(records, "summary")]
    assert any(s.get("test/score") == 0.5 for s in summaries)


def test_no_secret_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wandb-secret-key-0123456789abcdef0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)  # credentials present, WANDB_MODE=offline wins
    assert resolve_mode("auto") == "offline"
    run_dir = run_experiment("cartpole-random", "train.total_steps=200", "train.eval_episodes=1",
                             "train.video_every=200")
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"API key written to {path}"


def test_auto_mode_is_online_only_with_credentials(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("online") == "offline"


def test_auto_mode_finds_a_self_hosted_login(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """`wandb login --host URL` keeps the key under that host in ~/.netrc and the URL in
    W&B's settings file; auto mode must look the key up for that host, not api.wandb.ai."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_CONFIG_DIR", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    netrc_file = tmp_path / ".netrc"
    netrc_file.write_text(f"machine wandb.example.org\n  login user\n  password {'k' * 40}\n")
    netrc_file.chmod(0o600)
    assert wandb_host() == "api.wandb.ai"
    assert resolve_mode("auto") == "offline"  # a key, but for another server
    settings = tmp_path / ".config" / "wandb" / "settings"
    settings.parent.mkdir(parents=True)
    settings.write_text("[default]\nbase_url = https://wandb.example.org:8080\n")
    assert wandb_host() == "wandb.example.org"
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://other.example.org")  # the variable wins
    assert resolve_mode("auto") == "offline"


def test_non_finite_values_stay_numbers_on_wandb_and_strings_in_jsonl(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, mode="offline", run_id="nantest1", project="forgelab")
    tracker.log({"train/td_loss": float("nan"), "train/q_mean": np.float32(1.5)}, global_step=7)
    tracker.finish()
    local = read_metrics(tmp_path)[0]
    assert local["train/td_loss"] == "nan" and local["train/q_mean"] == 1.5
    row = next(r for r in wandb_history(wandb_records(tmp_path)) if "train/td_loss" in r)
    assert row["train/td_loss"] != "nan"  # logged as a float (W&B shows NaN), not a string
    assert row["global_step"] == 7


def test_online_mode_without_credentials_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in user_env().items() if k not in {"WANDB_MODE", "WANDB_API_KEY"}}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "netrc"))
    exe = str(Path(sys.executable).parent / "forgelab")
    result = subprocess.run([exe, "run", "cartpole-random", "tracking.mode=online",
                             "train.total_steps=100", "--no-progress"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "W&B could not start an online run" in result.stderr
    assert "tracking.mode=offline" in result.stderr and "Traceback" not in result.stderr
    assert not list(Path("runs").glob("*/*"))  # no half-made run directory
