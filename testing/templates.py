"""The files ``forgelab new-plugin`` writes (``string.Template``: ``$pkg``, ``$short``, ...).

Each component is minimal but complete: it trains, checkpoints with full state (a resumed run
equals an uninterrupted one), evaluates with seeds, and passes :mod:`forgelab.testing`.
"""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "forgelab plugin: $what"
requires-python = ">=3.11"
dependencies = ["forgelab"]

# forgelab finds the plugin through this entry point (`forgelab plugins` lists it).
[project.entry-points.forgelab]
$short = "$pkg.plugin"

[tool.setuptools]
packages = ["$pkg"]

[tool.setuptools.package-data]
$pkg = ["experiments/*.yaml"]
'''

PLUGIN_HEAD = '''\
"""forgelab plugin $dist: registrations only.

Factories and configs are "module:attr" strings, so loading this module (which `forgelab
plugins` and `forgelab --help` do) imports nothing heavy. forgelab.testing checks that.
"""

from pathlib import Path

from forgelab.core import hookimpl
'''

PLUGIN_AGENT = '''

@hookimpl
def register_agents(register):
    register("$short-agent", "$pkg.agent:LinearAgent", config="$pkg.agent:LinearAgentConfig",
             check="$pkg.agent:check_experiment",
             description="REINFORCE with a linear softmax policy, in NumPy (Discrete actions).",
             conformance={"env": "$agent_env", "train": {"total_steps": 200}})
'''

PLUGIN_MODEL = '''

@hookimpl
def register_generative_models(register):
    register("$short-gaussian", "$pkg.model:Gaussian", config="$pkg.model:GaussianConfig",
             description="A diagonal Gaussian fitted by maximum likelihood (a full example).",
             conformance={"dataset": "$model_dataset", "train": {"epochs": 2},
                          "model_options": {"log_every": 2}})
'''

PLUGIN_ENV = '''

@hookimpl
def register_envs(register):
    register("$short/Corridor-v0", "$pkg.env:CorridorEnv", kwargs={"length": 8},
             max_episode_steps=50, description="Walk right along a corridor to the goal.")
'''

PLUGIN_DATASET = '''

@hookimpl
def register_datasets(register):
    register("$short-blobs", "$pkg.dataset:blobs", config="$pkg.dataset:BlobsConfig",
             description="2-D points: three Gaussian blobs with labels.")
'''

PLUGIN_EXPERIMENTS = '''

@hookimpl
def register_experiments(register):
    register(Path(__file__).parent / "experiments")  # listed by `forgelab list experiments`
