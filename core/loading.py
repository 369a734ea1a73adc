"""Load a trained run for use outside training: a policy to act with, or a sampler.

``forgelab.load(path)`` rebuilds the run's component through the registry (as `forgelab eval`
does) and loads a checkpoint into it, without starting a W&B run, writing into the run
directory, or touching the caller's global state (torch threads, RNG seeds)::

    policy = forgelab.load("runs/cartpole-ppo/20261128-010203-ab12cd34")
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.predict(obs)                        # deterministic by default

A component that samples (the :class:`~forgelab.core.component.Sampler` capability: generative
models) gives a :class:`Sampler`; any other (native and SB3 agents: the
:class:`~forgelab.core.component.Actor` capability) the same :class:`Policy`, whose env comes
from the family's inputs (an agent's env builders). ``path`` is a run directory or one of its
``checkpoints/step-*`` folders.
"""

from __future__ import annotations

import re
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgelab.core.errors import ForgelabError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from forgelab.core.family import Family
    from forgelab.core.pluginhost import PluginHost

_STEP_DIR = re.compile(r"^(step-)?(\d+)$")


# ----------------------------------------------------------------------- checkpoints
def locate(path: str | Path) -> tuple[Path, str | None]:
    """``(run directory, checkpoint folder name or None)`` of a run or checkpoint path."""
    path = Path(path).expanduser()
    if (path / "state.pt").is_file() and path.parent.name == "checkpoints":
        return path.parent.parent, path.name
    if path.name == "checkpoints" and path.is_dir():
        return path.parent, None
    return path, None


def checkpoint_dir(run_dir: Path, which: str | int = "best") -> Path:
    """The checkpoint folder ``which`` names: ``best``, ``latest``, a step number or a folder
    name such as ``step-000020000``. ``best`` falls back to ``latest`` in a run without
    evaluations."""
    from forgelab.core.checkpoints import CheckpointManager

    directory = Path(run_dir) / "checkpoints"
    text = str(which)
    if text in ("best", "latest"):
        manager = CheckpointManager(directory)
        found = manager.path(text) or (manager.path("latest") if text == "best" else None)
        if found is None:
            raise ForgelabError(f"no {text} checkpoint in {directory}",
                                hint="the run was stopped before its first checkpoint")
        return found
    match = _STEP_DIR.match(text)
    if match is None:
        raise ForgelabError(f"--checkpoint {text!r}: use best, latest or a step number",
                            hint="the run's steps are the folders in " + str(directory))
    found = directory / f"step-{int(match.group(2)):09d}"
    if not (found / "state.pt").is_file():
        steps = sorted(int(p.name[5:]) for p in directory.glob("step-*") if p.is_dir())
        raise ForgelabError(f"no checkpoint at step {int(match.group(2))} in {directory}",
                            hint="saved steps: " + (", ".join(map(str, steps)) or "none"))
    return found


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """A checkpoint's state, loaded with ``weights_only=True`` (no pickled code runs)."""
    from forgelab.core.checkpoints import STATE_FILE, load_state

    # Refuses pickled code as unsafe and checks the state's shape (forgelab.core.checkpoints).
    return load_state(folder / STATE_FILE)


def restore_component(component: Any, state: dict[str, Any], folder: Path) -> None:
    """Load a checkpoint into a component (its state and its own files; not the global RNG)."""
    from forgelab.core.checkpoints import loading_errors

    with loading_errors(folder):
        component.load_state_dict(state["component"])
        if hasattr(component, "load_files"):
            component.load_files(folder)


