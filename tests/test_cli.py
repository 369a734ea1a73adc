"""The forgelab CLI: fast commands stay light, bad input gets one readable error and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import forgelab_cli

HEAVY = ("torch", "stable_baselines3", "wandb", "gymnasium", "pydantic", "yaml")


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"], []])
def test_fast_commands_do_not_import_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys\nfrom forgelab.core.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_plugins_lists_what_each_plugin_registers_launchers_included() -> None:
    listing = json.loads(forgelab_cli("plugins", "--json").stdout)
    registered = {p["name"]: {(r["kind"], r["name"]) for r in p["registered"]} for p in listing}
    assert registered["launchers"] == {("launcher", "local"), ("launcher", "ray")}
    assert ("agent", "random") in registered["random"]
    assert "    launcher local" in forgelab_cli("plugins").stdout


def test_dry_run_prints_the_resolved_validated_config() -> None:
    # overrides may stand before and after the flags
    result = forgelab_cli("run", "cartpole-random", "seed=7", "--dry-run", "env.num_envs=2",
                          "train.total_steps=1e3")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["seed"] == 7
    assert config["env"]["num_envs"] == 2
    assert config["train"]["total_steps"] == 1000
    assert config["agent"] == "random"
    assert not Path("runs").exists()  # a dry run creates nothing


def test_list_shows_components_with_their_options() -> None:
    result = forgelab_cli("list", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    random_agent = next(a for a in listing["agents"] if a["name"] == "random")
    assert random_agent["plugin"] == "random" and random_agent["description"]
    assert "cartpole-random" in [e["name"] for e in listing["experiments"]]
    text = forgelab_cli("list", "agents").stdout
    assert "random" in text and "Uniform random actions" in text


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


BASE = {"agent": "random", "env": "CartPole-v1", "train": {"total_steps": 100}}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cartpole-randon"], ["unknown experiment 'cartpole-randon'",
                               "did you mean 'cartpole-random'"]),
        (["missing/file.yaml"], ["experiment file not found", "missing/file.yaml"]),
        (["zzqx"], ["unknown experiment 'zzqx'. Available experiments: acrobot-dqn, "]),
        (["cartpole-random", "train.totl_steps=5"],
         ["unknown key 'train.totl_steps'", "did you mean 'total_steps'", "eval_every"]),
        (["cartpole-random", "seed=minus-one"], ["seed", "valid integer", "minus-one"]),
        (["cartpole-random", "device=tpu"], ["device", "auto, cpu, cuda, cuda:N or mps"]),
        (["cartpole-random", "device=cuda:3"], ["device", "cuda:3"]),
        (["cartpole-random", "tracking.mode=sometimes"], ["tracking.mode", "'offline'"]),
        (["cartpole-random", "agent=rnadom"], ["agent: unknown agent 'rnadom'",
                                               "did you mean 'random'"]),
        (["cartpole-random", "agent.speed=3"], ["unknown key 'agent.speed'"]),
        (["cartpole-random", "--seed", "3"], ["cannot read '--seed 3'", "no leading dashes"]),
        (["cartpole-random", "env=CartPol-v1"], ["unknown environment 'CartPol-v1'",
                                                 "CartPole-v1"]),
        # the closest id, then the rest of its family (not presented as all there is)
        (["cartpole-random", "env.id=CartPole-v9"], ["did you mean 'CartPole-v1'? Similar ids: "
                                                     "CartPole-v0\n"]),
    ],
)
def test_bad_input_is_one_readable_error_with_exit_code_2(args: list[str],
                                                         expected: list[str]) -> None:
    result = forgelab_cli("run", *args, "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in result.stderr


def test_yaml_problems_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: random\nenv: [CartPole-v1\n")
    result = forgelab_cli("run", str(bad))
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stderr

    listed = tmp_path / "list.yaml"
    listed.write_text("- agent\n- random\n")
    result = forgelab_cli("run", str(listed))
    assert result.returncode == 2 and "must be a mapping" in result.stderr


def test_component_and_model_keys_are_checked(tmp_path: Path) -> None:
    both = write(tmp_path / "both.yaml", {**BASE, "model": "vae"})
    result = forgelab_cli("run", both, "--dry-run")
    assert result.returncode == 2 and "exactly one of 'agent'" in result.stderr
    no_env = write(tmp_path / "noenv.yaml", {"agent": "random", "train": {"total_steps": 5}})
    result = forgelab_cli("run", no_env, "--dry-run")
    assert result.returncode == 2 and "needs an 'env'" in result.stderr


def test_eval_and_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    for argv in (["eval", str(tmp_path)], ["run", "--resume", str(tmp_path)]):
        result = forgelab_cli(*argv)
        assert result.returncode == 2
        assert "not a forgelab run directory" in result.stderr
        assert "Traceback" not in result.stderr


def test_switching_the_component_keeps_options_given_on_the_command_line() -> None:
    from forgelab.core.config import apply_overrides, parse_overrides

    data = {"agent": "dqn", "agent_options": {"buffer_size": 10}}
    orders = (["agent.learning_rate=0.5", "agent=ppo"], ["agent=ppo", "agent.learning_rate=0.5"])
    for order in orders:
        result = apply_overrides(data, parse_overrides(order))
        assert result["agent"] == "ppo"
        assert result["agent_options"] == {"learning_rate": 0.5}  # dqn's buffer_size dropped
