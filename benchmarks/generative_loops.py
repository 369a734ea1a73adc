"""Benchmark of forgelab's generative side (``make bench-generative``; not a timed test).

1. **VAE on digits, forgelab vs a plain PyTorch loop.** forgelab's ``vae`` (the
   ``digits-vae`` experiment, trained through the real runner: W&B offline, validation, media,
   checkpoints) beside :func:`plain_vae_loop`, a plain training loop written out below with the
   identical architecture (MLP 64-256-256-2x16 / 16-256-256-64, Bernoulli decoder) and
   hyperparameters (Adam 1e-3, batch 64, dynamic binarisation, 10-epoch KL warm-up), in one
   process, alternating between the loops to share the machine's load fairly. It prints the
   time per epoch of each (the training passes alone, as wall and CPU time, and end to end from
   the first to the last validation, including validation, media, checkpoints and logging every
   ``eval_every`` epochs; target ratio forgelab / plain <= 1.1) and the test NLL of each (IWAE
   bound with k = 1000, the same measuring function for all). A third loop, the plain one with
   torch's fused Adam kernel (which forgelab uses), shows how much of the difference is that
   kernel and how much is forgelab's own per-batch and per-evaluation work.
2. **GAN mode coverage** on ``ring8`` and ``grid25`` over >= 5 seeds, from
   `benchmarks/gan_modes.py`.

Run::

    python benchmarks/generative_loops.py                    # both parts
    python benchmarks/generative_loops.py --epochs 50 --repeats 3 --skip-gan
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forgelab.generative.datasets import DigitsConfig, digits
from forgelab.generative.metrics import importance_sampled_nll

LATENT, HIDDEN, LR, BATCH, WARMUP_EPOCHS = 16, 256, 1e-3, 64, 10


# ------------------------------------------------------------------ the plain loop
def plain_vae_loop(epochs: int, eval_every: int, seed: int, device: torch.device,
                   nll_samples: int = 1000, fused_adam: bool = False) -> dict[str, Any]:
    """A VAE on binarised digits written as a plain PyTorch loop, without forgelab's runner.

    :param fused_adam: use torch's fused Adam kernel, as forgelab does (the default is the
        ``torch.optim.Adam(params, lr)`` a plain loop usually has).

    :return: per-epoch training seconds, end-to-end seconds, test NLL and parameter count.
    """
    torch.manual_seed(seed)
    data = digits(DigitsConfig(binarize=True), seed)
    train_x = data.train.x.to(device)
    val_x, test_x = data.val.x.to(device), data.test.x.to(device)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, HIDDEN), nn.ReLU(),
                            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                            nn.Linear(HIDDEN, 2 * LATENT)).to(device)
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                            nn.ReLU(), nn.Linear(HIDDEN, 64)).to(device)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR, fused=fused_adam or None)  # None: default
    order_rng = torch.Generator().manual_seed(seed)

    def neg_elbo_terms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = encoder(x).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(decoder(z), x.flatten(1),
                                                   reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return recon, kl

    n, steps_per_epoch = len(train_x), len(train_x) // BATCH
    step, epoch_seconds, epoch_cpu, val_history, val_times = 0, [], [], [], []
    for epoch in range(1, epochs + 1):
        t0, cpu0 = time.perf_counter(), time.process_time()
        order = torch.randperm(n, generator=order_rng)
        for start in range(0, n - BATCH + 1, BATCH):
            x = torch.bernoulli(train_x[order[start:start + BATCH].to(device)])
            recon, kl = neg_elbo_terms(x)
            beta = min(1.0, step / (WARMUP_EPOCHS * steps_per_epoch))
            loss = (recon + beta * kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_cpu.append(time.process_time() - cpu0)
        if epoch % eval_every == 0 or epoch == epochs:
            with torch.no_grad():
                recon, kl = neg_elbo_terms(val_x)
                val_history.append(float((recon + kl).mean()))
            val_times.append(time.perf_counter())

    def log_weights(x: torch.Tensor, y: Any, k: int) -> torch.Tensor:
        mu, log_var = encoder(x).chunk(2, dim=1)
        std = torch.exp(0.5 * log_var)
        eps = torch.randn(k, *mu.shape, device=mu.device)
        z = mu + std * eps
        logits = decoder(z.reshape(-1, LATENT)).view(k, len(x), 64)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.flatten(1).expand_as(logits), reduction="none").sum(-1)
        return log_px + (-0.5 * z.pow(2)).sum(-1) - (-0.5 * eps.pow(2) - std.log()).sum(-1)

    with torch.no_grad():
        nll = importance_sampled_nll(log_weights, [(test_x[i:i + 100], None)
                                                   for i in range(0, len(test_x), 100)],
                                     k=nll_samples)
    return {"train_seconds": sum(epoch_seconds), "train_cpu": sum(epoch_cpu),
            "span_seconds": val_times[-1] - val_times[0], "nll": nll,
            "val_neg_elbo": val_history[-1], "parameters": sum(p.numel() for p in params)}


# -------------------------------------------------------------------- the forgelab run
def forgelab_vae_run(epochs: int, eval_every: int, seed: int, device: str, output_dir: str,
                     nll_samples: int = 1000) -> dict[str, Any]:
    """The ``digits-vae`` experiment through the runner (W&B offline unless WANDB_MODE says
    otherwise); timings are read back from its metrics.jsonl."""
    from forgelab.core import runner
    from forgelab.core.config import load_experiment

    config = load_experiment("digits-vae", [
        f"train.epochs={epochs}", f"train.eval_every={eval_every}", f"seed={seed}",
        f"device={device}", f"output_dir={output_dir}", "tracking.mode=offline",
        f"model.nll_samples={nll_samples}", f"model.latent_dim={LATENT}",
        f"model.hidden={HIDDEN}", f"model.learning_rate={LR}", f"model.batch_size={BATCH}",
        f"model.kl_warmup_epochs={WARMUP_EPOCHS}", "model.arch=mlp", "model.beta=1.0",
        "dataset.binarize=true"])
    run_dir = runner.train(config, show_progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in rows if "val/neg_elbo" in r]
    summary = [r["summary"] for r in rows if "summary" in r][-1]
    # perf/ rows hold the mean over the epochs since the previous evaluation
    windows = [(r["epoch"] - p["epoch"], r)
               for p, r in zip([{"epoch": 0}, *vals], vals, strict=False)]
    from forgelab.core.checkpoints import CheckpointManager

    state, _ = CheckpointManager(run_dir / "checkpoints").load("latest")
    params = sum(t.numel() for k, t in state["component"]["networks"]["vae"].items()
                 if not k.endswith("log_scale"))
    return {"train_seconds": sum(n * r["perf/epoch_seconds"] for n, r in windows),
            "train_cpu": sum(n * r["perf/epoch_cpu_seconds"] for n, r in windows),
            "span_seconds": vals[-1]["_time"] - vals[0]["_time"],
            "nll": summary[f"test/nll_k{nll_samples}"], "val_neg_elbo": vals[-1]["val/neg_elbo"],
            "parameters": params, "run_dir": str(run_dir)}


#: the loops compared: forgelab, the plain loop as usually written, and the plain loop with
#: forgelab's fused Adam (what is left is forgelab's own overhead)
LOOPS = {"forgelab": "forgelab", "plain": "plain PyTorch", "plain_fused": "plain, fused Adam"}


def vae_comparison(epochs: int = 50, eval_every: int = 10, repeats: int = 2, seed: int = 0,
                   device: str = "cpu", nll_samples: int = 1000) -> dict[str, Any]:
    """Alternate the three loops ``repeats`` times each; medians of the timings."""
    from forgelab.core.config import DEFAULT_THREADS

    # The plain loops get the threads forgelab's runner gives every job by default.
    torch.set_num_threads(DEFAULT_THREADS)
    # forgelab's runner flushes denormals to zero (process-wide): the plain loops get it too,
    # so the comparison measures the loops, not that setting.
    from forgelab.core.device import configure_cpu_math

    configure_cpu_math()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in LOOPS}
    with tempfile.TemporaryDirectory(prefix="forgelab-vae-bench-") as tmp:
        for r in range(repeats):
            order = list(LOOPS) if r % 2 == 0 else list(LOOPS)[::-1]
            for name in order:
                if name == "forgelab":
                    run = forgelab_vae_run(epochs, eval_every, seed, device,
                                           str(Path(tmp) / f"r{r}"), nll_samples)
                else:
                    run = plain_vae_loop(epochs, eval_every, seed, torch.device(device),
                                         nll_samples, fused_adam=name == "plain_fused")
                results[name].append(run)
    summary: dict[str, Any] = {"epochs": epochs, "eval_every": eval_every, "repeats": repeats,
                               "device": device, "nll_samples": nll_samples}
    span_epochs = epochs - eval_every if epochs > eval_every else 1
    for name, runs in results.items():
        summary[name] = {
            "train_epoch_s": statistics.median(r["train_seconds"] / epochs for r in runs),
            "train_epoch_cpu_s": statistics.median(r["train_cpu"] / epochs for r in runs),
            # from the end of the first validation to the end of the last: training passes,
            # validations, media, checkpoints and logging, without start-up and final test
            "end_to_end_epoch_s": statistics.median(r["span_seconds"] / span_epochs
                                                    for r in runs),
            "test_nll": statistics.fmean(r["nll"] for r in runs),
            "val_neg_elbo": statistics.fmean(r["val_neg_elbo"] for r in runs),
            "parameters": runs[0]["parameters"],
        }
    for name in ("plain", "plain_fused"):
        summary[f"ratio_{name}"] = {
            key: summary["forgelab"][key] / summary[name][key]
            for key in ("train_epoch_s", "train_epoch_cpu_s", "end_to_end_epoch_s")}
    return summary


def format_vae_table(s: dict[str, Any]) -> str:
    k = f"k={s['nll_samples']}"
    lines = [
        f"VAE on digits ({s['epochs']} epochs, validation every {s['eval_every']}, "
        f"{s['repeats']} alternating repeats, device {s['device']}, 1 torch thread)",
        f"| loop | params | s / epoch, training pass (wall) | (CPU) | "
        f"s / epoch, end to end (wall) | val -ELBO | test NLL ({k}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in LOOPS.items():
        row = s[name]
        lines.append(f"| {label} | {row['parameters']} | {row['train_epoch_s']:.4f} | "
                     f"{row['train_epoch_cpu_s']:.4f} | {row['end_to_end_epoch_s']:.4f} | "
                     f"{row['val_neg_elbo']:.2f} | {row['test_nll']:.2f} |")
    for name in ("plain", "plain_fused"):
        r = s[f"ratio_{name}"]
        lines.append(f"| ratio forgelab / {LOOPS[name]} | | {r['train_epoch_s']:.3f} | "
                     f"{r['train_epoch_cpu_s']:.3f} | {r['end_to_end_epoch_s']:.3f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="forgelab generative benchmark")
    parser.add_argument("--epochs", type=int, default=50, help="VAE epochs (default 50)")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats per loop")
    parser.add_argument("--nll-samples", type=int, default=1000, help="k of the IWAE NLL")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=5, help="GAN seeds per pair (>= 5)")
    parser.add_argument("--jobs", type=int, default=1, help="GAN runs in parallel")
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--skip-gan", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_vae:
        result = vae_comparison(args.epochs, args.eval_every, args.repeats, 0, args.device,
                                args.nll_samples)
        print(format_vae_table(result), flush=True)
        ratios = result["ratio_plain"]
        met = max(ratios["train_epoch_s"], ratios["end_to_end_epoch_s"]) <= 1.1
        print(f"target forgelab / plain PyTorch <= 1.1 per epoch (training pass and end to "
              f"end): {'met' if met else 'NOT met'}\n", flush=True)
    if not args.skip_gan:
        try:
            from gan_modes import mode_coverage_table
        except ImportError as exc:
            print(f"GAN mode-coverage table unavailable: {exc}")
            return 1
        print(f"GAN mode coverage ({args.seeds} seeds, 2,500 samples each):", flush=True)
        mode_coverage_table(seeds=args.seeds, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
