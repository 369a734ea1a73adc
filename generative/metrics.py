"""Evaluation metrics of the generative models.

* :func:`reconstruction_errors` - per-image reconstruction error of an autoencoder.
* :func:`importance_sampled_nll` - the importance-sampled negative log-likelihood
  ``-log p(x) ~= -log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)``: the IWAE bound of
  Burda, Grosse & Salakhutdinov 2016 (https://arxiv.org/abs/1509.00519), which tightens as
  ``k`` grows and is never looser than the ELBO (``k = 1``).
* :func:`active_units` - latent dimensions the model actually uses (Burda et al. 2016, sec. 5.2):
  unit ``u`` is active when ``Cov_x(E_{q(z|x)}[z_u]) > 0.01``.
* :func:`digits_score` - **forgelab's own digits score, not FID**: a small classifier trained
  once, deterministically, on the digits training split gives the class coverage of samples and
  a Frechet distance between the Gaussians fitted to its penultimate-layer features of the
  samples and of the digits test images. It is only comparable with other forgelab digits
  scores (FID uses Inception-v3 on natural images; this network has 64 features on 8x8 digits).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------- reconstruction error
def reconstruction_errors(x: torch.Tensor, logits: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-image error, summed over pixels: ``sum (sigmoid(logits) - x)^2`` for ``"mse"``,
    ``sum BCE(x, sigmoid(logits))`` for ``"bce"``; shape ``(B,)``."""
    if loss == "mse":
        return (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


# ---------------------------------------------------------------- likelihood (IWAE bound)
LogWeightFn = Callable[[torch.Tensor, "torch.Tensor | None", int], torch.Tensor]


def importance_sampled_nll(log_weights: LogWeightFn,
                           batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
                           k: int, samples_per_pass: int = 50_000) -> float:
    """Mean over images of ``-(logsumexp_i log w_i - log k)``, ``log w_i = log p(x, z_i) -
    log q(z_i | x)``.

    :param log_weights: ``f(x, y, m) -> (m, B)`` log importance weights of ``m`` fresh samples
        ``z ~ q(z | x)`` for each of the ``B`` images of ``x``.
    :param batches: the images ``(x, y)`` in batches.
    :param k: importance samples per image (``k = 1`` gives the negative ELBO).
    :param samples_per_pass: bound on ``m * B`` per call of ``log_weights`` (memory).
    """
    total, count = 0.0, 0
    for x, y in batches:
        chunk = max(1, min(k, samples_per_pass // max(1, len(x))))
        parts, drawn = [], 0
        while drawn < k:
            m = min(chunk, k - drawn)
            parts.append(log_weights(x, y, m))
            drawn += m
        log_w = torch.cat(parts, dim=0)  # (k, B)
        log_px = torch.logsumexp(log_w, dim=0) - math.log(k)
        total += float(-log_px.sum())
        count += len(x)
    return total / max(count, 1)


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent units with ``Var_x(E_q[z_u | x]) > threshold``.

    :param means: the encoder means ``E_q[z | x]`` of a data set, shape ``(N, latent_dim)``.
    """
    return int((means.double().var(dim=0) > threshold).sum())


# ------------------------------------------------------------- forgelab's digits score
class DigitsClassifier(nn.Module):
    """A small MLP classifier of 8x8 digits; ``features`` are its 64 penultimate units."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(),
                                  nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@functools.lru_cache(maxsize=1)
def digits_classifier(seed: int = 0) -> tuple[DigitsClassifier, float]:
    """Train the scoring classifier once per process (deterministic, about a second on one CPU
    core): 150 full-batch Adam steps on the default digits training split.

    :param seed: the initialisation seed; every score uses 0 (other seeds only serve to measure
        how much the classifier's accuracy varies, for the test's bound).

    :return: the classifier (CPU, eval mode) and its accuracy on the digits test split.
    """
    from forgelab.generative.datasets import DigitsConfig, digits

    data = digits(DigitsConfig(), seed=0)
    # enable_grad: the score is usually computed inside an evaluation's no_grad block
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        net = DigitsClassifier()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
        x, y = data.train
        for _ in range(150):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(data.test.x).argmax(1) == data.test.y).float().mean())
    return net, accuracy


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` between Gaussians fitted to the
    rows of ``a`` and ``b`` (the square root through the eigenvalues of
    ``S_a^{1/2} S_b S_a^{1/2}``, which is symmetric, so no complex square roots arise)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def digits_score(samples: torch.Tensor, labels: torch.Tensor | None = None
                 ) -> dict[str, float]:
    """forgelab's digits score of ``(N, 1, 8, 8)`` samples in [0, 1] (not FID; see module doc).

    :param labels: the conditioning labels of class-conditional samples, if any.
    :return: ``forgelab_digits_fd`` (Frechet distance to the digits test set in the
        classifier's feature space; lower is better), ``forgelab_digits_classes`` (classes
        that receive at least half their fair share 1/20 of the samples, out of 10) and, with
        ``labels``, ``forgelab_digits_label_accuracy`` (samples classified as their label).
    """
    from forgelab.generative.datasets import DigitsConfig, digits

    net, _ = digits_classifier()
    test = digits(DigitsConfig(), seed=0).test.x
    x = samples.detach().float().cpu().reshape(-1, 1, 8, 8).clamp(0, 1)
    with torch.no_grad():
        feats, ref = net.features(x).double().numpy(), net.features(test).double().numpy()
        predicted = net(x).argmax(1)
    shares = torch.bincount(predicted, minlength=10).double() / len(x)
    scores = {
        "forgelab_digits_fd": frechet_distance(feats, ref),
        "forgelab_digits_classes": float((shares >= 0.5 / 10).sum()),
    }
    if labels is not None:
        scores["forgelab_digits_label_accuracy"] = float(
            (predicted == labels.cpu()).double().mean())
    return scores
