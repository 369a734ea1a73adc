"""Built-in plugin: forgelab's generative models (AE, VAE, CVAE, GAN, WGAN-GP, CGAN) and the
datasets they train on (digits, MNIST, Fashion-MNIST and the 2-D toy sets).

Factories and config classes are import strings, so listing them never imports torch.
A dataset factory is ``factory(options, seed) -> forgelab.generative.datasets.Splits``.
"""

from forgelab.core import hookimpl
from forgelab.core.family import Family

# How the runner treats every generative model: epochs against `train.epochs`, train/ rows per
# batch (`step`) and evaluations per `epoch`, the best checkpoint by the lowest validation loss
# (a model names its own metric with `best_metric`), an evaluation every epoch by default.
GENERATIVE = Family(
    name="generative", component_key="model", unit="epoch", budget_key="epochs",
    axes=(("step", ("train/*", "perf/*")), ("epoch", ("val/*", "eval/*", "samples/*", "test/*"))),
    inputs=(("dataset", "dataset"),),
    experiment="forgelab.generative.experiment:GenerativeExperiment",
    support="forgelab.generative.family",
    best_metric="val/loss", best_mode="min", default_eval_every=1, curve_axis="epoch",
    headline_metrics=("test/nll_k", "test/neg_elbo", "test/modes_captured",
                      "test/forgelab_digits_fd", "test/recon", "test/", "val/"),
    description="generative models: a model trained on a dataset for train.epochs epochs")

_AE = "forgelab.generative.autoencoders"
_GAN = "forgelab.generative.gan"
_DATA = "forgelab.generative.datasets"
_TOY = "forgelab.generative.toy"

# name: (factory, config, description)
_MODELS = {
    "autoencoder": (f"{_AE}:Autoencoder", f"{_AE}:AutoencoderConfig",
                    "Deterministic autoencoder with MSE or BCE reconstruction (MLP or conv)."),
    "vae": (f"{_AE}:VAE", f"{_AE}:VAEConfig",
            "Variational autoencoder: Gaussian encoder, Bernoulli/Gaussian decoder, beta, "
            "KL warm-up (Kingma & Welling 2014)."),
    "cvae": (f"{_AE}:CVAE", f"{_AE}:CVAEConfig",
             "Class-conditional VAE (Sohn et al. 2015)."),
    "gan": (f"{_GAN}:GAN", f"{_GAN}:GANConfig",
            "GAN with the non-saturating generator loss (Goodfellow et al. 2014)."),
    "wgan-gp": (f"{_GAN}:WGANGP", f"{_GAN}:WGANGPConfig",
                "Wasserstein GAN with gradient penalty and n_critic (Gulrajani et al. 2017)."),
    "cgan": (f"{_GAN}:CGAN", f"{_GAN}:CGANConfig",
             "Class-conditional GAN (Mirza & Osindero 2014)."),
}

_DATASETS = {
    "digits": (f"{_DATA}:digits", f"{_DATA}:DigitsConfig",
               "scikit-learn's bundled 8x8 digits in [0, 1], fixed seeded train/val/test split."),
    "mnist": (f"{_DATA}:mnist", f"{_DATA}:IdxConfig",
              "MNIST 28x28 read from the IDX files in `path` (no download)."),
    "fashion-mnist": (f"{_DATA}:fashion_mnist", f"{_DATA}:IdxConfig",
                      "Fashion-MNIST 28x28 read from the IDX files in `path` (no download)."),
    "ring8": (f"{_TOY}:ring8", f"{_TOY}:Ring8Config",
              "2-D: 8 Gaussians on a circle (PacGAN / VEEGAN benchmark)."),
    "grid25": (f"{_TOY}:grid25", f"{_TOY}:Grid25Config",
               "2-D: 25 Gaussians on a 5x5 grid (PacGAN / VEEGAN benchmark)."),
    "moons": (f"{_TOY}:moons", f"{_TOY}:MoonsConfig",
              "2-D: two interleaving half circles."),
}


# Small networks, and batches logged every 2 so that forgelab.testing's SIGTERM check stops
# a conformance run in the middle of an epoch (its resume must be exact there too).
_SMALL = {"hidden": 32, "log_every": 2, "media_samples": 16}
_CONFORMANCE = {
    "autoencoder": {"model_options": {**_SMALL, "latent_dim": 4}},
    "vae": {"model_options": {**_SMALL, "latent_dim": 4, "nll_samples": 8}},
    "cvae": {"model_options": {**_SMALL, "latent_dim": 4, "nll_samples": 8}},
    "gan": {"model_options": {**_SMALL, "batch_size": 64, "layers": 1}},
    "wgan-gp": {"model_options": {**_SMALL, "batch_size": 64, "layers": 1, "n_critic": 2}},
    "cgan": {"model_options": {**_SMALL, "batch_size": 64, "layers": 1}},
}


# What each model needs of its dataset, checked before a run starts (and by --dry-run).
_CHECKS = {"autoencoder": "check_autoencoder", "vae": "check_autoencoder", "cvae": "check_cvae",
           "gan": "check_gan", "wgan-gp": "check_gan", "cgan": "check_cgan"}


@hookimpl
def register_generative_models(register):
    for name, (factory, config, description) in _MODELS.items():
        register(name, factory, config=config, description=description,
                 check=f"forgelab.generative.checks:{_CHECKS[name]}",
                 conformance=_CONFORMANCE[name])


@hookimpl
def register_datasets(register):
    for name, (factory, config, description) in _DATASETS.items():
        register(name, factory, config=config, description=description)


@hookimpl
def register_families(register):
    register(GENERATIVE)
