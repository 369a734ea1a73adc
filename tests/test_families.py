"""Families and the per-update call: the runner treats every family through its description,
and ``ctx.update`` logs, evaluates, keeps ``best``, checkpoints and resumes its schedule."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from conftest import read_metrics

from forgelab.core import hookimpl, pluginhost, runner
from forgelab.core.checkpoints import CheckpointManager
from forgelab.core.config import ExperimentConfig, validate_experiment
from forgelab.core.errors import ConfigError
from forgelab.core.family import Family
from forgelab.core.pluginhost import PluginHost
from forgelab.core.results import read_run, run_result_lines
from forgelab.plugins import agents as builtin_agents
from forgelab.plugins import generative as builtin_generative

SCORES = [1.0, 3.0, 2.0, 0.5, 2.5, 0.0]


class Scripted:
    """An agent whose training moves 10 steps per update and whose evaluations return the
    scores of ``SCORES`` in turn: what the loop does with them is what is tested."""

    def __init__(self, options: Any, ctx: Any) -> None:
        self.ctx, self.step, self.evaluated_at = ctx, 0, []

    def fit(self) -> None:
        while self.step < self.ctx.budget and not self.ctx.stop_requested:
            self.step += 10
            self.ctx.update(self, self.step, {"train/x": float(self.step)},
                            rows=[({"train/episode_return": 1.0}, self.step - 5)])

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        metrics = {"eval/return_mean": SCORES[len(self.evaluated_at)]}
        self.evaluated_at.append(self.step)
        self.ctx.tracker.log(metrics, global_step=self.step)
        return metrics

    def evaluate(self) -> dict[str, float]:
        return self.periodic_evaluation(True)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "evaluated_at": list(self.evaluated_at)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.evaluated_at = int(state["step"]), list(state["evaluated_at"])


def _host() -> PluginHost:
    plugin = types.ModuleType("scripted_plugin")
    plugin.register_agents = hookimpl(lambda register: register("scripted", Scripted))
    host = PluginHost(strict=True, disabled=())
    host.add_plugin(builtin_agents, "agents")  # the RL family comes from a plugin
    host.add_plugin(plugin, "scripted")
    return host


def _config(**train: int) -> Any:
    return validate_experiment({"agent": "scripted", "env": "CartPole-v1", "train": train,
                                "tracking": {"mode": "disabled"}})


def _loop_state(run_dir: Path, which: str) -> tuple[int, dict[str, Any]]:
    state, _ = CheckpointManager(run_dir / "checkpoints").load(which)
    return int(state["step"]), state["loop"]


def test_the_builtin_families_come_from_plugins() -> None:
    host = PluginHost(strict=False, disabled=()).load_entry_points()
    families = host.families()
    assert {(f.name, f.component_key, f.unit, f.budget_key) for f in families.values()} >= {
        ("rl", "agent", "step", "total_steps"), ("generative", "model", "epoch", "epochs")}
    assert families["rl"].axis == "global_step" and families["generative"].axis == "step"


def test_a_second_family_for_a_key_is_refused_with_the_plugin_that_owns_it() -> None:
    clash = types.ModuleType("clash_plugin")
    clash.register_families = hookimpl(lambda register: register(Family(
        name="rl2", component_key="agent", unit="step", budget_key="total_steps",
        axes=(("global_step", ("train/*",)),), inputs=(),
        experiment="forgelab.agents.experiment:RLExperiment", support="forgelab.agents.family")))
    host = PluginHost(strict=False, disabled=())
    host.add_plugin(builtin_agents, "agents")
    host.add_plugin(builtin_generative, "generative")
    host.add_plugin(clash, "clash")
    assert set(host.families()) == {"rl", "generative"}
    assert host.plugins["clash"].status == "failed"
    assert "clashes with family 'rl' of plugin 'agents'" in host.plugins["clash"].error


def test_update_logs_evaluates_keeps_best_and_checkpoints() -> None:
    host = _host()
    config = _config(total_steps=40, eval_every=10, checkpoint_every=20, log_every=10)
    run_dir = runner.train(config, host=host, show_progress=False)
    rows = read_metrics(run_dir)
    # Episode rows come first, at their own step; every train row gets the throughput.
    train = [r for r in rows if "train/x" in r]
    assert [r["global_step"] for r in train] == [10, 20, 30, 40]
    assert all(r["perf/sps"] > 0 for r in train)
    episodes = [r["global_step"] for r in rows if "train/episode_return" in r]
    assert episodes == [5, 15, 25, 35]
    assert rows.index(next(r for r in rows if r.get("global_step") == 5)) < rows.index(train[0])
    evals = [(r["global_step"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    assert evals == [(10, 1.0), (20, 3.0), (30, 2.0), (40, 0.5)]
    # best: the highest return (step 20); periodic checkpoints at 20 and 40.
    step, loop = _loop_state(run_dir, "best")
    assert step == 20 and loop["best"] == 3.0
    step, loop = _loop_state(run_dir, "latest")
    assert step == 40 and loop == {"best": 3.0, "evaluations": 4, "last_eval_step": 40}
    best_state = torch.load(run_dir / "checkpoints" / "step-000000020" / "state.pt",
                            weights_only=True)
    assert best_state["metrics"] == {"eval/return_mean": 3.0}


def test_training_ends_on_an_evaluation_off_the_schedule() -> None:
    run_dir = runner.train(_config(total_steps=35, eval_every=25), host=_host(),
                           show_progress=False)
    evals = [r["global_step"] for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert evals == [30, 40]  # the 25 mark (crossed at 30), then the end of training


def test_resume_keeps_the_schedule_and_the_best_so_far() -> None:
    host = _host()
    run_dir = runner.train(_config(total_steps=20, eval_every=10), host=host,
                           show_progress=False)
    runner.resume(run_dir, ["train.total_steps=60"], host=host, show_progress=False)
    evals = [(r["global_step"], r["eval/return_mean"]) for r in read_metrics(run_dir)
             if "eval/return_mean" in r]
    assert evals == [(10, 1.0), (20, 3.0), (30, 2.0), (40, 0.5), (50, 2.5), (60, 0.0)]
    # 2.5 after the resume does not beat the 3.0 of before it: best stays at step 20.
    step, loop = _loop_state(run_dir, "best")
    assert step == 20
    _, loop = _loop_state(run_dir, "latest")
    assert loop == {"best": 3.0, "evaluations": 6, "last_eval_step": 60}


class CutShort(Scripted):
    """Scripted, but Ctrl-C arrives during the evaluations at ``CUT_AT`` in the first run: they
    return what a stopped PolicyEvaluator returns (no return_mean, nothing logged)."""

    CUT_AT: ClassVar[set[int]] = set()

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        if self.step in self.CUT_AT and not self.ctx.resumed:
            self.ctx.request_stop()
            return {"eval/episodes": 0}
        return super().periodic_evaluation(video)


def _cut_run() -> tuple[PluginHost, Path]:
    """A 40-step CutShort run evaluated every 10 steps, and the host that knows it."""
    host = _host()
    plugin = types.ModuleType("cut_plugin")
    plugin.register_agents = hookimpl(lambda register: register("cut", CutShort))
    host.add_plugin(plugin, "cut")
    config = validate_experiment({"agent": "cut", "env": "CartPole-v1", "tracking": {
        "mode": "disabled"}, "train": {"total_steps": 40, "eval_every": 10}})
    return host, runner.train(config, host=host, show_progress=False)


@pytest.mark.parametrize("cut_at", [20, 40])  # a scheduled evaluation; the final one
def test_an_evaluation_cut_by_a_stop_runs_first_on_resume(cut_at: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped during its evaluation, a run keeps it due: the resumed run evaluates at that
    step before training on, so its evaluations (and best) are an uninterrupted run's."""
    monkeypatch.setattr(CutShort, "CUT_AT", {cut_at})
    host, run_dir = _cut_run()
    step, loop = _loop_state(run_dir, "latest")
    assert step == cut_at and loop["unfinished_eval"] == [cut_at, False]
    assert read_run(run_dir).status == "interrupted"
    runner.resume(run_dir, host=host, show_progress=False)
    evals = [(r["global_step"], r["eval/return_mean"]) for r in read_metrics(run_dir)
             if "eval/return_mean" in r]
    assert evals == [(10, 1.0), (20, 3.0), (30, 2.0), (40, 0.5)]
    _, loop = _loop_state(run_dir, "latest")
    assert loop == {"best": 3.0, "evaluations": 4, "last_eval_step": 40}
    assert read_run(run_dir).status == "finished"


