"""forgelab installed from a built wheel (not editable), outside the checkout, finds the
experiments it ships and the ones in ./experiments."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import yaml
from conftest import REPO, user_env


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs", "wandb", "build")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = {Path(d).parts[0] for d in project["tool"]["setuptools"]["package-dir"].values()}
    for name in sorted(folders):  # core/, agents/, ..., experiments/
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    dist = tmp_path / "dist"
    # setuptools' PEP 517 backend directly: no isolated build environment to download.
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(dist)!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return dist / out.stdout.strip().splitlines()[-1]


def test_wheel_installs_into_a_fresh_venv_and_runs_shipped_experiments(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"forgelab/__init__.py", "forgelab/__main__.py", "forgelab/core/cli.py",
            "forgelab/experiments/cartpole-ppo.yaml"} <= names
    assert not any(n.startswith(("core/", "forgelab/core/api/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    # The wheel alone (no dependencies downloaded), installed by this environment's pip.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=600,
                   env=user_env())
    # The dependencies (torch, gymnasium, ...) come from this environment's site-packages,
    # added as a plain path: its .pth files, and so forgelab's editable finder, are not read.
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in user_env().items()
           if k not in ("PYTHONPATH", "FORGELAB_EXPERIMENTS", "VIRTUAL_ENV")}

    def forgelab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "forgelab"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([str(python), "-c", "import forgelab, forgelab.core.config as c; "
                            "print(forgelab.__file__); print(c.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv), where.stdout  # not the checkout

    listed = forgelab("list", "experiments")
    assert listed.returncode == 0, listed.stderr
    assert "cartpole-ppo" in listed.stdout.split() and "digits-vae" in listed.stdout.split()

    dry = forgelab("run", "cartpole-ppo", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["agent"] == "ppo"

    # ./experiments/ in the working folder, and a path, still work beside the shipped ones.
    (elsewhere / "experiments").mkdir()
    mine = {"agent": "random", "env": "CartPole-v1", "train": {"total_steps": 10}}
    (elsewhere / "experiments" / "mine.yaml").write_text(yaml.safe_dump(mine))
    dry = forgelab("run", "mine", "seed=5", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["seed"] == 5
    dry = forgelab("run", "experiments/mine.yaml", "--dry-run")
    assert dry.returncode == 0 and yaml.safe_load(dry.stdout)["name"] == "mine", dry.stderr
