"""`forgelab eval RUN --episodes N --video N --stochastic --checkpoint ...` and `forgelab watch`.

``eval`` of an agent run plays ``--episodes`` episodes (default: the experiment's
``train.eval_episodes``) from the evaluation seeds, records the first ``--video`` of them, and
logs it all as a W&B job of type ``eval`` in ``<run>/evals/``. ``eval`` of a generative run
computes the model's test metrics. ``watch`` plays episodes for a person: in a window where
there is a display, otherwise into an MP4 whose path it prints; it logs nothing.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgelab.core.errors import ForgelabError

if TYPE_CHECKING:
    import gymnasium as gym
    import numpy as np

    from forgelab.core.pluginhost import PluginHost


@dataclass
class Episodes:
    """Returns and lengths of played episodes, and the frames of the recorded ones."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[np.ndarray] = field(default_factory=list)


def play(env: gym.Env, act: Any, episodes: int, seed: int, record: int = 0,
         max_frames: int = 2000) -> Episodes:
    """Play ``episodes`` episodes; episode ``i`` is reset with ``seed + i`` (the seeds of the
    training run's evaluations), and the first ``record`` are kept as frames.

    :param act: one observation -> one action.
    """
    import numpy as np

    result = Episodes()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        frames = [np.asarray(env.render())] if episode < record else None
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            length += 1
            done = bool(terminated or truncated)
            if frames is not None and len(frames) < max_frames:
                frames.append(np.asarray(env.render()))
        result.returns.append(total)
        result.lengths.append(length)
        if frames is not None:
            result.videos.append(np.stack(frames))
    return result


def episode_metrics(result: Episodes) -> dict[str, float]:
    """The ``eval/*`` metrics of played episodes (the names training evaluations use)."""
    from forgelab.core.evaluation import EpisodeResults

    return EpisodeResults(returns=result.returns, lengths=result.lengths).metrics("eval")


