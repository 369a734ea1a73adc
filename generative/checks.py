"""What the generative models need of their dataset, checked before a run starts.

Each function is a registration ``check=`` (see ``plugins/generative.py``): the runner loads the
experiment's dataset once while preparing the run, and calls the check with the validated
options, the experiment and the dataset's :class:`~forgelab.generative.datasets.Splits`, before
a run directory, lock or W&B run exists; ``--dry-run`` runs exactly these checks, so a dry run
fails exactly when the run would. The models' constructors call the same functions.
"""

from __future__ import annotations

from typing import Any

from forgelab.core.errors import ConfigError


def check_image_data(model: str, data: Any) -> None:
    """``model`` draws images: the dataset must hold images."""
    if data.kind != "image":
        raise ConfigError(f"model {model!r} needs an image dataset; {data.name!r} holds "
                          f"{data.kind}", hint="use dataset=digits, mnist or fashion-mnist")


def check_labels(model: str, data: Any) -> int:
    """``model`` is class-conditional: the dataset must be labelled; returns its classes."""
    if not data.num_classes or data.train.y is None:
        unconditional = {"cvae": "vae", "cgan": "gan"}.get(model, "an unconditional model")
        raise ConfigError(f"{model} needs a labelled dataset; {data.name!r} has no labels",
                          hint=f"use model={unconditional}, or dataset=digits / mnist")
    return int(data.num_classes)


def check_arch(options: Any, data: Any) -> None:
    """``arch: conv`` needs images whose sides halve evenly down the conv stack."""
    if options.arch != "conv":
        return
    if data.kind != "image":
        raise ConfigError(f"arch: conv needs an image dataset; {data.name!r} holds points",
                          hint="use arch=mlp")
    from forgelab.generative.autoencoders import conv_levels

    conv_levels(*data.sample_shape[-2:])


def check_autoencoder(options: Any, config: Any, data: Any) -> None:
    """Autoencoder and VAE: images, and a conv stack that fits them."""
    check_image_data(config.model, data)
    check_arch(options, data)


def check_cvae(options: Any, config: Any, data: Any) -> None:
    """CVAE: the autoencoder's checks, and labels."""
    check_autoencoder(options, config, data)
    check_labels(config.model, data)


def check_gan(options: Any, config: Any, data: Any) -> None:
    """GAN and WGAN-GP: images or points; a conv stack only for images that fit it."""
    check_arch(options, data)


def check_cgan(options: Any, config: Any, data: Any) -> None:
    """CGAN: the GAN's checks, and labels."""
    check_gan(options, config, data)
    check_labels(config.model, data)
