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
    """Set the CPU threads torch uses for this job (the experiment's ``threads`` key), and give
    NumPy's BLAS one thread.

    NumPy's BLAS (OpenBLAS) gets one thread whatever ``threads`` says: the products forgelab
    makes in NumPy (PPO's NumPy gradients, DQN's acting) are too small to gain from more, and
    with more, its threads and torch's spin against each other for the same cores. Measured on
    2 cores, PPO on CartPole: 789 SPS with torch and BLAS on two threads each, 26,127 with
    torch on two and BLAS on one, 28,203 with one each.

    :param threads: torch's intra-op threads; None keeps torch's default (one per core). The
        setting is per process, so a job sets it once, before building its networks.
    """
    from threadpoolctl import threadpool_limits  # (scikit-learn's dependency too)

    if threads is not None:
        torch.set_num_threads(int(threads))
    threadpool_limits(limits=1, user_api="blas")  # stays set for the process


class _FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` whose ``step()`` calls the fused kernel directly.

    The kernel runs in tens of microseconds on forgelab's small networks, while ``Adam.step``'s
    Python around it (profiler scope, hooks, regrouping the parameters by device and dtype,
    rebuilding the state lists) costs about as much again on every step. This step makes the
    very calls ``torch.optim.adam._fused_adam`` makes (step += 1, then ``torch._fused_adam_``
    on the same tensors with the same arguments), so the parameters come out bit-identical,
    and it hands over to ``Adam.step`` whenever the shortcut does not apply: a closure, step
    hooks, the first step (it creates the state), a parameter without a gradient, AMP's grad
    scaling, several devices or dtypes in one group.
    """

    def __init__(self, params: list[torch.nn.Parameter], **options: Any) -> None:
        super().__init__(params, fused=True, **options)
        self._state_lists: list[tuple[list, list, list, list, torch.Tensor]] | None = None

    def _fast_path(self) -> list[tuple[list, list, list, list, torch.Tensor]] | None:
        """Per group: (params, exp_avgs, exp_avg_sqs, steps, the tensor the steps are views of), or
        None where Adam.step must run."""
        if self._state_lists is not None:
            return self._state_lists
        lists = []
        for group in self.param_groups:
            params = group["params"]
            if (group["amsgrad"] or group["differentiable"] or group["capturable"]
                    or group.get("decoupled_weight_decay", False)
                    or len({(p.device, p.dtype) for p in params}) > 1
                    or any(len(self.state.get(p, ())) == 0 for p in params)):
                return None
            states = [self.state[p] for p in params]
            # The step counts become views of one tensor: one add_ per step instead of one
            # per parameter (the same counts; checkpoints save and load them as before).
            counts = torch.stack([s["step"] for s in states])
            for i, s in enumerate(states):
                s["step"] = counts[i]
            lists.append((params, [s["exp_avg"] for s in states],
                          [s["exp_avg_sq"] for s in states], [s["step"] for s in states],
                          counts))
        self._state_lists = lists
        return lists

    def step(self, closure: Any = None) -> Any:
        from torch.optim import optimizer as torch_optimizer

        hooks = (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                 or torch_optimizer._global_optimizer_pre_hooks
                 or torch_optimizer._global_optimizer_post_hooks)
        lists = None if (closure is not None or hooks or hasattr(self, "grad_scale")
                         or hasattr(self, "found_inf")) else self._fast_path()
        grads = None if lists is None else [[p.grad for p in params] for params, *_ in lists]
        if lists is None or any(g is None for group in grads for g in group):
            return _adam_step_with_hooks()(self, closure)
        with torch.no_grad():
            for group, (params, exp_avgs, exp_avg_sqs, steps, counts), group_grads in zip(
                    self.param_groups, lists, grads, strict=True):
                beta1, beta2 = group["betas"]
                counts.add_(1)  # = torch._foreach_add_(steps, 1): they are its views
                torch._fused_adam_(params, group_grads, exp_avgs, exp_avg_sqs, [], steps,
                                   amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                                   weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=group["maximize"], grad_scale=None, found_inf=None)
        return None

    step.hooked = True  # type: ignore[attr-defined]  # (Optimizer would wrap it in its hooks)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._state_lists = None  # the state tensors were replaced

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._state_lists = None


def _adam_step_with_hooks() -> Any:
    """``Adam.step`` inside Optimizer's hook and profiler wrapper (once, however torch left it:
    ``Adam.step`` is wrapped in place the first time a plain Adam is built)."""
    global _ADAM_STEP
    if _ADAM_STEP is None:
        step = torch.optim.Adam.step
        _ADAM_STEP = torch.optim.Optimizer.profile_hook_step(
            step.__wrapped__ if getattr(step, "hooked", False) else step)
    return _ADAM_STEP


_ADAM_STEP: Any = None


def fast_adam(params: Iterable[torch.nn.Parameter], **options: Any) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch has it for the parameters' device.

    The same update as ``torch.optim.Adam(params, **options)``; on the small networks of
    forgelab's agents and models the default for-loop implementation spends 2-3x longer per
    step launching one small op per parameter tensor, and ``Adam.step``'s own Python as long
    again as the fused kernel (:class:`_FusedAdam` calls the kernel directly).
    """
    params = list(params)
    try:
        return _FusedAdam(params, **options)
    except (RuntimeError, TypeError, ValueError):  # old torch, or a device without the kernel
        return torch.optim.Adam(params, foreach=True, **options)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (environments are seeded by their first reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
