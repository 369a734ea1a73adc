"""Study specs: sweep axes, seeds, sweep files, trial ids, W&B export (in-process, no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import EXPERIMENTS, forgelab_cli

from forgelab.core.config import parse_value
from forgelab.core.errors import ConfigError
from forgelab.core.study import (
    format_value,
    make_trials,
    parse_item,
    parse_seeds,
    spec_from_items,
    split_values,
)


def test_values_split_at_commas_outside_brackets_and_quotes() -> None:
    assert split_values("1e-3,3e-4") == ["1e-3", "3e-4"]
    assert split_values("[64,64],[128,128]") == ["[64,64]", "[128,128]"]
    assert split_values("{a: 1, b: 2},'x,y'") == ["{a: 1, b: 2}", "'x,y'"]
    assert parse_item("agent.net_arch=[64,64],[128,128]") == (
        "agent.net_arch", [[64, 64], [128, 128]])
    assert parse_item("tracking.group='a,b'") == ("tracking.group", ["a,b"])
    assert parse_item("seed=0:10:3") == ("seed", [0, 3, 6, 9])
    assert parse_item("agent.learning_rate=1e-3,3e-4") == ("agent.learning_rate", [1e-3, 3e-4])
    with pytest.raises(ConfigError, match="unbalanced"):
        split_values("[64,64")
    with pytest.raises(ConfigError, match="empty range"):
        parse_item("seed=5:2")


@pytest.mark.parametrize("value", [1e-5, 0.001, 3, "CartPole-v1", "a,b", "yes", None, [64, 64],
                                   {"name": "clip_reward", "min": -1}, True])
def test_values_reach_the_trial_unchanged(value: object) -> None:
    # what `forgelab run` parses from the argument is what the study swept
    assert parse_value(format_value(value)) == value


def test_seeds_in_every_form() -> None:
    assert parse_seeds("0:3") == [0, 1, 2]
    assert parse_seeds([4, 7]) == [4, 7]
    assert parse_seeds({"start": 5, "count": 2}) == [5, 6]
    for bad in ("-1:2", [0, 0], [1.5], "a"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_grid_trials_are_configuration_major_with_seeds_as_replicates() -> None:
    spec = spec_from_items("cartpole-random", ["env.num_envs=1,2", "seed=0:3", "device=cpu",
                                               "agent=random"])
    trials = make_trials(spec)
    assert [t.id for t in trials] == ["c00-s0", "c00-s1", "c00-s2", "c01-s0", "c01-s1", "c01-s2"]
    assert {t.config_id: t.params for t in trials} == {"c00": {"env.num_envs": 1},
                                                        "c01": {"env.num_envs": 2}}
    assert spec.fixed == {"device": "cpu", "agent": "random"}
    assert spec.experiment == str((EXPERIMENTS / "cartpole-random.yaml").resolve())
    # the same command names the same study; another command another one
    assert spec_from_items("cartpole-random", ["env.num_envs=1,2", "seed=0:3", "device=cpu",
                                               "agent=random"]).name == spec.name
    assert spec_from_items("cartpole-random", ["env.num_envs=1,2", "seed=0:4"]).name != spec.name


def test_a_rerun_with_more_values_keeps_the_ids_of_known_configurations() -> None:
    first = make_trials(spec_from_items("cartpole-random", ["env.num_envs=2,4", "seed=0:2"]))
    grown = make_trials(spec_from_items("cartpole-random", ["env.num_envs=1,2,4", "seed=0:3"]),
                        existing=first)
    ids = {(t.params["env.num_envs"], t.seed): t.id for t in grown}
    assert ids[(2, 0)] == "c00-s0" and ids[(4, 1)] == "c01-s1"  # as before
    assert ids[(1, 0)] == "c02-s0" and ids[(2, 2)] == "c00-s2"  # new ones added


def test_sweep_file_with_grid_random_and_seeds(tmp_path: Path) -> None:
    study = tmp_path / "lr-search.yaml"
    study.write_text(yaml.safe_dump({
        "experiment": "cartpole-ppo",
        "overrides": {"train.total_steps": 2048, "device": "cpu"},
        "grid": {"agent.n_steps": {"range": [16, 48, 16]}, "env.num_envs": [4, 8]},
        "random": {"count": 3, "seed": 1, "params": {
            "agent.learning_rate": {"loguniform": [1e-4, 1e-2]},
            "agent.n_epochs": {"randint": [4, 10]},
            "agent.gamma": {"choice": [0.98, 0.99]}}},
        "seeds": "0:2", "launcher": "local", "workers": 2, "retries": 1}))
    spec = spec_from_items(str(study), [])
    assert spec.name == "lr-search" and spec.workers == 2 and spec.retries == 1
    assert spec.fixed == {"train.total_steps": 2048, "device": "cpu"}
    assert len(spec.configs) == 2 * 2 * 3 and len(make_trials(spec)) == 24
    rates = [c["agent.learning_rate"] for c in spec.configs]
    assert all(1e-4 <= r <= 1e-2 for r in rates)
    assert len(set(rates)) == 3  # three draws, each combined with the 4 grid points
    assert all(c["agent.n_epochs"] in range(4, 10) for c in spec.configs)
    assert spec_from_items(str(study), []).configs == spec.configs  # the sampler is seeded
    # log-uniform: the draws spread over decades, not over the top one
    study.write_text(yaml.safe_dump({"experiment": "cartpole-ppo", "random": {
        "count": 400, "params": {"agent.learning_rate": {"loguniform": [1e-4, 1e-2]}}}}))
    draws = [c["agent.learning_rate"] for c in spec_from_items(str(study), []).configs]
    below = sum(1 for d in draws if d < 1e-3) / len(draws)
    assert 0.4 < below < 0.6, below  # half below the geometric middle (uniform would be ~9%)
    assert math.isclose(min(draws), 1e-4, rel_tol=0.5)


def test_bad_sweep_input_is_one_readable_line() -> None:
    result = forgelab_cli("sweep", "cartpole-random", "agent.bogus=1,2", "seed=0:2", "--dry-run")
    assert result.returncode == 2
    assert "trial c00-s0" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.stderr
    result = forgelab_cli("sweep", "cartpole-random", "env.num_envs=[1,2", "--dry-run")
    assert result.returncode == 2 and "unbalanced" in result.stderr
    result = forgelab_cli("sweep", "cartpole-random", "seed=0:2", "--launcher", "slurm")
    assert result.returncode == 2 and "unknown launcher 'slurm'" in result.stderr
    assert not Path("runs").exists()  # nothing was made


def test_dry_run_prints_the_trials_and_runs_nothing() -> None:
    result = forgelab_cli("sweep", "cartpole-random", "env.num_envs=1,2", "seed=0:2",
                          "--name", "dry", "--dry-run", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "2 configuration(s) x 2 seed(s) = 4 trial(s)" in result.stdout
    for line in ("c00-s0       pending     env.num_envs=1 seed=0",
                 "c01-s1       pending     env.num_envs=2 seed=1"):
        assert line in result.stdout
    assert not Path("runs").exists()


def test_export_wandb_writes_a_sweep_file(tmp_path: Path) -> None:
    result = forgelab_cli("sweep", "cartpole-random", "train.video_every=null",
                          "env.num_envs=1,2", "seed=0:3", "--name", "wb", "--export", "wandb")
    assert result.returncode == 0, result.stderr
    sweep = yaml.safe_load(Path("runs/wb/wandb-sweep.yaml").read_text())
    assert sweep["method"] == "grid" and sweep["program"] == "forgelab"
    assert sweep["command"] == ["forgelab", "run", "cartpole-random", "train.video_every=null",
                                "${args_no_hyphens}"]
    assert sweep["parameters"] == {"env.num_envs": {"values": [1, 2]},
                                   "seed": {"values": [0, 1, 2]}}


def test_export_wandb_maps_distributions(tmp_path: Path) -> None:
    from forgelab.core.wandb_agent import sweep_config

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"experiment": "cartpole-ppo", "seeds": [0, 1], "random": {
        "count": 5, "params": {"agent.learning_rate": {"loguniform": [1e-4, 1e-2]},
                               "agent.n_epochs": {"randint": [4, 10]}}}}))
    config = sweep_config(spec_from_items(str(study), []))
    assert config["method"] == "random" and config["run_cap"] == 10
    assert config["parameters"]["agent.learning_rate"] == {
        "distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}
    assert config["parameters"]["agent.n_epochs"] == {"distribution": "int_uniform", "min": 4,
                                                      "max": 9}


def test_launchers_are_plugins() -> None:
    from forgelab.core.launchers import available_launchers
    from forgelab.core.pluginhost import PluginHost

    found = available_launchers(PluginHost().load_entry_points())
    assert {"local", "ray"} <= set(found)
    assert found["local"].plugin == "launchers"  # the built-in plugin, through the same hook


def test_under_a_wandb_agent_the_group_is_the_sweep_and_the_configuration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from forgelab.core.wandb_agent import agent_overrides

    assert agent_overrides(["seed=1", "agent.gamma=0.9"]) == ["seed=1", "agent.gamma=0.9"]
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw9")
    groups = [agent_overrides(o)[-1] for o in (["seed=1", "agent.gamma=0.9"],
                                               ["agent.gamma=0.9", "seed=4"],
                                               ["agent.gamma=0.99", "seed=1"])]
    assert groups[0] == groups[1] != groups[2]  # seeds share a group, configurations do not
    assert groups[0].startswith("tracking.group=sweep-sw9-")
    assert agent_overrides(["tracking.group=mine"]) == ["tracking.group=mine"]


def test_a_study_refuses_other_fixed_overrides_under_its_name() -> None:
    import argparse

    from forgelab.core.study import save_study
    from forgelab.core.sweep import run_sweep

    spec = spec_from_items("cartpole-random", ["train.total_steps=600", "seed=0:2"], name="s")
    save_study(spec, make_trials(spec))
    args = argparse.Namespace(target="cartpole-random", items=["train.total_steps=900",
                              "seed=0:3"], name="s", resume=None, dry_run=True, export=None)
    with pytest.raises(ConfigError, match=r"other fixed overrides \(train.total_steps\)"):
        run_sweep(args, host=None)


def _refused(tmp_path: Path, data: dict, *flags: str) -> str:
    """The error of `forgelab sweep FILE --dry-run` for a sweep file: exit 2, one message."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = forgelab_cli("sweep", str(path), "--dry-run", *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    return result.stderr


