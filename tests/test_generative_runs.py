"""Generative runs end to end: W&B media read back from the offline run, exact resume, and
`forgelab sample` on a saved run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import forgelab_cli, latest_state, read_metrics, run_experiment, wandb_records
from PIL import Image

from forgelab.core import runner
from forgelab.core.errors import ForgelabError


def _history(records: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def test_vae_run_logs_media_to_wandb_and_forgelab_sample_writes_a_png(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = run_experiment("digits-vae", "train.epochs=2", "train.eval_every=1",
                             "model.nll_samples=5")
    records = wandb_records(run_dir)
    history = _history(records)
    for key in ("samples/grid", "samples/reconstructions", "samples/traversal"):
        images = [row for row in history if row.get(f"{key}._type") == "image-file"]
        assert [row["epoch"] for row in images] == [1, 2], key
    assert any("train/loss" in row and "step" in row for row in history)
    assert [row["epoch"] for row in history if "val/neg_elbo" in row] == [1, 2]
    final = [row for row in history if "test/nll_k5" in row]
    assert len(final) == 1 and final[0]["test/nll_k5"] <= final[0]["test/neg_elbo"] + 1e-6
    aliases = [r["artifact"]["aliases"] for r in records if r.get("type") == "artifact"]
    assert ["best", "latest"] in [sorted(a) for a in aliases] and ["latest"] in aliases
    # the same figures reach the run summary in W&B and metrics.jsonl
    summary = [r["summary"] for r in read_metrics(run_dir) if "summary" in r][-1]
    assert summary["test/nll_k5"] == pytest.approx(final[0]["test/nll_k5"])

    out = tmp_path / "x.png"
    result = forgelab_cli("sample", str(run_dir), "--n", "16", "--out", str(out))
    assert result.returncode == 0, result.stderr
    pixels = np.asarray(Image.open(out))
    # a 4x4 grid of 8x8 digits, upscaled 4x, with 1-pixel borders: (4 * 9 + 1) * 4 = 148
    assert pixels.shape == (148, 148, 3) and pixels.std() > 10
    # in-process from here (a subprocess per call is slow): W&B is not under test any more
    monkeypatch.setenv("WANDB_MODE", "disabled")
    again = runner.sample(run_dir, 16, tmp_path / "y.png")
    assert np.array_equal(np.asarray(Image.open(again)), pixels)  # fixed sampling seed
    with pytest.raises(ForgelabError, match="use a .png file") as refused:
        runner.sample(run_dir, 16, tmp_path / "x.csv")
    assert str(tmp_path / "x.csv") in refused.value.message  # the folder too, not just x.csv
    # a checkpoint by its step, as eval and watch take it (the epoch-1 one here)
    from_step = np.asarray(Image.open(runner.sample(run_dir, 16, tmp_path / "z.png",
                                                    which="1")))
    latest = np.asarray(Image.open(runner.sample(run_dir, 16, tmp_path / "l.png",
                                                 which="latest")))  # epoch 2
    assert from_step.shape == pixels.shape and not np.array_equal(from_step, latest)


def test_autoencoder_cannot_sample_and_says_so(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = run_experiment("digits-ae", "train.epochs=1")
    with pytest.raises(ForgelabError, match="does not define a distribution"):
        runner.sample(run_dir, 16, tmp_path / "x.png")


def _final_state(run_dir: Path) -> dict:
    return latest_state(run_dir)["component"]


def test_resumed_run_is_identical_to_an_uninterrupted_one(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")  # tracking is not under test here
    common = ("model.nll_samples=5", "train.eval_every=1",
              "model.kl_warmup_epochs=1", "model.batch_size=100")
    straight = run_experiment("digits-vae", "train.epochs=3", *common)
    first = run_experiment("digits-vae", "train.epochs=2", *common)
    resumed = runner.resume(first, ["train.epochs=3"], show_progress=False)
    a, b = _final_state(straight), _final_state(resumed)
    assert a["step"] == b["step"] == 3 and a["batches_seen"] == b["batches_seen"]
    for key, tensor in a["networks"]["vae"].items():
        assert torch.equal(tensor, b["networks"]["vae"][key]), key
    assert torch.equal(a["generator"], b["generator"])
    test_a = [r["summary"] for r in read_metrics(straight) if "summary" in r][-1]
    test_b = [r["summary"] for r in read_metrics(resumed) if "summary" in r][-1]
    assert test_a == test_b


def _vae_component(monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None):
    """A digits VAE built by the runner's own functions (no W&B); with ``stop_after``, a
    subclass asks the run to stop after that many batches, as Ctrl-C would."""
    from forgelab.core.config import load_experiment
    from forgelab.generative.autoencoders import VAE

    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = load_experiment("digits-vae", ["train.epochs=2", "model.nll_samples=5",
                                            "model.batch_size=100", "output_dir=runs"])
    run = runner.prepare(config)
    run_dir, run_id = runner.create_run_dir(config)
    ctx = runner.build_context(run, run_dir, run_id, "train", False, {}, show_progress=False)

    class StopsMidEpoch(VAE):
        def train_step(self, x, y):
            losses = super().train_step(x, y)
            if self.batches_seen + 1 == stop_after:
                self.ctx.request_stop()
            return losses

    return (StopsMidEpoch if stop_after else VAE)(run.options, ctx)


def test_stop_inside_an_epoch_resumes_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    from forgelab.core.checkpoints import capture_rng, restore_rng, to_safe

    straight = _vae_component(monkeypatch)
    straight.fit()
    stopped = _vae_component(monkeypatch, stop_after=17)  # 12 batches per epoch: in epoch 2
    stopped.fit()
    assert stopped.step == 1 and stopped.batches_seen == 17 and stopped._order is not None
    state, rng = to_safe(stopped.state_dict()), capture_rng()
    resumed = _vae_component(monkeypatch)
    resumed.load_state_dict(state)
    restore_rng(rng)
    resumed.fit()
    assert resumed.step == straight.step == 2
    for key, tensor in straight.networks["vae"].state_dict().items():
        assert torch.equal(tensor, resumed.networks["vae"].state_dict()[key]), key
