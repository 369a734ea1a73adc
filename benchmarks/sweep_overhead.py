"""What a launcher costs: the same short trials run four ways, in one go.

    python benchmarks/sweep_overhead.py [--trials 8] [--steps 2048] [--experiment cartpole-ppo]

1. plain: ``forgelab run EXPERIMENT seed=i`` one after another (the reference);
2. ``forgelab sweep EXPERIMENT seed=0:N --workers 1``;
3. ``forgelab sweep ... --workers 2``;
4. ``forgelab sweep ... --launcher ray`` (Ray started on this machine).

Every trial uses one torch thread (``threads=1``) and W&B disabled (the launcher is measured,
not W&B). It prints the wall time of each way, the launcher's overhead per trial against the
plain runs, and the speedups. It is a benchmark, not a test: the figures depend on the machine
and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def forgelab() -> str:
    return shutil.which("forgelab", path=str(Path(sys.executable).parent)) or "forgelab"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(args)}\n{result.stderr}")
    return took, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2048, help="train.total_steps per trial")
    parser.add_argument("--experiment", default="cartpole-ppo")
    parser.add_argument("--skip-ray", action="store_true", help="leave out the ray launcher")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    out = Path(tempfile.mkdtemp(prefix="forgelab-bench-sweep-"))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    common = [f"train.total_steps={args.steps}", "train.video_every=null", "threads=1",
              "device=cpu"]
    n = args.trials
    results: dict[str, float] = {}
    try:
        plain = []
        for seed in range(n):
            took, _ = timed([forgelab(), "run", args.experiment, f"seed={seed}", *common,
                             f"output_dir={out / 'plain'}", "--no-progress"], env)
            plain.append(took)
        results["plain"] = sum(plain)
        sweep = [forgelab(), "sweep", args.experiment, f"seed=0:{n}", *common]
        # the sweep's own start: parse, validate every configuration (what --dry-run does)
        results["sweep_start"], _ = timed([*sweep, f"output_dir={out}", "--dry-run"], env)
        for workers in (1, 2):
            took, _ = timed([*sweep, f"output_dir={out}", "--name", f"w{workers}",
                             "--workers", str(workers)], env)
            results[f"workers{workers}"] = took
        if not args.skip_ray:
            env_ray = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
            took, log = timed([*sweep, f"output_dir={out}", "--name", "ray",
                               "--launcher", "ray"], env_ray)
            results["ray"] = took
            match = re.search(r"started Ray on this machine in ([\d.]+) s", log)
            results["ray_startup"] = float(match[1]) if match else float("nan")
        trial_times = {}  # study -> the trials' own durations (process start to exit)
        for name in ("w1", "w2", "ray"):
            path = out / name / "study.json"
            if path.is_file():
                trials = json.loads(path.read_text())["trials"]
                trial_times[name] = [t["ended"] - t["started"] for t in trials]
    finally:
        shutil.rmtree(out, ignore_errors=True)

    per_plain = results["plain"] / n
    print(f"{n} trials of {args.experiment}, train.total_steps={args.steps}, 1 thread each, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'way':<26}{'wall s':>9}{'per trial s':>13}{'overhead/trial s':>18}{'speedup':>9}")
    print(f"{'plain forgelab run':<26}{results['plain']:>9.1f}{per_plain:>13.2f}{'-':>18}"
          f"{1.0:>9.2f}")
    rows = [("sweep --workers 1", "workers1", 1), ("sweep --workers 2", "workers2", 2)]
    if "ray" in results:
        rows.append(("sweep --launcher ray", "ray", 2))
    for label, key, parallel in rows:
        wall = results[key]
        # the launcher's cost per trial: wall time beyond the plain runs' at this parallelism
        overhead = (wall - results["plain"] / parallel) * parallel / n
        print(f"{label:<26}{wall:>9.1f}{wall / n:>13.2f}{overhead:>18.2f}"
              f"{results['plain'] / wall:>9.2f}")
    print(f"\nsweep start (parse and validate, timed as --dry-run): {results['sweep_start']:.1f} "
          "s, once per sweep, included above")
    if "ray" in results:
        print(f"ray: Ray started in {results['ray_startup']:.1f} s (included above)")
    # Robust to the machine's load changing between the ways: what the launcher adds beyond
    # its trials' own processes, and how many trials it kept running on average.
    print(f"\n{'inside the studies':<26}{'trial s':>9}{'busy slots':>12}{'gap/trial s':>13}")
    print(f"{'plain forgelab run':<26}{per_plain:>9.2f}{1.0:>12.2f}{'0':>13}")
    for name, key, parallel in (("w1", "workers1", 1), ("w2", "workers2", 2), ("ray", "ray", 2)):
        if name not in trial_times:
            continue
        durations = trial_times[name]
        busy = results[key] - results["sweep_start"] - results.get(
            "ray_startup", 0.0) * (name == "ray")
        gap = (busy * parallel - sum(durations)) / n
        print(f"{'study ' + name:<26}{sum(durations) / n:>9.2f}{sum(durations) / busy:>12.2f}"
              f"{gap:>13.2f}")
    print("trial s: mean duration of a trial's process; busy slots: trials running at once on "
          "average after the sweep's start; gap/trial: idle worker time per trial")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "trial_durations": trial_times,
                                               "trials": n, "steps": args.steps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
