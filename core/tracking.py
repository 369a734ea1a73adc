"""One tracker API for components: scalars, images, videos, artifacts, summary.

Everything goes to Weights & Biases (online, offline or disabled) *and* to the run directory:
scalars to ``metrics.jsonl``, media under ``media/``. W&B mode ``auto`` is online when
credentials exist and offline otherwise; ``WANDB_MODE`` always wins.
"""

from __future__ import annotations

import configparser
import json
import math
import netrc
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from forgelab.core.errors import ForgelabError
from forgelab.core.wandb_agent import init_overrides

# Step axes: RL metrics are plotted against env steps, generative ones against epochs/steps.
AXES = ("global_step", "epoch", "step")


def wandb_credentials_present() -> bool:
    """True when W&B can log in without asking: an API key in the environment, or a key in
    the netrc file for the W&B server in use (``WANDB_BASE_URL``, else the ``base_url`` that
    ``wandb login --host URL`` saved in W&B's settings file, else api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_file = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(netrc_file).authenticators(wandb_host())
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def wandb_host() -> str:
    """Host name of the W&B server runs go to (as wandb itself resolves it)."""
    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        config_dir = os.environ.get("WANDB_CONFIG_DIR") or os.path.join(
            os.path.expanduser("~"), ".config", "wandb")
        settings = configparser.ConfigParser()
        try:
            settings.read(os.path.join(config_dir, "settings"), encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            pass  # a broken settings file: wandb will say so itself; assume the default
        url = settings.get("default", "base_url", fallback="https://api.wandb.ai")
    return urlparse(url if "//" in url else f"https://{url}").hostname or "api.wandb.ai"


def resolve_mode(mode: str) -> str:
    """``auto`` -> online with credentials, else offline. ``WANDB_MODE`` is honoured."""
    forced = os.environ.get("WANDB_MODE")
    if forced:
        return {"dryrun": "offline", "run": "online"}.get(forced, forced)
    if mode == "auto":
        return "online" if wandb_credentials_present() else "offline"
    return mode


def _python(value: Any) -> Any:
    """NumPy scalars and 0-d tensors as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d torch tensor
        return value.item()
    return value


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinity: metrics.jsonl writes them as "nan" / "inf"."""
    value = _python(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def truncate_rows(path: Path, rows: int) -> int:
    """Keep the first ``rows`` lines of ``metrics.jsonl`` (a resume drops the rows logged after
    the checkpoint it continues from, which it logs again); returns how many were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb") as handle:
        lines = handle.readlines()
    if len(lines) <= rows:
        return 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(lines[:rows]))
    os.replace(tmp, path)
    return len(lines) - rows


