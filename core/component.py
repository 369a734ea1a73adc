"""The contract between the runner and a component (an agent or a generative model).

A plugin registers a *factory* ``factory(options, ctx) -> Component``. ``options`` is the
validated instance of the config class it registered; ``ctx`` is the :class:`RunContext` the
runner built. Components never read the CLI or global state: everything arrives through these two
arguments (device, seed, tracker, checkpoints, and ``ctx.inputs``: what the component's family
gives it to train on, env builders or a dataset loader).

The runner calls, in order::

    component = factory(options, ctx)
    component.load_state_dict(state)      # only when resuming
    ctx.loop.start(component.step)
    ctx.loop.catch_up(component)          # on resume: an evaluation a stop cut short
    component.fit()                       # returns when done or when ctx.stop_requested
    ctx.checkpoints.save(component)       # always, also after Ctrl-C / SIGTERM

and ``fit`` calls ``ctx.update(self, step, metrics, ...)`` once after each update: logging,
scheduled evaluation (``component.periodic_evaluation(video)``), ``best`` and periodic
checkpoints and the progress bar happen there (:mod:`forgelab.core.loop`).

``fit`` must be resumable: after ``load_state_dict`` it continues from the saved step counters.
``periodic_evaluation`` may therefore run before ``fit`` (``catch_up``); stopped part-way (it
should check ``ctx.stop_requested``), it returns without the family's best metric, which is how
the loop knows to make it again on resume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # keep `import forgelab.core` free of torch
    import torch

    from forgelab.core.checkpoints import CheckpointManager
    from forgelab.core.config import ExperimentConfig, TrainSpec
    from forgelab.core.family import Family
    from forgelab.core.loop import TrainingLoop
    from forgelab.core.progress import Progress
    from forgelab.core.registry import Registry
    from forgelab.core.tracking import Tracker


@runtime_checkable
class Component(Protocol):
    """What every agent and generative model implements."""

    #: training progress in the run's unit (env steps for agents, epochs for models)
    step: int
    # Optional class attribute ``exact_resume: bool`` (default True): whether a run stopped by
    # Ctrl-C / SIGTERM and resumed ends bit-identical to an uninterrupted one. forgelab.testing's
    # check_sigterm_resume holds a component to that claim (SB3 agents set it False).

    def fit(self) -> None:
        """Train until the configured budget is reached or ``ctx.stop_requested`` turns true."""

    def state_dict(self) -> dict[str, Any]:
        """Full training state: networks, optimizers, schedules, buffers, RNG, step counters.

        Must load with ``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists,
        tuples and dicts only (:func:`forgelab.core.checkpoints.to_safe` converts NumPy arrays).
        """

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        """An evaluation during training, when ``ctx.update`` finds one due: log what it
        measures (with a rollout video or sample grid when ``video``) and return the metrics;
        the loop keeps ``best`` by the family's metric (or the component's ``best_metric``)."""

    def evaluate(self) -> dict[str, float]:
        """Evaluate the current model, log it through the tracker, and return the metrics
        (``forgelab eval``; never changes ``best``)."""


@runtime_checkable
class FileCheckpointing(Protocol):
    """Optional: a component whose checkpoint includes files of its own (e.g. an SB3 ``.zip``)."""

    def save_files(self, directory: Path) -> None: ...

    def load_files(self, directory: Path) -> None: ...


@runtime_checkable
class Actor(Protocol):
    """Optional: an agent that ``forgelab.load``, ``forgelab eval --episodes/--stochastic`` and
    ``forgelab watch`` can act with."""

    def actions(self, obs: Any, deterministic: bool = True) -> Any:
        """Actions for a batch of observations (first axis: batch), as the env accepts them;
        ``deterministic=False`` samples from the policy instead."""


@runtime_checkable
class Sampler(Protocol):
    """Optional: a generative model that `forgelab sample RUN_DIR` can draw from."""

    def sample_to_file(self, n: int, out: Path) -> Path: ...


@dataclass
class RunContext:
    """Everything a component gets from the runner.

    :param config: the validated experiment.
    :param run_dir: this run's directory (``runs/<experiment>/<timestamp>-<id>/``).
    :param device: the torch device resolved from ``config.device``.
    :param seed: the run's seed; Python, NumPy and torch are already seeded with it.
    :param tracker: metrics, images, videos, artifacts (W&B + ``metrics.jsonl``).
    :param checkpoints: atomic checkpoint writes, ``latest`` / ``best`` pointers and artifacts.
    :param progress: the progress bar; call ``progress.update(step, **metrics)``.
    :param registry: the component registry (datasets are looked up here).
    :param job_type: ``train``, ``eval`` or ``sample``.
    :param family: the component's family (unit, budget, axes, best metric).
    :param inputs: what the family gives the component to train on: env builders for an agent
        (:class:`forgelab.envs.building.Environments`), the dataset loader for a model.
    """

    config: ExperimentConfig
    run_dir: Path
    device: torch.device
    seed: int
    tracker: Tracker
    checkpoints: CheckpointManager
    progress: Progress
    registry: Registry
    job_type: str = "train"
    resumed: bool = False
    family: Family | None = None
    inputs: Any = None
    loop: TrainingLoop | None = None
    stop_signal: int | None = None  # the signal that asked the run to stop
    _stop: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------------ control
    @property
    def stop_requested(self) -> bool:
        """True after Ctrl-C / SIGTERM: finish the current update and return from ``fit``."""
        return self._stop.is_set()

    def request_stop(self, signum: int | None = None) -> None:
        self.stop_signal = signum
        self._stop.set()

    # ----------------------------------------------------------------- training
    @property
    def train(self) -> TrainSpec:
        """Shorthand for ``config.train`` (budget and schedules)."""
        return self.config.train

    @property
    def budget(self) -> int:
        """How long to train, in the family's unit (env steps, epochs)."""
        return self.loop.budget

    def update(self, component: Component, step: int, metrics: Mapping[str, Any] | None = None,
               **kwargs: Any) -> dict[str, float] | None:
        """The one call after each update: log ``metrics``, evaluate when due (keeping
        ``best``), save periodic checkpoints, move the progress bar
        (:meth:`forgelab.core.loop.TrainingLoop.update` has the keywords)."""
        return self.loop.update(component, step, metrics, **kwargs)

    def log_due(self, step: int) -> bool:
        """Whether an update ending at ``step`` crossed a ``train.log_every`` mark."""
        return self.loop.log_due(step)


PolicyFn = Callable[[Any], Any]
