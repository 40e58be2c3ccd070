"""Sample grids (images) and scatter plots over the data density (2-D points), as PNG files.

:func:`image_grid` is a pure numpy function; :func:`write_png` and :func:`scatter_png` write
files (matplotlib with its non-interactive Agg backend, so no display is needed).

Example:
  >>> import os, tempfile, numpy as np
  >>> grid = image_grid(np.zeros((16, 8, 8, 1), np.uint8), value_range=(0, 255), scale=2)
  >>> grid.shape, grid.dtype
  ((69, 69, 1), dtype('uint8'))
  >>> path = write_png(os.path.join(tempfile.mkdtemp(), "grid.png"), grid)
  >>> open(path, "rb").read(4)
  b'\\x89PNG'
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["image_grid", "write_png", "scatter_png"]


def image_grid(x, *, value_range: tuple[float, float] = (0.0, 255.0), num_cols: int | None = None,
               pad: int = 1, scale: int = 1, background: int = 255) -> np.ndarray:
    """Tiles images ``[N, H, W, C]`` into one uint8 image ``[rows*(s*H+pad)+pad, ..., C]``.

    Args:
      x: images, values in ``value_range`` (clipped; NaN shown as the low end).
      value_range: ``(low, high)`` mapped to 0..255.
      num_cols: images per row (default ``ceil(sqrt(N))``).
      pad: pixels between images (and around the grid).
      scale: each image is enlarged ``scale`` times (nearest neighbour), e.g. to make 8x8
        digits visible.
      background: grey level of the padding.

    Example:
      >>> image_grid(np.ones((2, 1, 1, 1)), value_range=(0, 1), num_cols=2)[..., 0]
      array([[255, 255, 255, 255, 255],
             [255, 255, 255, 255, 255],
             [255, 255, 255, 255, 255]], dtype=uint8)
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"image_grid: `x` must be images [N, H, W, C], got shape {x.shape}.")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"image_grid: `value_range` must be (low, high) with low < high, got "
                         f"{value_range!r}.")
    scale, pad = int(scale), int(pad)
    if scale < 1 or pad < 0:
        raise ValueError(f"image_grid: need `scale` >= 1 and `pad` >= 0, got {scale}, {pad}.")
    img = np.round(255 * np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0, 1))
    img = img.astype(np.uint8)
    if scale > 1:
        img = img.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = img.shape
    cols = int(num_cols) if num_cols else int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), background, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = img[i]
    return grid


def write_png(path: str | os.PathLike, image) -> str:
    """Writes a uint8 image ``[H, W]`` or ``[H, W, C]`` (C = 1, 3 or 4) as PNG; returns the path."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"write_png: `image` must be uint8, got {image.dtype}.")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"write_png: `image` must be [H, W] or [H, W, 1|3|4], got "
                         f"{image.shape}.")
    path = os.fspath(path)
    Image.fromarray(image).save(path, format="PNG")
    return path


def scatter_png(path: str | os.PathLike, samples, data, *, title: str = "",
                bins: int = 100, extent: float | None = None, max_points: int = 4000) -> str:
    """Scatter plot of 2-D ``samples`` ``[N, 2]`` over the density of ``data`` ``[M, 2]``.

    The data density is a 2-D histogram in grey; samples are red dots (at most
    ``max_points`` of them). Returns the path.

    Args:
      path: the PNG to write.
      samples: generated points ``[N, 2]``.
      data: reference points ``[M, 2]`` (e.g. the test split).
      title: plot title.
      bins: histogram bins per axis.
      extent: half-width of the square plotted (default: from the data's range).
      max_points: the first this many samples are drawn.

    Example:
      >>> import os, tempfile, numpy as np
      >>> pts = np.random.default_rng(0).normal(size=(100, 2))
      >>> path = scatter_png(os.path.join(tempfile.mkdtemp(), "s.png"), pts, pts)
      >>> open(path, "rb").read(4)
      b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    samples, data = np.asarray(samples, np.float64), np.asarray(data, np.float64)
    for name, a in (("samples", samples), ("data", data)):
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"scatter_png: `{name}` must be points [N, 2], got {a.shape}.")
    if extent is None:
        finite = data[np.isfinite(data).all(axis=1)]
        extent = 1.1 * float(np.max(np.abs(finite))) if len(finite) else 1.0
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist2d(data[:, 0], data[:, 1], bins=bins, range=[[-extent, extent]] * 2,
              cmap="Greys")
    shown = samples[:max_points]
    ax.scatter(shown[:, 0], shown[:, 1], s=2, c="tab:red", alpha=0.6, linewidths=0)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path
