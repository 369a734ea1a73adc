"""Datasets for the generative models, and the one object every model consumes: :class:`Splits`.

A dataset plugin registers ``factory(options, seed) -> Splits``; a model gets the experiment's
dataset from ``ctx.inputs.load()`` (:class:`forgelab.generative.family.DatasetSource`). A
:class:`Splits` holds three :class:`Split` s (``train``, ``val``, ``test``), each a named tuple
``(x, y)`` of CPU tensors:

* ``x``: float32, shape ``(N, *sample_shape)``. Images are ``(N, C, H, W)`` with values in
  ``[0, 1]``; 2-D points are ``(N, 2)`` in data units.
* ``y``: int64 class labels of shape ``(N,)``, or ``None`` for unlabelled data.

plus ``sample_shape``, ``num_classes`` (``None`` when unlabelled), ``kind`` (``"image"`` or
``"points"``), ``binarize`` and a free-form ``metadata`` dict (for example the mode centres and
standard deviation of a 2-D mixture, or where the files came from).

``binarize=True`` is the standard setting for likelihood work (Salakhutdinov & Murray 2008;
Burda et al. 2016): training batches are *dynamically* binarised (a fresh
``x ~ Bernoulli(grey level)`` each time a batch is drawn, done by the training loop in
:mod:`forgelab.generative.base`), while the validation and test images are binarised *once*
with a fixed seed so their likelihoods are comparable across epochs and runs.

The splits do not depend on the run's seed but on ``split_seed``, so test metrics of runs with
different seeds are measured on the same images.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from forgelab.core.errors import ForgelabError


class Split(NamedTuple):
    """One split: inputs ``x`` (float32) and labels ``y`` (int64, or None)."""

    x: torch.Tensor
    y: torch.Tensor | None


@dataclass
class Splits:
    """A dataset as train / validation / test splits (see the module docstring).

    :param train: the training split (grey levels in [0, 1] even when ``binarize``).
    :param val: the validation split (already binarised when ``binarize``).
    :param test: the test split (already binarised when ``binarize``).
    :param sample_shape: shape of one sample, e.g. ``(1, 8, 8)`` or ``(2,)``.
    :param num_classes: number of classes of ``y``, or None for unlabelled data.
    :param kind: ``"image"`` (values in [0, 1]) or ``"points"`` (2-D data).
    :param name: the registered dataset name, e.g. ``"digits"``.
    :param binarize: train batches are to be binarised dynamically by the training loop.
    :param metadata: anything else (mode centres, std, source files...).
    """

    train: Split
    val: Split
    test: Split
    sample_shape: tuple[int, ...]
    num_classes: int | None
    kind: Literal["image", "points"]
    name: str = ""
    binarize: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(self.split(n).x)}" for n in ("train", "val", "test"))
        return (f"Splits({self.name!r}, {self.kind}, shape={self.sample_shape}, "
                f"classes={self.num_classes}, {sizes}, binarize={self.binarize})")


def split_indices(n: int, sizes: tuple[int, int], seed: int) -> tuple[np.ndarray, ...]:
    """A seeded permutation of ``range(n)`` cut into (train, val, test); ``sizes`` = (val, test)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = sizes
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def binarize_once(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed stochastic binarisation ``Bernoulli(x)`` (for validation and test images)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


def make_splits(x: np.ndarray, y: np.ndarray | None, parts: tuple[np.ndarray, ...], *,
                sample_shape: tuple[int, ...], num_classes: int | None, kind: str, name: str,
                binarize: bool = False, seed: int = 0, **metadata: Any) -> Splits:
    """Build :class:`Splits` from arrays and (train, val, test) index arrays."""
    tensors = []
    for i, index in enumerate(parts):
        xs = torch.as_tensor(np.asarray(x[index], dtype=np.float32))
        ys = torch.as_tensor(np.asarray(y[index], dtype=np.int64)) if y is not None else None
        if binarize and i > 0:  # val and test: binarised once, with a fixed seed
            xs = binarize_once(xs, seed + i)
        tensors.append(Split(xs, ys))
    return Splits(*tensors, sample_shape=sample_shape, num_classes=num_classes,
                  kind=kind, name=name, binarize=binarize, metadata=metadata)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- digits
class DigitsConfig(BaseModel):
    """Options of the ``digits`` dataset (1,797 8x8 grey images, 17 grey levels)."""

    model_config = ConfigDict(extra="forbid")
    binarize: bool = Field(False, description="dynamically binarised train batches; val/test "
                           "binarised once (for likelihoods with a Bernoulli decoder)")
    val_size: int = Field(180, ge=1, le=500, description="images in the validation split")
    test_size: int = Field(360, ge=1, le=500, description="images in the test split")
    split_seed: int = Field(0, ge=0, description="seed of the split (not the run's seed)")


def digits(options: DigitsConfig, seed: int) -> Splits:
    """scikit-learn's bundled ``load_digits`` as 1x8x8 images scaled to [0, 1].

    The default split is 1,257 train / 180 validation / 360 test images, fixed by ``split_seed``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)  # grey levels 0..16 -> [0, 1]
    parts = split_indices(len(x), (options.val_size, options.test_size), options.split_seed)
    return make_splits(x, bunch.target, parts, sample_shape=(1, 8, 8), num_classes=10,
                       kind="image", name="digits", binarize=options.binarize,
                       seed=options.split_seed, source="sklearn.datasets.load_digits")


# ------------------------------------------------------------------------ MNIST (IDX files)
class IdxConfig(BaseModel):
    """Options of ``mnist`` / ``fashion-mnist``: where the four IDX files are."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="directory with train-images-idx3-ubyte, train-labels-idx1-"
                      "ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz)")
    binarize: bool = Field(False, description="dynamically binarised train batches")
    val_size: int = Field(10_000, ge=1, description="training images held out for validation")
    split_seed: int = Field(0, ge=0, description="seed of the train/validation split")


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SOURCES = {
    "mnist": "https://yann.lecun.com/exdb/mnist/ (mirror: "
             "https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, where: str = "") -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``).

    IDX layout: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes and the data. A malformed file is a :class:`ForgelabError`
    naming it (and ``where`` to get a good copy).
    """
    path = Path(path)
    hint = f"download it again from {where}" if where else None
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise ForgelabError(f"IDX file not found: {path}", hint=hint) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ForgelabError(f"cannot read IDX file {path}: {exc}", hint=hint) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ForgelabError(f"{path} is not an IDX file (bad magic number)", hint=hint)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ForgelabError(f"{path} is truncated (incomplete IDX header)", hint=hint)
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ForgelabError(f"{path} is corrupt: header says shape {shape} ({expected} bytes of "
                            f"data) but the file has {len(raw) - header}", hint=hint)
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_file(directory: Path, stem: str, where: str) -> Path:
    """``stem`` or ``stem.gz`` in ``directory``; a clear error naming both when neither exists."""
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise ForgelabError(f"missing IDX file {directory / stem} (or {stem}.gz)",
                        hint=f"download the four IDX files from {where} into {directory}")


def load_idx_dataset(options: IdxConfig, name: str) -> Splits:
    """Read a 28x28 MNIST-format dataset: 60k train (minus ``val_size``) and 10k test images."""
    directory = Path(options.path).expanduser()
    where = SOURCES[name]
    if not directory.is_dir():
        raise ForgelabError(f"{name}: dataset directory {directory} does not exist",
                            hint=f"download the four IDX files from {where} and set "
                            f"dataset.path to their folder")
    files = {key: find_idx_file(directory, stem, where) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(path, where) for key, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ForgelabError(f"{files[f'{part}_images']} and {files[f'{part}_labels']} do not "
                                f"match: images {images.shape}, labels {labels.shape}",
                                hint=f"download them again from {where}")
    train_x, test_x = arrays["train_images"], arrays["test_images"]
    if options.val_size >= len(train_x):
        raise ForgelabError(f"{name}: val_size={options.val_size} leaves no training images "
                            f"({len(train_x)} in {files['train_images']})")
    x = np.concatenate([train_x, test_x])[:, None].astype(np.float32) / 255.0
    y = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    order = np.random.default_rng(options.split_seed).permutation(len(train_x))
    parts = (order[options.val_size:], order[:options.val_size],
             np.arange(len(train_x), len(x)))
    _, height, width = train_x.shape
    return make_splits(x, y, parts, sample_shape=(1, height, width),
                       num_classes=10, kind="image", name=name,
                       binarize=options.binarize, seed=options.split_seed,
                       source=str(directory))


def mnist(options: IdxConfig, seed: int) -> Splits:
    """MNIST from the IDX files in ``options.path``."""
    return load_idx_dataset(options, "mnist")


def fashion_mnist(options: IdxConfig, seed: int) -> Splits:
    """Fashion-MNIST from the IDX files in ``options.path``."""
    return load_idx_dataset(options, "fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``); for tests and
    for converting other data to the MNIST format."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
