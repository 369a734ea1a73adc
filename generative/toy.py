"""2-D toy datasets and the mode-collapse metrics of VEEGAN and PacGAN.

The two mixture benchmarks are the synthetic experiments of VEEGAN (Srivastava et al. 2017,
https://arxiv.org/abs/1705.07761) as configured in the PacGAN code (Lin et al. 2018,
https://arxiv.org/abs/1712.04086, https://github.com/fjxmlzn/PacGAN,
``synthetic_data_experiments/2D{Ring,Grid}_GAN&PacGAN/config.py``):

* ``ring8``  - 8 isotropic Gaussians, means ``(cos(2 pi i / 8), sin(2 pi i / 8))``, i = 0..7
  (a circle of radius 1), standard deviation 0.01 (variance ``1e-4`` per dimension).
* ``grid25`` - 25 isotropic Gaussians, means ``(i, j)`` for i, j in {-4, -2, 0, 2, 4},
  standard deviation 0.05 (variance ``0.0025`` per dimension).

PacGAN draws 100,000 training points from each. VEEGAN and the unrolled-GAN paper draw the ring
with radius 2 and standard deviation 0.02: the same picture scaled by two, with the same metrics
(they measure distances in standard deviations), available as ``radius=2, std=0.02``.

``moons`` is scikit-learn's ``make_moons`` (two interleaving half circles), generated, no files.

**Metrics** (VEEGAN section 5.1, PacGAN section 4; the PacGAN code's ``MetricLogger``). Draw
2,500 samples from the generator; assign each sample to its nearest mode ``c_k``; the sample is
*high quality* if it lies within three standard deviations of that mode::

    k(x)       = argmin_k ||x - c_k|| / sigma
    high(x)    = ||x - c_k(x)|| / sigma < 3
    modes captured          = #{ k : at least one high-quality sample is assigned to mode k }
    % high-quality samples  = 100 * #{ x : high(x) } / 2500
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from forgelab.generative.datasets import Split, Splits

#: samples drawn from a generator to compute the metrics (VEEGAN, PacGAN)
METRIC_SAMPLES = 2500
#: a sample is high quality within this many standard deviations of its nearest mode
HIGH_QUALITY_STDS = 3.0

RING8_RADIUS, RING8_STD = 1.0, 0.01  # PacGAN 2DRing config
GRID25_SPACING, GRID25_STD = 2.0, 0.05  # PacGAN 2DGrid config


# ---------------------------------------------------------------------------- mixtures
def ring_centres(n_modes: int = 8, radius: float = RING8_RADIUS) -> np.ndarray:
    """``n_modes`` points evenly spaced on a circle: ``r (cos(2 pi i / n), sin(2 pi i / n))``."""
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centres(side: int = 5, spacing: float = GRID25_SPACING) -> np.ndarray:
    """A ``side x side`` grid centred on the origin: (-4..4 step 2)^2 for the defaults."""
    axis = spacing * (np.arange(side) - (side - 1) / 2)
    return np.array([(a, b) for a in axis for b in axis])


def sample_mixture(centres: np.ndarray, std: float, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of the equal-weight mixture of ``N(c_k, std^2 I)``; returns (points, mode)."""
    modes = rng.integers(len(centres), size=n)
    points = centres[modes] + std * rng.standard_normal((n, centres.shape[1]))
    return points, modes


# ----------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class ModeCoverage:
    """VEEGAN / PacGAN mode metrics of a set of samples.

    :param modes_captured: modes with at least one high-quality sample.
    :param high_quality_fraction: fraction of samples within 3 std of their nearest mode.
    :param counts: high-quality samples per mode, shape ``(n_modes,)``.
    """

    modes_captured: int
    high_quality_fraction: float
    counts: np.ndarray

    @property
    def n_modes(self) -> int:
        return len(self.counts)

    def as_dict(self) -> dict[str, float]:
        return {"modes_captured": float(self.modes_captured),
                "high_quality_fraction": self.high_quality_fraction}


