"""pytest fixtures for plugin authors, loaded through the ``pytest11`` entry point whenever
forgelab is installed (so a plugin's tests need no conftest.py to use them).

* ``forgelab_host``: a fresh plugin host loaded from the installed entry points (not the
  process-wide one), honouring ``FORGELAB_STRICT_PLUGINS`` / ``FORGELAB_DISABLE_PLUGINS``.
* ``forgelab_run``: ``forgelab_run(experiment, *overrides)`` trains through the real runner in
  ``tmp_path`` with W&B disabled (unless an override sets ``tracking.mode``) and returns the
  run directory.
* ``forgelab_check``: ``forgelab_check(name, **options)`` is
  :func:`forgelab.testing.check_component` writing its runs under ``tmp_path``.

This module imports nothing heavy: pytest loads it in every session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def forgelab_host() -> Any:
    """A plugin host of its own, loaded from the installed entry points."""
    from forgelab.core.pluginhost import PluginHost

    return PluginHost().load_entry_points()


@pytest.fixture
def forgelab_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Train an experiment (a name, a YAML path or a mapping) in ``tmp_path`` with W&B disabled,
    whatever the experiment file or ``WANDB_MODE`` says (a test suite never logs to an account
    by accident), unless an override sets ``tracking.mode`` (``tracking.mode=offline`` to read
    the W&B files back)."""

    def run(experiment: str | Path | dict[str, Any], *overrides: str) -> Path:
        from forgelab.core import runner
        from forgelab.core.config import (
            apply_overrides,
            find_experiment,
            parse_overrides,
            read_yaml,
            validate_experiment,
        )

        if isinstance(experiment, dict):
            data = dict(experiment)
        else:
            path = find_experiment(str(experiment))
            data = read_yaml(path)
            data.setdefault("name", path.stem)
        if not any(item.partition("=")[0].strip() == "tracking.mode" for item in overrides):
            data["tracking"] = {**(data.get("tracking") or {}), "mode": "disabled"}
            monkeypatch.setenv("WANDB_MODE", "disabled")  # it would win over the config
        data = apply_overrides(data, parse_overrides(
            [f"output_dir={tmp_path / 'runs'}", *overrides]))
        return runner.train(validate_experiment(data), show_progress=False)

    return run


@pytest.fixture
def forgelab_check(tmp_path: Path) -> Callable[..., Any]:
    """:func:`forgelab.testing.check_component` with its runs under ``tmp_path``."""

    def check(name: str, **options: Any) -> Any:
        from forgelab.testing import check_component

        options.setdefault("workdir", tmp_path / "conformance")
        return check_component(name, **options)

    return check
