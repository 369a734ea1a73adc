"""Atomic, full-state checkpoints with ``latest`` / ``best`` pointers and W&B artifacts.

Layout inside a run directory::

    checkpoints/
      step-000050000/state.pt     (+ files the component writes itself, e.g. an SB3 .zip)
      step-000075000/state.pt
      latest                      text file naming the newest step directory
      best                        text file naming the best one (when evaluation ran)

A checkpoint directory is written under a temporary name and renamed into place, and the pointer
files are replaced with ``os.replace``, so an interrupted write never leaves a broken
``latest``. Loading uses ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forgelab.core.component import FileCheckpointing
from forgelab.core.errors import ForgelabError

if TYPE_CHECKING:
    from forgelab.core.component import Component
    from forgelab.core.tracking import Tracker

FORMAT_VERSION = 1
STATE_FILE = "state.pt"


def to_safe(tree: Any) -> Any:
    """Convert NumPy arrays and scalars in a nested structure to tensors and Python numbers,
    so that it loads with ``weights_only=True``."""
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.array(tree, copy=True))  # contiguous, 0-d stays 0-d
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {key: to_safe(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_safe(value) for value in tree)
    return tree


def capture_rng() -> dict[str, Any]:
    """The global RNG states of Python, NumPy and torch."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointManager:
    """Writes and reads a run's checkpoints.

    :param directory: ``<run_dir>/checkpoints``.
    :param tracker: used to log each checkpoint as a W&B artifact (None to skip).
    :param artifact_name: W&B artifact name, e.g. ``checkpoint-<run id>``.
    :param keep: how many step directories to keep besides the best one.
    """

    def __init__(self, directory: Path, tracker: Tracker | None = None,
                 artifact_name: str = "checkpoint", keep: int = 2) -> None:
        self.directory = Path(directory)
        self.tracker = tracker
        self.artifact_name = artifact_name
        self.keep = keep

    # ------------------------------------------------------------------- write
    def save(self, component: Component, step: int | None = None, *, best: bool = False,
             metrics: dict[str, float] | None = None) -> Path:
        """Save the component's full state (and the global RNG) and move ``latest``.

        :param best: also move the ``best`` pointer here and tag the artifact ``best``.
        """
        step = int(getattr(component, "step", 0) if step is None else step)
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{step:09d}"
        if not metrics and (final / STATE_FILE).is_file():
            # Re-saving the step that the best evaluation saved (the end of training, say):
            # keep that evaluation's metrics with it.
            metrics = torch.load(final / STATE_FILE, map_location="cpu",
                                 weights_only=True).get("metrics")
        tmp = self.directory / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "component": to_safe(component.state_dict()),
            "rng": capture_rng(),
            "metrics": dict(metrics or {}),
        }
        torch.save(state, tmp / STATE_FILE)
        if isinstance(component, FileCheckpointing):
            component.save_files(tmp)
        if final.exists():
            old = self.directory / f".old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        self._point("latest", final)
        if best:
            self._point("best", final)
        self._prune()
        if self.tracker is not None:
            aliases = ["latest", "best"] if best else ["latest"]
            self.tracker.log_artifact(final, name=self.artifact_name, type="model",
                                      aliases=aliases, metadata={"step": step, **(metrics or {})})
        return final

    def _point(self, name: str, target: Path) -> None:
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(target.name + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / name)

    def _prune(self) -> None:
        protected = {self._resolve("latest"), self._resolve("best")}
        steps = sorted(p for p in self.directory.glob("step-*") if p.is_dir())
        for path in steps[: -self.keep] if self.keep else steps:
            if path not in protected:
                shutil.rmtree(path, ignore_errors=True)

    # -------------------------------------------------------------------- read
    def _resolve(self, which: str) -> Path | None:
        pointer = self.directory / which
        if not pointer.is_file():
            return None
        target = self.directory / pointer.read_text(encoding="utf-8").strip()
        if (target / STATE_FILE).is_file():
            return target
        # Stopped between the two renames that replace a step folder: the newest complete
        # folder (the old copy of that step, at worst) still holds the full state.
        complete = [p for p in [*self.directory.glob("step-*"), *self.directory.glob(".old-*")]
                    if (p / STATE_FILE).is_file()]
        return max(complete, key=lambda p: (p / STATE_FILE).stat().st_mtime, default=None)

    def path(self, which: str = "latest") -> Path | None:
        """The checkpoint directory ``latest`` or ``best`` points to (None if there is none)."""
        return self._resolve(which)

    def load(self, which: str = "latest") -> tuple[dict[str, Any], Path]:
        """Load a checkpoint's state with ``weights_only=True``; returns (state, directory)."""
        directory = self._resolve(which)
        if directory is None and which == "best":
            directory = self._resolve("latest")
        if directory is None:
            raise ForgelabError(
                f"no {which} checkpoint in {self.directory}",
                hint="the run was stopped before its first checkpoint; start it again",
            )
        try:
            state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ForgelabError(f"cannot load checkpoint {directory / STATE_FILE}: {exc}") from None
        if state.get("format") != FORMAT_VERSION:
            raise ForgelabError(f"checkpoint {directory} has format {state.get('format')!r}, "
                                f"this forgelab reads format {FORMAT_VERSION}")
        return state, directory
