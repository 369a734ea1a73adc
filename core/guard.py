"""The divergence guard: a run whose losses or weights stop being finite numbers is stopped.

Every family goes through it, because every component logs through the tracker and saves
through the checkpoint manager:

- :func:`check_metrics` (called by ``Tracker.log``) stops the run at the first non-finite loss;
- :func:`check_state` (called by ``CheckpointManager.save`` before anything is written) refuses
  to checkpoint non-finite weights, so ``latest`` keeps pointing at the last finite checkpoint
  and ``best`` is never replaced by a diverged model;
- the runner calls :func:`find_nonfinite` when ``fit`` raises (a NaN policy makes
  ``torch.distributions`` or a metric's linear algebra fail first) to report the real cause.

A diverged run ends with status ``diverged`` in ``run.json`` and exit code
:data:`DIVERGED_EXIT_CODE`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from forgelab.core.errors import ForgelabError

DIVERGED_EXIT_CODE = 3
_HINT = ("lower the learning rate (agent.learning_rate / model.learning_rate) or clip "
         "gradients, then start a new run; the last finite checkpoint is still `latest`")


class DivergenceError(ForgelabError):
    """Training produced a non-finite loss or non-finite weights (exit code 3)."""

    exit_code = DIVERGED_EXIT_CODE

    def __init__(self, message: str, hint: str | None = _HINT) -> None:
        super().__init__(message, hint)


def _is_loss(key: str) -> bool:
    return "loss" in key.rsplit("/", 1)[-1]


def check_metrics(row: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`DivergenceError` when a logged loss (a key with ``loss`` in its last part,
    e.g. ``train/td_loss``) is NaN or infinite.

    :param row: the logged scalars (Python numbers, NumPy scalars or 0-d tensors).
    :param where: the step axes, for the message (``global_step=4096``).
    """
    for key, value in row.items():
        if not _is_loss(str(key)) or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            at = f" at {where}" if where else ""
            raise DivergenceError(f"training diverged{at}: {key} is {number}")


def _tensors(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    import numpy as np
    import torch

    if isinstance(tree, torch.Tensor):
        yield path, tree
    elif isinstance(tree, np.ndarray):
        yield path, torch.from_numpy(tree) if tree.dtype.kind in "fc" else tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _tensors(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _tensors(value, f"{path}[{i}]")


def find_nonfinite(tree: Any) -> str | None:
    """The path (``component.q.0.weight``) of the first floating tensor in ``tree`` holding a
    NaN or an infinity, or None. Python floats are not checked (``best_return = -inf`` is a
    legitimate start value)."""
    import torch

    for path, tensor in _tensors(tree):
        if (isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel()
                and not bool(torch.isfinite(tensor).all())):
            return path
    return None


def module_parameters(component: Any) -> dict[str, Any]:
    """Weights that live outside ``state_dict()`` (an SB3 model saves them in its own zip):
    the parameters of every ``torch.nn.Module`` attribute and of ``<attribute>.policy``."""
    import torch

    found: dict[str, Any] = {}
    for name, value in vars(component).items():
        module = value if isinstance(value, torch.nn.Module) else getattr(value, "policy", None)
        if isinstance(module, torch.nn.Module):
            for pname, param in module.named_parameters():
                found[f"{name}.{pname}"] = param.detach()
    return found


def check_state(component: Any, state: Any, saving: bool = True) -> None:
    """Raise :class:`DivergenceError` when ``state`` (a component's state dict) or the
    component's module parameters hold a non-finite number."""
    bad = find_nonfinite(state)
    if bad is None:
        try:
            bad = find_nonfinite(module_parameters(component))
        except Exception:  # an exotic attribute: the state dict check above still ran
            bad = None
    if bad is not None:
        step = getattr(component, "step", None)
        at = f" at step {step}" if step is not None else ""
        raise DivergenceError(f"training diverged{at}: {bad} holds NaN or infinite values"
                              + ("; not saved as a checkpoint" if saving else ""))


def diverged_cause(component: Any) -> DivergenceError | None:
    """After ``fit`` raised: a :class:`DivergenceError` when the component's weights are no
    longer finite (the real cause of the failure), else None."""
    try:
        check_state(component, component.state_dict(), saving=False)
    except DivergenceError as exc:
        return exc
    except Exception:
        return None
    return None
