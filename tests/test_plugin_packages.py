"""Third-party plugins: real packages, pip-installed, found through their entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, forgelab_cli, read_metrics

PACKAGES = REPO / "tests" / "plugin_packages"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the hello and broken plugin packages into a fresh folder."""
    target = tmp_path_factory.mktemp("site")
    for package in ("forgelab-hello", "forgelab-broken"):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--target", str(target), str(PACKAGES / package)],
            check=True, capture_output=True, text=True,
            cwd=tmp_path_factory.getbasetemp(),
        )
    return target


def test_installed_plugin_is_discovered_listed_and_runnable(site: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(site)}
    listing = forgelab_cli("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    hello = plugins["hello"]
    assert hello["status"] == "active"
    assert (hello["distribution"], hello["version"]) == ("forgelab-hello", "0.2.0")
    assert {"kind": "agent", "name": "constant"} in hello["registered"]
    assert plugins["random"]["status"] == "active"  # built-ins keep working beside it

    agents = json.loads(forgelab_cli("list", "agents", "--json", env=env).stdout)["agents"]
    constant = next(a for a in agents if a["name"] == "constant")
    assert constant["plugin"] == "hello"
    assert constant["options"][0]["name"] == "action"

    experiment = tmp_path / "constant.yaml"
    experiment.write_text("agent: constant\nagent_options: {action: 1}\n"
                          "env: CartPole-v1\ntrain: {total_steps: 200, eval_episodes: 2}\n")
    result = forgelab_cli("run", str(experiment), "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "runs" / "constant").iterdir())
    returns = [row["eval/return_mean"] for row in read_metrics(run_dir)
               if "eval/return_mean" in row]
    assert returns and 5 <= returns[0] <= 20  # always pushing right topples CartPole quickly
    # Without actions(), `forgelab eval` runs the agent's evaluate() and refuses episode flags.
    plain = forgelab_cli("eval", str(run_dir), env=env)
    assert plain.returncode == 0, plain.stderr
    flags = forgelab_cli("eval", str(run_dir), "--episodes", "3", "--video", "1", env=env)
    assert flags.returncode == 2 and "Traceback" not in flags.stderr
    assert "cannot play episodes for --episodes / --video" in flags.stderr, flags.stderr


def test_broken_plugin_is_reported_and_skipped(site: Path) -> None:
    env = {"PYTHONPATH": str(site)}
    result = forgelab_cli("plugins", "--json", env=env)
    assert result.returncode == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    broken = plugins["broken"]
    assert broken["status"] == "failed"
    assert broken["distribution"] == "forgelab-broken"
    assert "forgelab_dependency_that_is_not_installed" in broken["error"]
    assert plugins["hello"]["status"] == "active"

    # Other commands still work, with a one-line warning that says how to get rid of it.
    listing = forgelab_cli("list", "agents", env=env)
    assert listing.returncode == 0
    assert "constant" in listing.stdout
    assert "plugin 'broken'" in listing.stderr
    assert "FORGELAB_DISABLE_PLUGINS=broken" in listing.stderr
    assert "Traceback" not in listing.stderr


def test_disable_and_strict_switches(site: Path) -> None:
    disabled = forgelab_cli("plugins", "--json",
                            env={"PYTHONPATH": str(site), "FORGELAB_DISABLE_PLUGINS": "broken"})
    plugins = {p["name"]: p for p in json.loads(disabled.stdout)}
    assert plugins["broken"]["status"] == "disabled"
    assert disabled.stderr == ""

    strict = forgelab_cli("list", "agents",
                          env={"PYTHONPATH": str(site), "FORGELAB_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert "plugin 'broken'" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_a_plugin_name_already_taken_is_reported_not_dropped(tmp_path: Path) -> None:
    package = tmp_path / "forgelab-clash"
    (package / "forgelab_clash").mkdir(parents=True)
    (package / "forgelab_clash" / "__init__.py").write_text("")
    (package / "forgelab_clash" / "plugin.py").write_text("")
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "forgelab-clash"\nversion = "1.0"\n'
        '[project.entry-points.forgelab]\nagents = "forgelab_clash.plugin"\n'
        '[tool.setuptools]\npackages = ["forgelab_clash"]\n')
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(package)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    result = forgelab_cli("plugins", "--json", env={"PYTHONPATH": str(site)})
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["agents"]["distribution"] == "forgelab"  # the built-in keeps its name
    clash = plugins["agents@forgelab-clash"]
    assert clash["status"] == "failed"
    assert "'agents'" in clash["error"] and "forgelab" in clash["error"]


def test_installed_plugin_passes_the_conformance_kit_from_the_cli(site: Path) -> None:
    env = {"PYTHONPATH": str(site), "FORGELAB_DISABLE_PLUGINS": "broken"}
    result = forgelab_cli("plugins", "--check", "--json", env=env)  # every third-party plugin
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {(r["component"], r["check"]): r["status"] for r in json.loads(result.stdout)}
    assert checks[("constant", "check_sigterm_resume")] == "passed"
    assert checks[("constant", "check_checkpoint_round_trip")] == "passed"
    assert set(checks.values()) == {"passed"} and len(checks) == 8
    # With the broken plugin enabled, checking every plugin fails and says why.
    failing = forgelab_cli("plugins", "--check", env={"PYTHONPATH": str(site)})
    assert failing.returncode == 1
    assert "FAIL  plugin 'broken' (forgelab-broken) did not load" in failing.stderr
    assert "0 failed; 1 plugin(s) failed to load" in failing.stdout  # the summary counts it
