"""Sample grids and scatter plots."""

import numpy as np
import pytest
from PIL import Image

from diffax.evaluation import plots


def test_image_grid_places_each_image_and_scales():
    x = np.arange(5, dtype=np.float64).reshape(5, 1, 1, 1) * 50  # values 0..200
    grid = plots.image_grid(x, value_range=(0, 200), num_cols=2, pad=1, scale=2,
                            background=7)
    assert grid.shape == (3 * 3 + 1, 2 * 3 + 1, 1) and grid.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 2)
        block = grid[1 + 3 * r:3 + 3 * r, 1 + 3 * c:3 + 3 * c, 0]
        assert np.all(block == round(255 * i / 4)), i
    assert grid[0, 0, 0] == 7 and grid[-2, -2, 0] == 7  # padding and the empty 6th cell
    rgb = plots.image_grid(np.full((4, 2, 3, 3), 2.0), value_range=(-1, 1))
    assert rgb.shape == (2 * 3 + 1, 2 * 4 + 1, 3) and rgb.max() == 255
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        plots.image_grid(np.zeros((4, 8, 8)))


def test_write_png_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    path = plots.write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), img)
    grey = plots.write_png(tmp_path / "b.png", img[..., :1])
    np.testing.assert_array_equal(np.asarray(Image.open(grey)), img[..., 0])
    with pytest.raises(ValueError, match="uint8"):
        plots.write_png(tmp_path / "c.png", img.astype(np.float32))


def test_scatter_png(tmp_path):
    rng = np.random.default_rng(0)
    path = plots.scatter_png(tmp_path / "s.png", rng.normal(size=(300, 2)),
                             rng.normal(size=(1000, 2)), title="test")
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (500, 500)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plots.scatter_png(tmp_path / "t.png", np.zeros((3, 3)), np.zeros((3, 2)))