# --------------------------------------------------------------------------- loading
def load(path: str | Path, checkpoint: str | int | None = None, device: str = "cpu",
         host: PluginHost | None = None) -> Policy | Sampler:
    """Load a trained run: a :class:`Policy` for agents, a :class:`Sampler` for models.

    :param path: a run directory, or a ``checkpoints/step-*`` folder inside one.
    :param checkpoint: ``best`` (default for a run directory), ``latest`` or a step number.
    :param device: where the networks go (``cpu`` by default: acting one observation at a time
        is fastest there for networks this small).
    """
    from forgelab.core import runner
    from forgelab.core.config import validate_experiment

    run_dir, folder_name = locate(path)
    if folder_name is not None and checkpoint is not None and str(checkpoint) != folder_name:
        raise ForgelabError(f"{path} is checkpoint {folder_name}; do not also pass "
                            f"checkpoint={checkpoint!r}")
    data, info = runner.load_run(run_dir)
    data["device"] = device
    if isinstance(data.get("env"), dict):
        data["env"] = {**data["env"], "vectorization": "sync"}  # no worker processes to act
    config = validate_experiment(data, source=str(run_dir / runner.CONFIG_FILE))
    folder = checkpoint_dir(run_dir, folder_name or checkpoint or "best")
    state = read_checkpoint(folder)
    prepared = runner.prepare(config, host)
    component, ctx, workdir = _build(prepared, run_dir)
    try:
        restore_component(component, state, folder)
    except BaseException:
        _close(component)
        workdir.cleanup()
        raise
    samples = hasattr(component, "sample_to_file") or hasattr(component, "sample")
    cls = Sampler if samples else Policy
    return cls(component, config, run_dir, folder, int(state["step"]), workdir,
               family=prepared.family, inputs=ctx.inputs)


def _build(prepared: Any, run_dir: Path) -> tuple[Any, Any, tempfile.TemporaryDirectory]:
    """The component with a context that logs nowhere (W&B disabled, files in a temp folder)
    and without changing the caller's RNG."""
    import torch

    from forgelab.core.checkpoints import CheckpointManager
    from forgelab.core.component import RunContext
    from forgelab.core.device import resolve_device
    from forgelab.core.progress import Progress
    from forgelab.core.tracking import Tracker

    config = prepared.config
    workdir = tempfile.TemporaryDirectory(prefix="forgelab-load-")
    scratch = Path(workdir.name)
    tracker = Tracker(scratch, mode="disabled", run_id="load")
    ctx = RunContext(config=config, run_dir=scratch, device=resolve_device(config.device),
                     seed=config.seed, tracker=tracker,
                     checkpoints=CheckpointManager(scratch / "checkpoints"),
                     progress=Progress(None, enabled=False), registry=prepared.host.registry,
                     job_type="load", family=prepared.family)
    ctx.inputs = prepared.family.load_support().run_inputs(config, ctx)  # a model's dataset
    try:
        with torch.random.fork_rng(devices=[]):  # building networks draws from torch's RNG
            component = prepared.factory(prepared.options, ctx)
    except BaseException:
        tracker.finish(quiet=True)
        workdir.cleanup()
        raise
    return component, ctx, workdir


def _close(component: Any) -> None:
    for name in ("envs", "evaluator"):
        part = getattr(component, name, None)
        if part is not None and hasattr(part, "close"):
            part.close()
    tracker = getattr(getattr(component, "ctx", None), "tracker", None)
    if tracker is not None:
        tracker.finish(quiet=True)


class _Loaded:
    """What policies and samplers share: the run, the checkpoint, closing."""

    def __init__(self, component: Any, config: Any, run_dir: Path, checkpoint: Path, step: int,
                 workdir: tempfile.TemporaryDirectory, family: Any = None,
                 inputs: Any = None) -> None:
        #: the rebuilt component (a forgelab agent or model) for anything beyond this API
        self.component = component
        #: the run's validated experiment config
        self.config = config
        self.run_dir = Path(run_dir)
        #: the checkpoint folder that was loaded
        self.checkpoint = Path(checkpoint)
        #: training progress at that checkpoint (env steps for agents, epochs for models)
        self.step = step
        #: the component's family (:class:`forgelab.core.family.Family`)
        self.family = family
        #: what the family gave the component (an agent's env builders, a dataset loader)
        self.inputs = inputs
        self._finalizer = weakref.finalize(self, _finalize, component, workdir)

    def close(self) -> None:
        """Close the environments the component opened (also done when garbage-collected)."""
        self._finalizer()

    def __enter__(self) -> _Loaded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.config.component} from {self.run_dir} "
                f"({self.checkpoint.name})>")


def _finalize(component: Any, workdir: tempfile.TemporaryDirectory) -> None:
    try:
        _close(component)
    finally:
        workdir.cleanup()


