"""`forgelab eval RUN --episodes N --video N --stochastic --checkpoint ...` and `forgelab watch`.

``eval`` rebuilds the run's component with a checkpoint and logs its evaluation as a W&B job
of type ``eval`` in ``<run>/evals/``: the component's ``evaluate()`` (a model's test metrics),
or, where the family's support module plays episodes (``evaluate_episodes``: the RL family's
``--episodes``, ``--video``, ``--stochastic``), those. ``watch`` shows a trained component to
a person through the support's ``watch_episodes``: in a window where there is a display,
otherwise into an MP4 whose path it prints; it logs nothing. Core plays no episode itself.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgelab.core.errors import ForgelabError

if TYPE_CHECKING:
    import numpy as np

    from forgelab.core.pluginhost import PluginHost


# ------------------------------------------------------------------------------ eval
def evaluate(run_dir: Path, which: str = "best", episodes: int | None = None,
             videos: int | None = None, stochastic: bool = False,
             host: PluginHost | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a saved run's checkpoint as a W&B ``eval`` job; returns (metrics, job dir).

    :param which: ``best``, ``latest`` or a step number.
    :param episodes: episodes to play (families that play episodes; the RL default is
        ``train.eval_episodes``).
    :param videos: episodes to record, from the first (the RL default is 1).
    :param stochastic: sample actions from the policy instead of taking the greedy one.
    """
    from forgelab.core import runner
    from forgelab.core.config import validate_experiment
    from forgelab.core.faults import as_user_error
    from forgelab.core.loading import checkpoint_dir, read_checkpoint, restore_component
    from forgelab.core.pluginhost import get_host

    for name, value in (("--episodes", episodes), ("--video", videos)):
        if value is not None and value < (1 if name == "--episodes" else 0):
            raise ForgelabError(f"{name} must be at least {1 if name == '--episodes' else 0} "
                                f"(got {value})")
    data, info = runner.load_run(run_dir)
    config = validate_experiment(data, source=str(Path(run_dir) / runner.CONFIG_FILE))
    family = (host or get_host()).family(config)
    play = getattr(family.load_support(), "evaluate_episodes", None)
    if play is None and (episodes is not None or videos is not None or stochastic):
        raise ForgelabError("--episodes, --video and --stochastic are for runs that play "
                            f"episodes; {run_dir} trained {config.component!r} "
                            f"({family.name})",
                            hint="`forgelab eval RUN` computes its evaluation metrics")
    folder = checkpoint_dir(Path(run_dir), which)
    state = read_checkpoint(folder)
    prepared = runner.prepare(config, host)
    ctx = runner.open_job(prepared, run_dir, "eval", info.get("run_id"), folder.name,
                          {"eval": {"episodes": episodes, "videos": videos,
                                    "stochastic": stochastic}})
    ok = False
    component = None
    try:
        component = runner._build(prepared, ctx)  # a factory's exception as one clear error
        restore_component(component, state, folder)
        if play is None:
            metrics = component.evaluate()
        else:
            metrics = play(component, ctx, int(state["step"]), episodes, videos, stochastic)
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
    """Show a trained component to a person (the family's ``watch_episodes``: an agent plays
    episodes from the evaluation seeds); returns (episode returns, video path or None).

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
    play = getattr(policy.family.load_support(), "watch_episodes", None)
    if play is None:
        policy.close()
        raise ForgelabError(f"{run_dir} trained {policy.config.component!r} "
                            f"({policy.family.name}); there is nothing to watch",
                            hint="`forgelab watch` plays agents in their environments")

    try:
        try:
            returns, videos, fps = play(policy, episodes, stochastic,
                                        "human" if window else "rgb_array")
        except Exception as exc:
            if not window or not type(exc).__module__.startswith("pygame"):
                raise
            # A display that cannot be opened (a stale DISPLAY, no X server): record instead.
            print(f"warning: no window ({exc}); writing a video instead", file=sys.stderr)
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            window = False
            returns, videos, fps = play(policy, episodes, stochastic, "rgb_array")
    finally:
        policy.close()
    if window:
        return returns, None
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(run_dir) / "videos" / f"watch-{policy.checkpoint.name}-{stamp}.mp4"
    return returns, write_mp4(Path(out), [frame for video in videos for frame in video], fps)


def write_mp4(path: Path, frames: np.ndarray | list[np.ndarray], fps: int) -> Path:
    """Frames (T, H, W, C), as an array or a list, as an H.264 MP4 (imageio-ffmpeg)."""
    from forgelab.core.tracking import write_frames_mp4

    if path.suffix.lower() != ".mp4":
        raise ForgelabError(f"cannot write a video to {path.name}: use a .mp4 file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_frames_mp4(path, frames, fps)
