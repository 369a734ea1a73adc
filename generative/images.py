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
    # NaN pixels (a diverged model's last samples) are drawn black rather than cast blindly
    grid = np.nan_to_num(grid, nan=0.0)
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def reconstruction_grid(inputs: Array, reconstructions: Array, nrow: int = 8,
                        labelled: bool = True) -> np.ndarray:
    """Inputs above their reconstructions: rows alternate inputs / reconstructions, each row
    marked "input" or "output" in a left margin (``labelled=False``: the bare grid)."""
    x, r = _as_numpy(inputs), _as_numpy(reconstructions)
    n = (len(x) // nrow) * nrow or len(x)
    x, r = x[:n], r[:n]
    rows = []
    for start in range(0, n, nrow):
        rows += [x[start:start + nrow], r[start:start + nrow]]
    height = x.shape[-2]
    scale = max(1, math.ceil(32 / height))
    grid = make_grid(np.concatenate(rows), nrow=min(nrow, n), scale=scale)
    if not labelled:
        return grid
    names = ["input" if i % 2 == 0 else "output" for i in range(len(rows))]
    return add_labels(grid, rows=list(zip(_centres(len(rows), height, scale), names,
                                           strict=True)),
                      title="reconstructions: each input row above its output row")


def traversal_grid(images: Array, units: list[int], values: list[float],
                   kl: list[float] | None = None) -> np.ndarray:
    """A latent traversal: one row per latent unit, one column per value it is set to.

    :param images: decoded images, ``len(units) * len(values)`` of them, row-major.
    :param units: the latent unit each row moves; :param values: the values across columns.
    :param kl: each unit's KL to the prior, shown beside its name.
    """
    x = _as_numpy(images)
    height, width = x.shape[-2], x.shape[-1]
    scale = max(1, math.ceil(32 / height))
    grid = make_grid(x, nrow=len(values), scale=scale)
    rows = [f"z[{u}]" + (f" KL {kl[i]:.2f}" if kl is not None else "")
            for i, u in enumerate(units)]
    return add_labels(
        grid, rows=list(zip(_centres(len(units), height, scale), rows, strict=True)),
        columns=list(zip(_centres(len(values), width, scale), [f"{v:+.1f}" for v in values],
                         strict=True)),
        title="latent traversal: row = unit set to the column's value, others fixed")


def _centres(count: int, size: int, scale: int, padding: int = 1) -> list[float]:
    """Pixel centres of ``count`` tiles of ``size`` along one side of :func:`make_grid`."""
    return [(padding + i * (size + padding) + size / 2) * scale for i in range(count)]


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def add_labels(image: np.ndarray, rows: list[tuple[float, str]] | None = None,
               columns: list[tuple[float, str]] | None = None,
               title: str | None = None, size: int = 12) -> np.ndarray:
    """``image`` on a white canvas with row labels on the left (centred on the given pixel
    rows), column labels above and a title on top."""
    from PIL import Image, ImageDraw

    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0]

    rows, columns = rows or [], columns or []
    left = (max(text_width(t) for _, t in rows) + 10) if rows else 0
    top = (size + 8 if title else 0) + (size + 6 if columns else 0)
    height, width = image.shape[:2]
    canvas_width = max(left + width, (text_width(title) + 10) if title else 0)
    canvas = Image.new("RGB", (canvas_width, top + height), BACKGROUND)
    canvas.paste(Image.fromarray(np.asarray(image, dtype=np.uint8)), (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0), font=font)
    for y, text in rows:
        draw.text((left - 5, top + y), text, fill=(0, 0, 0), font=font, anchor="rm")
    for x, text in columns:
        draw.text((left + x, top - 3), text, fill=(0, 0, 0), font=font, anchor="mb")
    return np.asarray(canvas)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values inside ``[low, high]`` (steps of 1, 2 or 5 times a power of ten)."""
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def scatter_image(samples: Array, data: Array | None = None, size: int = 480,
                  limits: tuple[float, float, float, float] | None = None,
                  radius: float = 1.5, labels: tuple[str, str] = ("data", "samples"),
                  title: str | None = None) -> np.ndarray:
    """2-D samples (blue) drawn over the data (grey) as an image, with ticks on both axes,
    axis names (x[0], x[1]) and a legend.

    :param samples: ``(N, 2)`` points.
    :param data: ``(M, 2)`` reference points, drawn underneath.
    :param limits: ``(xmin, xmax, ymin, ymax)``; default: the data's (or samples') range + 10 %.
    :param labels: legend names of the data and the samples.
    :param title: a line above the plot.
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
    font = _font(12)
    left, bottom, top = 64, 36, 22  # margins for tick labels, the x axis name and the title
    image = Image.new("RGB", (left + size + 8, top + size + bottom), BACKGROUND)
    draw = ImageDraw.Draw(image)

    def to_pixels(p: np.ndarray) -> np.ndarray:
        u = left + (p[:, 0] - xmin) / (xmax - xmin) * (size - 1)
        v = top + (ymax - p[:, 1]) / (ymax - ymin) * (size - 1)  # y axis points up
        return np.stack([u, v], axis=1)

    # the axes through the origin, when it is in view
    origin = to_pixels(np.array([[0.0, 0.0]]))[0]
    if xmin < 0 < xmax:
        draw.line([(origin[0], top), (origin[0], top + size)], fill=(225, 225, 225), width=1)
    if ymin < 0 < ymax:
        draw.line([(left, origin[1]), (left + size, origin[1])], fill=(225, 225, 225), width=1)
    for cloud, colour in ((reference, DATA_COLOUR), (points, SAMPLE_COLOUR)):
        if cloud is None:
            continue
        cloud = cloud[np.isfinite(cloud).all(axis=1)]
        for u, v in to_pixels(cloud):
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=colour)
    draw.rectangle([left, top, left + size - 1, top + size - 1], outline=AXIS_COLOUR)
    for value in _ticks(xmin, xmax):
        u = to_pixels(np.array([[value, 0.0]]))[0, 0]
        draw.line([(u, top + size - 1), (u, top + size + 3)], fill=AXIS_COLOUR)
        draw.text((u, top + size + 5), f"{value:g}", fill=(0, 0, 0), font=font, anchor="mt")
    for value in _ticks(ymin, ymax):
        v = to_pixels(np.array([[0.0, value]]))[0, 1]
        draw.line([(left - 4, v), (left, v)], fill=AXIS_COLOUR)
        draw.text((left - 6, v), f"{value:g}", fill=(0, 0, 0), font=font, anchor="rm")
    draw.text((left + size / 2, top + size + bottom - 2), "x[0]", fill=(0, 0, 0), font=font,
              anchor="mb")
    draw.text((3, top + size / 2), "x[1]", fill=(0, 0, 0), font=font, anchor="lm")
    # legend, top right inside the plot
    entries = [(labels[0], DATA_COLOUR, len(reference))] if reference is not None else []
    entries.append((labels[1], SAMPLE_COLOUR, len(points)))
    box_x, box_y = left + size - 130, top + 6
    draw.rectangle([box_x, box_y, left + size - 7, box_y + 6 + 18 * len(entries)],
                   fill=BACKGROUND, outline=AXIS_COLOUR)
    for i, (name, colour, count) in enumerate(entries):
        y = box_y + 12 + 18 * i
        draw.ellipse([box_x + 7, y - 4, box_x + 15, y + 4], fill=colour)
        draw.text((box_x + 21, y), f"{name} ({count:,})", fill=(0, 0, 0), font=font,
                  anchor="lm")
    if title:
        draw.text((left, 4), title, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG (parent folders are created)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path
