"""GAN, WGAN-GP and CGAN trained through the real runner (fixed seeds, short budgets)."""

from __future__ import annotations

import numpy as np
from conftest import last_metric, read_metrics, run_experiment, wandb_records
from PIL import Image

from forgelab.core import runner

# ~1,000 generator steps: 12 epochs of 80 batches of 256 points (the learning rates decay to 0
# over these 12 epochs)
RING_BUDGET = ("dataset.n_train=20480", "train.epochs=12", "train.eval_every=4",
               "train.checkpoint_every=8")


def test_gan_captures_the_ring_modes():
    run_dir = run_experiment("ring8-gan", *RING_BUDGET)
    rows = read_metrics(run_dir)
    # the VEEGAN / PacGAN metrics on 2,500 samples of the final generator
    assert last_metric(run_dir, "test/modes_captured") >= 6
    # uniform noise over the ring's square scores ~1 %, the data itself 98.9 %
    assert last_metric(run_dir, "test/high_quality_fraction") > 0.3
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
    # n_critic = 5: the generator has taken steps, so g_loss is a number from the first row on
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
