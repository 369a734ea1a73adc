"""Measure the distributions behind the suite's learning-test bounds.

Every test that trains something and asserts a quality bound runs one fixed seed. Another CPU
family (vector width, fused multiply-add) lands on other numbers for that seed, so a bound must
sit well inside the distribution over seeds, not at the edge of one machine's number. This
command runs each such test's exact budget over many seeds, with denormal flushing on (what
every job does) and off, and prints min / median / max of every bounded metric beside the
test's bound.

    python benchmarks/learning_bounds.py --seeds 10 --workers 2 --json bounds.jsonl
    python benchmarks/learning_bounds.py --summarize bounds.jsonl
    python benchmarks/learning_bounds.py --cases gan-ring8 vae --seeds 3

Each run is a fresh process (one torch thread, W&B disabled, its own temporary folder), like a
test under pytest-xdist. The cases mirror the tests named in their ``test`` field: keep them in
step when a test's budget changes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One learning test: its experiment and budget, and the metrics its asserts bound."""

    test: str
    experiment: str
    overrides: tuple[str, ...]
    metrics: Callable[[Rows], dict[str, float]]
    bounds: dict[str, str] = field(default_factory=dict)  # metric -> the test's assert


def _values(rows: Rows, key: str) -> list[float]:
    return [row[key] for row in rows if key in row]


def _summary(rows: Rows) -> dict[str, Any]:
    return [row["summary"] for row in rows if "summary" in row][-1]


def _evals(rows: Rows) -> dict[str, float]:
    evals = _values(rows, "eval/return_mean")
    return {"max_eval": max(evals), "first_eval": evals[0], "last_eval": evals[-1]}


def _a2c(rows: Rows) -> dict[str, float]:
    return {**_evals(rows), "last_entropy": _values(rows, "train/entropy")[-1]}


def _reinforce(rows: Rows) -> dict[str, float]:
    returns = _values(rows, "train/episode_return")
    growth = (sum(returns[-50:]) / 50) / (sum(returns[:50]) / 50)
    return {**_evals(rows), "return_growth": growth}


def _sac(rows: Rows) -> dict[str, float]:
    evals = _evals(rows)
    return {**evals, "gain": evals["last_eval"] - evals["first_eval"]}


def _gan(rows: Rows) -> dict[str, float]:
    return {"modes": _values(rows, "test/modes_captured")[-1],
            "hq": _values(rows, "test/high_quality_fraction")[-1]}


def _ae(rows: Rows) -> dict[str, float]:
    from forgelab.generative.datasets import DigitsConfig, digits

    data = digits(DigitsConfig(), 0)
    baseline = float(((data.test.x - data.train.x.mean(0)) ** 2).mean())
    return {"mse_over_baseline": _summary(rows)["test/mse"] / baseline}


def _vae(rows: Rows) -> dict[str, float]:
    from forgelab.generative.datasets import DigitsConfig, digits

    data = digits(DigitsConfig(binarize=True), 0)
    p = data.train.x.mean(0).clamp(1e-3, 1 - 1e-3)
    x = data.test.x
    baseline = float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())
    result = _summary(rows)
    return {"baseline_minus_nll": baseline - result["test/nll_k100"],
            "active_units": result["test/active_units"], "kl": result["test/kl"],
            "classes": result["test/forgelab_digits_classes"]}


def _cvae(rows: Rows) -> dict[str, float]:
    result = _summary(rows)
    return {"label_accuracy": result["test/forgelab_digits_label_accuracy"],
            "classes": result["test/forgelab_digits_classes"]}