class Policy(_Loaded):
    """A trained agent (native or SB3) that acts: ``predict(obs, deterministic=True)``."""

    @property
    def observation_space(self) -> Any:
        return self._spaces()[0]

    @property
    def action_space(self) -> Any:
        return self._spaces()[1]

    def _spaces(self) -> tuple[Any, Any]:
        if not hasattr(self, "_space_cache"):
            env = self.make_env()
            self._space_cache = (env.observation_space, env.action_space)
            env.close()
        return self._space_cache

    def predict(self, obs: Any, deterministic: bool = True) -> Any:
        """The action for one observation, or actions for a batch of them.

        :param obs: an observation as the experiment's env returns it (wrappers included: use
            :meth:`make_env`), or a batch with a leading axis.
        :param deterministic: the greedy action; False samples from the policy (ε-greedy with
            the final ε for DQN).
        :return: one action (an ``int`` for ``Discrete`` spaces), or an array of them.
        """
        import numpy as np

        act = getattr(self.component, "actions", None)
        if act is None:
            raise ForgelabError(f"{self.config.component!r} does not provide actions()",
                                hint="its plugin must implement the Actor protocol "
                                "(forgelab.core.component.Actor)")
        obs = np.asarray(obs)
        single = obs.shape == tuple(self.observation_space.shape or ())
        actions = np.asarray(act(obs[None] if single else obs, deterministic=deterministic))
        if not single:
            return actions
        action = actions[0]
        return int(action) if action.ndim == 0 and np.issubdtype(action.dtype, np.integer) \
            else action

    __call__ = predict

    def make_env(self, render_mode: str | None = None, seed: int | None = None) -> Any:
        """The experiment's environment with its wrappers (what the policy was trained on), as
        the family's inputs build it for evaluation (``inputs.make_eval_env``).

        :param render_mode: e.g. ``human`` for a window or ``rgb_array`` for frames.
        :param seed: reset once with this seed (default: leave it unseeded until you reset).
        """
        make = getattr(self.inputs, "make_eval_env", None)
        if make is None:
            raise ForgelabError(f"{self.config.component!r} was not trained in an environment")
        env = make(render_mode=render_mode)
        if seed is not None:
            env.reset(seed=seed)
        return env


class Sampler(_Loaded):
    """A trained generative model that draws samples: ``sample(n, seed=None)``."""

    @property
    def can_sample(self) -> bool:
        return bool(getattr(self.component, "can_sample", False))

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` new samples ``(n, *shape)`` on the CPU: images in [0, 1] or 2-D points.

        :param seed: the same seed gives the same samples; None draws fresh noise.
        """
        import torch

        if not self.can_sample:
            raise ForgelabError(f"{self.config.component!r} does not define a distribution to "
                                "sample from", hint="train a vae, cvae or a GAN instead")
        if n < 1:
            raise ForgelabError(f"n must be at least 1 (got {n})")
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        with self.component.evaluating(offset=17):
            return self.component.sample(n, generator).cpu()

    def to_file(self, n: int, out: str | Path) -> Path:
        """``n`` samples as a PNG grid (images) or a CSV / PNG scatter plot (2-D points)."""
        return self.component.sample_to_file(n, Path(out))

    def as_numpy(self, n: int, seed: int | None = None) -> np.ndarray:
        """:meth:`sample` as a NumPy array."""
        return self.sample(n, seed).numpy()


def nothing_to_resume(run_dir: Path, config: Any, info: dict[str, Any],
                      family: Family) -> str | None:
    """Why resuming ``run_dir`` with ``config`` would train nothing (None when it would):
    the run finished and its latest checkpoint is at the end of the family's budget."""
    from forgelab.core.checkpoints import CheckpointManager

    if info.get("status") != "finished":
        return None
    latest = CheckpointManager(Path(run_dir) / "checkpoints").path("latest")
    match = _STEP_DIR.match(latest.name) if latest is not None else None
    if match is None:
        return None
    step = int(match.group(2))
    key, budget = f"train.{family.budget_key}", getattr(config.train, family.budget_key)
    if budget is None or step < budget:
        return None
    # Twice the step reached: a budget a rollout overshot (4,096 steps of 1,000) is no guide.
    return (f"nothing to resume: {run_dir} finished at step {step} of {key}={budget}; "
            f"to train longer, raise the budget: forgelab run --resume {run_dir} "
            f"{key}={2 * max(step, budget)}")
