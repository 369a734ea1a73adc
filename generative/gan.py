"""Generative adversarial networks: the GAN, WGAN-GP and the class-conditional GAN.

* :class:`GAN` - Goodfellow et al. 2014, *Generative Adversarial Nets*
  (https://arxiv.org/abs/1406.2661), with the *non-saturating* generator loss of its section 3.
  The discriminator ``D`` outputs a logit, ``sigma(D(x))`` is the probability that ``x`` is
  real, ``z ~ N(0, I)``::

      L_D = - E_x[ log sigma(D(x)) ] - E_z[ log(1 - sigma(D(G(z)))) ]
      L_G = - E_z[ log sigma(D(G(z))) ]          (non-saturating; the minimax game would
                                                   minimise E_z[ log(1 - sigma(D(G(z)))) ])

  with ``-log sigma(a) = softplus(-a)`` and ``-log(1 - sigma(a)) = softplus(a)`` for stability.

* :class:`WGANGP` - Gulrajani et al. 2017, *Improved Training of Wasserstein GANs*
  (https://arxiv.org/abs/1704.00028), Algorithm 1. A critic ``D`` (no sigmoid) estimates the
  Wasserstein-1 distance; its 1-Lipschitz constraint is a gradient penalty on points
  ``x_hat = eps x + (1 - eps) G(z)``, ``eps ~ U[0, 1]``, between real and generated samples::

      L_D = E_z[ D(G(z)) ] - E_x[ D(x) ] + lambda E_x_hat[ (||grad D(x_hat)||_2 - 1)^2 ]
      L_G = - E_z[ D(G(z)) ]

  The critic takes one step per batch, the generator one step every ``n_critic`` batches;
  ``wasserstein_distance = E_x[D(x)] - E_z[D(G(z))]`` is logged.

* :class:`CGAN` - Mirza & Osindero 2014, *Conditional Generative Adversarial Nets*
  (https://arxiv.org/abs/1411.1784): both networks see the one-hot class ``y``,
  ``G(z, y)`` and ``D(x, y)``, in the GAN losses above.

Optional *packing* (PacGAN, Lin et al. 2018, https://arxiv.org/abs/1712.04086): the
discriminator judges ``pack`` samples at once, concatenated, all real or all generated, which
penalises a generator that drops modes. ``pack=1`` is the plain GAN.

Other training options, all off by default except the first: batch normalisation in the
generator (DCGAN, Radford et al. 2016, https://arxiv.org/abs/1511.06434), a faster
discriminator (``d_learning_rate``; TTUR, Heusel et al. 2017, https://arxiv.org/abs/1706.08500),
a linear decay of both learning rates to 0 (``lr_decay``), the R1 gradient penalty on real data
(``r1_gamma``; Mescheder, Geiger & Nowozin 2018, https://arxiv.org/abs/1801.04406), added to
the GAN's ``L_D``::

      L_D += gamma / 2 * E_x[ ||grad_x D(x)||_2^2 ]

and spectral normalisation of the discriminator's layers (``spectral_norm``; Miyato et al.
2018, https://arxiv.org/abs/1802.05957).

On 2-D points the networks work on standardised data ``(x - mean) / scale`` (one scale for both
coordinates, fixed from the training set) and samples are mapped back, so one set of
hyperparameters serves ``ring8`` (radius 1) and ``grid25`` (side 8). Evaluation draws 2,500
samples and reports the VEEGAN / PacGAN mode metrics (:mod:`forgelab.generative.toy`); on
digits, forgelab's digits score (:mod:`forgelab.generative.metrics`). The training loop
(epochs, validation, checkpoints, logging, sampling) is
:class:`forgelab.generative.base.GenerativeModel`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from forgelab.core.component import RunContext
from forgelab.generative.autoencoders import conv_levels
from forgelab.generative.base import GenerativeConfig, GenerativeModel
from forgelab.generative.checks import check_arch, check_labels
from forgelab.generative.images import scatter_image
from forgelab.generative.toy import METRIC_SAMPLES, coverage_of


# ------------------------------------------------------------------------------ networks
def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, activation: type[nn.Module],
        batch_norm: bool = False, spectral_norm: bool = False) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` units (each optionally batch-normalised before its
    activation), then a linear output; ``spectral_norm`` divides every weight matrix by its
    largest singular value (Miyato et al. 2018)."""
    sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(sn(nn.Linear(in_dim if i == 0 else hidden, hidden)))
        if batch_norm:
            modules.append(nn.BatchNorm1d(hidden))
        modules.append(activation())
    modules.append(sn(nn.Linear(hidden if layers else in_dim, out_dim)))
    return nn.Sequential(*modules)


