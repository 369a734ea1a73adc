"""Metrics of the generative models, checked against closed forms and known answers."""

from __future__ import annotations

import math

import numpy as np
import torch

from forgelab.generative.datasets import DigitsConfig, digits
from forgelab.generative.metrics import (
    active_units,
    digits_classifier,
    digits_score,
    frechet_distance,
    importance_sampled_nll,
    reconstruction_errors,
)


def _linear_gaussian_log_weights(shift: float):
    """p(z) = N(0, 1), p(x | z) = N(z, 1), so p(x) = N(0, 2) exactly; the proposal
    q(z | x) = N(x / 2 + shift, 1) is deliberately off (the true posterior is N(x/2, 1/2))."""
    normal = torch.distributions.Normal

    def log_weights(x: torch.Tensor, y: torch.Tensor | None, k: int) -> torch.Tensor:
        q = normal(x / 2 + shift, 1.0)
        z = q.sample((k,))
        return normal(0.0, 1.0).log_prob(z) + normal(z, 1.0).log_prob(x) - q.log_prob(z)

    return log_weights


def test_iwae_nll_is_below_the_negative_elbo_and_tightens_to_the_exact_nll() -> None:
    torch.manual_seed(0)
    x = torch.randn(400) * math.sqrt(2.0)
    exact = float(-torch.distributions.Normal(0.0, math.sqrt(2.0)).log_prob(x).mean())
    log_weights = _linear_gaussian_log_weights(shift=0.7)
    batches = [(x[i:i + 100], None) for i in range(0, 400, 100)]
    neg_elbo = importance_sampled_nll(log_weights, batches, k=1)
    nll_10 = importance_sampled_nll(log_weights, batches, k=10)
    # small samples_per_pass: the k samples are drawn in several chunks per batch
    nll_1000 = importance_sampled_nll(log_weights, batches, k=1000, samples_per_pass=30_000)
    assert neg_elbo > nll_10 > nll_1000 >= exact - 0.01
    assert nll_1000 - exact < 0.01
    # the ELBO gap is KL(q || posterior) = log(sqrt(1/2)) + (1 + 0.7^2) / (2 * 1/2) - 1/2
    gap = 0.5 * (2 * 0.7**2 + 2 * 1.0 - 1.0 - math.log(2.0))
    assert abs((neg_elbo - exact) - gap) < 0.1


def test_active_units_counts_dimensions_whose_posterior_mean_varies() -> None:
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 6, generator=generator)
    means[:, 1] *= 0.01  # variance 1e-4: inactive
    means[:, 4] = 0.3  # constant: inactive
    means[:, 5] *= 0.2  # variance 0.04 > 0.01: active
    assert active_units(means) == 4
    assert active_units(means, threshold=0.1) == 3


def test_reconstruction_errors_are_per_image_sums() -> None:
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5]])
    logits = torch.zeros(2, 3)  # predictions 0.5 everywhere
    assert torch.allclose(reconstruction_errors(x, logits, "mse"), torch.tensor([0.75, 0.5]))
    bce = reconstruction_errors(x, logits, "bce")
    assert torch.allclose(bce, torch.full((2,), 3 * math.log(2.0)))


def test_frechet_distance_matches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 2))
    b = rng.normal(size=(20_000, 2)) * np.array([2.0, 1.0]) + np.array([1.0, 0.0])
    # |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2 for diagonal covariances = 1 + 1
    assert abs(frechet_distance(a, b) - 2.0) < 0.1
    assert abs(frechet_distance(a, a)) < 1e-6


def test_digits_score_ranks_real_images_above_noise_and_one_class() -> None:
    net, accuracy = digits_classifier()
    # the scoring network is a competent digit classifier; its training is seeded with 0, and
    # initialisation seeds 0-9 give test accuracy min 0.950, median 0.956; bound 0.9
    assert accuracy > 0.9
    data = digits(DigitsConfig(), 0)
    real = digits_score(data.val.x)
    noise = digits_score(torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    ones = digits_score(data.train.x[data.train.y == 1])
    assert real["forgelab_digits_classes"] == 10
    assert ones["forgelab_digits_classes"] <= 2
    assert real["forgelab_digits_fd"] < 0.2 * noise["forgelab_digits_fd"]
    assert real["forgelab_digits_fd"] < 0.2 * ones["forgelab_digits_fd"]
    labelled = digits_score(data.val.x, labels=data.val.y)
    assert labelled["forgelab_digits_label_accuracy"] > 0.9
    wrong = digits_score(data.val.x, labels=(data.val.y + 1) % 10)
    assert wrong["forgelab_digits_label_accuracy"] < 0.1
    # deterministic: retraining the classifier in a fresh cache gives the same score
    digits_classifier.cache_clear()
    assert digits_score(data.val.x) == real