'''

AGENT = '''\
"""REINFORCE with a linear softmax policy, in NumPy: the smallest learning agent that has
everything forgelab asks of one (see forgelab's docs/plugins.md).

    pi(a|s) = softmax(W s + b)_a        G_t = sum_k gamma^k r_{t+k}
    W <- W + lr * sum_t (G_t - mean G) * grad log pi(a_t|s_t)      (one update per episode)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from forgelab.agents.evaluation import PolicyEvaluator
from forgelab.core.checkpoints import to_safe
from forgelab.core.errors import ConfigError
from forgelab.envs.building import completed_episodes
from forgelab.envs.state import restore_env, snapshot_env


class LinearAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error
    learning_rate: float = Field(0.01, gt=0, description="step size")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")


def check_experiment(options, config, spaces) -> None:
    """Refuse what this agent cannot do before a run directory exists (and on --dry-run)."""
    observation_space, action_space = spaces
    if type(action_space).__name__ != "Discrete" or len(observation_space.shape) != 1:
        raise ConfigError(f"$short-agent needs Discrete actions and flat observations; "
                          f"{config.env.id} has {action_space} and {observation_space}")
    if config.env.num_envs != 1:
        raise ConfigError("$short-agent steps one env: set env.num_envs=1")


class LinearAgent:
    def __init__(self, options: LinearAgentConfig, ctx) -> None:
        self.options, self.ctx = options, ctx
        self.envs = ctx.inputs.make_vec_env()  # the experiment's env section, as a vector env
        n_obs = self.envs.single_observation_space.shape[0]
        self.n_actions = int(self.envs.single_action_space.n)
        self.rng = np.random.default_rng(ctx.seed)
        self.weights = np.zeros((self.n_actions, n_obs + 1))
        self.step = 0
        self.obs = None  # None until the envs are reset; a resumed run continues mid-episode
        self.episode: list[tuple[np.ndarray, int, float]] = []
        # Deterministic episodes on the eval env, logged as eval/* (the run schedules them).
        self.evaluator = PolicyEvaluator.for_run(ctx)

    def _probs(self, obs: np.ndarray) -> np.ndarray:
        logits = self.weights @ np.append(obs, 1.0)
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def _greedy(self, obs: np.ndarray) -> int:
        return int(np.argmax(self._probs(np.asarray(obs, dtype=np.float64))))

    def _update(self) -> None:
        returns, running = [], 0.0
        for _, _, reward in reversed(self.episode):
            running = reward + self.options.gamma * running
            returns.append(running)
        returns = np.array(returns[::-1])
        advantages = returns - returns.mean()
        for (obs, action, _), advantage in zip(self.episode, advantages, strict=True):
            x = np.append(obs, 1.0)
            grad = -np.outer(self._probs(obs), x)
            grad[action] += x
            self.weights += self.options.learning_rate * advantage * grad
        self.episode = []

    def fit(self) -> None:
        ctx = self.ctx
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=ctx.seed)
        while self.step < ctx.budget and not ctx.stop_requested:
            obs = np.asarray(self.obs[0], dtype=np.float64)
            action = int(self.rng.choice(self.n_actions, p=self._probs(obs)))
            self.obs, reward, terminated, truncated, infos = self.envs.step(np.array([action]))
            self.episode.append((obs, action, float(reward[0])))
            self.step += 1
            if terminated[0] or truncated[0]:
                self._update()
            # The one call per step: logs the episodes that ended, evaluates when a
            # train.eval_every mark is crossed (and at the end; the best evaluation becomes
            # the `best` checkpoint), saves periodic checkpoints and moves the progress bar.
            episodes = [({"train/episode_return": episode_return,
                          "train/episode_length": length}, self.step)
                        for episode_return, length in completed_episodes(infos)]
            ctx.update(self, self.step, rows=episodes)

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        # Called by ctx.update when an evaluation is due; the corridor draws no frames.
        return self.evaluator.evaluate(self._greedy, self.step, video=False)

    def evaluate(self) -> dict[str, float]:  # `forgelab eval`
        return self.evaluator.evaluate(self._greedy, self.step, video=False)

    def state_dict(self) -> dict[str, Any]:
        # Everything fit() needs to continue exactly: weights, RNG, the episode so far, the envs.
        return to_safe({
            "step": self.step, "weights": self.weights, "rng": self.rng.bit_generator.state,
            "obs": self.obs, "envs": snapshot_env(self.envs) if self.obs is not None else None,
            "episode": [(obs, action, reward) for obs, action, reward in self.episode],
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.weights = state["weights"].numpy().copy()
        self.rng.bit_generator.state = state["rng"]
        self.episode = [(obs.numpy().copy(), int(a), float(r)) for obs, a, r in state["episode"]]
        if state["envs"] is not None:
            restore_env(self.envs, state["envs"])
            self.obs = state["obs"].numpy().copy()
'''

ENV = '''\
"""A 1-D corridor: start at a random cell on the left half, walk right to the goal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CorridorEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 10}

    def __init__(self, length: int = 8, render_mode: str | None = None) -> None:
        if length < 2:
            raise ValueError(f"length must be at least 2, got {length}")
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self.position = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.position / (self.length - 1)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # seeds self.np_random: every random number comes from it
        self.position = int(self.np_random.integers(0, self.length // 2))
        return self._obs(), {}

    def step(self, action):
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0,
                                    self.length - 1))
        terminated = self.position == self.length - 1
        reward = 1.0 if terminated else -0.01
        return self._obs(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "ansi":
            return "".join("A" if i == self.position else ("G" if i == self.length - 1 else ".")
                           for i in range(self.length))
        if self.render_mode == "rgb_array":
            frame = np.full((16, 16 * self.length, 3), 255, dtype=np.uint8)
            frame[:, 16 * (self.length - 1):] = (0, 160, 0)
            frame[4:12, 16 * self.position + 4:16 * self.position + 12] = (0, 0, 200)
            return frame
        return None
'''

DATASET = '''\
"""Three Gaussian blobs in 2-D, with labels: a dataset is a factory returning Splits."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from forgelab.generative.datasets import Splits, make_splits, split_indices


class BlobsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(600, ge=30, description="points in all (train + val + test)")
    std: float = Field(0.1, gt=0, description="standard deviation of each blob")
    split_seed: int = Field(0, ge=0, description="seed of the points and of the split")


def blobs(options: BlobsConfig, seed: int) -> Splits:
    """The points and the split depend on ``split_seed`` only (not the run's seed), so every
    run of an experiment trains on the same data."""
    rng = np.random.default_rng(options.split_seed)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    labels = rng.integers(0, len(centres), options.n)
    points = centres[labels] + options.std * rng.standard_normal((options.n, 2))
    parts = split_indices(options.n, (options.n // 10, options.n // 10), options.split_seed)
    return make_splits(points, labels, parts, sample_shape=(2,), num_classes=len(centres),
                       kind="points", name="$short-blobs", centres=centres.tolist())
'''

MODEL = '''\
"""A diagonal Gaussian fitted by maximum likelihood: the smallest complete forgelab generative
model. The shared epoch loop (forgelab.generative.base.GenerativeModel) does batching,
logging, evaluation, checkpoints (best and latest) and exact resume; a model writes only

    train_step(x, y)  one update on a batch:   NLL(x) = 0.5 * sum_d [((x_d - mu_d) / s_d)^2
                                                         + 2 log s_d + log 2 pi]
    validate(split)   metrics on a split (logged as val/...; best_metric = "val/loss" picks
                      the best checkpoint, lower is better)
    sample(n, gen)    n new samples from a CPU torch.Generator
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from forgelab.generative.base import GenerativeConfig, GenerativeModel


class GaussianConfig(GenerativeConfig):
    learning_rate: float = Field(0.05, gt=0, description="Adam step size")


class GaussianParameters(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_std = nn.Parameter(torch.zeros(dim))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each row of x (flattened)."""
        z = (x.flatten(1) - self.mean) / self.log_std.exp()
        return 0.5 * (z ** 2 + 2 * self.log_std + math.log(2 * math.pi)).sum(dim=1)


class Gaussian(GenerativeModel):
    best_metric = "val/loss"

    def __init__(self, options: GaussianConfig, ctx) -> None:
        super().__init__(options, ctx)  # loads the dataset: self.data (Splits)
        self.dim = math.prod(self.data.sample_shape)
        self.gaussian = self.add_network("gaussian", GaussianParameters(self.dim),
                                         lr=options.learning_rate)

    def train_step(self, x, y):
        loss = self.gaussian.nll(x).mean()
        self.optimize("gaussian", loss)
        return {"loss": loss}

    def validate(self, split: str) -> dict[str, float]:
        x, _ = self.split(split)
        return {"loss": float(self.gaussian.nll(x).mean())}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(n, self.dim, generator=generator)  # on the CPU, then the device
        mean, std = self.gaussian.mean.detach().cpu(), self.gaussian.log_std.detach().exp().cpu()
        samples = (mean + std * noise).reshape(n, *self.data.sample_shape)
        return samples.clamp(0, 1) if self.data.kind == "image" else samples
'''

EXPERIMENT_AGENT = '''\
# forgelab run $short-agent
agent: $short-agent
agent_options: {learning_rate: 0.01}
env: {id: $agent_env}
train: {total_steps: 5000, eval_every: 1000, eval_episodes: 5}
'''

EXPERIMENT_MODEL = '''\
# forgelab run $short-gaussian
model: $short-gaussian
dataset: $model_dataset
train: {epochs: 20, eval_every: 5}
'''

TEST_CONFORMANCE = '''\
"""forgelab's conformance kit over every component of this plugin (one test per check)."""

from forgelab.testing import parametrize_with_checks


@parametrize_with_checks($components)
def test_conformance(check):
    check()
'''

TEST_EXPERIMENTS = '''\
"""The plugin's experiments run end to end (W&B disabled, runs in tmp_path)."""

import json


def test_shipped_experiments_run(forgelab_run):
    for name, overrides in $experiments:
        run_dir = forgelab_run(name, *overrides)
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished", name
'''

README = '''\
# $dist

A [forgelab](https://github.com/) plugin: $what.

```bash
pip install -e .            # registers the plugin through its `forgelab` entry point
forgelab plugins            # lists `$short` with what it registers
forgelab plugins --check $short   # forgelab's conformance kit on every component
pytest                      # the same checks, one test each, plus the experiments
forgelab list experiments   # shows the experiments this plugin ships
$run_lines
```

Layout: `$pkg/plugin.py` registers the components (import strings only, so listing stays
fast); each component lives in its own module; `$pkg/experiments/` holds experiment files that
`forgelab run NAME` finds once the plugin is installed. forgelab's plugin reference
(`docs/plugins.md` in forgelab's repository) explains the contract each file follows.
'''