def mode_coverage(samples: np.ndarray, centres: np.ndarray, std: float,
                  threshold: float = HIGH_QUALITY_STDS) -> ModeCoverage:
    """Assign each sample to its nearest mode and count the high-quality ones (module doc).

    :param samples: ``(N, 2)`` generated points (VEEGAN / PacGAN use N = 2,500).
    :param centres: ``(K, 2)`` mode means.
    :param std: the modes' (isotropic) standard deviation.
    :param threshold: high quality within ``threshold`` standard deviations.
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, centres.shape[1])
    # distance of every sample to every mode, in standard deviations: (N, K)
    distances = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1) / std
    nearest = distances.argmin(axis=1)
    high = distances[np.arange(len(samples)), nearest] < threshold  # NaN -> False
    counts = np.bincount(nearest[high], minlength=len(centres))
    return ModeCoverage(modes_captured=int((counts > 0).sum()),
                        high_quality_fraction=float(high.mean()) if len(samples) else 0.0,
                        counts=counts)


def coverage_of(samples: np.ndarray, data: Splits) -> ModeCoverage:
    """:func:`mode_coverage` with the mode centres and std stored in a toy dataset's metadata."""
    meta = data.metadata
    if "centres" not in meta:
        raise ValueError(f"dataset {data.name!r} has no modes to cover")
    return mode_coverage(samples, np.asarray(meta["centres"]), float(meta["std"]))


# ---------------------------------------------------------------------------- datasets
class ToyConfig(BaseModel):
    """Sizes of a 2-D toy dataset (points are drawn fresh from a seed, no files).

    The data depend on ``data_seed``, not on the run's seed, so that runs with different seeds
    are compared on the same points.
    """

    model_config = ConfigDict(extra="forbid")
    n_train: int = Field(100_000, gt=0, description="training points (PacGAN: 100,000)")
    n_val: int = Field(METRIC_SAMPLES, gt=0, description="validation points")
    n_test: int = Field(METRIC_SAMPLES, gt=0, description="test points")
    data_seed: int = Field(0, ge=0, description="seed of the generated points")


class Ring8Config(ToyConfig):
    """Options of ``ring8``: 8 Gaussians on a circle (PacGAN: radius 1, std 0.01)."""

    radius: float = Field(RING8_RADIUS, gt=0, description="radius of the circle of means")
    std: float = Field(RING8_STD, gt=0, description="standard deviation of each Gaussian")


class Grid25Config(ToyConfig):
    """Options of ``grid25``: 25 Gaussians at (-4..4 step 2)^2 (PacGAN: std 0.05)."""

    std: float = Field(GRID25_STD, gt=0, description="standard deviation of each Gaussian")


class MoonsConfig(ToyConfig):
    """Options of ``moons``: scikit-learn's two interleaving half circles."""

    n_train: int = Field(20_000, gt=0, description="training points")
    noise: float = Field(0.05, ge=0, description="std of the Gaussian noise added to each point")


def _splits(points: np.ndarray, labels: np.ndarray, options: ToyConfig, name: str,
            num_classes: int, **metadata) -> Splits:
    """Cut generated (already random) points into train / val / test in order."""
    cuts = np.cumsum([options.n_train, options.n_val])
    parts = []
    for x, y in zip(np.split(points, cuts), np.split(labels, cuts), strict=True):
        parts.append(Split(torch.as_tensor(x, dtype=torch.float32),
                           torch.as_tensor(y, dtype=torch.int64)))
    return Splits(*parts, sample_shape=(2,), num_classes=num_classes, kind="points",
                  name=name, metadata=metadata)


def _mixture_splits(options: ToyConfig, name: str, centres: np.ndarray, std: float) -> Splits:
    total = options.n_train + options.n_val + options.n_test
    points, modes = sample_mixture(centres, std, total, np.random.default_rng(options.data_seed))
    # y is the mixture component: it conditions the cgan and lets tests check coverage
    return _splits(points, modes, options, name, len(centres),
                   centres=centres.tolist(), std=std, source="generated (PacGAN config)")


def ring8(options: Ring8Config, seed: int) -> Splits:
    """8 Gaussians on a circle; ``metadata`` holds ``centres`` (8 x 2) and ``std``."""
    return _mixture_splits(options, "ring8", ring_centres(8, options.radius), options.std)


def grid25(options: Grid25Config, seed: int) -> Splits:
    """25 Gaussians on a 5 x 5 grid; ``metadata`` holds ``centres`` (25 x 2) and ``std``."""
    return _mixture_splits(options, "grid25", grid_centres(5, GRID25_SPACING), options.std)


def moons(options: MoonsConfig, seed: int) -> Splits:
    """``sklearn.datasets.make_moons``; ``y`` is the moon (0 or 1). It has no mode metrics."""
    from sklearn.datasets import make_moons

    total = options.n_train + options.n_val + options.n_test
    points, labels = make_moons(total, noise=options.noise, random_state=options.data_seed)
    return _splits(points, labels, options, "moons", 2, source="sklearn.datasets.make_moons")
