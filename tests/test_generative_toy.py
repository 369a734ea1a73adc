"""The 2-D toy datasets (ring8, grid25, moons) and the VEEGAN / PacGAN mode metrics."""

from __future__ import annotations

import numpy as np
import pytest

from forgelab.generative.toy import (
    METRIC_SAMPLES,
    Grid25Config,
    MoonsConfig,
    Ring8Config,
    grid25,
    mode_coverage,
    moons,
    ring8,
    sample_mixture,
)


def test_ring8_matches_the_pacgan_config():
    data = ring8(Ring8Config(n_train=1000), seed=0)
    centres = np.asarray(data.metadata["centres"])
    # PacGAN 2DRing: means (cos(2 pi i / 8), sin(2 pi i / 8)), variance 1e-4 per dimension
    angles = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(centres, np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-12)
    assert data.metadata["std"] == pytest.approx(0.01)
    assert data.kind == "points" and data.sample_shape == (2,) and data.num_classes == 8
    assert data.train.x.shape == (1000, 2) and data.val.x.shape == (METRIC_SAMPLES, 2)
    assert data.test.x.shape == (METRIC_SAMPLES, 2)
    # each point sits near the centre of its own mixture component, about std away
    x, y = data.train.x.double().numpy(), data.train.y.numpy()
    offsets = x - centres[y]
    assert np.abs(offsets.std(0) - 0.01).max() < 0.001
    assert set(np.unique(y)) == set(range(8))


def test_grid25_matches_the_pacgan_config():
    data = grid25(Grid25Config(n_train=5000), seed=0)
    centres = np.asarray(data.metadata["centres"])
    expected = {(i, j) for i in range(-4, 5, 2) for j in range(-4, 5, 2)}
    assert {tuple(c) for c in centres.round().astype(int).tolist()} == expected
    np.testing.assert_allclose(centres, centres.round())
    assert data.metadata["std"] == pytest.approx(0.05)
    x, y = data.train.x.double().numpy(), data.train.y.numpy()
    assert np.abs((x - centres[y]).std(0) - 0.05).max() < 0.003
    assert len(np.unique(y)) == 25


def test_datasets_depend_on_data_seed_not_run_seed():
    a = ring8(Ring8Config(n_train=100), seed=1).train.x
    b = ring8(Ring8Config(n_train=100), seed=2).train.x
    c = ring8(Ring8Config(n_train=100, data_seed=5), seed=1).train.x
    assert (a == b).all() and not (a == c).all()


def test_moons_are_two_half_circles():
    data = moons(MoonsConfig(n_train=2000, noise=0.0), seed=0)
    assert data.kind == "points" and data.num_classes == 2 and data.train.x.shape == (2000, 2)
    x, y = data.train.x.double().numpy(), data.train.y.numpy()
    # without noise, moon 0 is the upper unit half circle centred at the origin
    upper = x[y == 0]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=1), 1.0, atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all()
    assert "centres" not in data.metadata  # no mode metrics for moons


@pytest.mark.parametrize("factory, config, modes", [(ring8, Ring8Config, 8),
                                                    (grid25, Grid25Config, 25)])
def test_true_samples_capture_every_mode(factory, config, modes):
    data = factory(config(n_train=10), seed=0)
    centres, std = np.asarray(data.metadata["centres"]), data.metadata["std"]
    coverage = mode_coverage(data.test.x.numpy(), centres, std)
    assert coverage.modes_captured == modes
    # in 2-D, P(||N(0, I)|| < 3) = 1 - exp(-9 / 2) = 0.989
    assert coverage.high_quality_fraction == pytest.approx(1 - np.exp(-4.5), abs=0.01)
    # the centres themselves are perfect samples
    perfect = mode_coverage(np.repeat(centres, 100, axis=0), centres, std)
    assert perfect.modes_captured == modes and perfect.high_quality_fraction == 1.0
    assert (perfect.counts == 100).all()


def test_a_collapsed_generator_captures_one_mode():
    centres = np.asarray(ring8(Ring8Config(n_train=10), seed=0).metadata["centres"])
    rng = np.random.default_rng(0)
    collapsed, _ = sample_mixture(centres[3:4], 0.01, METRIC_SAMPLES, rng)
    coverage = mode_coverage(collapsed, centres, 0.01)
    assert coverage.modes_captured == 1 and coverage.counts[3] == coverage.counts.sum()
    assert coverage.high_quality_fraction > 0.97


def test_uniform_noise_is_low_quality():
    data = grid25(Grid25Config(n_train=10), seed=0)
    centres, std = np.asarray(data.metadata["centres"]), data.metadata["std"]
    noise = np.random.default_rng(0).uniform(-5, 5, size=(METRIC_SAMPLES, 2))
    coverage = mode_coverage(noise, centres, std)
    # 25 discs of radius 0.15 cover 25 * pi * 0.15^2 / 100 = 1.8 % of the square
    assert coverage.high_quality_fraction < 0.03
    assert coverage.modes_captured <= 25


def test_a_sample_beyond_three_std_is_not_high_quality():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    coverage = mode_coverage(np.array([[0.29, 0.0], [0.31, 0.0], [9.0, 0.0]]), centres, 0.1)
    assert coverage.high_quality_fraction == pytest.approx(1 / 3)
    assert coverage.counts.tolist() == [1, 0] and coverage.modes_captured == 1
