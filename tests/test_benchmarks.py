"""The benchmark commands run end to end on tiny budgets (their figures are not checked here:
speed is measured by running them, not by timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import benchmark_script

rl_benchmark = benchmark_script("rl_vs_sb3")
generative_benchmark = benchmark_script("generative_loops")


def test_rl_benchmark_trains_both_frameworks_and_prints_ratios(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)  # main() drops it; restored after the test
    raw = tmp_path / "results.json"
    assert rl_benchmark.main(["--seeds", "1", "--algos", "ppo", "--max-steps", "1024",
                              "--eval-every", "512", "--full", "--json", str(raw)]) == 0
    table = capsys.readouterr().out
    assert "ppo   forgelab" in table and "ppo   sb3" in table and "fl / sb3" in table
    results = json.loads(raw.read_text())
    assert {r["framework"] for r in results} == {"forgelab", "sb3"}
    for r in results:
        assert r["steps"] >= 1024 and r["train_seconds"] > 0
        # --full: evaluated at every mark, and once more at the end unless it fell on one
        assert [step for step, _ in r["evals"]][:2] == [512, 1024]
    # the saved results print the same table again
    assert rl_benchmark.main(["--summarize", str(raw)]) == 0
    assert capsys.readouterr().out == table


def test_vae_benchmark_compares_the_three_loops(capsys: pytest.CaptureFixture[str]) -> None:
    assert generative_benchmark.main(["--epochs", "2", "--eval-every", "1", "--repeats", "1",
                                      "--nll-samples", "4", "--skip-gan"]) == 0
    out = capsys.readouterr().out
    for row in ("| forgelab |", "| plain PyTorch |", "| plain, fused Adam |",
                "| ratio forgelab / plain PyTorch |", "| ratio forgelab / plain, fused Adam |"):
        assert row in out
    # every loop trained the same network and measured a finite test NLL
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| forgelab |",
                                                                          "| plain"))]
    assert len({row[2].strip() for row in rows}) == 1
    assert all(0 < float(row[-2]) < 100 for row in rows)
    assert "target forgelab / plain PyTorch <= 1.1" in out
