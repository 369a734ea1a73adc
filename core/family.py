"""Families: how the runner treats one kind of component, described once.

forgelab trains two families today: RL agents (on gymnasium environments) and generative models
(on datasets). The runner does not know either of them. Each is a :class:`Family` registered
through the ``register_families`` hook, like any plugin; the runner reads from it:

* which experiment key names the component (``agent:``, ``model:``), which is also the registry
  kind the component's plugin registers under,
* what the component's pre-run check reads (an env's spaces, a dataset) and what the component
  receives as ``ctx.inputs`` (env builders, a dataset loader): functions of the family's
  ``support`` module, imported only when a run starts,
* the step unit and budget (env steps and ``train.total_steps``, epochs and ``train.epochs``),
* the W&B step axes, the metric that picks the ``best`` checkpoint, the throughput metric
  added to training rows.

A third family (supervised learning, diffusion, ...) is a plugin that registers its own
:class:`Family` and a support module with the functions of :class:`FamilySupport`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from forgelab.core.errors import ConfigError

if TYPE_CHECKING:
    from forgelab.core.component import RunContext
    from forgelab.core.config import ExperimentConfig
    from forgelab.core.pluginhost import PluginHost
    from forgelab.core.registry import Registration


@dataclass(frozen=True)
class Family:
    """One family of components, as the runner sees it.

    :param name: the family's name (``rl``, ``generative``).
    :param component_key: the experiment key naming the component (``agent``, ``model``); also
        the registry kind its plugins register under.
    :param unit: what ``component.step`` counts (``step``: env steps; ``epoch``).
    :param budget_key: the ``train.*`` field that bounds training (``total_steps``, ``epochs``).
    :param axes: W&B step axes and the metric globs plotted against each; the first axis is the
        one :meth:`RunContext.update` logs against unless told otherwise.
    :param inputs: (registry kind, experiment key) of each input the component trains on
        (``("env", "env.id")``); they become W&B tags and are recorded in ``run.json``.
    :param experiment: ``"module:Class"`` of the family's experiment class, a subclass of
        :class:`forgelab.core.config.ExperimentConfig` with the family's keys (the component,
        its options, its inputs) and ``component_key`` set; pure pydantic, so validating an
        experiment file stays light.
    :param support: import path of the module with the family's functions
        (:class:`FamilySupport`), e.g. ``"forgelab.agents.family"``.
    :param best_metric: the evaluation metric that picks the ``best`` checkpoint, unless the
        component names its own with a ``best_metric`` attribute (None: no ``best``).
    :param best_mode: ``max`` (a return) or ``min`` (a loss).
    :param best_summary: the run-summary key that keeps the best value (None: not kept).
    :param throughput_key: added to every training row: ``unit``\\ s per second of training,
        evaluation time left out (None: not logged).
    :param default_eval_every: the evaluation period when ``train.eval_every`` is not set
        (None: evaluate only at the end).
    :param curve_axis: the axis a run's progress is read on in reports (``global_step``,
        ``epoch``).
    :param unit_label: the unit in sentences (``env steps``, ``epochs``).
    :param headline_metrics: metric names (or prefixes) a report headlines, most informative
        first; the first one is the default when none was logged.
    :param description: one line for ``forgelab plugins``.
    """

    name: str
    component_key: str
    unit: str
    budget_key: str
    axes: tuple[tuple[str, tuple[str, ...]], ...]
    inputs: tuple[tuple[str, str], ...]
    experiment: str
    support: str
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    best_summary: str | None = None
    throughput_key: str | None = None
    default_eval_every: int | None = None
    curve_axis: str = ""
    unit_label: str = ""
    headline_metrics: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.curve_axis:
            object.__setattr__(self, "curve_axis", self.axis)
        if not self.unit_label:
            object.__setattr__(self, "unit_label", f"{self.unit}s")

    @property
    def axis(self) -> str:
        """The axis training rows are logged against."""
        return self.axes[0][0]

    def budget(self, config: ExperimentConfig) -> int:
        """The run's length in ``unit``\\ s."""
        return int(getattr(config.train, self.budget_key))

    def input_names(self, config: ExperimentConfig) -> list[tuple[str, str]]:
        """(registry kind, name) of the inputs named: ``[("env", "CartPole-v1")]``."""
        found = []
        for kind, path in self.inputs:
            value: Any = config
            for part in path.split("."):
                value = getattr(value, part, None)
            if value is not None:
                found.append((kind, str(value)))
        return found

    def load_experiment(self) -> type[ExperimentConfig]:
        """The family's experiment class (imported on first use)."""
        from forgelab.core.registry import import_string

        return import_string(self.experiment)

    def load_support(self) -> FamilySupport:
        """The family's support module (imported on first use)."""
        return importlib.import_module(self.support)  # type: ignore[return-value]


