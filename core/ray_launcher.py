"""The ``ray`` launcher: each trial is a Ray task that runs one ``forgelab run`` process.

``forgelab sweep ... --launcher ray`` starts Ray on this machine when no cluster is given, and
joins an existing cluster with ``--address`` or ``RAY_ADDRESS``. Each trial asks Ray for the
CPUs its experiment uses (``threads``) and, for GPU experiments, ``--gpus-per-trial`` GPUs
(default 1 for ``device: cuda``; fractions such as 0.5 share a GPU).

On a cluster the study directory (``output_dir``) must be storage every node reaches (NFS or
similar, at the same path): trials write their run directories there, a trial that Ray moves to
another node resumes from the checkpoint there, and ``study.json`` (written by the sweep process
only) stays the single record. When a node dies Ray runs the task again elsewhere
(``max_retries``); the task finds the trial's checkpoint and resumes it with ``forgelab run
--resume``. Ray is imported only here, so nothing needs it unless this launcher is chosen.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from forgelab.core.errors import ConfigError
from forgelab.core.launchers import (
    LaunchContext,
    announce_stop,
    begin,
    lock_trial,
    outcome,
    plan_trial,
    spawn,
)
from forgelab.core.study import FAILED, INTERRUPTED, Trial

# Retries of a task whose node or worker died (system failures); a trial that fails on its own
# (a non-zero exit) comes back as a result and is retried by --retries instead.
NODE_FAILURE_RETRIES = 3
FORWARDED_ENV = ("WANDB_", "FORGELAB_", "SDL_VIDEODRIVER", "OMP_NUM_THREADS")


def run_trial_task(trial_data: dict[str, Any], root: str, experiment: str,
                   overrides: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One trial on a Ray worker: start or resume its ``forgelab run`` and wait for it.

    A ``ray.cancel`` arrives as KeyboardInterrupt: the trial gets SIGTERM, saves a checkpoint
    and exits 143, as under the local launcher.
    """
    import ray

    trial = Trial(**trial_data)
    lock = lock_trial(Path(root))
    plan = plan_trial(Path(root), experiment, overrides)
    if plan is None:
        lock.close()
        outcome(trial, Path(root), 0)
        return asdict(trial)
    args, resumed = plan
    job = spawn(trial, Path(root), args, env, lock)
    begin(trial, resumed)
    trial.node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()}"
    try:
        code = _wait(job.proc)
    except KeyboardInterrupt:
        job.forward(signal.SIGTERM)
        code = job.proc.wait()
    finally:
        job.lock.close()
    outcome(trial, Path(root), code, job.log_offset)
    return asdict(trial)


def _wait(proc: subprocess.Popen) -> int:
    """``proc.wait()`` that a ``ray.cancel`` can interrupt.

    Ray cancels a running task with ``_thread.interrupt_main()``: the KeyboardInterrupt is
    raised only when the main thread next runs Python code, never inside a blocking waitpid,
    so a plain ``proc.wait()`` would let the trial train to its end. Polling with a timeout
    runs Python code every few milliseconds (Popen's wait sleeps at most 50 ms per poll).
    """
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue


class RayLauncher:
    """Trials as Ray tasks: Ray places them by resources, on one machine or a cluster."""

    def launch(self, ctx: LaunchContext) -> int | None:
        try:
            import ray
            from ray.exceptions import RayError, TaskCancelledError
        except ImportError:
            raise ConfigError("the ray launcher needs Ray, which is not installed",
                              hint="pip install 'forgelab[ray]'") from None
        address = ctx.spec.address or os.environ.get("RAY_ADDRESS") or None
        started = time.monotonic()
        original = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}",
                              hint="start it with `ray start --head`, or leave --address and "
                              "RAY_ADDRESS unset to run Ray on this machine") from None
        resources = ray.cluster_resources()
        print(f"ray: {'joined ' + address if address else 'started Ray on this machine'} in "
              f"{time.monotonic() - started:.1f} s; {len(ray.nodes())} node(s), "
              f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU", flush=True)
        # Never the W&B key: Ray keeps task arguments in its object store and logs; each node
        # logs in to W&B on its own (`wandb login`, or WANDB_API_KEY in the node's environment).
        env = {k: v for k, v in os.environ.items()
               if k.startswith(FORWARDED_ENV) and k not in ("WANDB_SERVICE", "WANDB_API_KEY")}
        env.update(ctx.env)
        task = ray.remote(run_trial_task).options(
            num_cpus=ctx.threads, num_gpus=ctx.gpus_per_trial,
            max_retries=NODE_FAILURE_RETRIES, retry_exceptions=False)
        queue, pending, tries = deque(ctx.trials), {}, {}
        limit = ctx.spec.workers or len(queue) or 1
        stop: list[int] = []

        def handler(signum: int, frame: Any) -> None:
            if not stop:
                announce_stop(signum)
            stop.append(signum)

        for sig in original:  # ray.init installs its own SIGTERM handler
            signal.signal(sig, handler)
        cancelled = False
        try:
            while True:
                while queue and not stop and len(pending) < limit:
                    trial = queue.popleft()
                    root = str(ctx.spec.study_dir / trial.id)
                    ref = task.remote(asdict(trial), root, ctx.spec.experiment,
                                      ctx.args_for(trial), env)
                    tries[trial.id] = tries.get(trial.id, 0) + 1
                    pending[ref] = trial
                    begin(trial, False)
                    trial.node = "ray"
                    ctx.record(trial)
                if not pending:
                    break
                if stop and not cancelled:
                    for ref in pending:
                        ray.cancel(ref)
                    cancelled = True
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    trial = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                        for key in ("status", "exit_code", "run_dir", "error", "resumed",
                                    "node", "started", "ended"):
                            setattr(trial, key, result[key])
                        trial.resumed = bool(result["resumed"])
                    except TaskCancelledError:
                        outcome(trial, Path(ctx.spec.study_dir / trial.id), 128 + stop[0])
                        trial.status = INTERRUPTED
                    except RayError as exc:
                        trial.status, trial.ended = FAILED, time.time()
                        trial.error = f"ray: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                    ctx.record(trial)
                    if trial.status == FAILED and not stop and tries[trial.id] <= ctx.retries:
                        queue.appendleft(trial)
        finally:
            ray.shutdown()
            for sig, old in original.items():
                signal.signal(sig, old)
        return stop[0] if stop else None
