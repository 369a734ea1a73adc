"""Image utilities for samples (torch / NumPy / Pillow only; torchvision is not needed).

Every function returns an ``(H, W, 3)`` uint8 array, ready for
:meth:`forgelab.core.tracking.Tracker.log_image` or :func:`save_png`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

Array = np.ndarray | torch.Tensor

# Colours of the scatter plot (RGB).
BACKGROUND = (255, 255, 255)
DATA_COLOUR = (170, 170, 170)
SAMPLE_COLOUR = (31, 119, 180)
AXIS_COLOUR = (90, 90, 90)


def _as_numpy(images: Array) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


def make_grid(images: Array, nrow: int | None = None, padding: int = 1,
              scale: int | None = None, pad_value: float = 0.5) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` (or ``(N, H, W)``) with values in [0, 1] into one picture.

    :param nrow: images per row (default: the smallest square that holds them).
    :param padding: pixels between tiles, in the original resolution.
    :param scale: integer upscaling (nearest neighbour); default makes tiles ~32 px tall so
        that 8x8 digits are visible on a dashboard.
    :param pad_value: grey level of the separating lines.
    """
    x = _as_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
    n, channels, height, width = x.shape
    if channels == 1:
        x = np.repeat(x, 3, axis=1)
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = max(1, math.ceil(n / nrow))
    grid = np.full((3, ncol * (height + padding) + padding, nrow * (width + padding) + padding),
                   pad_value, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[:, top:top + height, left:left + width] = x[i]
    scale = scale or max(1, math.ceil(32 / height))
    if scale > 1:
        grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def reconstruction_grid(inputs: Array, reconstructions: Array, nrow: int = 8) -> np.ndarray:
    """Inputs beside their reconstructions: rows alternate inputs / reconstructions."""
    x, r = _as_numpy(inputs), _as_numpy(reconstructions)
    n = (len(x) // nrow) * nrow or len(x)
    x, r = x[:n], r[:n]
    rows = []
    for start in range(0, n, nrow):
        rows += [x[start:start + nrow], r[start:start + nrow]]
    return make_grid(np.concatenate(rows), nrow=min(nrow, n))


def scatter_image(samples: Array, data: Array | None = None, size: int = 480,
                  limits: tuple[float, float, float, float] | None = None,
                  radius: float = 1.5) -> np.ndarray:
    """2-D samples (blue) drawn over the data (grey) as an image.

    :param samples: ``(N, 2)`` points.
    :param data: ``(M, 2)`` reference points, drawn underneath.
    :param limits: ``(xmin, xmax, ymin, ymax)``; default: the data's (or samples') range + 10 %.
    """
    from PIL import Image, ImageDraw

    points = _as_numpy(samples).reshape(-1, 2)
    reference = _as_numpy(data).reshape(-1, 2) if data is not None else None
    if limits is None:
        span = reference if reference is not None and len(reference) else points
        finite = span[np.isfinite(span).all(axis=1)]
        lo, hi = (finite.min(0), finite.max(0)) if len(finite) else (np.zeros(2) - 1, np.ones(2))
        margin = 0.1 * np.maximum(hi - lo, 1e-6)
        limits = (lo[0] - margin[0], hi[0] + margin[0], lo[1] - margin[1], hi[1] + margin[1])
    xmin, xmax, ymin, ymax = limits
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)

    def to_pixels(p: np.ndarray) -> np.ndarray:
        u = (p[:, 0] - xmin) / (xmax - xmin) * (size - 1)
        v = (ymax - p[:, 1]) / (ymax - ymin) * (size - 1)  # y axis points up
        return np.stack([u, v], axis=1)

    # the axes through the origin, when it is in view
    if xmin < 0 < xmax:
        u = to_pixels(np.array([[0.0, 0.0]]))[0, 0]
        draw.line([(u, 0), (u, size)], fill=AXIS_COLOUR, width=1)
    if ymin < 0 < ymax:
        v = to_pixels(np.array([[0.0, 0.0]]))[0, 1]
        draw.line([(0, v), (size, v)], fill=AXIS_COLOUR, width=1)
    for cloud, colour in ((reference, DATA_COLOUR), (points, SAMPLE_COLOUR)):
        if cloud is None:
            continue
        cloud = cloud[np.isfinite(cloud).all(axis=1)]
        for u, v in to_pixels(cloud):
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=colour)
    draw.rectangle([0, 0, size - 1, size - 1], outline=AXIS_COLOUR)
    return np.asarray(image)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG (parent folders are created)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path
