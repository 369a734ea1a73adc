"""Media that can be read without a caption: labelled reconstructions and latent traversals,
scatter plots with axes and a legend, media file names that sort in logged order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgelab.core.tracking import Tracker
from forgelab.generative import images
from forgelab.generative.images import DATA_COLOUR, SAMPLE_COLOUR


def _dark(region: np.ndarray) -> int:
    return int((region.astype(int).sum(axis=-1) < 384).sum())


def test_media_file_names_sort_in_logged_order(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, mode="disabled", run_id="x")
    steps = [5, 40, 300, 2000, 10000]
    paths = [tracker.log_image("samples/grid", np.zeros((4, 4, 3)), global_step=s).name
             for s in steps]
    tracker.finish()
    assert sorted(paths) == paths
    assert paths[0] == "samples_grid-global_step000000005.png"


def test_reconstructions_mark_input_and_output_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8))
    bare = images.reconstruction_grid(x, 1 - x, nrow=8, labelled=False)
    labelled = images.reconstruction_grid(x, 1 - x, nrow=8)
    top = labelled.shape[0] - bare.shape[0]
    left = labelled.shape[1] - bare.shape[1]
    assert top > 0 and left > 0
    assert np.array_equal(labelled[top:, left:], bare)  # the pictures themselves unchanged
    tile = 4 * 9  # 8x8 digits scaled 4x, one pixel of padding
    crops = [labelled[top + 4 + r * tile:top + 4 + (r + 1) * tile, :left] for r in range(4)]
    assert all(_dark(c) > 20 for c in crops)  # a label beside every row
    assert np.array_equal(crops[0], crops[2]) and np.array_equal(crops[1], crops[3])
    assert not np.array_equal(crops[0], crops[1])  # "input" is not "output"


def test_traversal_names_units_and_values() -> None:
    x = np.random.default_rng(1).uniform(size=(2 * 5, 8, 8))
    picture = images.traversal_grid(x, units=[3, 11], values=[-3, -1.5, 0, 1.5, 3],
                                    kl=[2.0, 0.5])
    bare = images.make_grid(x, nrow=5)
    top = picture.shape[0] - bare.shape[0]
    # the grid sits right of the row labels (the title may make the canvas wider still)
    left = next(i for i in range(picture.shape[1] - bare.shape[1] + 1)
                if np.array_equal(picture[top:, i:i + bare.shape[1]], bare))
    assert left > 0
    tile = 4 * 9
    rows = [picture[top + 4 + r * tile:top + 4 + (r + 1) * tile, :left] for r in range(2)]
    assert all(_dark(r) > 20 for r in rows) and not np.array_equal(rows[0], rows[1])
    header = picture[:top, left:]
    cols = [header[:, 4 + c * tile:4 + (c + 1) * tile] for c in range(5)]
    assert all(_dark(c) > 5 for c in cols)  # every column's value is written above it
    assert not np.array_equal(cols[0], cols[4])


def test_scatter_has_axes_ticks_and_a_legend() -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(500, 2))
    samples = rng.normal(size=(300, 2)) * 0.1 - 1.5  # all in the lower left
    picture = images.scatter_image(samples, data, size=300)
    assert picture.shape[0] > 300 and picture.shape[1] > 300
    colours = picture.reshape(-1, 3)
    assert (colours == SAMPLE_COLOUR).all(axis=1).any()
    # the legend (top right) shows both colours though no sample lies there
    legend = picture[20:70, -140:]
    for colour in (DATA_COLOUR, SAMPLE_COLOUR):
        assert (legend.reshape(-1, 3) == colour).all(axis=1).any()
    assert _dark(picture[-36:, 64:]) > 50  # x tick labels and the axis name
    assert _dark(picture[:, :50]) > 50  # y tick labels and the axis name
    assert images._ticks(-1.3, 2.7) == [-1.0, 0.0, 1.0, 2.0]
