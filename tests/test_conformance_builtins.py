"""Every built-in component passes forgelab.testing's conformance kit (as a plugin's would)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgelab.core.pluginhost import PluginHost
from forgelab.testing import check_component

# Every registration of forgelab's own distribution, read from the entry points at collection.
BUILTINS = [(reg.kind, reg.name) for reg in PluginHost(strict=False, disabled=())
            .load_entry_points().registry if reg.source.distribution == "forgelab"]


def _idx_folder(directory: Path) -> Path:
    """Tiny MNIST-format files: mnist and fashion-mnist read a folder the user gives them."""
    from forgelab.generative.datasets import IDX_FILES, write_idx

    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 40, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 12, dtype=np.uint8)}
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        write_idx(directory / stem, arrays[key])
    return directory


def test_every_builtin_kind_is_covered() -> None:
    kinds = {kind for kind, _ in BUILTINS}
    assert kinds == {"agent", "model", "env", "dataset"}
    assert len(BUILTINS) >= 25  # 11 agents, 6 models, 2 envs, 6 datasets


@pytest.mark.parametrize(("kind", "name"), BUILTINS, ids=[name for _, name in BUILTINS])
def test_builtin_passes_the_conformance_kit(kind: str, name: str, tmp_path: Path) -> None:
    overrides = {}
    if name in ("mnist", "fashion-mnist"):
        overrides = {"dataset_options": {"path": str(_idx_folder(tmp_path / "idx")),
                                         "val_size": 8}}
    report = check_component(name, kind=kind, overrides=overrides, workdir=tmp_path / "kit",
                             on_fail=None)
    failures = [f"{r.check}: {r.detail}" for r in report.failures]
    assert not failures, "\n".join(failures)
    ran = {r.check for r in report.results}
    assert "check_registration" in ran and "check_plugin_import_is_light" in ran
    if kind in ("agent", "model"):
        assert {"check_checkpoint_round_trip", "check_sigterm_resume",
                "check_same_seed_same_result", "check_evaluate_contract"} <= ran
    if kind == "env":
        assert {"check_gymnasium_env_checker", "check_sb3_env_checker"} <= ran
