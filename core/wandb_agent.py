"""W&B sweeps as interop: export a study as a W&B sweep file, and behave under a ``wandb agent``.

A W&B agent starts ``forgelab run EXPERIMENT key=value ...`` with ``WANDB_SWEEP_ID``,
``WANDB_RUN_ID`` and ``WANDB_PROJECT`` set, and under a sweep ``wandb.init`` ignores the ``id=``
and ``project=`` it is given. So forgelab adopts them: the run id (and the run directory's name)
is the agent's run id, the project is the sweep's, and ``run.json`` records the sweep id. When the
agent stops a run with SIGTERM, the runner marks the W&B run *preempting* before it exits 143, so
W&B requeues it; a requeued run finds its checkpoint only where the next agent can reach the run
directory (shared storage).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_adopted = False


def agent_env() -> dict[str, str] | None:
    """What a W&B agent set for this process (None outside a sweep)."""
    sweep_id = os.environ.get("WANDB_SWEEP_ID")
    if not sweep_id:
        return None
    return {"sweep_id": sweep_id, "run_id": os.environ.get("WANDB_RUN_ID", ""),
            "project": os.environ.get("WANDB_PROJECT", ""),
            "entity": os.environ.get("WANDB_ENTITY", "")}


def adopt_run_id() -> str | None:
    """The agent's run id for the first run this process creates (None outside a sweep).

    Once per process: a second run directory (or an eval job) gets a fresh id, so a name clash
    can never loop.
    """
    global _adopted
    env = agent_env()
    if _adopted or env is None or not _ID_RE.match(env["run_id"]):
        return None
    _adopted = True
    return env["run_id"]


def run_info() -> dict[str, str]:
    """Keys for ``run.json`` under an agent: the sweep id and the project W&B assigned."""
    env = agent_env()
    if env is None:
        return {}
    return {"sweep_id": env["sweep_id"], **({"wandb_project": env["project"]}
                                            if env["project"] else {})}


def init_overrides(init_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``wandb.init`` arguments with the agent's project and entity (W&B would use them
    anyway; passing them keeps forgelab's own record right)."""
    env = agent_env()
    if env is None:
        return init_kwargs
    return {**init_kwargs, **{k: env[k] for k in ("project", "entity") if env[k]}}


def agent_overrides(overrides: list[str]) -> list[str]:
    """Under an agent, group the run with the other seeds of its configuration: ``tracking.group
    = sweep-<sweep id>-<hash of the overrides other than seed>`` (unless one is given)."""
    env = agent_env()
    keys = [o.partition("=")[0].strip() for o in overrides]
    if env is None or "tracking.group" in keys:
        return list(overrides)
    config = sorted(o for o, k in zip(overrides, keys, strict=True) if k != "seed")
    digest = hashlib.sha1("\n".join(config).encode()).hexdigest()[:6]
    return [*overrides, f"tracking.group=sweep-{env['sweep_id']}-{digest}"]


def requeued_run(config: Any) -> Path | None:
    """The run directory of this agent run id when W&B requeued a preempted run, so it
    continues from its checkpoint (found only where the run directories are shared)."""
    env = agent_env()
    if env is None or not _ID_RE.match(env["run_id"]):
        return None
    root = Path(config.output_dir) / config.name
    for run_dir in sorted(root.glob(f"*-{env['run_id']}"), reverse=True):
        try:
            status = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["status"]
        except (OSError, ValueError, KeyError):
            continue
        if status != "finished" and (run_dir / "checkpoints" / "latest").is_file():
            return run_dir
    return None


# ------------------------------------------------------------------------- export
_DISTRIBUTIONS = {"uniform": "uniform", "loguniform": "log_uniform_values",
                  "randint": "int_uniform", "normal": "normal"}


def _distribution(spec: dict[str, Any]) -> dict[str, Any]:
    (kind, args), = spec.items()
    if kind == "choice":
        return {"values": list(args)}
    if kind == "normal":
        return {"distribution": "normal", "mu": float(args[0]), "sigma": float(args[1])}
    if kind == "randint":  # forgelab's high is excluded, W&B's int_uniform max is included
        return {"distribution": "int_uniform", "min": int(args[0]), "max": int(args[1]) - 1}
    return {"distribution": _DISTRIBUTIONS[kind], "min": float(args[0]), "max": float(args[1])}


def sweep_config(spec: Any) -> dict[str, Any]:
    """A W&B sweep configuration for a study: grid when nothing is random, else random.

    Fixed overrides go into the command (so values such as ``null`` keep forgelab's syntax);
    axes, seeds and distributions become W&B parameters passed as ``key=value``.
    """
    from forgelab.core.config import experiment_dirs, read_yaml
    from forgelab.core.study import format_value

    experiment = Path(spec.experiment)
    ref = experiment.stem if any(experiment.parent == d.resolve() for d in experiment_dirs()) \
        else str(experiment)
    fixed = [f"{k}={format_value(v)}" for k, v in spec.fixed.items()]
    parameters: dict[str, Any] = {k: {"values": list(v)} for k, v in spec.axes.items()}
    if spec.random:
        parameters.update({k: _distribution(v) for k, v in spec.random["params"].items()})
    if spec.seeds is not None:
        parameters["seed"] = {"values": list(spec.seeds)}
    project = (read_yaml(experiment).get("tracking") or {}).get("project", "forgelab")
    config: dict[str, Any] = {
        "name": spec.name, "project": project, "program": "forgelab",
        "method": "random" if spec.random else "grid",
        "command": ["forgelab", "run", ref, *fixed, "${args_no_hyphens}"],
        "parameters": parameters or {"seed": {"value": 0}},
    }
    if spec.random:
        config["run_cap"] = len(spec.configs) * len(spec.seeds or [None])
    return config


def write_sweep_file(spec: Any) -> Path:
    """Write ``<study>/wandb-sweep.yaml`` for ``wandb sweep`` and return its path."""
    path = spec.study_dir / "wandb-sweep.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# W&B sweep of forgelab study {spec.name}: `wandb sweep {path}`, then "
              "`wandb agent ID` on each machine.\n# Seeds are W&B parameters here: a random "
              "search samples them like any other value.\n")
    path.write_text(header + yaml.safe_dump(sweep_config(spec), sort_keys=False),
                    encoding="utf-8")
    return path
