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

Pointers name a ``step-XXXXXXXXX`` folder inside ``checkpoints/`` and nothing else: a pointer
that leads outside its run is refused. :meth:`CheckpointManager.recover` (called when a run
starts or resumes) finishes or removes the ``.tmp-*`` / ``.old-*`` folders that a kill between
the renames leaves behind. Non-finite weights are never saved (:mod:`forgelab.core.guard`).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forgelab.core.component import FileCheckpointing
from forgelab.core.errors import ForgelabError, ResourceError
from forgelab.core.faults import DISK_ERRNOS, disk_error

if TYPE_CHECKING:
    from forgelab.core.component import Component
    from forgelab.core.tracking import Tracker

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
COMPLETE_FILE = ".complete"  # written last into a .tmp-* folder: its content is whole
STEP_RE = re.compile(r"step-\d{9,}")
STATE_KEYS = ("format", "step", "component", "rng")
# What torch.save's zip writer says when the disk refuses a write
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "inline_container")


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
        #: the run's tracker when it writes metrics.jsonl: each checkpoint records its row count
        self.metrics_log: Tracker | None = None
        #: the run's training loop: its schedule state (best value, evaluations) is saved too
        self.loop: Any = None

    # ------------------------------------------------------------------- write
    def save(self, component: Component, step: int | None = None, *, best: bool = False,
             metrics: dict[str, float] | None = None) -> Path:
        """Save the component's full state (and the global RNG) and move ``latest``.

        :param best: also move the ``best`` pointer here and tag the artifact ``best``.
        """
        from forgelab.core.guard import check_state

        step = int(getattr(component, "step", 0) if step is None else step)
        final = self.directory / f"step-{step:09d}"
        component_state = to_safe(component.state_dict())
        # Before anything is written: diverged weights never become `latest` or `best`.
        check_state(component, component_state)
        if not metrics and (final / STATE_FILE).is_file():
            # Re-saving the step that the best evaluation saved (the end of training, say):
            # keep that evaluation's metrics with it.
            try:
                metrics = torch.load(final / STATE_FILE, map_location="cpu",
                                     weights_only=True).get("metrics")
            except Exception:
                metrics = None
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "component": component_state,
            "rng": capture_rng(),
            "metrics": dict(metrics or {}),
        }
        if self.metrics_log is not None:
            state["log_rows"] = self.metrics_log.rows
        if self.loop is not None:
            state["loop"] = self.loop.state_dict()
        tmp = self.directory / f".tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            torch.save(state, tmp / STATE_FILE)
            if isinstance(component, FileCheckpointing):
                component.save_files(tmp)
            (tmp / COMPLETE_FILE).write_text(final.name + "\n", encoding="utf-8")
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written folder
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise disk_error(exc, f"checkpoint {final.name}") from None
            if isinstance(exc, RuntimeError) and any(
                    m in str(exc).lower() for m in _TORCH_WRITE_FAILURES):
                # torch.save reports a failed write (a full disk) as a RuntimeError from its
                # zip writer ("unexpected pos ...", "file write failed"); any other
                # RuntimeError (a component's bug, say) is not a disk fault
                raise ResourceError(f"cannot write checkpoint {final.name}: {exc}".splitlines()[0],
                                    hint="free disk space, then resume with "
                                    "`forgelab run --resume RUN_DIR`") from None
            raise
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
        try:
            tmp.write_text(target.name + "\n", encoding="utf-8")
            os.replace(tmp, self.directory / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in DISK_ERRNOS:
                raise disk_error(exc, f"the {name} pointer") from None
            raise

    def _prune(self) -> None:
        protected = {self._resolve_quiet("latest"), self._resolve_quiet("best")}
        steps = sorted(p for p in self.directory.glob("step-*") if p.is_dir())
        for path in steps[: -self.keep] if self.keep else steps:
            if path not in protected:
                shutil.rmtree(path, ignore_errors=True)

    # ---------------------------------------------------------------- recovery
    def recover(self) -> list[str]:
        """Finish or remove what a process killed inside :meth:`save` left behind.

        A ``.tmp-*`` folder with its completion mark is renamed into place when its step folder
        is missing (a kill during the very first save), else removed; an ``.old-*`` folder is
        renamed back when its step folder is missing, else removed. ``latest`` is pointed at the
        newest complete step folder when it is missing or names no complete folder.

        :return: one line per action, for the log.
        """
        if not self.directory.is_dir():
            return []
        actions = []
        for tmp in sorted(self.directory.glob(".tmp-*")):
            marker = tmp / COMPLETE_FILE
            name = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
            target = self.directory / name
            if STEP_RE.fullmatch(name) and (tmp / STATE_FILE).is_file() and not (
                    target / STATE_FILE).is_file():
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
                actions.append(f"recovered the complete checkpoint {name} from {tmp.name}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
                actions.append(f"removed the unfinished checkpoint folder {tmp.name}")
        for old in sorted(self.directory.glob(".old-*")):
            try:
                step = torch.load(old / STATE_FILE, map_location="cpu", weights_only=True)["step"]
                target = self.directory / f"step-{int(step):09d}"
            except Exception:
                target = None
            if target is not None and not (target / STATE_FILE).is_file():
                old.rename(target)
                actions.append(f"restored {target.name} from {old.name}")
            else:
                shutil.rmtree(old, ignore_errors=True)
                actions.append(f"removed the replaced checkpoint folder {old.name}")
        for name in (".latest.tmp", ".best.tmp"):
            (self.directory / name).unlink(missing_ok=True)
        try:
            latest, unreadable = self._resolve("latest", fallback=False), False
        except ForgelabError:  # a garbled pointer is reported when it is loaded, not rewritten
            latest, unreadable = None, True
        if latest is None and not unreadable:
            steps = [p for p in self.directory.glob("step-*") if (p / STATE_FILE).is_file()]
            if steps:
                newest = max(steps, key=lambda p: p.name)
                self._point("latest", newest)
                actions.append(f"pointed latest at {newest.name}")
        return actions

    # -------------------------------------------------------------------- read
    def _resolve_quiet(self, which: str) -> Path | None:
        try:
            return self._resolve(which)
        except ForgelabError:
            return None

    def _resolve(self, which: str, fallback: bool = True) -> Path | None:
        pointer = self.directory / which
        if not pointer.is_file():
            return None
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ForgelabError(f"cannot read the checkpoint pointer {pointer}: {exc}",
                                hint=f"write the name of a folder in {self.directory} "
                                "(step-XXXXXXXXX) into it") from None
        # A pointer names a folder inside this run's checkpoints/ and nothing else: never
        # `../other-run/...` or an absolute path (an edited or planted file).
        if not STEP_RE.fullmatch(name):
            raise ForgelabError(
                f"the checkpoint pointer {pointer} does not name a checkpoint folder of this run "
                f"(it holds {name[:80]!r})",
                hint=f"a pointer holds one name like step-000010000, a folder in "
                f"{self.directory}; write one there or delete the pointer")
        target = self.directory / name
        if target.is_symlink():
            raise ForgelabError(f"checkpoint folder {target} is a symbolic link; forgelab only "
                                "loads checkpoint folders that live inside their run",
                                hint="replace the link with the folder itself")
        if (target / STATE_FILE).is_file() or not fallback:
            return target if (target / STATE_FILE).is_file() else None
        # Stopped between the two renames that replace a step folder: the newest complete
        # folder (the old copy of that step, at worst) still holds the full state.
        complete = [p for p in [*self.directory.glob("step-*"), *self.directory.glob(".old-*")]
                    if (p / STATE_FILE).is_file()]
        return max(complete, key=lambda p: (p / STATE_FILE).stat().st_mtime, default=None)

    def path_or_none(self, which: str = "latest") -> Path | None:
        """Like :meth:`path`, but None for a pointer that cannot be read either."""
        return self._resolve_quiet(which)

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
        return load_state(directory / STATE_FILE), directory


@contextmanager
def loading_errors(folder: Path) -> Iterator[None]:
    """Around putting a checkpoint into a component: a checkpoint that does not fit it (edited,
    or from another experiment) or whose files are corrupt is one clear error, and a file
    carrying pickled code (an SB3 zip's ``.pth`` say) is refused as unsafe."""
    try:
        yield
    except ForgelabError:
        raise
    except pickle.UnpicklingError as exc:
        if not _refused_code(exc):
            raise _corrupt(folder / STATE_FILE, type(exc).__name__) from None
        raise ForgelabError(f"refused to load {folder}: it is unsafe, a file in it carries "
                            "pickled Python objects that forgelab never executes",
                            hint="use checkpoints written by forgelab; this one may have been "
                            "tampered with") from None
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ForgelabError(f"checkpoint {folder} does not fit this run or is corrupt "
                            f"({type(exc).__name__}: {first})",
                            hint=_other_checkpoints_hint(folder)) from None


def _refused_code(exc: pickle.UnpicklingError) -> bool:
    """Whether torch's weights-only unpickler stopped at code it will not run (a global, a
    call), rather than at bytes that are no pickle at all."""
    text = str(exc)
    return "GLOBAL" in text or "Unsupported global" in text or "reduce" in text.lower()


def _corrupt(path: Path, why: str) -> ForgelabError:
    """A checkpoint file that cannot be read, with the ways on."""
    return ForgelabError(f"cannot read checkpoint {path}: corrupt or truncated ({why})",
                         hint=_other_checkpoints_hint(path.parent))


def _other_checkpoints_hint(folder: Path) -> str:
    """How to go on without the checkpoint in ``folder``: another of the run's step folders
    to evaluate (``--checkpoint STEP``) or to resume from (named in ``checkpoints/latest``;
    ``forgelab run --resume`` has no ``--checkpoint``)."""
    others = sorted(d.name for d in folder.parent.glob("step-*")
                    if d.is_dir() and d != folder and (d / STATE_FILE).exists())
    if not others:
        return "evaluate another checkpoint with --checkpoint STEP, or start a new run"
    latest = folder.parent / "latest"
    return (f"to resume from an earlier checkpoint, name it in {latest} (`echo {others[-1]} > "
            f"{latest}`); to evaluate one, --checkpoint STEP. Other checkpoints: "
            f"{', '.join(others[-5:])}")


def load_state(path: Path) -> dict[str, Any]:
    """Read a ``state.pt`` with ``weights_only=True`` and check its shape.

    A file carrying pickled code (anything beyond tensors, numbers, strings and containers) is
    refused without running it; a truncated or foreign file is one clear error.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _refused_code(exc):  # garbage bytes: torch's unpickler stops on a bad opcode
            raise _corrupt(path, "not a checkpoint file") from None
        # torch's message suggests weights_only=False; forgelab never does that.
        found = str(exc).split("GLOBAL ", 1)[-1].split(" ", 1)[0] if "GLOBAL" in str(exc) else ""
        raise ForgelabError(
            f"refused to load {path}: it is unsafe, it carries pickled Python objects"
            + (f" ({found})" if found else "") + " that forgelab never executes",
            hint="use checkpoints written by forgelab; this file may have been tampered with"
        ) from None
    except Exception as exc:  # garbage makes the unpickler fail in many ways
        raise _corrupt(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                       ) from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        shape = f"a {type(state).__name__}" if not isinstance(state, dict) else "a dict"
        raise ForgelabError(f"checkpoint {path} is not a forgelab checkpoint: {shape} without "
                            f"{', '.join(missing)}",
                            hint="start a new run, or restore the file from a copy")
    if state.get("format") != FORMAT_VERSION:
        raise ForgelabError(f"checkpoint {path} has format {state.get('format')!r}, "
                            f"this forgelab reads format {FORMAT_VERSION}")
    return state
