"""GAN, WGAN-GP and CGAN trained through the real runner (fixed seeds, short budgets)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import last_metric, read_metrics, run_experiment, wandb_records
from PIL import Image
from pydantic import ValidationError
from torch import nn

from forgelab.core import runner
from forgelab.generative.gan import GAN, Discriminator, GANConfig, WGANGPConfig

# ~1,000 generator steps: 12 epochs of 80 batches of 256 points (the learning rates decay to 0
# over these 12 epochs)
RING_BUDGET = ("dataset.n_train=20480", "train.epochs=12", "train.eval_every=4",
               "train.checkpoint_every=8")


def test_gan_captures_the_ring_modes():
    run_dir = run_experiment("ring8-gan", *RING_BUDGET)
    rows = read_metrics(run_dir)
    # the VEEGAN / PacGAN metrics on 2,500 samples of the final generator
    # seeds 0-9: 8 of 8 modes on every seed; bound 6
    assert last_metric(run_dir, "test/modes_captured") >= 6
    # uniform noise over the ring's square scores ~1 %, the data itself 98.9 %; at this short
    # budget most samples still sit between modes. Seeds 0-9: min 0.258, median 0.306, max 0.348
    # (seed 0: 0.297 on an AMD EPYC, above 0.3 on an Intel Xeon); bound 0.15
    assert last_metric(run_dir, "test/high_quality_fraction") > 0.15
    evals = [row for row in rows if "eval/modes_captured" in row]
    assert [row["epoch"] for row in evals] == [4, 8, 12]
    losses = [row for row in rows if "train/d_loss" in row]
    assert losses and all(np.isfinite(row["train/g_loss"]) for row in losses)
    assert all("step" in row for row in losses)
    scatter = [row["samples/scatter"] for row in rows if "samples/scatter" in row]
    assert len(scatter) == 3 and (run_dir / scatter[-1]).is_file()
    # the best checkpoint is the evaluation with the most modes, then the most good samples
    best = (run_dir / "checkpoints" / "best").read_text().strip()
    scores = {row["epoch"]: (row["val/modes_captured"], row["val/high_quality_fraction"])
              for row in rows if "val/modes_captured" in row}
    assert best == f"step-{max(scores, key=scores.get):09d}"
    # the same metrics reached W&B, against the epoch axis
    history = [r for r in wandb_records(run_dir) if r.get("type") == "history"]
    assert any("eval/modes_captured" in str(r) for r in history)

    # `forgelab sample`: 2-D samples as CSV and as a scatter plot PNG
    csv = runner.sample(run_dir, 300, run_dir / "samples.csv")
    points = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert points.shape == (300, 2) and np.isfinite(points).all()
    png = runner.sample(run_dir, 300, run_dir / "samples.png")
    assert Image.open(png).size[0] > 100


def test_wgan_gp_logs_its_critic_metrics():
    run_dir = run_experiment("grid25-wgan-gp", "dataset.n_train=5120", "train.epochs=2",
                             "train.eval_every=1", "model.pack=2")
    rows = read_metrics(run_dir)
    for key in ("train/d_loss", "train/g_loss", "train/gradient_penalty",
                "train/wasserstein_distance"):
        values = [row[key] for row in rows if key in row]
        assert values and all(np.isfinite(values)), key
    # n_critic = 2: the generator has taken steps, so g_loss is a number from the first row on
    assert last_metric(run_dir, "train/gradient_penalty") >= 0
    assert 0 <= last_metric(run_dir, "eval/modes_captured") <= 25
    assert 0 <= last_metric(run_dir, "test/high_quality_fraction") <= 1


def test_cgan_on_digits_draws_one_column_per_class(tmp_path):
    run_dir = run_experiment("digits-gan", "model=cgan", "train.epochs=2",
                             "train.eval_every=1", "train.checkpoint_every=2")
    assert last_metric(run_dir, "test/forgelab_digits_classes") >= 1
    accuracy = last_metric(run_dir, "test/forgelab_digits_label_accuracy")
    assert 0 <= accuracy <= 1
    assert last_metric(run_dir, "val/forgelab_digits_fd") > 0
    grids = [row["samples/grid"] for row in read_metrics(run_dir) if "samples/grid" in row]
    assert len(grids) == 2
    png = runner.sample(run_dir, 20, tmp_path / "digits.png")
    width, height = Image.open(png).size
    assert width > height  # 20 samples, 10 per row (one column per class): 2 rows


def test_r1_penalty_is_gamma_half_the_squared_input_gradient_on_real_data():
    # a linear discriminator D(x) = w . x + b has grad_x D = w everywhere: R1 = ||w||^2
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, -4.0]]))
        linear.bias.zero_()

    def discriminator(x, y):
        return linear(x).squeeze(1)

    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    terms = {}
    for gamma in (0.0, 2.0):
        model = SimpleNamespace(options=GANConfig(r1_gamma=gamma), discriminator=discriminator)
        terms[gamma] = GAN.discriminator_loss(model, real, fake, None)
    assert "r1_penalty" not in terms[0.0]
    assert float(terms[2.0]["r1_penalty"]) == pytest.approx(25.0)
    # the logged d_loss is the GAN loss alone; the optimised loss adds gamma / 2 * R1
    assert float(terms[2.0]["d_loss"]) == pytest.approx(float(terms[0.0]["d_loss"]))
    assert float((terms[2.0]["loss"] - terms[0.0]["loss"]).detach()) == pytest.approx(25.0)
    # and the penalty's gradient reaches the weights: d/dw (gamma / 2 ||w||^2) = gamma w
    (with_r1,) = torch.autograd.grad(terms[2.0]["loss"], linear.weight)
    (without,) = torch.autograd.grad(terms[0.0]["loss"], linear.weight)
    torch.testing.assert_close(with_r1 - without, 2.0 * linear.weight.detach())
    # under no_grad (validation) there is no penalty to compute
    with torch.no_grad():
        assert "r1_penalty" not in GAN.discriminator_loss(model, real, fake, None)


def test_spectral_norm_bounds_each_discriminator_layer():
    torch.manual_seed(0)
    critic = Discriminator((2,), "mlp", hidden=32, layers=2, spectral_norm=True)
    for _ in range(30):  # one power iteration per training forward
        critic(torch.randn(16, 2))
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        sigma = float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
        assert sigma == pytest.approx(1.0, abs=0.02)
    plain = Discriminator((2,), "mlp", hidden=32, layers=2)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_gan_regulariser_options_are_checked():
    with pytest.raises(ValidationError, match="r1_gamma"):
        GANConfig(r1_gamma=-1.0)
    with pytest.raises(ValidationError, match="gp_weight"):
        WGANGPConfig(r1_gamma=1.0)
    assert GANConfig().r1_gamma == 0 and not GANConfig().spectral_norm  # off by default


def test_gan_with_r1_logs_the_penalty():
    run_dir = run_experiment("ring8-gan", "dataset.n_train=2560", "train.epochs=1",
                             "train.eval_every=1", "model.r1_gamma=1.0", "model.log_every=5")
    penalties = [row["train/r1_penalty"] for row in read_metrics(run_dir)
                 if "train/r1_penalty" in row]
    assert penalties and all(np.isfinite(penalties)) and max(penalties) > 0
