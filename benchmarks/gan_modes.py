"""Benchmark: GAN mode coverage on ``ring8`` and ``grid25`` over several seeds.

Trains each (model, dataset) pair through the real runner, from the experiment files
``experiments/{ring8,grid25}-gan.yaml`` and ``grid25-wgan-gp.yaml`` (the WGAN-GP on ``ring8``
is ``grid25-wgan-gp`` with ``dataset=ring8``), once per seed, and prints the VEEGAN / PacGAN
metrics of the final generator (2,500 samples, :mod:`forgelab.generative.toy`): modes captured
and % high-quality samples, as mean +- std and the minimum over the seeds.

Target: all 8 ring modes and at least 24 of the 25 grid modes with at least 90 % high-quality
samples, beyond the plain-GAN baselines in the tables of VEEGAN and PacGAN. The real data score
about 98.9 % (a 2-D Gaussian sample lies within 3 std with probability 1 - exp(-9/2)).

Run::

    python benchmarks/gan_modes.py                 # 5 seeds, gan + wgan-gp
    python benchmarks/gan_modes.py --seeds 10 --models gan --jobs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: experiment file of each (model, dataset) pair, and the overrides that make it
EXPERIMENTS: dict[tuple[str, str], tuple[str, list[str]]] = {
    ("gan", "ring8"): ("ring8-gan", []),
    ("gan", "grid25"): ("grid25-gan", []),
    ("wgan-gp", "ring8"): ("grid25-wgan-gp", ["dataset=ring8"]),
    ("wgan-gp", "grid25"): ("grid25-wgan-gp", []),
}


def train_and_measure(model: str, dataset: str, seed: int, output_dir: str,
                      overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train one (model, dataset, seed) through the runner; return its final test metrics."""
    from forgelab.core import runner
    from forgelab.core.config import load_experiment

    # Threads: the runner applies the experiment's `threads` (default 1), as `forgelab run` does.
    name, base = EXPERIMENTS[(model, dataset)]
    config = load_experiment(name, [*base, f"seed={seed}", "tracking.mode=disabled",
                                    f"output_dir={output_dir}", *overrides])
    started, cpu_started = time.perf_counter(), time.process_time()
    run_dir = runner.train(config, show_progress=False)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started  # steadier than wall time on a busy machine
    summary: dict[str, Any] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        summary.update(row.get("summary", {}))
    return {"model": model, "dataset": dataset, "seed": seed, "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "modes": summary["test/modes_captured"],
            "high_quality": 100.0 * summary["test/high_quality_fraction"],
            "run_dir": str(run_dir)}


def _mean_std_min(values: list[float]) -> tuple[float, float, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, min(values)


def mode_coverage_table(seeds: int = 5, models: tuple[str, ...] = ("gan", "wgan-gp"),
                        datasets: tuple[str, ...] = ("ring8", "grid25"), jobs: int = 1,
                        overrides: tuple[str, ...] = (), output_dir: str | None = None,
                        verbose: bool = True) -> list[dict[str, Any]]:
    """Train every (model, dataset) pair with seeds ``0 .. seeds-1``, print the table and
    return one row per pair.

    :param seeds: seeds per pair (at least 5 for the benchmark).
    :param jobs: runs in parallel (processes, one torch thread each).
    :param overrides: extra ``key=value`` overrides for every run (e.g. ``train.epochs=5``).
    :param output_dir: where the runs go (default: a temporary folder, deleted afterwards).
    :return: rows with ``model``, ``dataset``, ``n_modes``, ``modes_mean/std/min``,
        ``hq_mean/std/min`` (percent), ``seconds_mean``, ``cpu_seconds_mean`` and the per-seed
        ``runs``.
    """
    pairs = [(m, d) for m in models for d in datasets]
    with tempfile.TemporaryDirectory(prefix="forgelab-gan-bench-") as tmp:
        out = output_dir or tmp
        tasks = [(m, d, s, out, tuple(overrides)) for m, d in pairs for s in range(seeds)]
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(train_and_measure, *zip(*tasks, strict=True)))
        else:
            results = []
            for task in tasks:
                results.append(train_and_measure(*task))
                if verbose:
                    r = results[-1]
                    print(f"  {r['model']:<8} {r['dataset']:<7} seed {r['seed']}: "
                          f"{r['modes']:.0f} modes, {r['high_quality']:.1f} % high quality "
                          f"({r['seconds']:.0f} s, {r['cpu_seconds']:.0f} CPU s)", flush=True)
    rows = []
    for model, dataset in pairs:
        runs = [r for r in results if r["model"] == model and r["dataset"] == dataset]
        modes = _mean_std_min([r["modes"] for r in runs])
        quality = _mean_std_min([r["high_quality"] for r in runs])
        rows.append({"model": model, "dataset": dataset, "seeds": len(runs),
                     "n_modes": 8 if dataset == "ring8" else 25,
                     "modes_mean": modes[0], "modes_std": modes[1], "modes_min": modes[2],
                     "hq_mean": quality[0], "hq_std": quality[1], "hq_min": quality[2],
                     "seconds_mean": statistics.fmean(r["seconds"] for r in runs),
                     "cpu_seconds_mean": statistics.fmean(r["cpu_seconds"] for r in runs),
                     "runs": [{k: r[k] for k in ("seed", "modes", "high_quality", "cpu_seconds")}
                              for r in runs]})
    if verbose:
        print(format_table(rows))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| model | dataset | seeds | modes captured (mean ± std) | min | "
             "% high quality (mean ± std) | min | s / run | CPU s / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dataset']} | {r['seeds']} | "
                     f"{r['modes_mean']:.1f} ± {r['modes_std']:.1f} / {r['n_modes']} | "
                     f"{r['modes_min']:.0f} | {r['hq_mean']:.1f} ± {r['hq_std']:.1f} | "
                     f"{r['hq_min']:.1f} | {r['seconds_mean']:.0f} | "
                     f"{r['cpu_seconds_mean']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per pair (default 5)")
    parser.add_argument("--models", nargs="+", default=["gan", "wgan-gp"],
                        choices=["gan", "wgan-gp"])
    parser.add_argument("--datasets", nargs="+", default=["ring8", "grid25"],
                        choices=["ring8", "grid25"])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--output-dir", help="keep the runs here (default: a temp folder)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides for every run, e.g. train.epochs=10")
    args = parser.parse_args(argv)
    mode_coverage_table(args.seeds, tuple(args.models), tuple(args.datasets), args.jobs,
                        tuple(args.overrides), args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