def to_uint8_frames(frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Frames as (T, H, W, C) uint8, whatever came in ((T, C, H, W), floats in [0, 1], gray)."""
    array = np.asarray(list(frames) if not isinstance(frames, np.ndarray) else frames)
    if array.ndim == 3:  # (T, H, W) grayscale
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(f"video frames must be 4-D (T, H, W, C), got shape {array.shape}")
    if array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def write_frames_mp4(path: Path, frames: np.ndarray | Iterable[np.ndarray], fps: int) -> Path:
    """Frames ((T, H, W, C) or (T, C, H, W), uint8 or floats in [0, 1]) as an H.264 MP4.

    A list of (H, W, 3) uint8 frames (a recorded episode: ``env.render()`` arrays) is written
    as it is, frame by frame: stacking an episode of CartPole's 400x600 frames into one array
    copies 300 MB and takes longer than encoding it. Anything else is converted as one video
    (one scale for all its frames). H.264 wants even sizes: an odd height or width is padded by
    one pixel rather than resampled.
    """
    import imageio.v2 as imageio

    if not isinstance(frames, np.ndarray):
        frames = list(frames)
    if isinstance(frames, np.ndarray) or any(not _rgb_uint8(frame) for frame in frames):
        frames = to_uint8_frames(frames)  # converted as one video: one scale for all frames
    # x264 "veryfast": a third less encoding time than its default, and no larger on these frames
    with imageio.get_writer(path, fps=fps, macro_block_size=1,
                            ffmpeg_params=["-preset", "veryfast"]) as writer:
        for frame in frames:
            pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            writer.append_data(frame)
    return path


def _rgb_uint8(frame: np.ndarray) -> bool:
    return frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """An image as (H, W, C) uint8 ((C, H, W) and floats in [0, 1] accepted)."""
    return to_uint8_frames(np.asarray(image)[None] if np.asarray(image).ndim == 3 else
                           np.asarray(image)[None, ..., None])[0]


class Tracker:
    """Logs to W&B and to the run directory.

    :param run_dir: the run directory; ``metrics.jsonl`` and ``media/`` are written here.
    :param mode: ``online``, ``offline`` or ``disabled`` (resolved by :func:`resolve_mode`).
    :param run_id: the W&B run id (reused on resume so the dashboard shows one run).
    :param init_kwargs: project, entity, group, job_type, tags, name, config for ``wandb.init``.
    """

    def __init__(self, run_dir: Path, mode: str, run_id: str, resume: bool = False,
                 **init_kwargs: Any) -> None:
        self.run_dir = Path(run_dir)
        self.media_dir = self.run_dir / "media"
        self.mode = mode
        self.run_id = run_id
        jsonl = self.run_dir / "metrics.jsonl"
        #: raise DivergenceError when a logged loss is NaN / infinite (set for training jobs)
        self.stop_on_nonfinite_loss = False
        #: rows in metrics.jsonl; a checkpoint records it so a resume can drop later rows
        self.rows = _count_lines(jsonl)
        self._jsonl = open(jsonl, "a", encoding="utf-8")  # noqa: SIM115
        self._run = None
        self._axes_defined: set[str] = set()
        if mode != "disabled":
            import wandb

            self._wandb = wandb
            os.environ.setdefault("WANDB_SILENT", "true")
            if os.environ.get("WANDB_MODE") == "":
                del os.environ["WANDB_MODE"]  # an empty WANDB_MODE fails W&B's own settings check
            try:
                self._run = wandb.init(
                    dir=str(self.run_dir), id=run_id, mode=mode,
                    resume="allow" if resume else None,
                    settings=wandb.Settings(console="off", silent=True),
                    **init_overrides(init_kwargs),  # under a W&B agent: the sweep's project
                )
            except wandb.errors.Error as exc:  # no API key, bad key, server unreachable
                self._jsonl.close()
                raise ForgelabError(
                    f"W&B could not start an {mode} run: {str(exc).splitlines()[0]}",
                    hint="log in with `wandb login`, or run with tracking.mode=offline "
                    "(WANDB_MODE=offline) and `wandb sync` later") from None

    @property
    def wandb_run(self) -> Any:
        """The ``wandb.Run`` (None when tracking is disabled)."""
        return self._run

    @property
    def wandb_dir(self) -> Path | None:
        return Path(self._run.dir).parent if self._run is not None else None

    # ------------------------------------------------------------------ axes
    def define_axis(self, axis: str, patterns: Iterable[str]) -> None:
        """Plot metrics matching ``patterns`` (e.g. ``"train/*"``) against ``axis``."""
        if self._run is None:
            return
        if axis not in self._axes_defined:
            self._run.define_metric(axis)
            self._axes_defined.add(axis)
        for pattern in patterns:
            self._run.define_metric(pattern, step_metric=axis)

    # --------------------------------------------------------------- logging
    def log(self, metrics: Mapping[str, Any], **axes: int) -> None:
        """Log scalars against one or more step axes, e.g. ``log({...}, global_step=1000)``."""
        row = {k: _python(v) for k, v in metrics.items()}
        row.update(axes)
        self._write_jsonl(row)
        if self._run is not None:
            self._run.log(row)  # a diverging loss stays a (NaN) float on the dashboard
        if self.stop_on_nonfinite_loss:
            from forgelab.core.guard import check_metrics

            # A NaN / infinite loss stops the run (the row stays logged, to show where it broke).
            check_metrics(row, where=", ".join(f"{k}={v}" for k, v in axes.items()))

    def _write_jsonl(self, row: Mapping[str, Any]) -> None:
        row = {k: (_jsonable(v) if not isinstance(v, dict) else
                   {kk: _jsonable(vv) for kk, vv in v.items()}) for k, v in row.items()}
        try:
            self._jsonl.write(json.dumps({"_time": round(time.time(), 3), **row}) + "\n")
            self._jsonl.flush()
        except OSError as exc:
            from forgelab.core.faults import DISK_ERRNOS, disk_error

            if exc.errno in DISK_ERRNOS:
                raise disk_error(exc, "metrics.jsonl") from None
            raise
        self.rows += 1

    def _media_path(self, key: str, suffix: str, axes: Mapping[str, int]) -> Path:
        # zero-padded like checkpoint folders, so that media files sort in logged order
        stamp = "-".join(f"{k}{int(v):09d}" if isinstance(v, int | np.integer) else f"{k}{v}"
                         for k, v in axes.items()) or str(int(time.time() * 1000))
        path = self.media_dir / f"{key.replace('/', '_')}-{stamp}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log_image(self, key: str, image: np.ndarray, caption: str | None = None,
                  **axes: int) -> Path:
        """Log an image (H, W, C) or (C, H, W), uint8 or float in [0, 1]; saved as PNG too."""
        from PIL import Image

        pixels = to_uint8_image(image)
        path = self._media_path(key, ".png", axes)
        Image.fromarray(pixels).save(path, compress_level=1)  # fast; media are small
        self._write_jsonl({key: str(path.relative_to(self.run_dir)), **axes})
        if self._run is not None:
            self._run.log({key: self._wandb.Image(str(path), caption=caption), **axes})
        return path

    def log_video(self, key: str, frames: np.ndarray | Iterable[np.ndarray], fps: int = 30,
                  caption: str | None = None, **axes: int) -> Path:
        """Log a video from frames (T, H, W, C) or (T, C, H, W), as one array or one frame at a
        time; saved as MP4 too (:func:`write_frames_mp4`)."""
        path = write_frames_mp4(self._media_path(key, ".mp4", axes), frames, fps)
        self._write_jsonl({key: str(path.relative_to(self.run_dir)), **axes})
        if self._run is not None:
            self._run.log({key: self._wandb.Video(str(path), format="mp4", caption=caption),
                           **axes})
        return path

    def log_artifact(self, path: Path, name: str, type: str, aliases: list[str],
                     metadata: Mapping[str, Any] | None = None) -> None:
        """Log a file or directory as a W&B artifact with ``aliases`` (e.g. latest, best)."""
        if self._run is None:
            return
        artifact = self._wandb.Artifact(name=name, type=type, metadata=dict(metadata or {}))
        path = Path(path)
        # File by file: add_dir starts a hashing thread pool per call, ~5x slower for the
        # handful of files in a checkpoint folder.
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            entry = file.relative_to(path).as_posix() if path.is_dir() else file.name
            artifact.add_file(str(file), name=entry)
        self._run.log_artifact(artifact, aliases=aliases)

    def mark_preempting(self) -> None:
        """Tell W&B the run was stopped to be resumed (a sweep agent then requeues it)."""
        if self._run is not None:
            self._run.mark_preempting()

    def summary(self, values: Mapping[str, Any]) -> None:
        """Set run summary values (final metrics shown in the W&B runs table)."""
        row = {k: _python(v) for k, v in values.items()}
        self._write_jsonl({"summary": row})
        if self._run is not None:
            for key, value in row.items():
                self._run.summary[key] = value

    def finish(self, exit_code: int = 0, quiet: bool = False) -> None:
        """Close the W&B run; offline runs print how to upload them (unless ``quiet``)."""
        try:
            self._jsonl.close()
        except OSError:
            pass  # a full disk: the error that stopped the run is already on its way
        if self._run is None:
            return
        run_dir = self.wandb_dir
        self._run.finish(exit_code=exit_code)
        if self.mode == "offline" and not quiet:
            # Each resume of an offline run adds a folder for the same run id; `wandb sync`
            # uploads the folders of one run one after another in order of start time, so
            # one command with all of them keeps the whole history.
            folders = sorted(run_dir.parent.glob(f"offline-run-*-{self.run_id}"),
                             key=lambda p: p.name) if run_dir else []
            shown = " ".join(str(p) for p in folders) if len(folders) > 1 else str(run_dir)
            print(f"W&B run saved offline in {run_dir}\n  upload it with: wandb sync {shown}",
                  file=sys.stderr)
