"""Sample-quality metrics that need no downloaded weights: numpy functions of arrays.

A distance between generated samples and held-out data needs a feature space. Instead of an
Inception network (weights to download, 299x299 RGB inputs), diffax fits the feature space on
the *training split of the data itself*:

* :func:`fit_pca` + :func:`pca_features`: the leading principal components of the training
  examples (flattened), whitened (each component divided by its standard deviation), so every
  feature has unit variance on the training data and the distance is dimensionless.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets
  (FID's formula, in this feature space: "FD-PCA").
* :func:`sliced_wasserstein`: the sliced 2-Wasserstein distance between two point clouds, an
  average over random 1-D projections of the exact 1-D Wasserstein distance; it sees more than
  two moments (a moment-matched Gaussian scores badly on a mixture).
* :func:`nearest_neighbor_distances`: distance of each sample to its nearest training
  example, to see memorization.
* :func:`ssim`: the structural similarity index of images against references (Wang et al.
  2004), for reconstructions.

Task metrics (the downstream examples in :mod:`diffax.tasks` report them): :func:`psnr`
(peak signal-to-noise ratio per image, jax), :func:`auroc` (area under the ROC curve) and
:func:`segmentation_metrics` (pixel accuracy, per-class IoU and mean IoU).

All functions are pure (their randomness comes from an explicit ``seed``); the numpy ones
work in float64.

Example:
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> train, test = rng.normal(size=(2000, 5)), rng.normal(size=(1000, 5))
  >>> pca = fit_pca(train, num_components=3)
  >>> fd = frechet_distance(*gaussian_statistics(pca_features(pca, test)),
  ...                       *gaussian_statistics(pca_features(pca, test + 1.0)))
  >>> bool(fd > 1.0)
  True
  >>> round(sliced_wasserstein(test, test), 6)
  0.0
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value
from diffax.typing import Array

__all__ = [
    "PCA",
    "fit_pca",
    "pca_features",
    "gaussian_statistics",
    "frechet_distance",
    "sliced_wasserstein",
    "nearest_neighbor_distances",
    "ssim",
    "psnr",
    "auroc",
    "segmentation_metrics",
]


def _flat(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"`{name}` must be an array [N, ...] with N >= 1, got shape "
                         f"{x.shape}.")
    x = x.reshape(x.shape[0], -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` has non-finite values.")
    return x


class PCA(NamedTuple):
    """A whitening PCA fitted by :func:`fit_pca`.

    Attributes:
      mean: ``[D]`` mean of the (flattened) training examples.
      components: ``[K, D]`` orthonormal principal directions, by decreasing variance.
      scale: ``[K]`` standard deviation of the training data along each direction.
      explained_variance_ratio: ``[K]`` fraction of the total variance along each direction.
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    explained_variance_ratio: np.ndarray


def fit_pca(x, *, num_components: int | None = None, eps: float = 1e-8) -> PCA:
    """Fits a whitening PCA to examples ``x`` ``[N, ...]`` (flattened to ``[N, D]``).

    Args:
      x: training examples, e.g. images ``[N, H, W, C]`` or points ``[N, 2]``.
      num_components: ``K``, the number of leading components kept (default: all,
        ``min(N, D)``); capped at ``min(N, D)``.
      eps: added to each component's variance before whitening (directions without
        variance then stay finite).

    Returns:
      A :class:`PCA`.

    Example:
      >>> import numpy as np
      >>> x = np.random.default_rng(0).normal(size=(500, 4)) * np.array([3.0, 1, 1, 0.1])
      >>> pca = fit_pca(x, num_components=2)
      >>> pca.components.shape, bool(abs(abs(pca.components[0, 0]) - 1) < 0.01)
      ((2, 4), True)
    """
    x = _flat(x, "x")
    n, d = x.shape
    k = min(n, d) if num_components is None else int(num_components)
    if k < 1:
        raise ValueError(f"`num_components` must be >= 1, got {num_components!r}.")
    k = min(k, n, d)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s**2 / max(n - 1, 1)
    total = var.sum()
    ratio = var / total if total > 0 else np.zeros_like(var)
    # A deterministic sign: the largest-magnitude coordinate of each direction is positive.
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    return PCA(mean=mean, components=vt[:k], scale=np.sqrt(var[:k] + eps),
               explained_variance_ratio=ratio[:k])