class FamilySupport(Protocol):
    """The functions a family's ``support`` module defines (imported when a run starts).

    ``check_inputs`` and ``run_inputs`` (below) are required. Core asks for the others with
    ``getattr(support, name, None)`` and does without them; they are how core stays free of any
    family's libraries (the RL family's, :mod:`forgelab.agents.family`, holds every gymnasium
    call core needs):

    ``input_origin(kind, name) -> dict | None``
        Where an input no plugin registered comes from (``{"distribution", "version"}``: a
        gymnasium id of gymnasium's own registry), for ``run.json``'s provenance.
    ``catalog_rows(kind, host, details) -> list[dict]``
        ``forgelab list <kind>s``: the inputs of ``kind`` the family's library knows (rows
        ``{name, kind, description, plugin, distribution, ...}``, plugin registrations included:
        the plugins' own rows keep their source and gain the keys they lack); with ``details``,
        more keys per row (an env's spaces). ``list all`` without details shows only the
        plugins' rows.
    ``evaluate_episodes(component, ctx, step, episodes, videos, stochastic) -> dict``
        ``forgelab eval RUN --episodes/--video/--stochastic`` (each None or False when not
        given): play and log episodes at ``step`` in the eval job's ``ctx``; return the
        metrics, with written video paths under ``"videos"``. Without it ``forgelab eval``
        calls ``component.evaluate()`` and refuses those flags.
    ``watch_episodes(policy, episodes, stochastic, render_mode) -> (returns, videos, fps)``
        ``forgelab watch``: play a :class:`~forgelab.core.loading.Policy` (``render_mode``
        ``human``: in a window; otherwise every episode recorded as frames). Without it there
        is nothing to watch.
    """

    def check_inputs(self, config: ExperimentConfig, host: PluginHost,
                     registration: Registration) -> Any:
        """Validate the experiment's inputs (an env id, a dataset name and its options) and
        return what the component's ``check`` reads (the env's spaces, the dataset), without
        side effects on the run: called by ``prepare`` and ``--dry-run``."""

    def run_inputs(self, config: ExperimentConfig, ctx: RunContext) -> Any:
        """What the component receives as ``ctx.inputs`` (env builders, a dataset loader)."""


def family_of_data(config: dict[str, Any], families: dict[str, Family]) -> Family | None:
    """The family of a saved run's config (a ``config.yaml`` mapping), None when unknown."""
    for family in families.values():
        if config.get(family.component_key):
            return family
    return None


def family_for(config: ExperimentConfig, families: dict[str, Family]) -> Family:
    """The family whose component key the experiment sets."""
    for family in families.values():
        if family.component_key == config.kind:
            return family
    known = ", ".join(f"{f.component_key} ({f.name})" for f in families.values()) or "none"
    raise ConfigError(f"no installed plugin registers the family of {config.kind!r} "
                      f"components (families: {known})",
                      hint="`forgelab plugins` lists what is installed; forgelab's own "
                      "families come from its built-in plugins")