_NO_MEDIA = ("train.video_every=null", "train.checkpoint_every=null")
CASES: dict[str, Case] = {
    "dqn": Case("test_agent_dqn.py::test_dqn_learns_cartpole", "cartpole-dqn",
                ("device=cpu", "train.total_steps=25000", "train.eval_every=1000", *_NO_MEDIA),
                _evals, {"max_eval": ">= 475"}),
    "ppo": Case("test_agent_ppo.py::test_ppo_solves_cartpole", "cartpole-ppo",
                ("device=cpu", "train.total_steps=50000", "train.eval_every=10000", *_NO_MEDIA),
                _evals, {"max_eval": ">= 475", "last_eval": ">= 400"}),
    "a2c": Case("test_agent_a2c.py::test_a2c_learns_cartpole", "cartpole-a2c",
                ("device=cpu", "train.total_steps=30000", "train.eval_every=5000", *_NO_MEDIA),
                _a2c, {"max_eval": ">= 195", "last_entropy": "< 0.6"}),
    "reinforce": Case("test_agent_reinforce.py::test_reinforce_learns_cartpole",
                      "cartpole-reinforce",
                      ("device=cpu", "train.total_steps=40000", "train.eval_every=5000",
                       *_NO_MEDIA),
                      _reinforce, {"max_eval": ">= 195", "return_growth": "> 2"}),
    "sb3-ppo": Case("test_sb3_learning.py::test_sb3_ppo_solves_cartpole", "cartpole-sb3-ppo",
                    ("train.total_steps=30000", "train.eval_every=5000", *_NO_MEDIA),
                    _evals, {"max_eval": ">= 475", "first_eval": "< 475"}),
    "sb3-sac": Case("test_sb3_learning.py::test_sb3_sac_improves_on_pendulum",
                    "pendulum-sb3-sac",
                    ("train.total_steps=4000", "train.eval_every=1000", "train.eval_episodes=5",
                     *_NO_MEDIA, "agent.batch_size=64",
                     "agent.policy_kwargs={net_arch: [64, 64]}",
                     "agent.save_replay_buffer=false"),
                    _sac, {"last_eval": ">= -700", "gain": ">= 600"}),
    "gridworld-dqn": Case("test_envs_learning.py::test_native_agents_solve_builtin_envs",
                          "gridworld-dqn", (), _evals,
                          {"first_eval": "< 0.93", "last_eval": ">= 0.93"}),
    "gridworld-ppo": Case("test_envs_learning.py::test_native_agents_solve_builtin_envs",
                          "gridworld-ppo", (), _evals,
                          {"first_eval": "< 0.93", "last_eval": ">= 0.93"}),
    "pointmass-ppo": Case("test_envs_learning.py::test_native_agents_solve_builtin_envs",
                          "pointmass-ppo", (), _evals,
                          {"first_eval": "< -6", "last_eval": ">= -7"}),
    "gan-ring8": Case("test_generative_gans.py::test_gan_captures_the_ring_modes", "ring8-gan",
                      ("dataset.n_train=20480", "train.epochs=12", "train.eval_every=4",
                       "train.checkpoint_every=8"),
                      _gan, {"modes": ">= 6", "hq": "> 0.3"}),
    "ae": Case("test_generative_autoencoders.py::test_autoencoder_beats_the_mean_image",
               "digits-ae", ("train.epochs=15", "train.eval_every=5",
                             "train.checkpoint_every=null"),
               _ae, {"mse_over_baseline": "< 0.4"}),
    "vae": Case("test_generative_autoencoders.py::test_vae_nll_beats_a_factorised_bernoulli",
                "digits-vae", ("train.epochs=30", "train.eval_every=10", "model.nll_samples=100",
                               "model.learning_rate=2e-3", "train.checkpoint_every=null"),
                _vae, {"baseline_minus_nll": "> 2.5", "active_units": ">= 3", "kl": "> 1",
                       "classes": ">= 6"}),
    "cvae": Case("test_generative_autoencoders.py::test_cvae_samples_follow_their_labels",
                 "digits-cvae", ("train.epochs=30", "train.eval_every=30",
                                 "model.nll_samples=10", "model.learning_rate=2e-3",
                                 "train.checkpoint_every=null"),
                 _cvae, {"label_accuracy": "> 0.6", "classes": "== 10"}),
}
# Not a training run through the runner: the digits scoring classifier's own training.
CLASSIFIER = "digits-classifier"
CLASSIFIER_TEST = "test_generative_metrics.py::test_digits_score_ranks_real_images"


def _run_one(case_name: str, seed: int, flush_denormal: bool) -> dict[str, Any]:
    """One seeded run in a fresh process and folder; returns the bounded metrics."""
    os.environ.update(WANDB_MODE="disabled", WANDB_SILENT="true", SDL_VIDEODRIVER="dummy",
                      OMP_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)
    from forgelab.core import device

    if not flush_denormal:  # every job calls configure_cpu_math(); make it switch flushing off
        device.configure_cpu_math = lambda flush_denormal=True: bool(
            torch.set_flush_denormal(False))
    row: dict[str, Any] = {"case": case_name, "seed": seed, "flush_denormal": flush_denormal}
    if case_name == CLASSIFIER:
        device.configure_cpu_math()
        from forgelab.generative.metrics import digits_classifier

        row["metrics"] = {"accuracy": digits_classifier(seed)[1]}
        return row
    from forgelab.core import runner
    from forgelab.core.config import load_experiment

    case = CASES[case_name]
    with tempfile.TemporaryDirectory(prefix="bounds-") as tmp:
        os.chdir(tmp)
        config = load_experiment(EXPERIMENTS / f"{case.experiment}.yaml",
                                 [*case.overrides, f"seed={seed}", "tracking.mode=disabled",
                                  f"output_dir={tmp}/runs"])
        run_dir = runner.train(config, show_progress=False)
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        row["metrics"] = case.metrics(rows)
    return row


def summarize(rows: list[dict[str, Any]]) -> str:
    """A table: per case, flushing mode and metric, min / median / max over the seeds."""
    groups: dict[tuple[str, bool, str], list[float]] = {}
    for row in rows:
        for metric, value in row["metrics"].items():
            groups.setdefault((row["case"], row["flush_denormal"], metric), []).append(value)
    lines = ["| case | flush | metric | n | min | median | max | test's bound |",
             "|---|---|---|---|---|---|---|---|"]
    for (case, flush, metric), values in sorted(groups.items()):
        bound = (CASES[case].bounds.get(metric, "") if case in CASES
                 else "> 0.9" if metric == "accuracy" else "")
        lines.append(f"| {case} | {'on' if flush else 'off'} | {metric} | {len(values)} | "
                     f"{min(values):.4g} | {statistics.median(values):.4g} | "
                     f"{max(values):.4g} | {bound} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=[*CASES, CLASSIFIER],
                        choices=[*CASES, CLASSIFIER])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--flush", choices=["on", "off", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="append one JSON line per run to this file")
    parser.add_argument("--summarize", type=Path, help="print the table of a saved --json file")
    args = parser.parse_args(argv)
    if args.summarize:
        lines = args.summarize.read_text().splitlines()
        print(summarize([json.loads(line) for line in lines if line.strip()]))
        return 0
    flushes = {"on": [True], "off": [False], "both": [True, False]}[args.flush]
    jobs = [(case, seed, flush) for case in args.cases for flush in flushes
            for seed in range(args.first_seed, args.first_seed + args.seeds)]
    rows = []
    with ProcessPoolExecutor(args.workers, max_tasks_per_child=1) as pool:
        futures = {pool.submit(_run_one, *job): job for job in jobs}
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if args.json:
                with args.json.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
    print(summarize(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
