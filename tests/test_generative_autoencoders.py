"""The autoencoder, VAE and CVAE learn: each beats a trivial baseline on the digits test split
by a clear margin, trained through the real runner with fixed seeds and short budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import read_metrics, run_experiment

from forgelab.core.errors import ConfigError
from forgelab.generative.datasets import DigitsConfig, digits


def summary(run_dir: Path) -> dict[str, float]:
    rows = [row["summary"] for row in read_metrics(run_dir) if "summary" in row]
    assert rows, f"no summary in {run_dir}"
    return rows[-1]


def test_autoencoder_beats_the_mean_image_by_a_wide_margin() -> None:
    data = digits(DigitsConfig(), 0)
    baseline = float(((data.test.x - data.train.x.mean(0)) ** 2).mean())  # about 0.072
    run_dir = run_experiment("digits-ae", "train.epochs=15", "train.eval_every=5",
                             "train.checkpoint_every=null")
    result = summary(run_dir)
    # seeds 0-9: test MSE / baseline min 0.257, median 0.279, max 0.318; bound 0.4
    assert result["test/mse"] < 0.4 * baseline, (result, baseline)
    val = [row["val/mse"] for row in read_metrics(run_dir) if "val/mse" in row]
    assert len(val) == 3 and val[-1] < val[0]


def test_vae_nll_beats_a_factorised_bernoulli_fitted_to_pixel_means() -> None:
    data = digits(DigitsConfig(binarize=True), 0)
    p = data.train.x.mean(0).clamp(1e-3, 1 - 1e-3)
    x = data.test.x
    baseline = float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())  # ~27.0
    run_dir = run_experiment("digits-vae", "train.epochs=30", "train.eval_every=10",
                             "model.nll_samples=100", "model.learning_rate=2e-3",
                             "train.checkpoint_every=null")
    result = summary(run_dir)
    nll = result["test/nll_k100"]
    # the IWAE bound is at least as tight as the ELBO, and both beat the baseline clearly
    assert nll <= result["test/neg_elbo"] + 1e-6
    # seeds 0-9 (benchmarks/learning_bounds.py --cases vae): baseline - NLL min 3.09, median
    # 3.27; active units min 7 (median 11.5); KL min 3.03; digit classes drawn min 9
    assert nll < baseline - 2.5, (result, baseline)
    assert result["test/active_units"] >= 3
    assert result["test/kl"] > 1.0  # the posterior did not collapse
    assert result["test/forgelab_digits_classes"] >= 6


def test_cvae_samples_follow_their_labels() -> None:
    run_dir = run_experiment("digits-cvae", "train.epochs=30", "train.eval_every=30",
                             "model.nll_samples=10", "model.learning_rate=2e-3",
                             "train.checkpoint_every=null")
    result = summary(run_dir)
    # chance is 0.1; a conditional decoder that ignored y would stay near it.
    # seeds 0-9: label accuracy min 0.999, 10 classes on every seed; bound 0.6
    assert result["test/forgelab_digits_label_accuracy"] > 0.6, result
    assert result["test/forgelab_digits_classes"] == 10


def test_models_reject_data_they_cannot_model() -> None:
    with pytest.raises(ConfigError, match="needs an image dataset"):
        run_experiment({"model": "vae", "dataset": "moons", "train": {"epochs": 1}})


def test_conv_vae_with_gaussian_decoder_learns() -> None:
    run_dir = run_experiment("digits-vae", "model.arch=conv", "model.decoder=gaussian",
                             "dataset.binarize=false", "train.epochs=3", "train.eval_every=1",
                             "model.nll_samples=5", "train.checkpoint_every=null")
    result = summary(run_dir)
    assert result["test/nll_k5"] <= result["test/neg_elbo"] + 1e-6
    val = [row["val/neg_elbo"] for row in read_metrics(run_dir) if "val/neg_elbo" in row]
    assert len(val) == 3 and val[0] > val[1] > val[2]