def test_a_key_set_twice_in_a_sweep_file_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, {"experiment": "cartpole-ppo", "overrides": {"agent.n_steps": 32},
                              "grid": {"agent.n_steps": [32, 64]}})
    assert "agent.n_steps is set under both overrides: and grid:" in err
    err = _refused(tmp_path, {"experiment": "cartpole-ppo", "grid": {"agent.gamma": [0.9]},
                              "random": {"params": {"agent.gamma": {"uniform": [0.9, 0.99]}}}})
    assert "agent.gamma is set under both grid: and random.params:" in err
    err = _refused(tmp_path, {"experiment": "cartpole-ppo", "overrides": {"seed": 3},
                              "seeds": "0:2"})
    assert "seed is set under both overrides: and seeds:" in err
    # the command line still overrides what a file says
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({"experiment": "cartpole-ppo",
                                    "grid": {"agent.n_steps": [32, 64]}}))
    assert spec_from_items(str(path), ["agent.n_steps=16"]).fixed == {"agent.n_steps": 16}


@pytest.mark.parametrize(("dist", "expected"), [
    ({"loguniform": [1e-2, 1e-4]}, "loguniform bounds [0.01, 0.0001] are reversed"),
    ({"uniform": [0.99, 0.9]}, "uniform bounds [0.99, 0.9] are reversed"),
    ({"randint": [20, 4]}, "randint bounds [20, 4] are reversed"),
    ({"randint": [4, 4]}, "randint bounds [4, 4] are one value"),
    ({"normal": [0.9, -0.1]}, "normal [mu, sigma] needs sigma >= 0")])
