"""The epoch loop every forgelab generative model shares.

A model subclasses :class:`GenerativeModel` and writes only what is its own:

* ``__init__``: build the networks, register each with :meth:`~GenerativeModel.add_network`
  (one optimizer per network).
* :meth:`~GenerativeModel.train_step` ``(x, y) -> {name: loss}``: one update on one batch,
  calling :meth:`~GenerativeModel.optimize` for each network it updates. A logged value may
  be a number, a 0-d tensor or a tensor of per-sample values (the row holds their mean).
* :meth:`~GenerativeModel.validate` ``(split) -> {name: value}``: metrics on a whole split
  (``"val"`` every ``train.eval_every`` epochs, ``"test"`` at the end); ``best_metric`` names
  the logged key (``"val/<name>"``, lower is better) that picks the ``best`` checkpoint.
* :meth:`~GenerativeModel.sample` ``(n, generator) -> (n, *sample_shape)`` in data space.
* optionally :meth:`~GenerativeModel.test_metrics` and :meth:`~GenerativeModel.log_media`
  (call ``super()`` to keep the sample grid / scatter plot).

The loop gives them: the dataset (``ctx.inputs.load()``) on ``ctx.device`` (dynamically
binarised train batches when the dataset asks for it), shuffling from a seeded
``torch.Generator``, gradient clipping, ``train/...`` rows against ``step`` (each the mean over
``log_every`` batches), ``val/...``, ``perf/...`` and ``samples/...`` against ``epoch`` at each
evaluation, a stop between two batches on Ctrl-C with *exact* resume (the shuffled order and
position inside the epoch are part of the checkpoint), the test metrics at the end
(``test/...``, also written to the run summary), ``evaluate()`` for ``forgelab eval`` and
``sample_to_file()`` for ``forgelab sample``.

Every batch and every finished epoch goes through ``ctx.update`` (:mod:`forgelab.core.loop`),
which logs the ``train/`` rows, runs :meth:`~GenerativeModel.periodic_evaluation` when an
evaluation is due, keeps the ``best`` checkpoint (the loop holds the best value), saves the
periodic checkpoints and moves the progress bar: the model never calls the checkpoint manager.

Validation, test metrics and media run under a forked, fixed-seed torch RNG: they never change
the training random stream, so a run stopped and resumed is bit-identical to one that was not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from forgelab.core.component import RunContext
from forgelab.core.device import fast_adam
from forgelab.core.errors import ForgelabError
from forgelab.generative.datasets import Splits
from forgelab.generative.images import make_grid, save_png, scatter_image


class GenerativeConfig(BaseModel):
    """Options every generative model has (a model's config class subclasses this).

    :param batch_size: samples per update.
    :param grad_clip: clip each network's global gradient norm to this (None: no clipping).
    :param log_every: batches per ``train/...`` row (the row holds their mean).
    :param media_samples: samples in the logged grid / scatter plot.
    """

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(64, gt=0, description="samples per update")
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm per "
                                    "network (None: no clipping)")
    log_every: int = Field(20, gt=0, description="batches per train/ row (mean over them)")
    media_samples: int = Field(64, gt=0, description="samples in the logged grid / scatter")


class GenerativeModel:
    """Base component of the generative models (see the module docstring).

    :param options: the model's validated config (a :class:`GenerativeConfig` subclass).
    :param ctx: the run context; its dataset is loaded here.
    """

    #: the logged validation metric (``"val/" +`` a key of :meth:`validate`'s result) that
    #: selects the ``best`` checkpoint, lower is better; None keeps no ``best`` checkpoint
    #: (``forgelab eval`` then uses ``latest``)
    best_metric: str | None = "val/loss"
    #: whether :meth:`sample` draws new data (a deterministic autoencoder cannot)
    can_sample: bool = True
    #: whether samples are class-conditional; :meth:`sample` then cycles labels 0, 1, ..., K-1
    conditional: bool = False

    def __init__(self, options: GenerativeConfig, ctx: RunContext) -> None:
        self.options = options
        self.ctx = ctx
        self.device = ctx.device
        self.data: Splits = ctx.inputs.load()
        self.step = 0  # finished epochs: the runner's unit for generative models
        self.batches_seen = 0  # the `step` axis of train/ metrics
        self.tested_at = -1  # epoch of the last end-of-training test evaluation
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.generator = torch.Generator().manual_seed(ctx.seed)  # the shuffling order
        self._order: torch.Tensor | None = None  # this epoch's permutation, while in an epoch
        self._position = 0  # samples of ``_order`` already used
        self._losses: dict[str, list[Any]] = {}  # train/ losses since the last train/ row
        self._count = 0  # batches since the last train/ row
        self._timing = [0.0, 0.0, 0]  # wall s, CPU s, epochs since the last perf/ row
        self._shown: dict[str, Any] = {}  # beside the progress bar at the end of an epoch
        # Small datasets live on the device whole: indexing a tensor beats a DataLoader.
        self.train_x = self.data.train.x.to(self.device)
        self.train_y = self.data.train.y.to(self.device) if self.data.train.y is not None else None

    # ------------------------------------------------------------- for subclasses
    def add_network(self, name: str, module: nn.Module, lr: float,
                    betas: tuple[float, float] = (0.9, 0.999),
                    weight_decay: float = 0.0) -> nn.Module:
        """Move ``module`` to the device and give it its own Adam optimizer (fused kernel)."""
        module = module.to(self.device)
        self.networks[name] = module
        self.optimizers[name] = fast_adam(module.parameters(), lr=lr, betas=betas,
                                          weight_decay=weight_decay)
        return module

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One gradient step of network ``name`` on ``loss`` (with gradient clipping)."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.options.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.networks[name].parameters(), self.options.grad_clip)
        optimizer.step()

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None
                   ) -> dict[str, torch.Tensor | float]:
        """One update on a batch; returns the losses to log (tensors or floats)."""
        raise NotImplementedError

    def validate(self, split: str) -> dict[str, float]:
        """Metrics on the whole ``"val"`` or ``"test"`` split (runs under ``no_grad``)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` new samples ``(n, *sample_shape)`` on the CPU: images in [0, 1] or points.

        Draw the noise on the CPU from ``generator`` (then move it to the device), so that the
        same generator gives the same samples on every device.
        """
        raise NotImplementedError

    def test_metrics(self) -> dict[str, float]:
        """The final metrics (``test/...`` in the summary); default: :meth:`validate` on test."""
        return self.validate("test")

    def log_media(self, epoch: int) -> None:
        """Log media at an evaluation: a fixed-noise sample grid for images, a scatter plot of
        samples over the data for 2-D points. Subclasses add theirs and call ``super()``."""
        if not self.can_sample:
            return
        samples = self.sample(self.options.media_samples, self.fixed_generator())
        if self.data.kind == "image":
            nrow = self.data.num_classes if self.conditional else None
            self.ctx.tracker.log_image("samples/grid", make_grid(samples, nrow=nrow),
                                       epoch=epoch)
        else:
            picture = scatter_image(samples, self.data.train.x[:2500])
            self.ctx.tracker.log_image("samples/scatter", picture, epoch=epoch)

    # ------------------------------------------------------------------- helpers
    def fixed_generator(self, offset: int = 1) -> torch.Generator:
        """A fresh generator with a fixed seed: the same noise at every epoch."""
        return torch.Generator().manual_seed(self.ctx.seed + offset)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A whole split on the device."""
        x, y = self.data.split(name)
        return x.to(self.device), (y.to(self.device) if y is not None else None)

    def batches(self, name: str, batch_size: int = 500
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """A split in order, in batches (for evaluation)."""
        x, y = self.data.split(name)
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(self.device)
            yb = y[start:start + batch_size].to(self.device) if y is not None else None
            yield xb, yb

    def cycled_labels(self, n: int) -> torch.Tensor:
        """Labels 0, 1, ..., K-1, 0, 1, ... for conditional samples (a column per class)."""
        return torch.arange(n) % int(self.data.num_classes or 1)

    @contextmanager
    def evaluating(self, offset: int = 7) -> Iterator[None]:
        """Eval mode, no gradients and a forked torch RNG seeded with ``seed + offset``."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        modes = {name: net.training for name, net in self.networks.items()}
        for net in self.networks.values():
            net.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.ctx.seed + offset)
                yield
        finally:
            for name, net in self.networks.items():
                net.train(modes[name])

    # ---------------------------------------------------------------- the loop
    def fit(self) -> None:
        ctx = self.ctx
        epochs = ctx.budget
        # The bar counts batches, which advance smoothly (an epoch of a GAN can take a minute).
        per_epoch = len(self.train_x) // min(self.options.batch_size, len(self.train_x))
        ctx.progress.set_total(epochs * per_epoch, unit="batch", initial=self.batches_seen)
        while self.step < epochs and not ctx.stop_requested:
            started, cpu_started = time.perf_counter(), time.process_time()
            finished = self.train_epoch()
            # CPU time too: on a shared machine it varies less than wall time
            self._timing[0] += time.perf_counter() - started
            self._timing[1] += time.process_time() - cpu_started
            if not finished:
                break  # stopped inside an epoch: the runner checkpoints the position
            self.step += 1
            self._timing[2] += 1
            # An evaluation when due (periodic_evaluation, then `best`), a periodic checkpoint.
            # The loop moves the bar after evaluating, so `_shown` has this epoch's value.
            self._shown["epoch"] = self.step
            ctx.update(self, self.step, position=self.batches_seen, show=self._shown)
        if self._count:  # the last, partial train/ row
            self._update_after_batch(flush=True)
        if self.step >= epochs and self.tested_at != self.step and not ctx.stop_requested:
            self.evaluate()
            self.tested_at = self.step

    def train_epoch(self) -> bool:
        """One pass over the shuffled training set; False when stopped part-way."""
        n = len(self.train_x)
        batch_size = min(self.options.batch_size, n)
        if self._order is None:
            self._order = torch.randperm(n, generator=self.generator)
            self._position = 0
        for net in self.networks.values():
            net.train()
        # The last incomplete batch is dropped: every update sees batch_size samples.
        while self._position + batch_size <= n:
            if self.ctx.stop_requested:
                return False
            index = self._order[self._position:self._position + batch_size].to(self.device)
            x = self.train_x[index]
            y = self.train_y[index] if self.train_y is not None else None
            if self.data.binarize:  # dynamic binarisation: a fresh binary image every time
                x = torch.bernoulli(x)
            losses = self.train_step(x, y)
            self._position += batch_size
            self.batches_seen += 1
            self._accumulate(losses)
            self._update_after_batch(flush=self._count >= self.options.log_every)
        self._order = None
        return True

    def _accumulate(self, losses: dict[str, torch.Tensor | float]) -> None:
        # Kept as they come and averaged once per row: no device sync (``.item()``) and no
        # tensor arithmetic per batch. Each key is averaged over the batches that reported it
        # (a WGAN generator loss exists only every n_critic batches).
        for key, value in losses.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self._losses.setdefault(key, []).append(value)
        self._count += 1

    def _update_after_batch(self, flush: bool) -> None:
        """``ctx.update`` after a batch: with the ``train/`` row (the mean of the batches since
        the last one, against ``step`` = batches seen) when ``flush`` and there is one."""
        row = None
        if flush and self._count:
            row = {f"train/{key}": _mean(values) for key, values in self._losses.items()}
            self._losses, self._count = {}, 0
        show = {key.removeprefix("train/"): value for key, value in (row or {}).items()
                if "loss" in key}
        self.ctx.update(self, self.step, row, axes={"step": self.batches_seen},
                        position=self.batches_seen, show=show)

    def periodic_evaluation(self, video: bool = False) -> dict[str, float]:
        """Validation metrics and media at the current epoch, logged; returns the ``val/...``
        metrics the loop keeps the ``best`` checkpoint by (``video`` is unused: no rollouts).

        The ``perf/`` timings of the epochs since the last evaluation go in the same row: each
        W&B call costs a few milliseconds, a noticeable share of a small model's epoch.
        """
        with self.evaluating():
            metrics = self.validate("val")
            self.log_media(self.step)
        row = {f"val/{k}": v for k, v in metrics.items()}
        wall, cpu, epochs = self._timing
        if epochs:
            row.update({"perf/epoch_seconds": wall / epochs,
                        "perf/epoch_cpu_seconds": cpu / epochs,
                        "perf/samples_per_second": epochs * len(self.train_x) / wall})
            self._timing = [0.0, 0.0, 0]
        self.ctx.tracker.log(row, epoch=self.step, step=self.batches_seen)
        result = {f"val/{k}": float(v) for k, v in metrics.items()}
        if self.best_metric in result:
            self._shown[self.best_metric.replace("/", "_")] = result[self.best_metric]
        return result

    # ---------------------------------------------------- evaluation and sampling
    def evaluate(self) -> dict[str, float]:
        """Test metrics (and forgelab's digits score when sampling digits), logged against
        ``epoch`` and written to the run summary."""
        with self.evaluating(offset=11):
            metrics = {f"test/{k}": float(v) for k, v in self.test_metrics().items()}
            if self.can_sample and self.data.name == "digits":
                from forgelab.generative.metrics import digits_score

                samples = self.sample(1000, self.fixed_generator(offset=13))
                labels = self.cycled_labels(1000) if self.conditional else None
                metrics.update({f"test/{k}": v for k, v in digits_score(samples, labels).items()})
        self.ctx.tracker.log(metrics, epoch=self.step)
        self.ctx.tracker.summary(metrics)
        return metrics

    def sample_to_file(self, n: int, out: Path) -> Path:
        """``n`` samples as a PNG grid (images) or a CSV / PNG scatter plot (2-D points)."""
        if not self.can_sample:
            raise ForgelabError(f"{self.ctx.config.model!r} does not define a distribution to "
                                "sample from", hint="train a vae, cvae or a GAN instead")
        out = Path(out)
        with self.evaluating(offset=17):
            samples = self.sample(n, self.fixed_generator(offset=19)).cpu()
        if self.data.kind == "points" and out.suffix.lower() == ".csv":
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(out, samples.numpy(), delimiter=",", header="x,y", comments="")
            return out
        if out.suffix.lower() != ".png":
            raise ForgelabError(f"cannot write samples to {out}: use a .png file"
                                + (" or a .csv file" if self.data.kind == "points" else ""))
        if self.data.kind == "image":
            nrow = self.data.num_classes if self.conditional else None
            return save_png(make_grid(samples, nrow=nrow), out)
        return save_png(scatter_image(samples, self.data.train.x[:2500]), out)

    # ----------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "batches_seen": self.batches_seen,
            "tested_at": self.tested_at,
            "networks": {k: net.state_dict() for k, net in self.networks.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "order": self._order if self._order is not None else torch.empty(0),
            "position": self._position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.batches_seen = int(state["batches_seen"])
        self.tested_at = int(state["tested_at"])
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        self._order = state["order"] if len(state["order"]) else None
        self._position = int(state["position"])


def _mean(values: list[Any]) -> float:
    """The mean of logged losses: tensors (read once; a tensor of per-sample values counts
    as its samples, all batches have the same size) or plain numbers."""
    if all(isinstance(v, torch.Tensor) for v in values):
        return float(torch.cat([v.reshape(-1) for v in values]).float().mean())
    return float(np.mean([float(v) for v in values]))
