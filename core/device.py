"""Device selection and seeding."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from forgelab.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto | cpu | cuda | cuda:N | mps`` -> a torch.device; an absent device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available here "
                              f"(torch {torch.__version__})",
                              hint="use device=cpu or device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} requested but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist",
                              hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device: 'mps' requested but Apple MPS is not available here",
                              hint="use device=cpu or device=auto")
        return torch.device("mps")
    raise ConfigError(f"device: unknown device {name!r}", hint="auto, cpu, cuda, cuda:N or mps")


def configure_cpu_math(flush_denormal: bool = True) -> bool:
    """Flush denormal floats to zero in CPU kernels (x86 FTZ/DAZ; TensorFlow's default too).

    Why: Adam's moment estimates of a parameter whose gradient is exactly zero (a dead ReLU
    unit) shrink geometrically into the denormal range, where x86 arithmetic is 10-100x slower.
    On DQN's CartPole network that made the optimizer step 3x slower and a whole gradient step
    about 1.4x slower. Values below ~1e-38 become 0, which changes no result that matters.
    The setting is per process, so one forgelab job sets it once.

    :return: whether this CPU supports the setting (it is a no-op where it does not).
    """
    return bool(torch.set_flush_denormal(flush_denormal))


def configure_threads(threads: int | None) -> None:
    """Set the CPU threads torch uses for this job (the experiment's ``threads`` key).

    :param threads: intra-op threads; None keeps torch's default (one per core). The setting
        is per process, so a job sets it once, before building its networks.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))


def fast_adam(params: Iterable[torch.nn.Parameter], **options: Any) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch has it for the parameters' device.

    The same update as ``torch.optim.Adam(params, **options)``; on the small networks of
    forgelab's agents and models the default for-loop implementation spends 2-3x longer per
    step launching one small op per parameter tensor.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # old torch, or a device without the kernel
        return torch.optim.Adam(params, foreach=True, **options)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (environments are seeded by their first reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
