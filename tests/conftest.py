"""Shared fixtures: real W&B in offline mode, real gymnasium, runs inside tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from forgelab.core import hookimpl

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
BENCHMARKS = REPO / "benchmarks"  # side-by-side benchmark commands: scripts, not installed


def benchmark_script(name: str) -> Any:
    """Import ``benchmarks/<name>.py`` as a module (its siblings importable beside it, as when
    it runs as ``python benchmarks/<name>.py``)."""
    import importlib

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)

# Headless and offline for every test; small nets train fastest on one thread per worker.
os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("FORGELAB_STRICT_PLUGINS", None)
os.environ.pop("FORGELAB_DISABLE_PLUGINS", None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder (runs/, wandb/ and SB3's temp files land there)."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb-config"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / ".wandb-data"))


def user_env() -> dict[str, str]:
    """The environment a user's shell would give a new `forgelab` process: without the handle of
    the W&B service that in-process runs of this test worker started (wandb exports it as
    WANDB_SERVICE, and a child would otherwise log through that service)."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


def forgelab_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real `forgelab` console script in a subprocess."""
    exe = shutil.which("forgelab", path=str(Path(sys.executable).parent)) or "forgelab"
    full_env = {**user_env(), **(env or {})}
    return subprocess.run([exe, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def run_experiment(name_or_data: str | dict[str, Any], *overrides: str,
                   output_dir: Path | None = None) -> Path:
    """Train in-process through the real runner; returns the run directory.

    :param name_or_data: an experiment name from experiments/, or a config mapping.
    """
    from forgelab.core import runner
    from forgelab.core.config import (
        apply_overrides,
        load_experiment,
        parse_overrides,
        validate_experiment,
    )

    out = [f"output_dir={output_dir or Path.cwd() / 'runs'}"]
    if isinstance(name_or_data, str):
        config = load_experiment(EXPERIMENTS / f"{name_or_data}.yaml", [*overrides, *out])
    else:
        data = apply_overrides(name_or_data, parse_overrides([*overrides, *out]))
        config = validate_experiment(data)
    return runner.train(config, show_progress=False)


def stop_after_first_checkpoint(ctx: Any) -> None:
    """Make a first (not resumed) run stop right after its first periodic checkpoint, as
    Ctrl-C would: for plugin factories in resume tests."""
    if ctx.resumed:
        return
    save = ctx.checkpoints.save

    def save_then_stop(component, step=None, *, best=False, metrics=None):
        path = save(component, step, best=best, metrics=metrics)
        if step is not None and not best:  # a periodic checkpoint (ctx.update saved it)
            ctx.request_stop()
        return path

    ctx.checkpoints.save = save_then_stop


class InterruptedPPO:
    """A plugin registering `ppo-interrupted`: PPO whose first (not resumed) run stops right
    after its first periodic checkpoint, as Ctrl-C would make it do (for exact-resume tests)."""

    @hookimpl
    def register_agents(self, register):
        from forgelab.agents.ppo import PPO, PPOConfig

        def interrupted_ppo(options: PPOConfig, ctx: Any) -> PPO:
            agent = PPO(options, ctx)
            stop_after_first_checkpoint(ctx)
            return agent

        register("ppo-interrupted", interrupted_ppo, config=PPOConfig,
                 description="PPO that stops after its first checkpoint (test)")


def train_straight_and_resumed(make_config: Any, agent: str, interrupting_plugin: Any
                               ) -> tuple[Path, Path, dict[str, Any]]:
    """Exact-resume tests' two runs of one config: ``agent`` straight through, and
    ``<agent>-interrupted`` (registered by ``interrupting_plugin``, it stops itself as Ctrl-C
    would) resumed until the end. Returns both run directories and the checkpoint the
    interrupted run stopped at, read before it was resumed."""
    from forgelab.core import runner
    from forgelab.core.checkpoints import CheckpointManager
    from forgelab.core.pluginhost import PluginHost

    host = PluginHost(strict=False).load_entry_points()
    host.add_plugin(interrupting_plugin, "test-interrupt")
    straight = runner.train(make_config(agent), host=host, show_progress=False)
    interrupted = runner.train(make_config(f"{agent}-interrupted"), host=host,
                               show_progress=False)
    stopped, _ = CheckpointManager(interrupted / "checkpoints").load("latest")
    runner.resume(interrupted, host=host, show_progress=False)
    return straight, interrupted, stopped


def latest_state(run_dir: Path) -> dict[str, Any]:
    """The ``latest`` checkpoint's state of a run."""
    from forgelab.core.checkpoints import CheckpointManager

    state, _ = CheckpointManager(Path(run_dir) / "checkpoints").load("latest")
    return state


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def last_metric(run_dir: Path, key: str) -> float:
    values = [row[key] for row in read_metrics(run_dir) if key in row]
    assert values, f"{key} was never logged in {run_dir}"
    return values[-1]


def wandb_records(run_dir: Path, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read an offline W&B run back with `wandb leet inspect --json` (one record per line).

    `run.finish()` can return a moment before the .wandb file is complete, so poll until the
    `exit` record is there.
    """
    wandb_exe = str(Path(sys.executable).parent / "wandb")
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while True:
        files = sorted(Path(run_dir).glob("wandb/*run-*/*.wandb")) or sorted(
            Path(run_dir).glob("*.wandb"))  # a run directory, or one W&B run folder
        if not files:
            assert time.monotonic() < deadline, f"no .wandb file under {run_dir}"
            time.sleep(0.2)
            continue
        records = []
        for path in files:
            out = subprocess.run([wandb_exe, "leet", "inspect", "--json", str(path)],
                                 capture_output=True, text=True, timeout=120)
            records += [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        if any(r.get("type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)  # polling for a file to be complete, not timing anything


def wandb_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged rows (`history` records) as flat dicts; media appear as dotted keys, e.g.
    ``rollout/video._type == "video-file"`` and ``rollout/video.path``."""
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def wandb_config(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's config as logged (the `run` record's config plus later `config` updates)."""
    config: dict[str, Any] = {}
    for record in records:
        if record.get("type") == "run":
            config.update(record["run"].get("config", {}).get("update", {}))
        elif record.get("type") == "config":
            config.update(record["config"].get("update", {}))
    return config


def wandb_of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The payloads of every record of one type (``run``, ``artifact``, ``metric``, ``exit``...)."""
    return [r[kind] for r in records if r.get("type") == kind]
