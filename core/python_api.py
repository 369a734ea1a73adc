"""The Python API behind ``import forgelab``: train and resume experiments, read runs back.

``forgelab.train`` does what ``forgelab run`` does (the same validation, run directory, W&B run
and checkpoints) and returns a :class:`Run`::

    run = forgelab.train("cartpole-ppo", seed=1, train={"total_steps": 20_000})
    run = forgelab.train("my-exp.yaml", {"agent.learning_rate": 1e-3, "env.num_envs": 4})
    run = forgelab.train({"agent": "ppo", "env": "CartPole-v1", "train": {"total_steps": 5000}})

Overrides are the command line's ``key=value`` pairs as Python values: a mapping of dotted keys,
and/or keyword arguments for top-level keys, where a dict value sets the keys inside it and
keeps the rest (``train={"total_steps": 5000}`` changes only the budget).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgelab.core.errors import ConfigError

if TYPE_CHECKING:
    from forgelab.core.loading import Policy, Sampler
    from forgelab.core.pluginhost import PluginHost


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """``("train", {"total_steps": 5})`` -> ``[("train.total_steps", 5)]`` (empty dicts kept)."""
    if isinstance(value, Mapping) and value:
        pairs: list[tuple[str, Any]] = []
        for key, inner in value.items():
            pairs += _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        return pairs
    return [(prefix, value)]


def overrides_from(overrides: Mapping[str, Any] | Iterable[str] | None,
                   kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Dotted-key overrides from a mapping (or ``key=value`` strings) and keyword arguments."""
    from forgelab.core.config import parse_overrides

    pairs: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            pairs += _flatten(str(key), value)
    elif overrides is not None:
        if isinstance(overrides, str):
            raise ConfigError(f"overrides must be a dict or a list of 'key=value' strings, "
                              f"not the string {overrides!r}")
        pairs += parse_overrides(list(overrides))
    for key, value in kwargs.items():
        pairs += _flatten(key, value)
    return pairs


def _config(experiment: str | Path | Mapping[str, Any], pairs: list[tuple[str, Any]]):
    from forgelab.core.config import (
        apply_overrides,
        find_experiment,
        read_yaml,
        validate_experiment,
    )

    if isinstance(experiment, Mapping):
        data, source = dict(experiment), ""
    else:
        path = find_experiment(str(experiment))
        data, source = read_yaml(path), str(path)
        data.setdefault("name", path.stem)
    return validate_experiment(apply_overrides(data, pairs), source=source)


def train(experiment: str | Path | Mapping[str, Any],
          overrides: Mapping[str, Any] | Iterable[str] | None = None, *,
          progress: bool = True, host: PluginHost | None = None, **kwargs: Any) -> Run:
    """Train an experiment, as ``forgelab run`` does; returns the finished :class:`Run`.

    :param experiment: a name in ``experiments/`` (or shipped with forgelab or a plugin), a
        YAML path, or the experiment as a mapping.
    :param overrides: ``{"agent.learning_rate": 1e-3}`` or ``["seed=3", ...]``.
    :param progress: show the progress bar (on stderr).
    :param kwargs: top-level keys: ``seed=3``, ``agent="ppo"``, ``train={"total_steps": N}``.
    :raises ConfigError: for an invalid experiment (nothing is created then).
    """
    from forgelab.core import runner

    config = _config(experiment, overrides_from(overrides, kwargs))
    with _keep_torch_threads():
        run_dir = runner.train(config, host=host, show_progress=progress)
    return Run(run_dir)


def resume(run_dir: str | Path, overrides: Mapping[str, Any] | Iterable[str] | None = None, *,
           progress: bool = True, host: PluginHost | None = None, **kwargs: Any) -> Run:
    """Continue a run from its latest checkpoint (``train.*`` and ``tracking.*`` may change)."""
    from forgelab.core import runner

    pairs = overrides_from(overrides, kwargs)
    # runner.resume takes command-line strings; JSON is valid YAML for every value here.
    items = [f"{key}={json.dumps(value)}" for key, value in pairs]
    with _keep_torch_threads():
        out = runner.resume(Path(run_dir), items, host=host, show_progress=progress)
    return Run(out)


