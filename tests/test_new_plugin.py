"""`forgelab new-plugin`: the generated package installs, passes its own tests (the conformance
kit through the pytest11 fixtures) and runs its shipped experiment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import forgelab_cli, user_env


def test_generated_plugin_installs_tests_and_runs(tmp_path: Path) -> None:
    made = forgelab_cli("new-plugin", "forgelab-corridor", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "forgelab-corridor"
    assert {"pyproject.toml", "README.md"} <= {p.name for p in package.iterdir()}
    assert '[project.entry-points.forgelab]\ncorridor = "forgelab_corridor.plugin"' in (
        package / "pyproject.toml").read_text()

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(package)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    env = {**user_env(), "PYTHONPATH": str(site), "WANDB_MODE": "disabled"}

    # Its tests: one per (component, check) from parametrize_with_checks, plus the experiments
    # through the forgelab_run fixture that forgelab's pytest11 entry point provides.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-p", "no:xdist", "-rA", str(package / "tests")],
                           cwd=package, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "corridor-agent-check_sigterm_resume" in tests.stdout
    assert "corridor/Corridor-v0-check_gymnasium_env_checker" in tests.stdout
    assert "corridor-gaussian-check_sampling" in tests.stdout
    assert "corridor-blobs-check_dataset_splits" in tests.stdout
    assert "test_shipped_experiments_run" in tests.stdout

    # Installed, its experiments are listed with the plugin and run by name.
    listing = forgelab_cli("list", "experiments", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(listing.stdout)["experiments"]}
    assert rows["corridor-agent"]["plugin"] == "corridor"
    assert rows["corridor-agent"]["distribution"] == "forgelab-corridor"
    run = forgelab_cli("run", "corridor-agent", "train.total_steps=300", "--no-progress",
                       cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    run_dir = next((tmp_path / "runs" / "corridor-agent").iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    # run.json records which distribution provided each component
    assert info["components"]["agent"] == {"name": "corridor-agent", "plugin": "corridor",
                                           "distribution": "forgelab-corridor",
                                           "version": "0.1.0"}
    assert info["components"]["env"]["distribution"] == "forgelab-corridor"

    # Plain gymnasium, outside forgelab, through gymnasium's "module:id" form.
    plain = subprocess.run(
        [sys.executable, "-c", "import gymnasium; env = gymnasium.make("
         "'forgelab.envs.installed:corridor/Corridor-v0'); print(env.spec.max_episode_steps, "
         "type(env.unwrapped).__name__)"], env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["50", "CorridorEnv"]


def test_new_plugin_refuses_a_bad_name_and_an_existing_folder(tmp_path: Path) -> None:
    bad = forgelab_cli("new-plugin", "My Plugin", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "not a valid distribution name" in bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "taken" / "x").mkdir(parents=True)
    taken = forgelab_cli("new-plugin", "taken", "--dir", str(tmp_path))
    assert taken.returncode == 2 and "already exists" in taken.stderr
