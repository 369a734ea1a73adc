"""Checkpoint helpers: what goes into a checkpoint loads with weights_only=True, unchanged."""

from __future__ import annotations

import io

import numpy as np
import torch

from forgelab.core.checkpoints import capture_rng, restore_rng, to_safe


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_to_safe_keeps_shapes_values_and_structure() -> None:
    tree = {"zero_d": np.array(2.5), "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
            "scalar": np.int64(7), "nested": [np.zeros(2, dtype=np.uint8), ("a", 1.5)]}
    loaded = roundtrip(to_safe(tree))
    assert loaded["zero_d"].shape == () and float(loaded["zero_d"]) == 2.5
    assert torch.equal(loaded["strided"], torch.tensor([[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]],
                                                       dtype=torch.float64))
    assert loaded["scalar"] == 7 and isinstance(loaded["scalar"], int)
    assert loaded["nested"][0].dtype == torch.uint8 and loaded["nested"][1] == ("a", 1.5)


def test_global_rng_state_round_trips() -> None:
    state = roundtrip(capture_rng())
    expected = (np.random.random(), torch.rand(1).item())
    import random

    python_expected = random.random()
    restore_rng(state)
    assert (np.random.random(), torch.rand(1).item()) == expected
    assert random.random() == python_expected


def test_re_saving_the_best_step_keeps_its_metrics(tmp_path) -> None:
    from forgelab.core.checkpoints import CheckpointManager

    class Tiny:
        step = 10

        def state_dict(self):
            return {"w": torch.ones(2)}

    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(Tiny(), best=True, metrics={"eval/return_mean": 500.0})
    manager.save(Tiny())  # the end of training lands on the same step
    state, directory = manager.load("best")
    assert directory == manager.path("latest")
    assert state["metrics"] == {"eval/return_mean": 500.0}