def test_random_bounds_that_are_reversed_or_empty_are_refused(tmp_path: Path, dist: dict,
                                                               expected: str) -> None:
    err = _refused(tmp_path, {"experiment": "cartpole-ppo",
                              "random": {"count": 2, "params": {"agent.gamma": dist}}})
    assert f"random.params.agent.gamma: {expected}" in err


def test_a_sweep_file_without_an_experiment_says_so(tmp_path: Path) -> None:
    err = _refused(tmp_path, {"grid": {"agent.n_steps": [32, 64]}, "seeds": "0:2"})
    assert "bad.yaml: a sweep file (grid, seeds) without `experiment:`" in err
    assert "experiment: cartpole-ppo" in err and "'agent' (rl)" not in err  # not read as one


def test_launch_options_of_a_sweep_file_are_named_as_its_keys(tmp_path: Path) -> None:
    err = _refused(tmp_path, {"experiment": "cartpole-ppo", "workers": 0})
    assert "bad.yaml: workers: 0" in err and "--workers" not in err
    err = _refused(tmp_path, {"experiment": "cartpole-ppo", "retries": "two"})
    assert "bad.yaml: retries: 'two'" in err
    # a flag's value is named as the flag
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({"experiment": "cartpole-ppo", "workers": 2}))
    result = forgelab_cli("sweep", str(path), "--dry-run", "--workers", "0")
    assert result.returncode == 2 and "--workers must be at least 1 (got 0)" in result.stderr
