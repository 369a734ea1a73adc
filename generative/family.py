"""The generative family's support functions (:class:`forgelab.core.family.FamilySupport`):
the dataset an experiment names, validated (and loaded for the model's check) before the run,
and loaded for the model as ``ctx.inputs``."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from forgelab.core.config import validate_options
from forgelab.core.errors import ConfigError, ForgelabError

if TYPE_CHECKING:
    from forgelab.core.component import RunContext
    from forgelab.core.config import ExperimentConfig
    from forgelab.core.pluginhost import PluginHost
    from forgelab.core.registry import Registration, Registry


def _dataset(config: ExperimentConfig, registry: Registry) -> tuple[Any, Any]:
    """The dataset's registration and validated options; a ConfigError when unknown."""
    try:
        dataset = registry.get("dataset", config.dataset)
    except ForgelabError as exc:
        raise ConfigError(f"dataset: {exc.message}", hint=exc.hint) from None
    options = validate_options(dataset.load_config(), config.dataset_options, "dataset",
                               dataset.name)
    return dataset, options


def check_inputs(config: ExperimentConfig, host: PluginHost, registration: Registration) -> Any:
    """Validate the dataset name and options; load the dataset when the model has a check that
    reads it (without touching the global RNGs: the run then loads its own copy after seeding,
    exactly as it would without the check)."""
    dataset, options = _dataset(config, host.registry)
    if registration.metadata.get("check") is None:
        return None
    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            return dataset.load_factory()(options, config.seed)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class DatasetSource:
    """A model's ``ctx.inputs``: ``load()`` builds the experiment's dataset once (after the
    runner seeded everything) through its registered factory."""

    def __init__(self, config: ExperimentConfig, registry: Registry, seed: int) -> None:
        self.config, self.registry, self.seed = config, registry, seed
        self._splits: Any = None

    @property
    def name(self) -> str:
        return str(self.config.dataset)

    def load(self) -> Any:
        if self._splits is None:
            dataset, options = _dataset(self.config, self.registry)
            self._splits = dataset.load_factory()(options, self.seed)
        return self._splits


def run_inputs(config: ExperimentConfig, ctx: RunContext) -> DatasetSource:
    return DatasetSource(config, ctx.registry, ctx.seed)
