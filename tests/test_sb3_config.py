"""SB3 agents: options are checked before training, SB3 loads lazily, no SB3 temp folders."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import forgelab_cli, read_metrics, run_experiment
from pydantic import ValidationError

from forgelab.agents.sb3_options import OPTIONS, PPOOptions, SACOptions
from forgelab.core.errors import ConfigError


def _no_run_trained(tmp_path: Path) -> None:
    """A config error stops the run before any env step: no run directory is left behind."""
    assert not list(tmp_path.glob("runs/*/*"))


@pytest.mark.parametrize(("args", "expected"), [
    # unknown option: named, with the closest match
    (["cartpole-sb3-ppo", "agent.n_step=64"],
     ["unknown key 'agent.n_step'", "did you mean 'n_steps'"]),
    # ill-typed options: the key and the value are named
    (["cartpole-sb3-ppo", "agent.n_steps=many", "agent.learning_rate=lin_fast"],
     ["agent.n_steps", "'many'", "agent.learning_rate", "lin_<start>"]),
    # algorithm / action-space mismatches, found from the env before SB3 is called
    (["cartpole-sb3-dqn", "env=Pendulum-v1"],
     ["'sb3-dqn' (DQN) needs a Discrete action space", "Pendulum-v1 has Box",
      "agents for Box actions: sb3-a2c, sb3-ddpg, sb3-ppo, sb3-sac, sb3-td3"]),
    (["pendulum-sb3-sac", "env=CartPole-v1"],
     ["'sb3-sac' (SAC) needs a Box action space", "CartPole-v1 has Discrete(2)",
      "agents for Discrete actions: sb3-a2c, sb3-dqn, sb3-ppo"]),
], ids=["unknown-option", "ill-typed-option", "dqn-on-box", "sac-on-discrete"])
def test_config_errors_exit_2_with_a_readable_message(tmp_path: Path, args: list[str],
                                                      expected: list[str]) -> None:
    result = forgelab_cli("run", *args, "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr
    _no_run_trained(tmp_path)


@pytest.mark.parametrize(("overrides", "expected"), [
    # only SB3's policy knows its keyword arguments
    (["agent.policy_kwargs={net_arc: [64]}"], r"SAC rejects these options.*net_arc"),
    # SB3 checks the observation space of a CNN policy (first lines of its message only)
    (["agent.policy=CnnPolicy"], r"SAC rejects these options.*NatureCNN only with images"),
    # a Dict-observation policy on a Box observation space would fail deep inside SB3
    (["agent.policy=MultiInputPolicy"], r"MultiInputPolicy does not fit Pendulum-v1"),
])
def test_options_only_the_env_or_sb3_can_judge_are_config_errors_too(
        overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as error:
        run_experiment("pendulum-sb3-sac", *overrides)
    assert len(str(error.value).splitlines()) <= 3
    _no_run_trained(Path.cwd())


def test_options_mirror_the_sb3_constructors() -> None:
    """Every option is a keyword argument of its SB3 class, with SB3's default."""
    import stable_baselines3

    for name, options in OPTIONS.items():
        sb3_class = getattr(stable_baselines3, options.algorithm)
        params = inspect.signature(sb3_class.__init__).parameters
        defaults = options().model_dump()
        for field in options.model_fields:
            if field in options.FORGELAB_ONLY:
                assert field not in params, f"{name}.{field} shadows an SB3 argument"
                continue
            assert field in params, f"{name}: {field} is not an argument of {sb3_class}"
            sb3_default = params[field].default
            if field == "policy":  # SB3 has no default policy; MlpPolicy is the usual one
                assert sb3_default is inspect.Parameter.empty
            elif field == "action_noise" or field.endswith("_kwargs"):
                assert sb3_default is None and defaults[field] in (None, {})
            else:
                assert defaults[field] == sb3_default, f"{name}.{field}"
        forgelab_decides = {"env", "seed", "device", "verbose", "tensorboard_log",
                            "_init_setup_model", "replay_buffer_class", "rollout_buffer_class",
                            "self"}
        missing = set(params) - set(options.model_fields) - forgelab_decides
        assert not missing, f"{name} lacks SB3 arguments {missing}"