def pca_features(pca: PCA, x) -> np.ndarray:
    """Whitened PCA features ``[N, K]`` of examples ``x`` ``[N, ...]``.

    Example:
      >>> import numpy as np
      >>> x = np.random.default_rng(0).normal(size=(1000, 3)) * 5.0
      >>> f = pca_features(fit_pca(x), x)
      >>> np.round(f.std(axis=0, ddof=1), 6).tolist()
      [1.0, 1.0, 1.0]
    """
    x = _flat(x, "x")
    if x.shape[1] != pca.mean.shape[0]:
        raise ValueError(f"`x` has {x.shape[1]} values per example; the PCA was fitted on "
                         f"{pca.mean.shape[0]}.")
    return (x - pca.mean) @ pca.components.T / pca.scale


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [K], covariance [K, K])`` of features ``[N, K]`` (unbiased covariance).

    Example:
      >>> mu, cov = gaussian_statistics(np.array([[0.0, 0.0], [2.0, 2.0]]))
      >>> mu.tolist(), cov.tolist()
      ([1.0, 1.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    f = _flat(features, "features")
    if f.shape[0] < 2:
        raise ValueError(f"`features` needs at least 2 rows for a covariance, got {f.shape[0]}.")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """The Fréchet (2-Wasserstein squared) distance between two Gaussians.

    ``|m1 - m2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)``: the formula of FID, computed
    with symmetric eigendecompositions (stable for singular covariances). Zero for identical
    statistics; in squared feature units.

    Example:
      >>> import numpy as np
      >>> eye = np.eye(2)
      >>> frechet_distance(np.zeros(2), eye, np.array([3.0, 4.0]), eye)
      25.0
      >>> round(frechet_distance(np.zeros(2), eye, np.zeros(2), 4 * eye), 6)  # 2 * (2 - 1)^2
      2.0
    """
    m1, m2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2,
                                                                                   np.float64))
    if m1.shape != m2.shape or c1.shape != c2.shape or c1.shape != (m1.size, m1.size):
        raise ValueError(f"frechet_distance: shapes do not match: mean1 {m1.shape}, cov1 "
                         f"{c1.shape}, mean2 {m2.shape}, cov2 {c2.shape}.")
    s1 = _sqrt_psd(c1)
    cross = _sqrt_psd(s1 @ c2 @ s1)
    value = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(cross))
    return max(value, 0.0)


def sliced_wasserstein(x, y, *, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between point clouds ``x`` ``[N, ...]``, ``y`` ``[M, ...]``.

    ``sqrt(mean over random unit directions u of W2(u.x, u.y)^2)``, each 1-D ``W2`` exact
    between the empirical quantile functions (compared at ``min(N, M)`` levels when the sizes
    differ). The directions are drawn from ``seed``, the same for every call, so values are
    comparable across calls. In the units of ``x``.

    Args:
      x, y: two sets of examples with the same trailing shape (flattened).
      num_projections: number of random directions.
      seed: seeds the directions.

    Example:
      >>> import numpy as np
      >>> x = np.random.default_rng(0).normal(size=(4000, 2))
      >>> round(sliced_wasserstein(x, x + np.array([3.0, 0.0])) ** 2, 1)  # E[(3 u_0)^2]
      4.5
    """
    x, y = _flat(x, "x"), _flat(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sliced_wasserstein: `x` has {x.shape[1]} values per example, `y` "
                         f"{y.shape[1]}.")
    if int(num_projections) < 1:
        raise ValueError(f"`num_projections` must be >= 1, got {num_projections!r}.")
    u = np.random.default_rng(seed).normal(size=(x.shape[1], int(num_projections)))
    u /= np.linalg.norm(u, axis=0, keepdims=True)
    px, py = np.sort(x @ u, axis=0), np.sort(y @ u, axis=0)
    if px.shape[0] != py.shape[0]:
        n = min(px.shape[0], py.shape[0])
        levels = (np.arange(n) + 0.5) / n
        px = np.quantile(px, levels, axis=0)
        py = np.quantile(py, levels, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))


def nearest_neighbor_distances(x, reference, *, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance ``[N]`` from each example of ``x`` to its nearest one in ``reference``.

    Compare samples' distances to the training split with held-out data's: much smaller
    means the model reproduces training examples.

    Example:
      >>> nearest_neighbor_distances(np.array([[0.0, 1.0]]), np.array([[0.0, 0.0], [5, 5]]))
      array([1.])
    """
    x, ref = _flat(x, "x"), _flat(reference, "reference")
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"nearest_neighbor_distances: `x` has {x.shape[1]} values per "
                         f"example, `reference` {ref.shape[1]}.")
    ref_sq = np.sum(ref**2, axis=1)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xc = x[s:s + chunk]
        d2 = np.sum(xc**2, axis=1)[:, None] - 2 * xc @ ref.T + ref_sq[None, :]
        out[s:s + chunk] = np.sqrt(np.clip(d2.min(axis=1), 0.0, None))
    return out


