"""Invalid policy-gradient options get one readable error before training starts."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import forgelab_cli, run_experiment

from forgelab.core.errors import ConfigError


def _fails_readably(*args: str) -> str:
    result = forgelab_cli("run", *args, "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result.stderr


def test_out_of_range_values_and_typos_name_their_keys() -> None:
    err = _fails_readably("cartpole-ppo", "agent.learning_rate=-1", "agent.gamma=1.5",
                          "agent.clip_rang=0.1", "agent.n_epochs=0")
    assert "agent.learning_rate" in err and "greater than 0" in err
    assert "agent.gamma" in err and "less than or equal to 1" in err
    assert "agent.n_epochs" in err
    assert "did you mean 'clip_range'" in err


def test_wrong_types_and_choices_list_what_is_allowed() -> None:
    err = _fails_readably("cartpole-a2c", "agent.optimizer=sgd", "agent.hidden_sizes=[]",
                          "agent.normalize_obs=maybe")
    assert "agent.optimizer" in err and "'rmsprop' or 'adam'" in err
    assert "agent.hidden_sizes" in err and "agent.normalize_obs" in err


def test_batch_size_that_does_not_divide_the_rollout() -> None:
    # n_steps 32 * 8 envs = 256 steps per rollout; 100 does not split it into minibatches
    err = _fails_readably("cartpole-ppo", "agent.batch_size=100")
    assert "agent.batch_size" in err and "256" in err and "hint:" in err


class _Buttons(gym.Env):
    """Two on/off buttons to press at once: a MultiBinary action space."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiBinary(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), float(np.sum(action)), True, False, {}


@pytest.mark.parametrize("agent", ["reinforce", "a2c", "ppo"])
def test_unsupported_action_space_is_a_config_error_before_training(agent: str) -> None:
    if "test/Buttons-v0" not in gym.registry:
        gym.register("test/Buttons-v0", entry_point=_Buttons, max_episode_steps=10)
    config = {"agent": agent, "env": {"id": "test/Buttons-v0", "num_envs": 2}, "device": "cpu",
              "train": {"total_steps": 100}}
    with pytest.raises(ConfigError, match="Discrete or Box action space") as info:
        run_experiment(config)
    assert "MultiBinary" in str(info.value)
    assert not list((Path.cwd() / "runs").glob("*/*"))  # refused before a run directory existed


# Mistakes only the component can judge (its spaces, its options against the env's): the
# registration's pre-run check finds them, so `--dry-run` fails exactly when the run would.
@pytest.mark.parametrize(("args", "message"), [
    (["pendulum-ppo", "agent=dqn"], "agent 'dqn' needs a Discrete action space"),
    (["cartpole-ppo", "agent.batch_size=100"], "does not divide the rollout"),
    (["cartpole-dqn", "env.num_envs=2", "agent.optimize_memory_usage=true",
      "agent.buffer_size=1001"], "divisible by env.num_envs"),
    (["cartpole-a2c", "agent.encoder=nature"], "agent.encoder"),
    (["ring8-gan", "model.arch=conv"], "arch: conv needs an image dataset"),
    (["digits-vae", "model=cvae", "dataset=ring8"], "needs an image dataset"),
])
def test_dry_run_fails_exactly_when_the_run_would(args: list[str], message: str) -> None:
    dry = forgelab_cli("run", *args, "--dry-run")
    assert dry.returncode == 2 and message in dry.stderr, dry.stderr
    run = forgelab_cli("run", *args, "train.total_steps=64", "--no-progress")
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in dry.stderr + run.stderr
    assert not Path("runs").exists()  # nothing was created: no run directory, no W&B run
