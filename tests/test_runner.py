"""The runner: run directories, saved config and versions, signals, resume and eval."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import (
    forgelab_cli,
    read_metrics,
    run_experiment,
    user_env,
    wandb_of_type,
    wandb_records,
)

from forgelab.core import runner
from forgelab.core.checkpoints import CheckpointManager
from forgelab.core.device import resolve_device
from forgelab.core.errors import ConfigError

SHORT = ("train.total_steps=400", "train.eval_every=200", "train.eval_episodes=2",
         "train.video_every=400", "env.num_envs=2")


def test_runs_never_overwrite_and_record_config_and_versions() -> None:
    first = run_experiment("cartpole-random", *SHORT)
    second = run_experiment("cartpole-random", *SHORT)
    assert first != second
    assert first.parent == second.parent == Path("runs/cartpole-random").resolve()
    for run_dir in (first, second):
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["train"]["total_steps"] == 400 and config["agent"] == "random"
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished"
        # the test extra installs the pixel packages: recorded when installed
        expected = {"python", "torch", "gymnasium", "numpy", "wandb", "forgelab", "ale-py",
                    "minatar"}
        assert expected <= set(info["versions"])
        assert (run_dir / "metrics.jsonl").is_file()
        state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
        assert state["step"] == 400


def test_same_seed_same_numbers() -> None:
    a = run_experiment("cartpole-random", *SHORT, "seed=5")
    b = run_experiment("cartpole-random", *SHORT, "seed=5")
    c = run_experiment("cartpole-random", *SHORT, "seed=6")

    def returns(run_dir: Path) -> list[float]:
        return [r["train/episode_return"] for r in read_metrics(run_dir)
                if "train/episode_return" in r]

    assert returns(a) == returns(b)
    assert returns(a) != returns(c)


def test_cpu_jobs_flush_denormal_floats_to_zero() -> None:
    """Denormals make x86 arithmetic 10-100x slower (Adam moments of dead ReLU units end up
    there); every job switches the CPU to flush them to zero."""
    torch.set_flush_denormal(False)
    denormal = torch.tensor([1e-40])  # made after the switch: converting it flushes too
    try:
        assert (denormal * 1.0).item() != 0.0
        run_experiment("cartpole-random", *SHORT)
        assert (denormal * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(True)


def test_checkpoints_are_weights_only_and_pointers_are_atomic() -> None:
    run_dir = run_experiment("cartpole-random", *SHORT, "train.checkpoint_every=100")
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-000000400"
    assert not list(checkpoints.glob(".tmp-*")) and not list(checkpoints.glob(".old-*"))
    kept = sorted(p.name for p in checkpoints.glob("step-*"))
    assert "step-000000400" in kept and len(kept) <= 3  # latest two + best
    state = torch.load(checkpoints / "step-000000400" / "state.pt", weights_only=True)
    assert state["component"]["step"] == 400


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)  # polling a file written by the child, not timing anything


def _span(info: dict) -> float:
    """Seconds from a run.json's ``created`` to its ``finished`` (whole seconds)."""
    from forgelab.core.results import parse_run_time

    return parse_run_time(info["finished"]) - parse_run_time(info["created"])


