"""Fault injection with real processes, real signals and real files: SIGKILL then resume, two
resumers and a stale lock, a write limit at the filesystem layer, corrupted and malicious
checkpoints, NaN divergence (one agent, one generative model). Budgets are tiny: behaviour, not
learning. The CLI runs in subprocesses where signals and process limits are the point, and
in-process (``cli.main``) elsewhere, to keep the module fast."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    latest_state,
    read_metrics,
    run_experiment,
    train_straight_and_resumed,
    user_env,
)
from test_agent_dqn import dqn_config

from forgelab.core import cli, hookimpl
from forgelab.core.config import ExperimentConfig, validate_experiment

EXE = shutil.which("forgelab", path=str(Path(sys.executable).parent)) or "forgelab"
PPO = ["env.num_envs=4", "agent.n_steps=32", "agent.batch_size=64", "agent.n_epochs=2",
       "train.log_every=128", "train.eval_every=512", "train.eval_episodes=2",
       "train.video_every=null", "train.checkpoint_every=256"]


def _env(**extra: str) -> dict[str, str]:
    return {**user_env(), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **extra}


def start(*args: str, cwd: Path, stderr_file: Path | None = None) -> subprocess.Popen:
    """``forgelab ARGS`` in the background; its stderr goes to ``stderr_file`` when given (so a
    test can poll what it printed while it runs), else to a pipe."""
    if stderr_file is None:
        return subprocess.Popen([EXE, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    with open(stderr_file, "w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([EXE, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                stderr=stderr, text=True)


def printed(proc: subprocess.Popen, stderr_file: Path | None = None) -> str:
    if stderr_file is not None:
        return stderr_file.read_text()
    return proc.stderr.read() if proc.stderr else ""


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240,
             stderr_file: Path | None = None) -> None:
    """Poll a file-system condition (not a timing assert): fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc={proc.returncode}) before the condition: "
                                 f"{printed(proc, stderr_file)[-2000:]}")
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def run_dir_of(root: Path) -> Path:
    runs = sorted(p for p in root.glob("runs/*/*") if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def error_line(stderr: str) -> str:
    """The one ``error:`` line of a failed command (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def forgelab(capsys, *args: str) -> tuple[int, str]:
    """``forgelab ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def rows_in(run: Path) -> int:
    """Complete rows in metrics.jsonl so far (read while another process writes it)."""
    path = run / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def logged(run: Path, key: str) -> bool:
    path = run / "metrics.jsonl"
    return path.exists() and f'"{key}"'.encode() in path.read_bytes()


def state_of(run: Path, which: str = "latest") -> dict:
    name = (run / "checkpoints" / which).read_text().strip()
    return torch.load(run / "checkpoints" / name / "state.pt", weights_only=True)


@pytest.fixture
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished tiny PPO run, copied by the tests that corrupt it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        return run_experiment("cartpole-ppo", *PPO, "train.total_steps=512",
                              output_dir=tmp_path_factory.mktemp("trained") / "runs")
    finally:
        mp.undo()


def copy_of(trained: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / trained.parent.name / trained.name
    shutil.copytree(trained, target)
    return target


# ------------------------------------------------------------------------------ SIGKILL
def test_sigkill_resume_second_resumer_and_stale_lock(tmp_path: Path) -> None:
    # 1. Killed after a checkpoint, with rows logged after it (checkpoints 64 updates apart, so
    #    the kill lands well before the next one even on a loaded machine).
    proc = start("run", "cartpole-ppo", *PPO, "train.checkpoint_every=8192",
                 "train.total_steps=1000000", "--no-progress", cwd=tmp_path)
    try:
        wait_for(lambda: list(tmp_path.glob("runs/*/*/checkpoints/latest")), proc)
        run = run_dir_of(tmp_path)
        wait_for(lambda: rows_in(run) > state_of(run)["log_rows"] + 2, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert str(proc.pid) in (run / "run.lock").read_text()  # a stale lock: its process is dead
    # 2. A resumer takes the stale lock over; a second one at the same time is refused.
    first_err = tmp_path / "first.stderr"
    first = start("run", "--resume", str(run), "--no-progress", cwd=tmp_path,
                  stderr_file=first_err)
    try:
        wait_for(lambda: str(first.pid) in (run / "run.lock").read_text(), first,
                 stderr_file=first_err)
        second = subprocess.run([EXE, "run", "--resume", str(run)], cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in error_line(second.stderr)
        # It drops the rows the killed run logged after its checkpoint, and only then logs rows
        # of its own (before the drop, the killed run's rows would satisfy the count below).
        wait_for(lambda: "metrics.jsonl: dropped" in first_err.read_text(), first,
                 stderr_file=first_err)
        wait_for(lambda: rows_in(run) > state_of(run)["log_rows"] + 2, first,
                 stderr_file=first_err)
        first.send_signal(signal.SIGKILL)  # 3. killed again, mid-run
        first.wait(timeout=60)
    finally:
        first.kill()
    step = state_of(run)["step"]
    third = subprocess.run([EXE, "run", "--resume", str(run), f"train.total_steps={step + 256}",
                            "--no-progress"], cwd=tmp_path, env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "metrics.jsonl: dropped" in third.stderr
    steps = [row["global_step"] for row in read_metrics(run) if "train/policy_loss" in row]
    assert len(steps) == len(set(steps)) and steps == sorted(steps), steps
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert not (run / "run.lock").exists()
    # One printed command uploads the run's three offline folders, in order of start time.
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 3
    sync = [line for line in third.stderr.splitlines() if "wandb sync" in line][-1]
    assert sync.split("wandb sync ", 1)[1].split() == [str(p) for p in folders]
    # ... and this wandb takes them all in that order (files of one run sync one after another)
    dry = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run",
                          *sync.split("wandb sync ", 1)[1].split()], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    listed = [line.split()[-1] for line in dry.stderr.splitlines() + dry.stdout.splitlines()
              if line.strip().endswith(".wandb")]
    assert [(tmp_path / p).parent.resolve() for p in listed] == [f.resolve() for f in folders]


def test_sigterm_while_a_run_starts_leaves_no_run_marked_running(tmp_path: Path) -> None:
    # SIGTERM as soon as the run directory exists: W&B, the envs and the agent are still being
    # set up (before training installs its own handler).
    proc = start("run", "cartpole-ppo", *PPO, "train.total_steps=100000", "--no-progress",
                 cwd=tmp_path)
    try:
        wait_for(lambda: list(tmp_path.glob("runs/*/*")), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    for info in tmp_path.glob("runs/*/*/run.json"):  # a run that had started is marked stopped
        assert json.loads(info.read_text())["status"] == "interrupted"


def test_sigterm_while_the_cli_loads_is_exit_143_without_a_traceback(monkeypatch, capsys):
    # A sweep forwards SIGTERM to every trial, one of which may still be importing its parser:
    # the CLI's handler raises there (as it does here), outside any command's own handling.
    from forgelab.core.errors import Terminated

    def parser_interrupted():
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(cli, "_parser", parser_interrupted)
    try:
        code, err = forgelab(capsys, "run", "cartpole-random")
    except KeyboardInterrupt:  # would end the test session, not fail this test
        pytest.fail("the CLI let the signal's exception through (a traceback, exit code 1)")
    assert code == 143 and err.strip() == "interrupted"


def _pause_until_signalled(ready) -> None:
    ready.set()
    signal.pause()  # not timing anything: waits for the test's SIGTERM


def test_a_process_forked_from_the_cli_ends_quietly_on_sigterm(monkeypatch) -> None:
    # An async env worker (or a plugin's own child) forked while the CLI's SIGTERM handler is
    # installed inherits it: there SIGTERM must kill quietly, not raise with a traceback.
    import multiprocessing

    monkeypatch.setattr(cli, "_HANDLER_PID", os.getpid())
    previous = signal.signal(signal.SIGTERM, cli._terminate)
    try:
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        child = context.Process(target=_pause_until_signalled, args=(ready,))
        child.start()
        assert ready.wait(60)
        child.terminate()  # SIGTERM
        child.join(60)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert child.exitcode == -signal.SIGTERM  # killed by the signal (1: the handler raised)


def test_sigterm_during_a_long_evaluation_stops_it(tmp_path: Path) -> None:
    # A million evaluation episodes after the first update: without the stop check in the
    # rollout loop this would run for hours; SIGTERM ends it and the run stops cleanly.
    proc = start("run", "cartpole-ppo", *PPO, "train.eval_every=128",
                 "train.eval_episodes=1000000", "train.total_steps=100000", "--no-progress",
                 cwd=tmp_path)
    try:
        wait_for(lambda: any(logged(run, "train/policy_loss")
                             for run in tmp_path.glob("runs/*/*")), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "SIGTERM: stopping" in err and "Ctrl-C again" not in err  # no terminal to press it in
    run = run_dir_of(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not any("eval/return_mean" in row for row in read_metrics(run))  # no partial eval


class StoppedInFinalEvaluation:
    """A plugin registering `dqn-interrupted`: DQN whose first run gets Ctrl-C in the middle of
    its final evaluation (the stop is requested from the evaluator's per-step stop check)."""

    @hookimpl
    def register_agents(self, register):
        from forgelab.agents.dqn import DQN, DQNConfig

        def interrupted_dqn(options: DQNConfig, ctx) -> DQN:
            agent = DQN(options, ctx)
            if not ctx.resumed:
                should_stop = agent.evaluator.should_stop
                checks = []

                def ctrl_c_mid_final_evaluation() -> bool:
                    if agent.step >= ctx.budget:
                        checks.append(1)
                        if len(checks) == 3:  # two steps into the episodes, none finished
                            ctx.request_stop(signal.SIGINT)
                    return should_stop()

                agent.evaluator.should_stop = ctrl_c_mid_final_evaluation
            return agent

        register("dqn-interrupted", interrupted_dqn, config=DQNConfig,
                 description="DQN stopped during its final evaluation (test)")


def test_a_final_evaluation_cut_by_ctrl_c_runs_on_resume() -> None:
    """Stopped during its final evaluation, a run logs no partial result and its checkpoint
    keeps the evaluation due; the resume makes it, so the run's evaluations are those of an
    uninterrupted run (before, the resume found nothing to train and ended with none)."""
    def config(agent: str) -> ExperimentConfig:
        data = dqn_config()
        data.update(name=agent, agent=agent, tracking={"mode": "disabled"},
                    output_dir=str(Path.cwd() / "runs"))
        data["train"].update(eval_every=500, eval_episodes=3, video_every=None)
        return validate_experiment(data)

    straight, interrupted, stopped = train_straight_and_resumed(config, "dqn",
                                                                StoppedInFinalEvaluation())
    assert stopped["step"] == 1000 and stopped["loop"]["unfinished_eval"] == [1000, False]
    assert stopped["loop"]["last_eval_step"] == 500

    def evals(run: Path) -> list[tuple[int, float]]:
        return [(r["global_step"], r["eval/return_mean"]) for r in read_metrics(run)
                if "eval/return_mean" in r]

    assert [step for step, _ in evals(straight)] == [500, 1000]
    assert evals(interrupted) == evals(straight)
    assert json.loads((interrupted / "run.json").read_text())["status"] == "finished"


def test_ctrl_c_to_the_process_group_of_an_async_run_checkpoints_and_resumes(
        tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the async env workers too: they leave the stop to the
    runner, which finishes the update, checkpoints and exits 130 (before, a worker's own
    KeyboardInterrupt broke its pipe: a run marked failed, no checkpoint)."""
    args = [EXE, "run", "cartpole-ppo", *PPO, "env.vectorization=async",
            "train.total_steps=10000000", "train.eval_every=1000000", "--no-progress"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(WANDB_MODE="disabled"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's
    try:
        wait_for(lambda: any(logged(run, "train/policy_loss")
                             for run in tmp_path.glob("runs/*/*")), proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Broken pipe" not in err and "Traceback" not in err
    run = run_dir_of(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    stopped = latest_state(run)["step"]
    resumed = subprocess.run([EXE, "run", "--resume", str(run),
                              f"train.total_steps={stopped + 512}", "--no-progress"],
                             cwd=tmp_path, env=_env(WANDB_MODE="disabled"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert latest_state(run)["step"] >= stopped + 512


def test_a_kill_during_the_first_save_is_recovered_at_resume(trained: Path, tmp_path: Path,
                                                            capsys, no_wandb) -> None:
    # The files a SIGKILL between "folder written" and "folder renamed" leaves at the very
    # first save: a complete .tmp-* folder and no pointer; plus a half-written folder.
    run = copy_of(trained, tmp_path)
    ckpt = run / "checkpoints"
    first = sorted(ckpt.glob("step-*"))[0]
    for path in [*ckpt.glob("step-*"), ckpt / "latest", ckpt / "best"]:
        if path != first:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    first.rename(ckpt / ".tmp-aaaa1111")
    (ckpt / ".tmp-aaaa1111" / ".complete").write_text(first.name + "\n")
    (ckpt / ".tmp-bbbb2222").mkdir()
    (ckpt / ".tmp-bbbb2222" / "state.pt").write_bytes(b"PK\x03\x04 half")
    code, err = forgelab(capsys, "run", "--resume", str(run), "--no-progress")
    assert code == 0, err
    assert f"recovered the complete checkpoint {first.name}" in err
    assert "removed the unfinished checkpoint folder .tmp-bbbb2222" in err
    assert not list(ckpt.glob(".tmp-*")) and not list(ckpt.glob(".old-*"))
    assert state_of(run)["step"] >= 512


_SLOW_SAVER = """
import os
import time
from pathlib import Path

from forgelab.agents.random_agent import RandomAgent
from forgelab.core import hookimpl


class SlowSaver(RandomAgent):
    \"\"\"The random agent with a file of its own in each checkpoint; with BLOCK_SECOND_SAVE set,
    the second save stops inside CheckpointManager.save (folder half-written) until killed.\"\"\"

    saves = 0

    def save_files(self, directory):
        SlowSaver.saves += 1
        (Path(directory) / "extra.bin").write_bytes(b"x" * 1000)
        if SlowSaver.saves == 2 and os.environ.get("BLOCK_SECOND_SAVE"):
            (Path(directory) / "WAITING").write_text(str(os.getpid()))
            time.sleep(3600)  # not timing anything: waits for the test's SIGKILL

    def load_files(self, directory):
        assert (Path(directory) / "extra.bin").is_file()


@hookimpl
def register_agents(register):
    register("slowsave", "slowsaver:SlowSaver",
             config="forgelab.agents.random_agent:RandomAgentConfig")
"""


def plugin_site(tmp_path: Path, name: str, source: str) -> Path:
    """A real installed plugin: a module and a dist-info with a forgelab entry point, found
    through PYTHONPATH by importlib.metadata as pip-installed ones are."""
    site = tmp_path / "site"
    (site / f"{name}-0.1.dist-info").mkdir(parents=True)
    (site / f"{name}.py").write_text(source)
    (site / f"{name}-0.1.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (site / f"{name}-0.1.dist-info" / "entry_points.txt").write_text(
        f"[forgelab]\n{name} = {name}\n")
    return site


def test_sigkill_inside_a_save_then_resume(tmp_path: Path) -> None:
    site = plugin_site(tmp_path, "slowsaver", _SLOW_SAVER)
    args = ["cartpole-random", "agent=slowsave", "train.checkpoint_every=100",
            "train.eval_every=null", "train.video_every=null", "tracking.mode=disabled",
            "--no-progress"]
    env = _env(PYTHONPATH=str(site), WANDB_MODE="disabled")
    proc = subprocess.Popen([EXE, "run", *args, "train.total_steps=100000"], cwd=tmp_path,
                            env={**env, "BLOCK_SECOND_SAVE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: list(tmp_path.glob("runs/*/*/checkpoints/.tmp-*/WAITING")), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    run = run_dir_of(tmp_path)
    assert state_of(run)["step"] == 100 and list(run.glob("checkpoints/.tmp-*"))
    result = subprocess.run([EXE, "run", "--resume", str(run), "train.total_steps=300",
                             "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "removed the unfinished checkpoint folder .tmp-" in result.stderr
    assert not list(run.glob("checkpoints/.tmp-*"))
    assert state_of(run)["step"] == 300


# ------------------------------------------------------------------------- disk faults
def _limit_file_size() -> None:
    # A write past 256 KB fails with EFBIG at the filesystem layer (the DQN replay buffer
    # checkpoint is ~5 MB), like a disk that fills up during the first checkpoint.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_a_failed_write_is_one_clear_error_with_status_and_no_temp_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [EXE, "run", "cartpole-dqn", "agent.learning_starts=100", "train.total_steps=600",
         "train.checkpoint_every=200", "train.eval_every=null", "train.video_every=null",
         "--no-progress"], cwd=tmp_path, env=_env(WANDB_MODE="disabled"), capture_output=True,
        text=True, timeout=300, preexec_fn=_limit_file_size)
    assert result.returncode == 4, result.stderr
    assert "cannot write checkpoint" in error_line(result.stderr)
    run = run_dir_of(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "cannot write" in info["error"]
    assert not list(run.glob("checkpoints/.tmp-*"))
    assert not (run / "run.lock").exists()


def test_a_disk_error_outside_training_does_not_suggest_resuming() -> None:
    """eval, watch, sample and report write files too: their read-only or full-disk error
    says what to do without pointing at `run --resume` (training's own has that hint)."""
    import errno

    from forgelab.core.faults import as_user_error, disk_error

    read_only = OSError(errno.EROFS, "Read-only file system", "/runs/x/evals")
    error = as_user_error(read_only)
    assert error is not None and error.exit_code == 4
    assert "/runs/x/evals" in error.message and "--resume" not in error.hint
    assert "--resume" in disk_error(read_only, "checkpoint").hint


# --------------------------------------------------------------------- corrupted files
@pytest.mark.parametrize("case", ["escape-relative", "escape-absolute", "garbage"])
def test_a_pointer_never_leads_outside_its_run(trained: Path, tmp_path: Path, case: str,
                                               capsys, no_wandb) -> None:
    run = copy_of(trained, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(run / "checkpoints", other)
    name = (run / "checkpoints" / "latest").read_text().strip()
    target = {"escape-relative": f"../../../other/{name}", "escape-absolute": str(other / name),
              "garbage": "\x00\x01 not a step"}[case]
    for pointer in ("latest", "best"):
        (run / "checkpoints" / pointer).write_text(target + "\n")
    for args in (["run", "--resume", str(run), "train.total_steps=1024"], ["eval", str(run)]):
        code, err = forgelab(capsys, *args)
        assert code == 2, err
        assert "does not name a checkpoint folder of this run" in error_line(err)
    assert not (run / "evals").exists()


@pytest.mark.parametrize("content", ["[1, 2, 3]", "{'format': 1}"])
def test_a_state_file_of_another_shape_is_one_clear_error(trained: Path, tmp_path: Path,
                                                          content: str, capsys,
                                                          no_wandb) -> None:
    run = copy_of(trained, tmp_path)
    name = (run / "checkpoints" / "latest").read_text().strip()
    torch.save(eval(content), run / "checkpoints" / name / "state.pt")
    code, err = forgelab(capsys, "run", "--resume", str(run), "train.total_steps=1024")
    assert code == 2
    assert "is not a forgelab checkpoint" in error_line(err)


@pytest.mark.parametrize("damage", ["random-bytes", "truncated"])
def test_a_corrupt_latest_checkpoint_says_how_to_resume_from_an_earlier_one(
        trained: Path, tmp_path: Path, damage: str, capsys, no_wandb) -> None:
    """Random bytes are corrupt, not 'unsafe' (torch's unpickler stops at a bad opcode, not at
    code), and the hint's way on works: name an earlier checkpoint in `latest`, resume."""
    run = copy_of(trained, tmp_path)
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    state = latest / "state.pt"
    size = state.stat().st_size
    if damage == "random-bytes":
        state.write_bytes(np.random.default_rng(0).bytes(size))
    else:
        state.write_bytes(state.read_bytes()[:1000])
    code, err = forgelab(capsys, "run", "--resume", str(run), "train.total_steps=1024")
    assert code == 2, err
    assert "corrupt or truncated" in error_line(err) and "unsafe" not in err
    earlier = "step-000000256"
    assert f"echo {earlier} >" in err
    (run / "checkpoints" / "latest").write_text(earlier + "\n")
    code, err = forgelab(capsys, "run", "--resume", str(run), "train.total_steps=1024",
                         "--no-progress")
    assert code == 0, err
    assert latest_state(run)["step"] == 1024


def test_memory_figures_are_decimal_as_the_readme_states_them() -> None:
    from forgelab.core.faults import human_bytes

    assert human_bytes(2.824e9) == "2.8 GB"  # pong-dqn's buffer: 100k x 4x84x84 bytes
    assert human_bytes(56.5e9) == "56.5 GB"


def test_any_garbage_in_a_state_file_is_one_clear_error(tmp_path: Path) -> None:
    """Random bytes make torch's unpickler fail in many ways (IndexError among them): every
    one is the corrupt-checkpoint error, none a traceback."""
    from forgelab.core.checkpoints import load_state
    from forgelab.core.errors import ForgelabError

    state = tmp_path / "checkpoints" / "step-000000001" / "state.pt"
    state.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for _ in range(300):
        state.write_bytes(rng.bytes(int(rng.integers(1, 5000))))
        with pytest.raises(ForgelabError):
            load_state(state)


def test_a_garbled_run_json_is_one_clear_error(trained: Path, tmp_path: Path, capsys) -> None:
    run = copy_of(trained, tmp_path)
    (run / "run.json").write_text("{not json")
    code, err = forgelab(capsys, "run", "--resume", str(run))
    assert code == 2
    assert "run.json is unreadable" in error_line(err)


_EVIL = """
import os
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
"""


def _evil_pickle(path: Path, marker: Path) -> None:
    namespace: dict = {}
    exec(textwrap.dedent(_EVIL.format(marker=marker)), namespace)
    torch.save({"format": 1, "step": 0, "component": namespace["Evil"](), "rng": {}}, path)


def test_a_malicious_checkpoint_is_refused_without_running_it(trained: Path, tmp_path: Path,
                                                              capsys, no_wandb) -> None:
    run = copy_of(trained, tmp_path)
    marker = tmp_path / "PWNED"
    name = (run / "checkpoints" / "best").read_text().strip()
    _evil_pickle(run / "checkpoints" / name / "state.pt", marker)
    code, err = forgelab(capsys, "eval", str(run))
    assert code == 2
    assert "unsafe" in error_line(err) and "weights_only" not in err
    assert not marker.exists()
    assert not (run / "evals").exists()


def test_an_sb3_zip_carrying_a_pickle_is_refused_without_running_it(tmp_path: Path, capsys,
                                                                    no_wandb) -> None:
    run = run_experiment("cartpole-sb3-ppo", "env.num_envs=4", "agent.n_steps=32",
                         "agent.batch_size=64", "agent.n_epochs=1", "train.total_steps=256",
                         "train.eval_every=null", "train.video_every=null")
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    _evil_pickle(evil, marker)
    for model in run.glob("checkpoints/step-*/model.zip"):
        with zipfile.ZipFile(model) as src:
            entries = {n: src.read(n) for n in src.namelist()}
        assert "policy.pth" in entries
        entries["policy.pth"] = evil.read_bytes()
        with zipfile.ZipFile(model, "w") as dst:
            for entry, data in entries.items():
                dst.writestr(entry, data)
    code, err = forgelab(capsys, "run", "--resume", str(run), "train.total_steps=512")
    assert code == 2, err
    assert "unsafe" in error_line(err)
    assert not marker.exists()


# -------------------------------------------------------------------------- divergence
def _all_finite(state: dict) -> bool:
    from forgelab.core.guard import find_nonfinite

    return find_nonfinite(state) is None


def test_a_diverging_agent_stops_and_keeps_its_last_finite_checkpoint(tmp_path: Path, capsys,
                                                                      no_wandb) -> None:
    # The checkpoint and evaluation at step 200 come before DQN's first gradient step (300).
    code, err = forgelab(capsys, "run", "cartpole-dqn", "agent.learning_rate=1e30",
                         "agent.learning_starts=300", "agent.train_freq=16",
                         "agent.gradient_steps=4", "train.total_steps=2000",
                         "train.checkpoint_every=200", "train.eval_every=200",
                         "train.eval_episodes=1", "train.video_every=null", "--no-progress")
    assert code == 3, err
    assert "diverged" in error_line(err)
    run = run_dir_of(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged"
    assert state_of(run)["step"] == 200 and state_of(run, "best")["step"] == 200
    assert all(_all_finite(torch.load(p, weights_only=True))
               for p in run.glob("checkpoints/step-*/state.pt"))


def test_a_diverging_generative_model_stops_with_exit_code_3(tmp_path: Path, capsys,
                                                             no_wandb) -> None:
    code, err = forgelab(capsys, "run", "digits-vae", "model.learning_rate=1e30",
                         "train.epochs=3", "train.eval_every=1", "train.checkpoint_every=1",
                         "model.nll_samples=5", "--no-progress")
    assert code == 3, err
    assert "diverged" in error_line(err)
    run = run_dir_of(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    assert all(_all_finite(torch.load(p, weights_only=True))
               for p in run.glob("checkpoints/step-*/state.pt"))


# ----------------------------------------------------------------- checked before a run
@pytest.mark.parametrize("experiment, override", [
    ("cartpole-ppo", "agent.learning_rate=inf"), ("cartpole-ppo", "agent.learning_rate=1e999"),
    ("digits-vae", "model.beta=.inf")])
def test_non_finite_option_values_are_refused(tmp_path: Path, capsys, experiment: str,
                                              override: str) -> None:
    code, err = forgelab(capsys, "run", experiment, override, "--dry-run")
    assert code == 2
    assert f"{override.split('=')[0]}: must be a finite number" in error_line(err)


@pytest.mark.parametrize("name", ["../../escaped", "/an/absolute/path", "my exp", "x" * 300])
def test_run_names_are_checked_before_anything_is_created(tmp_path: Path, capsys,
                                                          name: str) -> None:
    code, err = forgelab(capsys, "run", "cartpole-ppo", f"name={name}",
                         f"output_dir={tmp_path / 'a' / 'b'}")
    assert code == 2
    assert "letters, digits" in error_line(err)
    assert not list(tmp_path.rglob("*"))


def test_a_plugin_calling_sys_exit_at_import_is_contained(tmp_path: Path) -> None:
    site = plugin_site(tmp_path, "exitplug", "import sys\nsys.exit(3)\n")
    result = subprocess.run([EXE, "plugins"], cwd=tmp_path, capture_output=True, text=True,
                            env={**_env(), "PYTHONPATH": str(site)}, timeout=120)
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stdout.splitlines() if line.startswith("exitplug")][0]
    assert "failed" in line