# ------------------------------------------------------------------------------ eval
def evaluate(run_dir: Path, which: str = "best", episodes: int | None = None,
             videos: int | None = None, stochastic: bool = False,
             host: PluginHost | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a saved run's checkpoint as a W&B ``eval`` job; returns (metrics, job dir).

    :param which: ``best``, ``latest`` or a step number.
    :param episodes: episodes to play (agents; default ``train.eval_episodes``).
    :param videos: episodes to record, from the first (agents; default 1).
    :param stochastic: sample actions from the policy instead of taking the greedy one.
    """
    from forgelab.core import runner
    from forgelab.core.config import validate_experiment
    from forgelab.core.faults import as_user_error
    from forgelab.core.loading import checkpoint_dir, read_checkpoint, restore_component

    for name, value in (("--episodes", episodes), ("--video", videos)):
        if value is not None and value < (1 if name == "--episodes" else 0):
            raise ForgelabError(f"{name} must be at least {1 if name == '--episodes' else 0} "
                                f"(got {value})")
    data, info = runner.load_run(run_dir)
    config = validate_experiment(data, source=str(Path(run_dir) / runner.CONFIG_FILE))
    if config.kind != "agent" and (episodes is not None or videos is not None or stochastic):
        raise ForgelabError("--episodes, --video and --stochastic are for agent runs; "
                            f"{run_dir} trained the model {config.model!r}",
                            hint="`forgelab eval RUN` computes a model's test metrics")
    folder = checkpoint_dir(Path(run_dir), which)
    state = read_checkpoint(folder)
    prepared = runner.prepare(config, host)
    job_root = Path(run_dir) / "evals"
    job_id = runner.new_run_id()
    job_dir = job_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{job_id}"
    try:
        job_dir.mkdir(parents=True)
    except OSError as exc:
        raise (as_user_error(exc) or exc) from None
    wandb_config = {**prepared.resolved_config(), "versions": runner.package_versions(),
                    "source_run": info.get("run_id"), "checkpoint": folder.name,
                    "eval": {"episodes": episodes, "videos": videos, "stochastic": stochastic}}
    try:
        ctx = runner.build_context(prepared, job_dir, job_id, "eval", False, wandb_config,
                                   show_progress=False)
    except BaseException as exc:  # W&B could not log in, say: leave no job folder behind
        runner.discard_run_dir(job_dir)
        raise (as_user_error(exc) or exc) from None
    ctx.checkpoints.tracker = None  # an eval job reads checkpoints; it never writes one
    ok = False
    component = None
    try:
        component = runner._build(prepared, ctx)  # a factory's exception as one clear error
        restore_component(component, state, folder)
        if config.kind != "agent":
            metrics = component.evaluate()
        else:
            metrics = _evaluate_agent(component, ctx, int(state["step"]),
                                      episodes or config.train.eval_episodes,
                                      1 if videos is None else videos, stochastic)
        videos_written = metrics.pop("videos", None)
        ctx.tracker.summary({**metrics, "checkpoint": folder.name})
        if videos_written:
            metrics["videos"] = videos_written  # paths, for the command's output
        ok = True
    except Exception as exc:  # a full disk, memory: one clear error
        raise (as_user_error(exc) or exc) from None
    finally:
        for name in ("envs", "evaluator"):
            part = getattr(component, name, None)
            if part is not None and hasattr(part, "close"):
                part.close()
        runner._end_job(ctx, ok)  # a failed job's folder (and offline W&B run) is removed
    return metrics, ctx.run_dir


def _evaluate_agent(component: Any, ctx: Any, step: int, episodes: int, videos: int,
                    stochastic: bool) -> dict[str, Any]:
    act = getattr(component, "actions", None)
    if act is None:
        if stochastic:
            raise ForgelabError(f"agent {ctx.config.agent!r} cannot act stochastically here: "
                                "its plugin does not implement actions()")
        return component.evaluate()
    env = ctx.make_eval_env(render_mode="rgb_array" if videos else None)
    try:
        result = play(env, lambda obs: _one(act, obs, not stochastic), episodes,
                      seed=ctx.eval_seed, record=videos)
        fps = int(env.metadata.get("render_fps", 30) or 30)
    finally:
        env.close()
    metrics: dict[str, Any] = episode_metrics(result)
    ctx.tracker.log(metrics, global_step=step)
    paths = [str(ctx.tracker.log_video("rollout/video", frames, fps=fps,
                                       caption=f"episode {i}, return {result.returns[i]:.1f}",
                                       global_step=step, episode=i))
             for i, frames in enumerate(result.videos)]
    if paths:
        metrics["videos"] = paths
    return metrics


def _one(act: Any, obs: Any, deterministic: bool) -> Any:
    """One action from a batch-of-one call, as the env accepts it."""
    import numpy as np

    action = np.asarray(act(np.asarray(obs)[None], deterministic=deterministic))[0]
    return action.item() if action.ndim == 0 else action


# ----------------------------------------------------------------------------- watch
def has_display() -> bool:
    """Whether a window can open: a desktop session, and SDL not told to stay headless."""
    if os.environ.get("SDL_VIDEODRIVER") in ("dummy", "offscreen"):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def window_opens() -> bool:
    """Whether SDL (pygame) really reaches a screen: with a stale ``DISPLAY`` it falls back to
    its offscreen driver silently, and a person would see nothing."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame

        pygame.display.init()
        driver = pygame.display.get_driver()
        pygame.display.quit()
    except Exception:  # no pygame, or SDL cannot start a video driver at all
        return False
    return driver not in ("dummy", "offscreen")


def watch(run_dir: Path, which: str = "best", episodes: int = 1, stochastic: bool = False,
          out: Path | None = None, window: bool | None = None,
          host: PluginHost | None = None) -> tuple[list[float], Path | None]:
    """Play a trained agent for a person to see; returns (episode returns, video path or None).

    :param window: render in a window (default: when :func:`has_display` and
        :func:`window_opens`); otherwise frames go to ``out`` (default
        ``<run>/videos/watch-<checkpoint>-<time>.mp4``).
    """
    from forgelab.core.loading import load

    if episodes < 1:
        raise ForgelabError(f"--episodes must be at least 1 (got {episodes})")
    window = (has_display() and window_opens()) if window is None else window
    if not window:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # pygame must not look for a screen
    policy = load(run_dir, checkpoint=which, host=host)
    if policy.config.kind != "agent":
        policy.close()
        raise ForgelabError(f"{run_dir} trained the model {policy.config.model!r}; there is "
                            "nothing to watch", hint="`forgelab sample RUN` draws its samples")
    seed = policy.config.seed + 100_000  # the evaluation seeds (ctx.eval_seed)

    def episodes_in(mode: str) -> tuple[Episodes, int]:
        env = policy.make_env(render_mode=mode)
        try:
            result = play(env, lambda obs: policy.predict(obs, deterministic=not stochastic),
                          episodes, seed=seed, record=0 if mode == "human" else episodes)
            return result, int(env.metadata.get("render_fps", 30) or 30)
        finally:
            env.close()

    try:
        try:
            result, fps = episodes_in("human" if window else "rgb_array")
        except Exception as exc:
            if not window or not type(exc).__module__.startswith("pygame"):
                raise
            # A display that cannot be opened (a stale DISPLAY, no X server): record instead.
            print(f"warning: no window ({exc}); writing a video instead", file=sys.stderr)
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            window = False
            result, fps = episodes_in("rgb_array")
    finally:
        policy.close()
    if window:
        return result.returns, None
    import numpy as np

    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(run_dir) / "videos" / f"watch-{policy.checkpoint.name}-{stamp}.mp4"
    return result.returns, write_mp4(Path(out), np.concatenate(result.videos), fps)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Frames (T, H, W, C) as an H.264 MP4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio
    import numpy as np

    from forgelab.core.tracking import to_uint8_frames

    if path.suffix.lower() != ".mp4":
        raise ForgelabError(f"cannot write a video to {path.name}: use a .mp4 file")
    pixels = to_uint8_frames(frames)
    pad_h, pad_w = pixels.shape[1] % 2, pixels.shape[2] % 2  # H.264 wants even sizes
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(pixels), fps=fps, macro_block_size=1)
    return path