def test_a_run_at_its_budget_without_its_final_evaluation_gets_it_on_resume(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint at the budget whose loop state has no final evaluation (written before the
    loop kept cut evaluations) is still finished properly by a resume."""
    monkeypatch.setattr(CutShort, "CUT_AT", {40})
    host, run_dir = _cut_run()
    state_file = run_dir / "checkpoints" / "step-000000040" / "state.pt"
    state = torch.load(state_file, weights_only=True)
    del state["loop"]["unfinished_eval"]
    torch.save(state, state_file)
    runner.resume(run_dir, host=host, show_progress=False)
    evals = [r["global_step"] for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert evals == [10, 20, 30, 40]


# ------------------------------------------- a third family, entirely from a plugin
# This module is the family's experiment class and support module ("test_families:...").
class CounterExperiment(ExperimentConfig):
    """A family the core has never heard of: ``counter:`` names the component, ``target:`` is
    what it trains on."""

    component_key: ClassVar[str] = "counter"
    counter: str
    counter_options: dict[str, Any] = {}
    target: int


def check_inputs(config: Any, host: Any, registration: Any) -> int:
    return config.target


def run_inputs(config: Any, ctx: Any) -> int:
    return config.target


class CountUp:
    """Counts towards ``ctx.inputs`` (the target) one step per update."""

    def __init__(self, options: Any, ctx: Any) -> None:
        self.ctx, self.step, self.value = ctx, 0, 0.0

    def fit(self) -> None:
        while self.step < self.ctx.budget and not self.ctx.stop_requested:
            self.step += 1
            self.value += 1.0
            self.ctx.update(self, self.step, {"train/distance": self.ctx.inputs - self.value})

    def periodic_evaluation(self, video: bool) -> dict[str, float]:
        metrics = {"eval/closeness": -abs(self.ctx.inputs - self.value)}
        self.ctx.tracker.log(metrics, step=self.step)
        return metrics

    def evaluate(self) -> dict[str, float]:
        return self.periodic_evaluation(False)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.value = int(state["step"]), float(state["value"])


def _refuse_far_targets(options: Any, config: Any, target: int) -> None:
    if target > 100:
        raise ConfigError(f"count-up cannot reach {target}: at most 100")


COUNTING = Family(name="counting", component_key="counter", unit="step",
                  budget_key="total_steps", axes=(("step", ("train/*", "eval/*")),),
                  inputs=(), experiment="test_families:CounterExperiment",
                  support="test_families", best_metric="eval/closeness", best_mode="max",
                  headline_metrics=("eval/closeness",))


def test_a_third_family_is_a_plugin(monkeypatch: Any) -> None:
    plugin = types.ModuleType("counting_plugin")
    plugin.register_families = hookimpl(lambda register: register(COUNTING))
    plugin.register_components = hookimpl(lambda register: register(
        "counter", "count-up", CountUp, description="counts", check=_refuse_far_targets))
    host = PluginHost(strict=True, disabled=()).load_entry_points()
    host.add_plugin(plugin, "counting")
    monkeypatch.setattr(pluginhost, "_HOST", host)  # the process-wide host: config sees it

    data = {"counter": "count-up", "target": 5, "train": {"total_steps": 8, "eval_every": 4},
            "tracking": {"mode": "disabled"}}
    config = validate_experiment(data)
    assert isinstance(config, CounterExperiment) and config.component == "count-up"
    with pytest.raises(ConfigError, match="cannot reach 500"):  # its check, before the run
        runner.prepare(validate_experiment({**data, "target": 500}), host)
    with pytest.raises(ConfigError, match="'env' is for rl experiments"):
        validate_experiment({**data, "env": "CartPole-v1"})
    run_dir = runner.train(config, host=host, show_progress=False)

    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows if "train/distance" in r] == list(range(1, 9))
    assert [(r["step"], r["eval/closeness"]) for r in rows if "eval/closeness" in r] == [
        (4, -1.0), (8, -3.0)]
    step, loop = _loop_state(run_dir, "best")
    assert step == 4 and loop["best"] == -1.0
    record = read_run(run_dir)
    assert record.family.name == "counting" and record.component == "count-up"
    assert record.budget == 8 and record.last_step == 8
    assert "result: eval/closeness -3 at step 8; best -1 at step 4" in "\n".join(
        run_result_lines(run_dir))
