"""Autoencoders: a deterministic autoencoder, the VAE and the class-conditional VAE.

* :class:`Autoencoder` - ``x_hat = g(f(x))`` trained on a reconstruction loss (MSE or BCE).
* :class:`VAE` - Kingma & Welling 2014, *Auto-Encoding Variational Bayes*
  (https://arxiv.org/abs/1312.6114), with the ``beta`` weight of Higgins et al. 2017,
  *beta-VAE* (https://openreview.net/forum?id=Sy2fzU9gl), and an optional linear KL warm-up
  (Bowman et al. 2016; Sonderby et al. 2016).
* :class:`CVAE` - Sohn, Lee & Yan 2015, *Learning Structured Output Representation using Deep
  Conditional Generative Models* (https://papers.nips.cc/paper/5775): encoder and decoder see
  the class label ``y``; like most implementations we keep the prior ``p(z | y) = N(0, I)``.

The VAE maximises the evidence lower bound (ELBO) on ``log p(x)``::

    ELBO(x) = E_{q(z|x)}[ log p(x | z) ] - KL( q(z | x) || p(z) )

    q(z | x) = N(mu(x), diag sigma^2(x))      Gaussian encoder
    p(z)     = N(0, I)                         prior
    p(x | z) = Bernoulli(sigmoid(logits(z)))   or  N(sigmoid(logits(z)), s^2 I), s learned
    KL       = 1/2 sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 )   (closed form)

    loss     = - E_q[ log p(x | z) ] + beta_t * KL,   beta_t = beta * min(1, t / T_warmup)

with one reparameterised sample ``z = mu + sigma * eps, eps ~ N(0, I)`` per image. The
training loop (epochs, validation, checkpoints, logging) is
:class:`forgelab.generative.base.GenerativeModel`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgelab.core.component import RunContext
from forgelab.core.errors import ConfigError
from forgelab.generative.base import GenerativeConfig, GenerativeModel
from forgelab.generative.checks import check_image_data, check_labels
from forgelab.generative.images import reconstruction_grid, traversal_grid
from forgelab.generative.metrics import (
    active_units,
    importance_sampled_nll,
    reconstruction_errors,
)


# ------------------------------------------------------------------------------ networks
class Encoder(nn.Module):
    """Image (plus one-hot label) -> ``out_dim`` numbers, as an MLP or a small CNN.

    :param shape: image shape ``(C, H, W)``.
    :param out_dim: output size (``latent_dim`` or ``2 * latent_dim``).
    :param arch: ``"mlp"`` (two hidden layers of ``hidden`` units) or ``"conv"`` (stride-2
        convolutions, one per halving: once for 8x8, twice for 28x28, then a linear layer).
    :param num_classes: size of the one-hot label input (0 = unconditional).
    """

    def __init__(self, shape: tuple[int, ...], out_dim: int, arch: str, hidden: int,
                 num_classes: int = 0) -> None:
        super().__init__()
        channels, height, width = shape
        self.num_classes = num_classes
        if arch == "mlp":
            self.features = nn.Flatten()
            size = channels * height * width
        else:
            levels = conv_levels(height, width)
            layers: list[nn.Module] = [nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU()]
            for i in range(levels):
                layers += [nn.Conv2d(32 * 2**i, 64 * 2**i, 4, stride=2, padding=1), nn.ReLU()]
            self.features = nn.Sequential(*layers, nn.Flatten())
            size = 32 * 2**levels * (height // 2**levels) * (width // 2**levels)
        self.head = nn.Sequential(nn.Linear(size + num_classes, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        if self.num_classes:
            h = torch.cat([h, F.one_hot(y, self.num_classes).to(h.dtype)], dim=1)
        return self.head(h)


class Decoder(nn.Module):
    """Latent code (plus one-hot label) -> pixel logits of shape ``(C, H, W)``.

    The mirror image of :class:`Encoder` (transposed convolutions for ``"conv"``).
    ``log_scale`` is the learned log standard deviation of the Gaussian decoder.
    """

    def __init__(self, latent_dim: int, shape: tuple[int, ...], arch: str, hidden: int,
                 num_classes: int = 0) -> None:
        super().__init__()
        channels, height, width = shape
        self.shape, self.num_classes = tuple(shape), num_classes
        # starts at s = 0.1, about the pixel noise of [0, 1] images: with s = 1 the
        # reconstruction term is so weak that the posterior collapses before s can shrink
        self.log_scale = nn.Parameter(torch.tensor(math.log(0.1)))
        trunk = [nn.Linear(latent_dim + num_classes, hidden), nn.ReLU(),
                 nn.Linear(hidden, hidden), nn.ReLU()]
        if arch == "mlp":
            self.net = nn.Sequential(*trunk, nn.Linear(hidden, channels * height * width))
        else:
            levels = conv_levels(height, width)
            top = 32 * 2**levels
            h, w = height // 2**levels, width // 2**levels
            layers: list[nn.Module] = [*trunk, nn.Linear(hidden, top * h * w), nn.ReLU(),
                                       nn.Unflatten(1, (top, h, w))]
            for i in reversed(range(levels)):
                layers += [nn.ConvTranspose2d(64 * 2**i, 32 * 2**i, 4, stride=2, padding=1),
                           nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Conv2d(32, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.net(z).view(-1, *self.shape)


def conv_levels(height: int, width: int) -> int:
    """Stride-2 halvings of the conv nets: 2 for 28x28 (-> 7x7), 1 for 8x8 (-> 4x4)."""
    levels = 2 if min(height, width) >= 16 and height % 4 == 0 and width % 4 == 0 else 1
    if height % 2**levels or width % 2**levels:
        raise ConfigError(f"arch: conv needs even image sizes, got {height}x{width}",
                          hint="use arch=mlp")
    return levels


def image_data_check(model: GenerativeModel) -> None:
    """The pre-run check (``forgelab.generative.checks``), for a model built directly."""
    check_image_data(model.ctx.config.model, model.data)


# ---------------------------------------------------------------------- autoencoder
class AutoencoderConfig(GenerativeConfig):
    """Options of the deterministic autoencoder.

    :param arch: ``mlp`` or ``conv``.
    :param latent_dim: size of the code ``f(x)``.
    :param hidden: width of the fully connected layers.
    :param learning_rate: Adam step size.
    :param reconstruction: ``mse`` (``sum (x_hat - x)^2``) or ``bce`` (binary cross-entropy).
    """

    arch: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = Field(16, gt=0, description="size of the code")
    hidden: int = Field(256, gt=0, description="width of the fully connected layers")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    reconstruction: Literal["mse", "bce"] = Field("mse", description="reconstruction loss")


class Autoencoder(GenerativeModel):
    """Deterministic autoencoder: ``z = f(x)``, ``x_hat = sigmoid(g(z))``, minimising the
    reconstruction error summed over pixels, averaged over the batch::

        mse:  L = sum_p (x_hat_p - x_p)^2
        bce:  L = - sum_p [ x_p log x_hat_p + (1 - x_p) log(1 - x_hat_p) ]

    It defines no distribution to sample from; its media are reconstructions.

    :param options: :class:`AutoencoderConfig`.
    :param ctx: the run context.
    """

    best_metric = "val/recon_error"
    can_sample = False

    def __init__(self, options: AutoencoderConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        image_data_check(self)
        shape = self.data.sample_shape
        self.encoder = Encoder(shape, options.latent_dim, options.arch, options.hidden)
        self.decoder = Decoder(options.latent_dim, shape, options.arch, options.hidden)
        self.add_network("autoencoder", nn.ModuleDict({"encoder": self.encoder,
                                                       "decoder": self.decoder}),
                         lr=options.learning_rate)

    def reconstruct_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        loss = reconstruction_errors(x, self.reconstruct_logits(x),
                                     self.options.reconstruction).mean()
        self.optimize("autoencoder", loss)
        return {"loss": loss}

    def validate(self, split: str) -> dict[str, float]:
        error = squared = 0.0
        n = 0
        for x, _ in self.batches(split):
            logits = self.reconstruct_logits(x)
            error += float(reconstruction_errors(x, logits, self.options.reconstruction).sum())
            squared += float(reconstruction_errors(x, logits, "mse").sum())
            n += len(x)
        pixels = math.prod(self.data.sample_shape)
        # recon_error: the training loss per image; mse: per pixel, comparable across losses
        return {"recon_error": error / n, "mse": squared / (n * pixels)}

    def log_media(self, epoch: int) -> None:
        x, _ = self.split("val")
        x = x[:32]
        grid = reconstruction_grid(x, torch.sigmoid(self.reconstruct_logits(x)))
        self.ctx.tracker.log_image("samples/reconstructions", grid,
                                   caption="odd rows: inputs, even rows: reconstructions",
                                   epoch=epoch)


# ------------------------------------------------------------------------------- VAE
class VAEConfig(GenerativeConfig):
    """Options of the VAE (and CVAE).

    :param arch: ``mlp`` or ``conv``.
    :param latent_dim: dimension of ``z``.
    :param hidden: width of the fully connected layers.
    :param learning_rate: Adam step size.
    :param decoder: ``bernoulli`` (pixel probabilities; binarised or grey data) or ``gaussian``
        (pixel means with one learned standard deviation).
    :param beta: weight of the KL term (beta-VAE; 1 is the ELBO).
    :param kl_warmup_epochs: epochs over which the KL weight rises linearly from 0 to ``beta``.
    :param nll_samples: importance samples ``k`` of the test NLL (IWAE bound).
    """

    arch: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = Field(16, gt=0, description="dimension of z")
    hidden: int = Field(256, gt=0, description="width of the fully connected layers")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    decoder: Literal["bernoulli", "gaussian"] = Field("bernoulli", description="p(x|z)")
    beta: float = Field(1.0, ge=0, description="KL weight (beta-VAE); 1 = the ELBO")
    kl_warmup_epochs: float = Field(0.0, ge=0, description="linear KL warm-up length (epochs)")
    nll_samples: int = Field(1000, gt=0, description="importance samples k of the test NLL")


class VAE(GenerativeModel):
    """Variational autoencoder (Kingma & Welling 2014); the equations are in the module
    docstring. Validation and test report the negative ELBO (``beta = 1``, whatever the
    training ``beta``), its two terms, the IWAE negative log-likelihood (test) and the number
    of active latent units (test); the best checkpoint has the lowest validation negative ELBO.

    :param options: :class:`VAEConfig`.
    :param ctx: the run context.
    """

    best_metric = "val/neg_elbo"

    def __init__(self, options: VAEConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        image_data_check(self)
        classes = self.label_classes()
        shape = self.data.sample_shape
        self.encoder = Encoder(shape, 2 * options.latent_dim, options.arch, options.hidden,
                               num_classes=classes)
        self.decoder = Decoder(options.latent_dim, shape, options.arch, options.hidden,
                               num_classes=classes)
        self.add_network("vae", nn.ModuleDict({"encoder": self.encoder,
                                               "decoder": self.decoder}),
                         lr=options.learning_rate)
        self.batches_per_epoch = max(1, len(self.train_x) // min(options.batch_size,
                                                                 len(self.train_x)))

    def label_classes(self) -> int:
        """Size of the one-hot label input of both networks (0 for the plain VAE)."""
        return 0

    def labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y if self.conditional else None

    # --- the model: q(z|x), p(x|z) and the ELBO
    def encode(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """``mu`` and ``log sigma^2`` of ``q(z | x)``."""
        mu, log_var = self.encoder(x, self.labels(y)).chunk(2, dim=1)
        return mu, log_var

    def reconstruction_nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``-log p(x | z)`` summed over pixels; ``logits`` may carry extra leading dims.

        Written as the negative log-likelihood (the loss term) so that training needs no
        negations; :meth:`log_weights` flips its sign once.
        """
        x = x.expand_as(logits)
        if self.options.decoder == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            # -log N(x; m, s^2) = (x - m)^2 / (2 s^2) + log s + log(2 pi) / 2, s >= 0.01
            log_s = self.decoder.log_scale.clamp(min=math.log(0.01))
            nll = (0.5 * ((x - torch.sigmoid(logits)) / log_s.exp()) ** 2
                   + log_s + 0.5 * math.log(2 * math.pi))
        return nll.flatten(-len(self.data.sample_shape)).sum(-1)

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: ``-log p(x | z)`` at one sample ``z = mu + sigma * eps``, and the KL
        (their sum is the negative ELBO)."""
        mu, log_var = self.encode(x, y)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = self.reconstruction_nll(x, self.decoder(z, self.labels(y)))
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return recon, kl

    def kl_weight(self) -> float:
        """``beta_t = beta * min(1, t / T_warmup)``, ``t`` counted in batches."""
        warmup = self.options.kl_warmup_epochs * self.batches_per_epoch
        ramp = min(1.0, self.batches_seen / warmup) if warmup > 0 else 1.0
        return self.options.beta * ramp

    # --- training
    def train_step(self, x: torch.Tensor, y: torch.Tensor | None
                   ) -> dict[str, torch.Tensor | float]:
        recon, kl = self.elbo_terms(x, y)
        beta = self.kl_weight()
        loss = (recon + beta * kl).mean()  # -E_q[log p(x|z)] + beta_t KL, batch mean
        self.optimize("vae", loss)
        # per-image values: the train/ row averages them, so no per-batch mean is needed here
        return {"loss": loss, "recon": recon.detach(), "kl": kl.detach(), "kl_weight": beta}

    def validate(self, split: str) -> dict[str, float]:
        recon = kl = 0.0
        n = 0
        for x, y in self.batches(split):
            recon_b, kl_b = self.elbo_terms(x, y)
            recon += float(recon_b.sum())
            kl += float(kl_b.sum())
            n += len(x)
        return {"neg_elbo": (recon + kl) / n, "recon": recon / n, "kl": kl / n}

    # --- test metrics: IWAE NLL and active units
    def log_weights(self, x: torch.Tensor, y: torch.Tensor | None, k: int) -> torch.Tensor:
        """``log p(x | z_i) + log p(z_i) - log q(z_i | x)`` for ``k`` samples: ``(k, B)``."""
        mu, log_var = self.encode(x, y)
        std = torch.exp(0.5 * log_var)
        eps = torch.randn(k, *mu.shape, device=mu.device)
        z = mu + std * eps
        # log N(z; mu, std) - log N(z; 0, I): the log(2 pi) terms cancel
        log_q = (-0.5 * eps.pow(2) - std.log()).sum(-1)
        log_prior = (-0.5 * z.pow(2)).sum(-1)
        labels = self.labels(y)
        labels = labels.repeat(k) if labels is not None else None
        logits = self.decoder(z.reshape(-1, mu.shape[1]), labels)
        logits = logits.view(k, len(x), *self.data.sample_shape)
        return -self.reconstruction_nll(x, logits) + log_prior - log_q

    def test_metrics(self) -> dict[str, float]:
        metrics = self.validate("test")
        k = self.options.nll_samples
        metrics[f"nll_k{k}"] = importance_sampled_nll(self.log_weights, self.batches("test", 100),
                                                      k=k)
        x, y = self.split("test")
        metrics["active_units"] = float(active_units(self.encode(x, y)[0]))
        return metrics

    # --- sampling and media
    def decode_mean(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The decoder's mean image ``E[x | z]`` (pixel probabilities / Gaussian means)."""
        return torch.sigmoid(self.decoder(z, self.labels(y)))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Decoder means at ``z ~ p(z) = N(0, I)`` (labels cycle 0..K-1 for the CVAE)."""
        z = torch.randn(n, self.options.latent_dim, generator=generator).to(self.device)
        y = self.cycled_labels(n).to(self.device) if self.conditional else None
        return self.decode_mean(z, y).cpu()

    def log_media(self, epoch: int) -> None:
        super().log_media(epoch)  # the fixed-noise sample grid
        x, y = self.split("val")
        x, y = x[:32], (y[:32] if y is not None else None)
        mu, _ = self.encode(x, y)
        self.ctx.tracker.log_image("samples/reconstructions",
                                   reconstruction_grid(x, self.decode_mean(mu, y)),
                                   caption="odd rows: inputs, even rows: reconstructions",
                                   epoch=epoch)
        first_label = y[:1] if y is not None else None
        self.ctx.tracker.log_image("samples/traversal", self.traversal(x[:1], first_label),
                                   epoch=epoch)

    def traversal(self, x: torch.Tensor, y: torch.Tensor | None, steps: int = 9) -> np.ndarray:
        """Latent traversal: from the code of one image, each row moves one of the (up to 8)
        latent units with the largest KL through -3..3, the others fixed."""
        mu, log_var = self.encode(x, y)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)[0]
        units = kl.argsort(descending=True)[:8]
        values = torch.linspace(-3, 3, steps, device=mu.device)
        z = mu.repeat(len(units) * steps, 1)
        for row, unit in enumerate(units):
            z[row * steps:(row + 1) * steps, unit] = values
        labels = y.repeat(len(z)) if y is not None and self.conditional else None
        # rows say which unit moves (and its KL), columns the value it is set to
        return traversal_grid(self.decode_mean(z, labels), units=units.tolist(),
                              values=values.tolist(), kl=kl[units].tolist())


# ------------------------------------------------------------------------------- CVAE
class CVAEConfig(VAEConfig):
    """Options of the CVAE (the same as the VAE's)."""


class CVAE(VAE):
    """Class-conditional VAE (Sohn et al. 2015): ``q(z | x, y)``, ``p(x | z, y)``, prior
    ``p(z) = N(0, I)``; the ELBO and NLL are those of ``log p(x | y)``. Samples cycle through the
    classes (one column per class in the grid); forgelab's digits score also reports how many
    samples are classified as their label.

    :param options: :class:`CVAEConfig`.
    :param ctx: the run context.
    """

    conditional = True

    def label_classes(self) -> int:
        return check_labels(self.ctx.config.model, self.data)