class _keep_torch_threads:
    """A job sets torch's and NumPy's BLAS thread counts for its process; give the caller's
    settings back."""

    def __enter__(self) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        self.threads = torch.get_num_threads()
        self.blas = threadpool_limits(limits=None, user_api="blas")  # remembers, changes nothing

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.threads)
        self.blas.restore_original_limits()


def list_experiments() -> list[str]:
    """Names ``train`` accepts: ``./experiments``, ``$FORGELAB_EXPERIMENTS`` and shipped ones."""
    from forgelab.core.config import available_experiments

    return available_experiments()


def _number(value: Any) -> Any:
    """metrics.jsonl writes NaN and infinities as strings; read them back as floats."""
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


class Run:
    """A run directory read back: config, status, metrics, history, checkpoints.

    :param path: ``runs/<experiment>/<timestamp>-<id>``.
    """

    def __init__(self, path: str | Path) -> None:
        from forgelab.core.runner import load_run

        self.dir = Path(path)
        self.config, self.info = load_run(self.dir)  # a clear error if it is not a run

    def __repr__(self) -> str:
        return f"<forgelab.Run {self.name} {self.id} {self.status} at {self.dir}>"

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.dir.parent.name))

    @property
    def id(self) -> str:
        """The run id (also its W&B run id)."""
        return str(self.info.get("run_id", ""))

    @property
    def status(self) -> str:
        """``finished``, ``interrupted``, ``running`` or ``failed`` (re-read from run.json)."""
        return str(json.loads((self.dir / "run.json").read_text(encoding="utf-8"))
                   .get("status"))

    def _read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """metrics.jsonl's rows and merged summary (the reader ``forgelab report`` uses: a line
        cut short by a crash or a run still writing is skipped), NaN strings as floats."""
        from forgelab.core.results import read_metrics

        rows, summary = read_metrics(self.dir / "metrics.jsonl")
        return ([{k: _number(v) for k, v in row.items()} for row in rows],
                {k: _number(v) for k, v in summary.items()})

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every logged row of ``metrics.jsonl`` in order (media rows hold file paths)."""
        return self._read()[0]

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary: final values the run wrote (test metrics, best evaluation)."""
        return self._read()[1]

    @property
    def metrics(self) -> dict[str, float]:
        """Final metrics: the last value of every logged number, then the summary on top."""
        rows, summary = self._read()
        final: dict[str, float] = {}
        for row in rows:
            for key, value in row.items():
                if key != "_time" and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    final[key] = value
        final.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        return final

    def series(self, key: str, axis: str | None = None) -> tuple[list[float], list[float]]:
        """``(steps, values)`` of one metric; ``axis`` defaults to the row's own step axis
        (``global_step`` for agents, ``epoch`` or ``step`` for models)."""
        steps, values = [], []
        for row in self.history:
            value = row.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            name = axis or next((a for a in ("global_step", "epoch", "step") if a in row), None)
            steps.append(row.get(name, math.nan) if name else math.nan)
            values.append(value)
        return steps, values

    def checkpoint(self, which: str | int = "best") -> Path:
        """The checkpoint folder ``best``, ``latest`` or a step number names."""
        from forgelab.core.loading import checkpoint_dir

        return checkpoint_dir(self.dir, which)

    def load(self, checkpoint: str | int = "best", device: str = "cpu") -> Policy | Sampler:
        """:func:`forgelab.load` of this run."""
        from forgelab.core.loading import load

        return load(self.dir, checkpoint=checkpoint, device=device)

    def resume(self, overrides: Mapping[str, Any] | Iterable[str] | None = None, *,
               progress: bool = True, **kwargs: Any) -> Run:
        """Continue this run (see :func:`resume`)."""
        return resume(self.dir, overrides, progress=progress, **kwargs)
