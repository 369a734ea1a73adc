"""The keys a generative experiment adds to :class:`forgelab.core.config.ExperimentConfig`:
the model, its options, the dataset and its options. Pure pydantic (no torch)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from forgelab.core.config import ExperimentConfig


class GenerativeExperiment(ExperimentConfig):
    """A generative experiment: ``model:``, ``model_options:``, ``dataset:`` and
    ``dataset_options:``; training lasts ``train.epochs`` epochs."""

    component_key: ClassVar[str] = "model"
    required_inputs: ClassVar[dict[str, str]] = {"dataset": "dataset: digits"}

    model: str = Field(description="a registered generative model (forgelab list models)")
    model_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str = Field(description="a registered dataset (forgelab list datasets)")
    dataset_options: dict[str, Any] = Field(default_factory=dict)
