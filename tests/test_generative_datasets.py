"""Datasets of the generative models: the digits split and the IDX reader (MNIST format)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from forgelab.core.errors import ForgelabError
from forgelab.generative.datasets import (
    IDX_FILES,
    DigitsConfig,
    IdxConfig,
    digits,
    fashion_mnist,
    mnist,
    read_idx,
    write_idx,
)


def test_digits_split_is_fixed_by_split_seed_and_in_unit_range() -> None:
    a, b = digits(DigitsConfig(), seed=0), digits(DigitsConfig(), seed=7)
    # the run seed does not move the split; split_seed does
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    c = digits(DigitsConfig(split_seed=1), seed=0)
    assert not torch.equal(a.test.x, c.test.x)
    assert (len(a.train.x), len(a.val.x), len(a.test.x)) == (1257, 180, 360)
    assert a.sample_shape == (1, 8, 8) and a.num_classes == 10 and a.kind == "image"
    for split in (a.train, a.val, a.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 8, 8)
        assert float(split.x.min()) == 0.0 and float(split.x.max()) == 1.0
    # no image is in two splits
    flat = [s.x.flatten(1) for s in (a.train, a.val, a.test)]
    assert len(torch.unique(torch.cat(flat), dim=0)) > 0.95 * sum(len(f) for f in flat)


def test_digits_binarized_keeps_train_grey_and_binarises_val_test_once() -> None:
    grey, binary = digits(DigitsConfig(), 0), digits(DigitsConfig(binarize=True), 0)
    assert binary.binarize and torch.equal(binary.train.x, grey.train.x)
    assert set(binary.val.x.unique().tolist()) == {0.0, 1.0}
    assert set(binary.test.x.unique().tolist()) == {0.0, 1.0}
    again = digits(DigitsConfig(binarize=True), 5)
    assert torch.equal(binary.test.x, again.test.x)  # the same fixed binarisation
    # a binarised pixel is 1 about as often as its grey level says
    assert abs(float(binary.test.x.mean() - grey.test.x.mean())) < 0.02


def _write_mnist(directory: Path, n_train: int = 30, n_test: int = 12, gz: bool = False,
                 seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        write_idx(directory / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_roundtrip_plain_and_gzipped(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path / "mnist", gz=gz)
    splits = mnist(IdxConfig(path=str(tmp_path / "mnist"), val_size=5), seed=0)
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (25, 5, 12)
    assert splits.sample_shape == (1, 28, 28) and splits.num_classes == 10
    # the test split is the t10k file, in order, scaled to [0, 1]
    expected = torch.from_numpy(arrays["test_images"]).float()[:, None] / 255.0
    assert torch.allclose(splits.test.x, expected)
    assert splits.test.y.tolist() == arrays["test_labels"].tolist()
    # train + val together are exactly the training file
    both = torch.cat([splits.train.x, splits.val.x]).flatten(1)
    original = torch.from_numpy(arrays["train_images"]).float().flatten(1) / 255.0
    assert torch.equal(both.sort(0).values, original.sort(0).values)


def test_fashion_mnist_reads_the_same_format(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "fashion", gz=True, seed=3)
    splits = fashion_mnist(IdxConfig(path=str(tmp_path / "fashion"), val_size=10), seed=0)
    assert splits.name == "fashion-mnist" and len(splits.train.x) == 20


def test_missing_idx_file_names_the_file_and_where_to_get_it(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ForgelabError) as info:
        mnist(IdxConfig(path=str(tmp_path / "mnist"), val_size=5), seed=0)
    assert "t10k-labels-idx1-ubyte" in info.value.message
    assert "yann.lecun.com" in str(info.value)
    with pytest.raises(ForgelabError, match="does not exist"):
        mnist(IdxConfig(path=str(tmp_path / "nowhere")), seed=0)


def test_corrupt_idx_files_are_errors_that_name_the_file(tmp_path: Path) -> None:
    arrays = _write_mnist(tmp_path / "mnist")
    truncated = tmp_path / "mnist" / "train-images-idx3-ubyte"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(ForgelabError, match="train-images-idx3-ubyte is corrupt"):
        mnist(IdxConfig(path=str(tmp_path / "mnist"), val_size=5), seed=0)

    bad_magic = tmp_path / "magic-idx1-ubyte"
    bad_magic.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ForgelabError, match="magic-idx1-ubyte is not an IDX file"):
        read_idx(bad_magic)

    bad_gzip = tmp_path / "fashion" / "train-images-idx3-ubyte.gz"
    _write_mnist(tmp_path / "fashion", gz=True)
    bad_gzip.write_bytes(gzip.compress(b"x" * 100)[:30])
    with pytest.raises(ForgelabError, match="train-images-idx3-ubyte.gz") as info:
        fashion_mnist(IdxConfig(path=str(tmp_path / "fashion"), val_size=5), seed=0)
    assert "zalandoresearch" in str(info.value)

    # images and labels of different lengths
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", arrays["train_images"])
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", arrays["train_labels"][:-1])
    with pytest.raises(ForgelabError, match="do not match"):
        mnist(IdxConfig(path=str(tmp_path / "mnist"), val_size=5), seed=0)