def test_sigterm_saves_a_checkpoint_and_resume_continues_the_same_run(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "forgelab")
    child = subprocess.Popen([exe, "run", "cartpole-random", "train.total_steps=100000000",
                              "train.eval_episodes=1", "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=user_env())
    runs = tmp_path / "runs" / "cartpole-random"
    _wait_for(lambda: runs.is_dir() and any(
        (d / "metrics.jsonl").is_file() and (d / "metrics.jsonl").stat().st_size > 0
        for d in runs.iterdir()))
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, err  # 143: stopped, not finished
    assert "SIGTERM" in err and "--resume" in err
    assert "upload it with: wandb sync" in err  # offline runs say how to upload them
    run_dir = next(runs.iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
    stopped_at = state["step"]
    assert 0 < stopped_at < 100000000
    # run.json records where training got to (a stop lands between logged rows) and how long
    # the session trained; the stop message and the result line agree on the step.
    assert info["step"] == stopped_at
    assert f"stopped at step {stopped_at};" in err and "took " in err
    assert f"({stopped_at:,} of 100,000,000 env steps)" in err
    assert 0 < info["seconds"] <= _span(info) + 1

    target = stopped_at + 200
    dry = forgelab_cli("run", "--resume", str(run_dir), f"train.total_steps={target}", "--dry-run")
    assert dry.returncode == 0 and f"total_steps: {target}" in dry.stdout
    assert CheckpointManager(run_dir / "checkpoints").load("latest")[0]["step"] == stopped_at
    # The time between the stop and the resume is not the run's: "took" sums the sessions.
    # (Stand in for a long pause by saying the first session trained 1,000 s.)
    info["seconds"] = 1000.0
    (run_dir / "run.json").write_text(json.dumps(info))
    resumed = forgelab_cli("run", "--resume", str(run_dir), f"train.total_steps={target}",
                           "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
    assert state["step"] == target
    final = json.loads((run_dir / "run.json").read_text())
    assert 1000 < final["seconds"] < 1000 + _span(final) and final["step"] == target
    took = re.search(r"took ([\d,]+) s", resumed.stderr).group(1)
    assert int(took.replace(",", "")) == round(final["seconds"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    # One W&B run id across both segments, so the dashboard shows one continuous run.
    wandb_dirs = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(wandb_dirs) == 2
    ids = {wandb_of_type(wandb_records(d), "run")[0]["run_id"] for d in wandb_dirs}
    assert ids == {info["run_id"]}
    steps = [r["global_step"] for r in read_metrics(run_dir) if "global_step" in r]
    assert max(steps) <= target


def test_resume_refuses_to_change_the_experiment() -> None:
    run_dir = run_experiment("cartpole-random", *SHORT)
    with pytest.raises(ConfigError, match="cannot change 'seed' when resuming"):
        runner.resume(run_dir, ["seed=3"], show_progress=False)


def test_eval_re_evaluates_a_saved_run_and_logs_an_eval_job() -> None:
    run_dir = run_experiment("cartpole-random", *SHORT)
    result = forgelab_cli("eval", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["eval/episodes"] == 2 and metrics["eval/return_mean"] > 0
    job_dir = next((run_dir / "evals").iterdir())
    run = wandb_of_type(wandb_records(job_dir), "run")[0]
    assert run["job_type"] == "eval" and run["run_group"] == "cartpole-random"


def test_devices_that_are_absent_are_clear_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in {expected, "mps"}
    if not torch.cuda.is_available():  # this machine: CPU only
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="cuda:99"):
        resolve_device("cuda:99")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS is not available"):
            resolve_device("mps")


def test_a_component_config_error_leaves_no_run_behind() -> None:
    import types

    from forgelab.core import hookimpl
    from forgelab.core.config import validate_experiment
    from forgelab.core.pluginhost import PluginHost
    from forgelab.plugins import agents as builtin_agents

    def picky_agent(options, ctx):
        raise ConfigError("picky needs a Box action space, CartPole-v1 has Discrete(2)")

    plugin = types.ModuleType("picky_plugin")
    plugin.register_agents = hookimpl(lambda register: register("picky", picky_agent))
    host = PluginHost(strict=True, disabled=())
    host.add_plugin(builtin_agents, "agents")  # the RL family comes from a plugin too
    host.add_plugin(plugin, "picky")
    config = validate_experiment({"agent": "picky", "env": "CartPole-v1",
                                  "train": {"total_steps": 10}})
    with pytest.raises(ConfigError, match="needs a Box action space"):
        runner.train(config, host=host, show_progress=False)
    assert not Path("runs/experiment").exists()  # no empty experiment folder either


def test_a_registration_check_runs_before_anything_is_created() -> None:
    import types

    from forgelab.core import hookimpl
    from forgelab.core.config import validate_experiment
    from forgelab.core.pluginhost import PluginHost
    from forgelab.plugins import agents as builtin_agents

    seen = []

    def needs_box(options, config, spaces):
        seen.append(spaces)
        observation_space, action_space = spaces
        if type(action_space).__name__ != "Box":
            raise ConfigError(f"boxy needs a Box action space, {config.env.id} has {action_space}")

    plugin = types.ModuleType("boxy_plugin")
    plugin.register_agents = hookimpl(lambda register: register(
        "boxy", "forgelab.agents.random_agent:RandomAgent",
        config="forgelab.agents.random_agent:RandomAgentConfig", check=needs_box))
    host = PluginHost(strict=True, disabled=())
    host.add_plugin(builtin_agents, "agents")  # the RL family comes from a plugin too
    host.add_plugin(plugin, "boxy")
    config = validate_experiment({"agent": "boxy", "env": "CartPole-v1",
                                  "train": {"total_steps": 10}})
    with pytest.raises(ConfigError, match=r"boxy needs a Box action space, CartPole-v1 has Disc"):
        runner.prepare(config, host)
    assert seen[0][0].shape == (4,)  # the env's observation space came through
    assert not Path("runs").exists()
    pendulum = validate_experiment({"agent": "boxy", "env": "Pendulum-v1",
                                    "train": {"total_steps": 10}})
    assert runner.prepare(pendulum, host).factory is not None
