"""Plot a forgelab MinAtar Breakout PPO run beside Young & Tian (2019)'s published curves.

Usage: python benchmarks/minatar_curve.py RUN_DIR OUT.png  (needs matplotlib)
Reads RUN_DIR/metrics.jsonl (train/episode_return, eval/return_mean vs global_step) and prints
the summary figures used in the README text as JSON.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

run = Path(sys.argv[1])
out = Path(sys.argv[2])

train_steps, train_ret, eval_steps, eval_ret, eval_std, sps = [], [], [], [], [], []
times = []
for line in (run / "metrics.jsonl").read_text().splitlines():
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        continue
    times.append(row.get("_time"))
    if "train/episode_return" in row:
        train_steps.append(row["global_step"])
        train_ret.append(row["train/episode_return"])
    if "eval/return_mean" in row:
        eval_steps.append(row["global_step"])
        eval_ret.append(row["eval/return_mean"])
        eval_std.append(row.get("eval/return_std", np.nan))
    if "perf/sps" in row:
        sps.append(row["perf/sps"])

train_steps = np.asarray(train_steps)
train_ret = np.asarray(train_ret, dtype=float)
# Young & Tian plot the moving average of training returns over 100 episodes; do the same.
window = 100
kernel = np.ones(window) / window
ma = np.convolve(train_ret, kernel, mode="valid")
ma_steps = train_steps[window - 1:]

# Published values: read off the Breakout panel of the learning-curve figure in
# github.com/kenjyoung/MinAtar README (img/learning_curves.gif, = Fig. of arXiv:1903.03176),
# mean over frames 4.9M-5M of the 30-seed average curve ("moving average of returns over 100
# episodes"), 6-action set, sticky actions 0.1. Approximate (read from pixels of the figure).
published = [
    ("AC(λ=0.8), Young & Tian 2019 (≈17.6, read from curve)", 17.6, "tab:green"),
    ("AC(λ=0), Young & Tian 2019 (≈15.4, read from curve)", 15.4, "tab:orange"),
    ("DQN, Young & Tian 2019 (≈10.1, read from curve)", 10.1, "tab:blue"),
    ("DQN w/o replay, Young & Tian 2019 (≈4.2, read from curve)", 4.2, "goldenrod"),
]

fig, ax = plt.subplots(figsize=(7.2, 5.0), dpi=100)
ax.plot(train_steps / 1e6, train_ret, ".", ms=1, color="0.8", alpha=0.3, rasterized=True,
        label="_train episodes")
ax.plot(ma_steps / 1e6, ma, color="black", lw=1.4,
        label="forgelab PPO seed 0: training return, moving avg. of 100 episodes")
ax.plot(np.asarray(eval_steps) / 1e6, eval_ret, "o-", color="tab:red", ms=4, lw=1,
        label="forgelab PPO seed 0: eval return (mean of 10 greedy episodes)")
for label, value, color in published:
    ax.axhline(value, ls="--", lw=1, color=color, label=label)
ax.set_xlabel("environment steps = frames (millions)")
ax.set_ylabel("episode return")
ax.set_title("MinAtar Breakout: forgelab PPO vs. Young & Tian (2019) at 5M frames", fontsize=10)
ax.set_xlim(0, max(5.0, train_steps.max() / 1e6 if len(train_steps) else 5.0))
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
fig.tight_layout()
fig.savefig(out, dpi=100)

run_json = json.loads((run / "run.json").read_text())
last100 = train_ret[-100:]
best_i = int(np.nanargmax(eval_ret)) if eval_ret else None
summary = {
    "run_dir": str(run),
    "status": run_json.get("status"),
    "created": run_json.get("created"),
    "finished": run_json.get("finished"),
    "last_step": int(max(train_steps.max(), max(eval_steps, default=0))),
    "wall_s_metrics": round(times[-1] - times[0], 1) if times else None,
    "sps_last": round(sps[-1], 1) if sps else None,
    "episodes": int(len(train_ret)),
    "train_return_last100_mean": round(float(last100.mean()), 2),
    "train_return_last100_std": round(float(last100.std()), 2),
    "eval_last": {"step": eval_steps[-1], "mean": eval_ret[-1], "std": eval_std[-1]}
    if eval_ret else None,
    "eval_best": {"step": eval_steps[best_i], "mean": eval_ret[best_i]} if eval_ret else None,
    "eval_all": list(zip(eval_steps, eval_ret, strict=True)),
}
print(json.dumps(summary, indent=1))