class LeakyReLU(nn.LeakyReLU):
    """LeakyReLU with slope 0.2 (Radford et al. 2016), the usual discriminator activation."""

    def __init__(self) -> None:
        super().__init__(0.2)


class Generator(nn.Module):
    """``G(z, y)``: noise (plus one-hot label) -> a sample of shape ``shape``.

    :param latent_dim: dimension of ``z``.
    :param shape: sample shape, ``(2,)`` for points or ``(C, H, W)`` for images.
    :param arch: ``"mlp"`` or ``"conv"`` (transposed convolutions, images only).
    :param hidden: width of the hidden layers.
    :param layers: hidden layers of the MLP (the conv generator has two before upsampling).
    :param num_classes: size of the one-hot label input (0 = unconditional).
    :param images: squash the output into [0, 1] with a sigmoid (images); points are linear.
    :param batch_norm: batch-normalise the hidden layers (DCGAN, Radford et al. 2016): without
        it a generator on digits starts almost independent of ``z`` and collapses to one digit.
    """

    def __init__(self, latent_dim: int, shape: tuple[int, ...], arch: str, hidden: int,
                 layers: int, num_classes: int = 0, images: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.shape, self.num_classes, self.images = tuple(shape), num_classes, images
        in_dim = latent_dim + num_classes
        if arch == "mlp":
            self.net = mlp(in_dim, hidden, layers, math.prod(shape), nn.ReLU, batch_norm)
        else:
            channels, height, width = shape
            levels = conv_levels(height, width)
            top, h, w = 32 * 2**levels, height // 2**levels, width // 2**levels
            norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
            modules: list[nn.Module] = [mlp(in_dim, hidden, 1, top * h * w, nn.ReLU, batch_norm),
                                        nn.Unflatten(1, (top, h, w)), norm(top), nn.ReLU()]
            for i in reversed(range(levels)):  # each level doubles the resolution
                modules += [nn.ConvTranspose2d(64 * 2**i, 32 * 2**i, 4, stride=2, padding=1),
                            norm(32 * 2**i), nn.ReLU()]
            self.net = nn.Sequential(*modules, nn.Conv2d(32, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        out = self.net(z).view(-1, *self.shape)
        return torch.sigmoid(out) if self.images else out


class Discriminator(nn.Module):
    """``D(x, y)``: ``pack`` samples (plus their one-hot labels) -> one real-vs-fake logit
    (GAN) or critic value (WGAN-GP).

    It takes an unpacked batch ``(B, *shape)`` with ``B`` a multiple of ``pack`` and
    concatenates each run of ``pack`` consecutive samples: along features (MLP) or channels
    (conv). Returns ``(B / pack,)``.

    :param shape: sample shape.
    :param arch: ``"mlp"`` or ``"conv"`` (stride-2 convolutions, images only).
    :param hidden: width of the hidden layers.
    :param layers: hidden layers of the MLP (the conv critic has one after its convolutions).
    :param num_classes: size of the one-hot label input (0 = unconditional).
    :param pack: samples judged together (PacGAN); 1 = a plain discriminator.
    :param spectral_norm: spectral normalisation of every layer (Miyato et al. 2018).
    """

    def __init__(self, shape: tuple[int, ...], arch: str, hidden: int, layers: int,
                 num_classes: int = 0, pack: int = 1, spectral_norm: bool = False) -> None:
        super().__init__()
        self.shape, self.num_classes, self.pack, self.arch = tuple(shape), num_classes, pack, arch
        labels = pack * num_classes
        if arch == "mlp":
            self.features = nn.Flatten()
            self.head = mlp(pack * math.prod(shape) + labels, hidden, layers, 1, LeakyReLU,
                            spectral_norm=spectral_norm)
        else:
            channels, height, width = shape
            levels = conv_levels(height, width)
            sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda c: c)
            modules: list[nn.Module] = [sn(nn.Conv2d(pack * channels, 32, 3, padding=1)),
                                        LeakyReLU()]
            for i in range(levels):  # each level halves the resolution
                modules += [sn(nn.Conv2d(32 * 2**i, 64 * 2**i, 4, stride=2, padding=1)),
                            LeakyReLU()]
            self.features = nn.Sequential(*modules, nn.Flatten())
            size = 32 * 2**levels * (height // 2**levels) * (width // 2**levels)
            self.head = mlp(size + labels, hidden, 1, 1, LeakyReLU, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        groups = len(x) // self.pack
        if self.arch == "mlp":
            h = self.features(x).reshape(groups, -1)
        else:  # (B, C, H, W) -> (B / pack, pack * C, H, W)
            h = self.features(x.reshape(groups, -1, *self.shape[1:]))
        if self.num_classes:
            onehot = F.one_hot(y, self.num_classes).to(h.dtype).reshape(groups, -1)
            h = torch.cat([h, onehot], dim=1)
        return self.head(h).squeeze(1)


# ------------------------------------------------------------------------------- GAN
class GANConfig(GenerativeConfig):
    """Options of the GAN (and of the CGAN).

    :param arch: ``mlp`` (points or flattened images) or ``conv`` (images).
    :param latent_dim: dimension of the noise ``z ~ N(0, I)``.
    :param hidden: width of the hidden layers of both networks.
    :param layers: hidden layers of each MLP.
    :param learning_rate: Adam step size of the generator.
    :param d_learning_rate: Adam step size of the discriminator (None: ``learning_rate``); a
        faster discriminator is the two time-scale update rule (TTUR, Heusel et al. 2017).
    :param beta1: Adam's first-moment decay (0.5 is the usual GAN setting, Radford et al.).
    :param beta2: Adam's second-moment decay.
    :param pack: samples the discriminator judges at once (PacGAN; 1 = plain GAN).
    :param batch_norm: batch normalisation in the generator's hidden layers (Radford et al.
        2016); it keeps image generators from collapsing; the 2-D experiments train faster
        without it. The discriminator never has it (the gradient penalty is per sample).
    :param lr_decay: decay both learning rates linearly to 0 over ``train.epochs`` (late, small
        steps let the generator settle on sharp modes instead of oscillating between them).
    :param r1_gamma: weight ``gamma`` of the R1 penalty ``gamma / 2 E_x[||grad_x D(x)||^2]`` on
        real data (Mescheder et al. 2018); 0 = off. It damps the discriminator's gradients where
        the data are, so the game converges instead of circling around its equilibrium. The
        gradient is taken in the networks' (standardised) coordinates.
    :param spectral_norm: spectral normalisation of the discriminator's layers (Miyato et al.
        2018): every weight matrix divided by its largest singular value.
    """

    batch_size: int = Field(256, gt=0, description="samples per update")
    arch: Literal["mlp", "conv"] = Field("mlp", description="mlp (points, flattened images) "
                                         "or conv (images)")
    latent_dim: int = Field(8, gt=0, description="dimension of the noise z")
    hidden: int = Field(128, gt=0, description="width of the hidden layers")
    layers: int = Field(3, ge=1, description="hidden layers of each MLP")
    learning_rate: float = Field(2e-4, gt=0, description="Adam step size of the generator")
    d_learning_rate: float | None = Field(None, gt=0, description="Adam step size of the "
                                          "discriminator (None: learning_rate)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    pack: int = Field(1, ge=1, description="samples per discriminator decision (PacGAN)")
    batch_norm: bool = Field(True, description="batch normalisation in the generator (DCGAN)")
    lr_decay: bool = Field(False, description="decay the learning rates linearly to 0 over "
                           "train.epochs")
    r1_gamma: float = Field(0.0, ge=0, description="weight of the R1 gradient penalty on real "
                            "data (0: off)")
    spectral_norm: bool = Field(False, description="spectral normalisation of the "
                                "discriminator's layers")

    @model_validator(mode="after")
    def _pack_divides_batch(self) -> GANConfig:
        if self.batch_size % self.pack:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of pack "
                             f"({self.pack})")
        return self


class GAN(GenerativeModel):
    """GAN with the non-saturating generator loss (Goodfellow et al. 2014); the losses are in
    the module docstring. One Adam optimizer per network; per batch, one discriminator step
    then one generator step on the same noise.

    Logged: ``train/d_loss``, ``train/g_loss`` per step; per evaluation a fixed-noise sample
    grid (images) or a scatter plot of samples over the data (points), and on the 2-D mixtures
    ``eval/modes_captured`` and ``eval/high_quality_fraction`` (2,500 samples; the ``best``
    checkpoint has the lowest ``mode_loss`` = modes missed + fraction of low-quality samples,
    i.e. the most modes, then the most high-quality samples). On digits, forgelab's digits
    score (class coverage, Frechet distance in a classifier's feature space) at each
    evaluation and at the end.

    :param options: :class:`GANConfig`.
    :param ctx: the run context.
    """

    best_metric: str | None = "val/mode_loss"

    def __init__(self, options: GANConfig, ctx: RunContext) -> None:
        super().__init__(options, ctx)
        data = self.data
        images = data.kind == "image"
        check_arch(options, data)  # the pre-run check, for a model built directly
        self.has_modes = "centres" in data.metadata
        if not self.has_modes:
            # images and moons: no held-out score to select on (forgelab's digits score compares
            # with the test split), so `forgelab eval` and `sample` use the latest checkpoint
            self.best_metric = None
        # points: standardise with the training set's mean and one overall scale
        x = data.train.x.double()
        self.shift = x.mean(0).float() if not images else torch.zeros(())
        self.scale = float(x.std()) if not images else 1.0
        classes = self.label_classes()
        self.generator_net = self.add_network(
            "generator",
            Generator(options.latent_dim, data.sample_shape, options.arch, options.hidden,
                      options.layers, num_classes=classes, images=images,
                      batch_norm=options.batch_norm),
            lr=options.learning_rate, betas=(options.beta1, options.beta2))
        self.discriminator = self.add_network(
            "discriminator",
            Discriminator(data.sample_shape, options.arch, options.hidden, options.layers,
                          num_classes=classes, pack=options.pack,
                          spectral_norm=options.spectral_norm),
            lr=options.d_learning_rate or options.learning_rate,
            betas=(options.beta1, options.beta2))
        self.base_lrs = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}
        self.batches_per_epoch = len(self.train_x) // min(options.batch_size, len(self.train_x))

    # --- conditioning (the CGAN overrides these two)
    def label_classes(self) -> int:
        """Size of the one-hot label input of both networks (0: unconditional)."""
        return 0

    def labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y if self.conditional else None

    # --- the model
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift.to(x.device)) / self.scale if self.data.kind == "points" else x

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift.to(x.device) if self.data.kind == "points" else x

    def noise(self, n: int) -> torch.Tensor:
        """``z ~ N(0, I)`` from the global torch RNG (seeded, saved and restored by the runner)."""
        return torch.randn(n, self.options.latent_dim, device=self.device)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``L_D = -E[log sigma(D(x))] - E[log(1 - sigma(D(G(z))))]`` (logged as ``d_loss``),
        plus ``gamma / 2 E[||grad_x D(x)||^2]`` when training with ``r1_gamma > 0`` (logged as
        ``r1_penalty``); ``loss`` is optimised."""
        r1 = self.options.r1_gamma > 0 and torch.is_grad_enabled()  # validation: no_grad
        if r1:
            real = real.detach().requires_grad_(True)
        d_real, d_fake = self.discriminator(real, y), self.discriminator(fake, y)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        terms = {"d_loss": loss.detach()}
        if r1:
            # R1 (Mescheder et al. 2018, eq. 9): the discriminator's squared gradient norm on
            # real data; a flat D where the data are stops the generator being pushed past
            # the modes it already covers (the oscillation of the unregularised game). With
            # packing, the gradient is with respect to the whole packed input.
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            penalty = grad.reshape(len(d_real), -1).pow(2).sum(1).mean()
            loss = loss + 0.5 * self.options.r1_gamma * penalty
            terms["r1_penalty"] = penalty.detach()
        return {"loss": loss, **terms}

    def generator_loss(self, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Non-saturating ``L_G = -E[log sigma(D(G(z)))]``."""
        return F.softplus(-self.discriminator(fake, y)).mean()

    def update_generator_now(self) -> bool:
        """Whether this batch also updates the generator (always, for the GAN)."""
        return True

    def decay_learning_rates(self) -> None:
        """``lr_t = lr * (1 - t / T)``, ``t`` batches seen, ``T`` batches in ``train.epochs``
        (a function of the step counter alone, so resuming continues the same schedule)."""
        total = max(1, self.ctx.budget * self.batches_per_epoch)
        factor = max(0.0, 1.0 - self.batches_seen / total)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lrs[name] * factor

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self.options.lr_decay:
            self.decay_learning_rates()
        real, y = self.to_model_space(x), self.labels(y)
        fake = self.generator_net(self.noise(len(real)), y)
        d_terms = self.discriminator_loss(real, fake.detach(), y)
        self.optimize("discriminator", d_terms.pop("loss"))
        if self.update_generator_now():
            g_loss = self.generator_loss(fake, y)
            self.optimize("generator", g_loss)
        else:  # WGAN-GP between two generator steps: only measure the generator's loss
            with torch.no_grad():
                g_loss = self.generator_loss(fake.detach(), y)
        return {**d_terms, "g_loss": g_loss.detach()}

    # --- sampling, validation and metrics
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``G(z)`` at ``z ~ N(0, I)`` drawn from ``generator`` (labels cycle 0..K-1 for the
        CGAN), in data space: images in [0, 1], points in data units."""
        z = torch.randn(n, self.options.latent_dim, generator=generator).to(self.device)
        y = self.cycled_labels(n).to(self.device) if self.conditional else None
        return self.to_data_space(self.generator_net(z, y)).cpu()

    def validate(self, split: str) -> dict[str, float]:
        """The discriminator loss on the split's real data against as many samples, plus the
        mode metrics (2-D mixtures) or forgelab's digits score (digits)."""
        total, n = 0.0, 0
        for x, y in self.batches(split):
            keep = len(x) - len(x) % self.options.pack  # whole packs only
            if not keep:
                continue
            x, y = x[:keep], (self.labels(y)[:keep] if self.conditional else None)
            fake = self.generator_net(self.noise(keep), y)
            terms = self.discriminator_loss(self.to_model_space(x), fake, y)
            total += float(terms["d_loss"]) * len(x)
            n += len(x)
        metrics = {"d_loss": total / max(n, 1)}
        offset = 23 if split == "val" else 29  # fixed noise: the same z at every evaluation
        if self.has_modes:
            samples = self.sample(METRIC_SAMPLES, self.fixed_generator(offset)).numpy()
            coverage = coverage_of(samples, self.data)
            metrics.update(coverage.as_dict())
            # lower is better: modes missed first, then the fraction of low-quality samples
            metrics["mode_loss"] = (coverage.n_modes - coverage.modes_captured
                                    + 1.0 - coverage.high_quality_fraction)
        elif self.data.name == "digits" and split == "val":
            from forgelab.generative.metrics import digits_score

            samples = self.sample(1000, self.fixed_generator(offset))
            labels = self.cycled_labels(1000) if self.conditional else None
            metrics.update(digits_score(samples, labels))
        return metrics

    def log_media(self, epoch: int) -> None:
        if self.data.kind == "image":
            super().log_media(epoch)  # the fixed-noise sample grid
            return
        # points: the 2,500 samples of the metrics (grey: data, blue: samples)
        samples = self.sample(METRIC_SAMPLES, self.fixed_generator())
        self.ctx.tracker.log_image("samples/scatter",
                                   scatter_image(samples, self.data.train.x[:METRIC_SAMPLES]),
                                   caption="grey: data, blue: 2,500 samples", epoch=epoch)

    def periodic_evaluation(self, video: bool = False) -> dict[str, float]:
        metrics = super().periodic_evaluation(video)
        if self.has_modes:  # the names of the VEEGAN / PacGAN metrics on the dashboard
            self.ctx.tracker.log({f"eval/{k}": metrics[f"val/{k}"] for k in
                                  ("modes_captured", "high_quality_fraction")}, epoch=self.step)
        return metrics


# --------------------------------------------------------------------------- WGAN-GP
class WGANGPConfig(GANConfig):
    """Options of the WGAN-GP (defaults of Gulrajani et al. 2017, Algorithm 1).

    :param n_critic: critic steps per generator step.
    :param gp_weight: the gradient penalty weight ``lambda``.
    """

    learning_rate: float = Field(1e-4, gt=0, description="Adam step size of the generator")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 (the paper: 0)")
    beta2: float = Field(0.9, ge=0, lt=1, description="Adam beta2")
    n_critic: int = Field(5, ge=1, description="critic steps per generator step")
    gp_weight: float = Field(10.0, ge=0, description="gradient penalty weight lambda")

    @model_validator(mode="after")
    def _no_r1(self) -> WGANGPConfig:
        if self.r1_gamma:
            raise ValueError("r1_gamma is an option of the gan and cgan; the wgan-gp's "
                             "gradient penalty is gp_weight")
        return self


class WGANGP(GAN):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017); the losses are in the
    module docstring. Also logs ``train/gradient_penalty`` and ``train/wasserstein_distance``.

    :param options: :class:`WGANGPConfig`.
    :param ctx: the run context.
    """

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2]``."""
        d_real, d_fake = self.discriminator(real, y), self.discriminator(fake, y)
        wasserstein = d_real.mean() - d_fake.mean()
        penalty = self.gradient_penalty(real, fake, y)
        loss = -wasserstein + self.options.gp_weight * penalty
        return {"loss": loss, "d_loss": loss.detach(), "gradient_penalty": penalty.detach(),
                "wasserstein_distance": wasserstein.detach()}

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor,
                         y: torch.Tensor | None) -> torch.Tensor:
        """``E[(||grad_x_hat D(x_hat)||_2 - 1)^2]`` at ``x_hat = eps x + (1 - eps) G(z)``; with
        packing the gradient is taken with respect to the whole packed input."""
        eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
        training = torch.is_grad_enabled()  # validation runs under no_grad
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.discriminator(x_hat, y).sum(), x_hat,
                                          create_graph=training)
        norms = grad.reshape(len(real) // self.options.pack, -1).norm(2, dim=1)
        return ((norms - 1.0) ** 2).mean()

    def generator_loss(self, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``L_G = -E[D(G(z))]``."""
        return -self.discriminator(fake, y).mean()

    def update_generator_now(self) -> bool:
        # batches_seen counts finished batches: G steps after critic steps n_critic, 2 n_critic..
        return (self.batches_seen + 1) % self.options.n_critic == 0


# ------------------------------------------------------------------------------ CGAN
class CGANConfig(GANConfig):
    """Options of the CGAN (the same as the GAN's)."""


class CGAN(GAN):
    """Class-conditional GAN (Mirza & Osindero 2014): ``G(z, y)`` and ``D(x, y)`` with the GAN
    losses. Samples cycle through the classes (one column per class in the grid); on digits
    forgelab's score also reports how many samples are classified as their label.

    :param options: :class:`CGANConfig`.
    :param ctx: the run context.
    """

    conditional = True

    def label_classes(self) -> int:
        return check_labels(self.ctx.config.model, self.data)