def test_rl_zoo_spellings_are_accepted() -> None:
    options = PPOOptions(learning_rate="lin_1e-3", clip_range="lin_0.2", policy_kwargs=(
        "dict(net_arch=[dict(pi=[64, 64], vf=[64, 64])], activation_fn=nn.ReLU, "
        "ortho_init=False)"))
    assert options.learning_rate == "lin_1e-3"
    assert options.policy_kwargs == {"net_arch": [{"pi": [64, 64], "vf": [64, 64]}],
                                     "activation_fn": "ReLU", "ortho_init": False}
    assert SACOptions(ent_coef="auto_0.1", train_freq=[1, "episode"]).train_freq == (1, "episode")
    for bad in ({"ent_coef": "automatic"}, {"policy_kwargs": "__import__('os')"},
                {"policy_kwargs": {"activation_fn": "relu6"}}, {"batch_size": 512,
                                                                 "buffer_size": 100}):
        with pytest.raises(ValidationError):
            SACOptions(**bad)


def test_listing_agents_imports_neither_sb3_nor_torch_for_it() -> None:
    code = (
        "import sys, json\n"
        "from forgelab.core.cli import main\n"
        "main(['list', 'agents', '--json'])\n"
        "print(json.dumps({'sb3': 'stable_baselines3' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    listing, _, flags = out.stdout.rpartition("\n{")
    assert json.loads("{" + flags)["sb3"] is False
    agents = {row["name"]: row for row in json.loads(listing)["agents"]}
    for name in ("sb3-dqn", "sb3-ppo", "sb3-a2c", "sb3-sac", "sb3-td3", "sb3-ddpg"):
        assert agents[name]["plugin"] == "sb3" and agents[name]["options"]
    # The plugin and the option classes themselves need neither SB3 nor torch.
    code = ("import sys; import forgelab.plugins.sb3, forgelab.agents.sb3_options; "
            "print(sorted({'torch', 'stable_baselines3'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


SMOKE = {  # agent -> (experiment overrides, metrics it must log under forgelab's names)
    "sb3-a2c": (["env=CartPole-v1", "agent.n_steps=8", "train.log_every=16"],
                {"train/policy_loss", "train/value_loss", "train/entropy"}),
    "sb3-sac": (["env=Pendulum-v1", "agent.learning_starts=50", "agent.batch_size=16"],
                {"train/actor_loss", "train/critic_loss", "train/ent_coef"}),
    "sb3-td3": (["env=Pendulum-v1", "agent.learning_starts=50", "agent.batch_size=16",
                 "agent.action_noise=normal"], {"train/actor_loss", "train/critic_loss"}),
    "sb3-ddpg": (["env=Pendulum-v1", "agent.learning_starts=50", "agent.batch_size=16",
                  "agent.action_noise=ornstein-uhlenbeck"], {"train/actor_loss",
                                                             "train/critic_loss"}),
}


@pytest.mark.parametrize("agent", sorted(SMOKE))
def test_every_agent_runs_and_sb3_writes_nothing_to_tmpdir(
        agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without forgelab's logger SB3 would create $TMPDIR/SB3-<date>/ on every run."""
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR (tmp_path, see conftest)
    assert Path(tempfile.gettempdir()) == tmp_path
    overrides, expected = SMOKE[agent]
    data = {"agent": agent, "env": {"id": "CartPole-v1"}, "seed": 0, "device": "cpu",
            "train": {"total_steps": 150, "eval_every": 150, "eval_episodes": 1,
                      "log_every": 50},
            "agent_options": {"policy_kwargs": {"net_arch": [16]}}}
    run_dir = run_experiment(data, *overrides, "env.max_episode_steps=50")
    assert not list(tmp_path.glob("SB3-*"))
    rows = read_metrics(run_dir)
    keys = {key for row in rows for key in row}
    assert expected | {"perf/sps", "train/episode_return", "eval/return_mean"} <= keys
    assert not any(key.startswith(("time/", "rollout/ep_")) for key in keys)
    assert max(row.get("global_step", 0) for row in rows) >= 150