def _gaussian_filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of ``[B, H, W, C]`` over ``H`` and ``W``."""
    from numpy.lib.stride_tricks import sliding_window_view

    k = len(kernel)
    x = np.einsum("bhwck,k->bhwc", sliding_window_view(x, k, axis=1), kernel)
    return np.einsum("bhwck,k->bhwc", sliding_window_view(x, k, axis=2), kernel)


def ssim(x, reference, *, data_range: float, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean structural similarity of each image to its reference (Wang et al. 2004), ``[B]``.

    Local means, variances and covariance are taken with a Gaussian window (``window_size``,
    ``sigma``; 11 and 1.5 as in the paper) at every position where it fits inside the image
    ("valid"), ``SSIM = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x +
    var_y + C2))`` with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``; the map is
    averaged over positions and channels. 1 for identical images. Computed in float64.

    Args:
      x: images ``[B, H, W, C]`` (or ``[B, H, W]``).
      reference: the same shape.
      data_range: ``L``, the span of the values (1 for ``[0, 1]``, 2 for ``[-1, 1]``).
      window_size: the window's side (odd, at most ``min(H, W)``).
      sigma: the window's standard deviation in pixels.
      k1, k2: the paper's constants.

    Example:
      >>> rng = np.random.default_rng(0)
      >>> x = rng.uniform(size=(2, 16, 16, 1))
      >>> ssim(x, x, data_range=1.0).tolist()
      [1.0, 1.0]
      >>> bool(ssim(x, x + 0.2 * rng.normal(size=x.shape), data_range=1.0).max() < 0.9)
      True
    """
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    if x.shape != reference.shape:
        raise ValueError(f"ssim: `x` {x.shape} and `reference` {reference.shape} differ.")
    if x.ndim == 3:
        x, reference = x[..., None], reference[..., None]
    if x.ndim != 4:
        raise ValueError(f"ssim: `x` must be images [B, H, W, C] or [B, H, W], got {x.shape}.")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or \
            window_size < 1 or window_size % 2 == 0 or window_size > min(x.shape[1:3]):
        raise ValueError(f"ssim: `window_size` must be an odd int <= min(H, W) = "
                         f"{min(x.shape[1:3])}, got {window_size!r}.")
    if not data_range > 0:
        raise ValueError(f"ssim: `data_range` must be positive, got {data_range!r}.")
    offsets = np.arange(window_size) - window_size // 2
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    filt = lambda v: _gaussian_filter_valid(v, kernel)
    mu_x, mu_y = filt(x), filt(reference)
    var_x = filt(x * x) - mu_x ** 2
    var_y = filt(reference * reference) - mu_y ** 2
    cov = filt(x * reference) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
            / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return smap.reshape(len(x), -1).mean(axis=1)


def psnr(x: Array, reference: Array, *, data_range: float = 2.0,
         where: Array | None = None) -> Array:
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)``, in dB (``[B]``).

    ``data_range`` is the span of the values (2 for images in ``[-1, 1]``). With ``where``
    (0/1, broadcast against ``x``) the MSE is over the entries where it is 1 only.

    Example:
      >>> psnr(jnp.zeros((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 0.2)).round(3)
      Array([20.], dtype=float32)
    """
    x, reference = jnp.asarray(x), jnp.asarray(reference)
    if x.shape != reference.shape:
        raise ValueError(f"psnr: `x` {x.shape} and `reference` {reference.shape} differ.")
    weight = jnp.ones_like(x) if where is None else jnp.broadcast_to(
        jnp.asarray(where, x.dtype), x.shape)
    count = jnp.sum(weight.reshape(x.shape[0], -1), axis=-1)
    concrete = concrete_value(count)  # checked outside jit only
    if concrete is not None and not concrete.min() > 0:
        raise ValueError("psnr: `where` selects no entry of some image.")
    mse = jnp.sum((weight * jnp.square(x - reference)).reshape(x.shape[0], -1), axis=-1) / count
    return 10.0 * jnp.log10(data_range**2 / mse)


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive / anomaly).

    Equal to the probability that a random positive scores above a random negative, ties
    counted half (the Mann-Whitney U statistic over ``P * N``), computed from average ranks.

    Example:
      >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
      0.75
      >>> auroc([1.0, 1.0], [0, 1])
      0.5
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"auroc: `scores` ({s.size}) and `labels` ({y.size}) differ in length.")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("auroc: `labels` must be 0 or 1.")
    y = y.astype(bool)
    num_pos, num_neg = int(y.sum()), int((~y).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError("auroc: `labels` must contain both classes.")
    if not np.all(np.isfinite(s)):
        raise ValueError("auroc: `scores` must be finite.")
    ordered = np.sort(s)
    # Average 1-based rank of each score among all scores (ties share their mean rank).
    ranks = 0.5 * (np.searchsorted(ordered, s, "left") + np.searchsorted(ordered, s, "right")
                   + 1)
    u = ranks[y].sum() - num_pos * (num_pos + 1) / 2.0
    return float(u / (num_pos * num_neg))


def segmentation_metrics(pred: Any, target: Any, num_classes: int) -> dict[str, Any]:
    """Pixel accuracy, per-class IoU and mean IoU of integer label maps.

    IoU of class ``k`` is ``|pred = k and target = k| / |pred = k or target = k|`` (NaN for a
    class absent from both, left out of the mean).

    Example:
      >>> m = segmentation_metrics([[0, 1], [1, 1]], [[0, 1], [0, 1]], 2)
      >>> m["accuracy"], m["iou"], round(m["mean_iou"], 4)
      (0.75, [0.5, 0.6666666666666666], 0.5833)
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"segmentation_metrics: `pred` {pred.shape} and `target` "
                         f"{target.shape} differ.")
    ious = []
    for k in range(int(num_classes)):
        union = np.sum((pred == k) | (target == k))
        ious.append(float(np.sum((pred == k) & (target == k)) / union) if union else
                    float("nan"))
    return {"accuracy": float(np.mean(pred == target)), "iou": ious,
            "mean_iou": float(np.nanmean(ious))}
