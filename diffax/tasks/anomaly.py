"""Anomaly detection by partial diffusion and reconstruction (AnoDDPM, Wyatt et al. 2022).

A diffusion model trained on normal data only is used as a projector: an input ``x`` is noised
to a chosen time ``t`` (``x_t = alpha(t) x + sigma(t) n``) and denoised back to ``t_min``; the
reconstruction lies near the normal data, so it differs from ``x`` where ``x`` is anomalous.
The per-pixel anomaly map is the squared reconstruction error, the per-image score its mean,
and :func:`auroc` measures how well the score separates anomalies from normal inputs.

AnoDDPM's point is the noise ``n``: Gaussian noise at a small ``t`` leaves large anomalies
intact, so it also trains and reconstructs with multi-octave **simplex noise**, which is
spatially correlated (low frequencies) and so erases larger structures. Here:

* :func:`simplex2d`: 2-D simplex noise (Perlin 2001, in Gustavson's formulation) of
  coordinates, with a permutation table; :func:`octave_simplex`: a sum of octaves
  (frequency doubling, amplitude ``persistence**o``); :func:`simplex_noise`: a jit-able
  ``noise(key, shape)`` of images ``[B, H, W, C]`` with a random table and offset per image
  and channel, standardised per image to zero mean and unit variance (so it replaces ``eps``);
  :func:`gaussian_noise` is the same interface for ``eps``.
* :func:`NoiseDenoisingLoss`: ``DenoisingLoss(noise_fn=...)``, the denoising loss with
  ``eps`` drawn from a given noise function (AnoDDPM trains its simplex model so).
* :func:`reconstruct`: partial diffusion to ``t`` with a given noise and any diffax solver
  from ``t`` down to ``t_min``; a stochastic solver draws each step's noise from the same
  noise function (AnoDDPM: ``DDPM()`` with simplex noise at every step; a deterministic
  solver such as DDIM needs none).
* :func:`anomaly_scores` and :func:`auroc` (the Mann-Whitney statistic, ties counted half).

Example:
  >>> import jax, jax.numpy as jnp
  >>> n = simplex_noise(jax.random.key(0), (2, 8, 8, 1), frequency=1.0, octaves=3)
  >>> n.shape, bool(jnp.allclose(n.mean(axis=(1, 2, 3)), 0.0, atol=1e-5))
  ((2, 8, 8, 1), True)
  >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
  0.75
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.evaluation.metrics import auroc  # re-exported: it moved there
from diffax.losses import DenoisingLoss
from diffax.processes import Process, expand
from diffax.typing import Array, Denoiser, PRNGKey

__all__ = [
    "NoiseFn",
    "simplex2d",
    "octave_simplex",
    "simplex_noise",
    "gaussian_noise",
    "NoiseDenoisingLoss",
    "partial_grid",
    "reconstruct",
    "anomaly_scores",
    "auroc",
    "baseline_scores",
]

NoiseFn = Callable[[PRNGKey, tuple[int, ...]], Array]
"""``noise(key, shape) -> [shape]`` with zero mean and unit variance per element."""

_F2 = 0.5 * (math.sqrt(3.0) - 1.0)  # skew of the square grid onto the simplex grid
_G2 = (3.0 - math.sqrt(3.0)) / 6.0  # and back
# Eight unit gradients at multiples of 45 degrees.
_GRADS = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], -1)
# One corner contributes (0.5 - r^2)^4 <g, d> with |<g, d>| <= r; its maximum over r is at
# r^2 = 1/18. Three corners at most: dividing by three times that bounds the noise by 1.
_R2 = 1.0 / 18.0
_SCALE = 1.0 / (3.0 * (0.5 - _R2) ** 4 * math.sqrt(_R2))


def _check_perm(perm: Array) -> Array:
    perm = jnp.asarray(perm)
    if perm.shape != (256,) or not jnp.issubdtype(perm.dtype, jnp.integer):
        raise ValueError(f"simplex2d: `perm` must be an integer permutation of 0..255 of shape "
                         f"(256,), got {perm.dtype}{list(perm.shape)}.")
    return perm


def simplex2d(x: Array, y: Array, perm: Array) -> Array:
    """2-D simplex noise at coordinates ``(x, y)`` (any common shape), values in ``[-1, 1]``.

    The plane is split into equilateral triangles (the square grid skewed by
    ``F2 = (sqrt(3) - 1) / 2``); each of the three corners of the triangle holding a point
    contributes ``(0.5 - r^2)^4 <g, d>`` (zero beyond ``r^2 = 0.5``), with ``d`` the offset
    from the corner and ``g`` one of eight unit gradients picked by hashing the corner's
    lattice coordinates through ``perm``. The noise is zero at every lattice corner (the points
    ``(i - (i + j) G2, j - (i + j) G2)`` for integers ``i, j``, ``G2 = (3 - sqrt(3)) / 6``),
    smooth (C^2) and periodic: a shift by 256 lattice cells along a lattice direction, e.g.
    ``256 (1 - G2, -G2)``, repeats it.

    Args:
      x, y: coordinates (lattice units), same shape.
      perm: ``[256]`` integer permutation of ``0..255`` (the hash; a random one per field).

    Returns:
      noise values, shape of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> perm = jnp.arange(256)
      >>> float(simplex2d(jnp.array(0.0), jnp.array(0.0), perm))  # a lattice corner
      0.0
    """
    perm = _check_perm(perm)
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"simplex2d: `x` {x.shape} and `y` {y.shape} must have one shape.")
    dtype = jnp.result_type(x.dtype, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    skew = (x + y) * _F2
    i, j = jnp.floor(x + skew), jnp.floor(y + skew)
    unskew = (i + j) * _G2
    x0, y0 = x - (i - unskew), y - (j - unskew)
    i1 = (x0 > y0).astype(dtype)  # lower triangle: step in x first
    j1 = 1.0 - i1
    offsets = ((x0, y0), (x0 - i1 + _G2, y0 - j1 + _G2),
               (x0 - 1.0 + 2.0 * _G2, y0 - 1.0 + 2.0 * _G2))
    ii, jj = i.astype(jnp.int32) % 256, j.astype(jnp.int32) % 256
    i1i, j1i = i1.astype(jnp.int32), j1.astype(jnp.int32)
    corners = ((ii, jj), (ii + i1i, jj + j1i), (ii + 1, jj + 1))
    grads = jnp.asarray(_GRADS, dtype)
    total = jnp.zeros_like(x)
    for (ci, cj), (dx, dy) in zip(corners, offsets, strict=True):
        g = grads[perm[(ci + perm[cj % 256]) % 256] % 8]
        t = 0.5 - dx * dx - dy * dy
        total = total + jnp.where(t > 0, t**4 * (g[..., 0] * dx + g[..., 1] * dy), 0.0)
    return total * _SCALE


def octave_simplex(x: Array, y: Array, perm: Array, *, octaves: int = 4,
                   persistence: float = 0.5, offsets: Array | None = None) -> Array:
    """Sum of ``octaves`` simplex noises at doubling frequencies, values in ``[-1, 1]``.

    ``sum_o persistence**o * simplex2d(2**o (x, y) + offsets[o])`` divided by
    ``sum_o persistence**o``.

    Args:
      x, y: coordinates (lattice units of the first octave).
      perm: ``[256]`` permutation (the hash).
      octaves: number of octaves (>= 1).
      persistence: amplitude ratio between successive octaves (in ``(0, 1]``).
      offsets: ``[octaves, 2]`` shifts of each octave's coordinates (decorrelates octaves);
        default none.

    Example:
      >>> import jax.numpy as jnp
      >>> v = octave_simplex(jnp.linspace(0, 4, 50), jnp.zeros(50), jnp.arange(256), octaves=3)
      >>> bool(jnp.abs(v).max() <= 1.0)
      True
    """
    if int(octaves) != octaves or octaves < 1:
        raise ValueError(f"octave_simplex: `octaves` must be a positive integer, got "
                         f"{octaves!r}.")
    if not 0.0 < float(persistence) <= 1.0:
        raise ValueError(f"octave_simplex: `persistence` must be in (0, 1], got "
                         f"{persistence!r}.")
    offsets = jnp.zeros((octaves, 2)) if offsets is None else jnp.asarray(offsets)
    if offsets.shape != (octaves, 2):
        raise ValueError(f"octave_simplex: `offsets` must have shape ({octaves}, 2), got "
                         f"{offsets.shape}.")
    total, norm = 0.0, 0.0
    for o in range(int(octaves)):
        amp, freq = float(persistence) ** o, 2.0**o
        total = total + amp * simplex2d(freq * x + offsets[o, 0], freq * y + offsets[o, 1], perm)
        norm += amp
    return total / norm


def simplex_noise(key: PRNGKey, shape: tuple[int, ...], *, frequency: float = 1.0,
                  octaves: int = 4, persistence: float = 0.8, standardize: bool = True,
                  dtype: Any = jnp.float32) -> Array:
    """Multi-octave simplex noise images ``[B, H, W, C]`` (jit-able; ``shape`` static).

    Each image and channel gets its own random permutation table and random offsets, so fields
    are independent across the batch. Pixel ``(h, w)`` of an ``H x W`` image sits at
    ``frequency * (h / H, w / W)`` lattice units: ``frequency`` is the number of lattice cells
    across the image in the first octave (AnoDDPM's starting frequency).

    Args:
      key: PRNG key.
      shape: ``(B, H, W, C)``.
      frequency: lattice cells per image side at the first octave (> 0).
      octaves: octaves (AnoDDPM: 6 on 256x256 images).
      persistence: amplitude ratio between octaves (AnoDDPM: 0.8).
      standardize: rescale each image to zero mean and unit variance over its pixels and
        channels (so it can replace Gaussian ``eps``); otherwise values lie in ``[-1, 1]``.
      dtype: output dtype.

    Example:
      >>> import jax
      >>> a = jax.jit(simplex_noise, static_argnums=1)(jax.random.key(0), (1, 8, 8, 1))
      >>> b = simplex_noise(jax.random.key(0), (1, 8, 8, 1))
      >>> bool(jnp.allclose(a, b, atol=1e-5)), round(float(jnp.std(a)), 3)
      (True, 1.0)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"simplex_noise: `shape` must be (B, H, W, C), got {shape}.")
    if not float(frequency) > 0:
        raise ValueError(f"simplex_noise: `frequency` must be positive, got {frequency!r}.")
    b, h, w, c = shape
    fields = b * c
    key_perm, key_off = jax.random.split(key)
    perms = jax.vmap(lambda k: jax.random.permutation(k, 256))(
        jax.random.split(key_perm, fields))
    offsets = jax.random.uniform(key_off, (fields, octaves, 2), dtype, 0.0, 256.0)
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=dtype) * (frequency / h),
                          jnp.arange(w, dtype=dtype) * (frequency / w), indexing="ij")
    one = lambda perm, off: octave_simplex(xs, ys, perm, octaves=octaves,
                                           persistence=persistence, offsets=off)
    noise = jax.vmap(one)(perms, offsets).reshape(b, c, h, w).transpose(0, 2, 3, 1)
    if standardize:
        mean = jnp.mean(noise, axis=(1, 2, 3), keepdims=True)
        std = jnp.std(noise, axis=(1, 2, 3), keepdims=True)
        noise = (noise - mean) / jnp.maximum(std, jnp.finfo(dtype).tiny)
    return noise.astype(dtype)


def gaussian_noise(key: PRNGKey, shape: tuple[int, ...], *, dtype: Any = None) -> Array:
    """Standard normal noise, :data:`NoiseFn`'s interface (``jax.random.normal``).

    Example:
      >>> import jax
      >>> gaussian_noise(jax.random.key(0), (2, 3)).shape
      (2, 3)
    """
    return jax.random.normal(key, shape, dtype)


def NoiseDenoisingLoss(*, loss: DenoisingLoss, noise: NoiseFn = gaussian_noise  # noqa: N802
                       ) -> DenoisingLoss:
    """``loss`` with its ``eps`` drawn by ``noise``: ``DenoisingLoss(noise_fn=noise)``.

    AnoDDPM trains with simplex noise in place of Gaussian ``eps``, so the network learns to
    remove (and predicts) that noise. Kept under its old name; it is
    :class:`diffax.losses.DenoisingLoss` with ``noise_fn``.

    Args:
      loss: the denoising loss (process, weighting, parameterization, time sampler).
      noise: ``noise(key, shape)``, e.g. ``functools.partial(simplex_noise, octaves=3)``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> loss = NoiseDenoisingLoss(loss=diffax.losses.DenoisingLoss(process=diffax.VP()),
      ...                           noise=simplex_noise)
      >>> zero = lambda params, x, t: jnp.zeros_like(x)  # eps_hat = 0: loss = E[eps^2] = 1
      >>> value, _ = loss.bind(zero)(None, jax.random.key(0), {"x": jnp.ones((4, 8, 8, 1))})
      >>> round(float(value), 4)
      1.0
    """
    return dataclasses.replace(loss, noise_fn=noise)


def partial_grid(process: Process, t: Any, num_steps: int) -> Array:
    """``num_steps + 1`` times uniformly spaced from ``t`` down to ``process.t_min``.

    Example:
      >>> import diffax
      >>> partial_grid(diffax.VP(t_min=0.0), 0.5, 2).tolist()
      [0.5, 0.25, 0.0]
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"partial_grid: `num_steps` must be a positive integer, got "
                         f"{num_steps!r}.")
    t_min = float(process.t_min)
    if not t_min < float(t) <= float(process.t_max):
        raise ValueError(f"partial_grid: `t`={t!r} must lie in (t_min, t_max] = "
                         f"({t_min}, {float(process.t_max)}].")
    return jnp.linspace(float(t), t_min, int(num_steps) + 1)


def reconstruct(key: PRNGKey, process: Process, denoiser: Denoiser, x: Array, *, t: float,
                solver: Any, num_steps: int, noise: NoiseFn = gaussian_noise) -> Array:
    """Partial diffusion of ``x`` to time ``t`` with ``noise``, then ``solver`` back to ``t_min``.

    ``x_t = alpha(t) x + sigma(t) noise(key)``, then ``diffax.sample`` on the grid
    :func:`partial_grid` ``(process, t, num_steps)``; a stochastic solver draws the noise of
    every step from ``noise`` as well (``noise_fn``). With Gaussian noise this is SDEdit; with
    :func:`simplex_noise`, a denoiser trained on it and ``diffax.samplers.DDPM()`` it is
    AnoDDPM's simplex reconstruction (ancestral steps with simplex noise).

    Args:
      key: PRNG key (forward noise, then the solver's).
      process: the forward process.
      denoiser: ``D(x, t)`` trained on normal data.
      x: inputs ``[B, ...]`` at ``t_min``.
      t: the partial-diffusion time (AnoDDPM's lambda; larger erases larger anomalies and
        more of the normal detail).
      solver: any diffax solver (``diffax.samplers.DDIM()``, ...).
      num_steps: solver steps from ``t`` to ``t_min``.
      noise: the forward noise, ``noise(key, shape)``.

    Returns:
      reconstructions ``[B, ...]``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)  # the data is a point mass at 0
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> r = reconstruct(jax.random.key(0), diffax.VP(), D, x, t=0.5,
      ...                 solver=diffax.samplers.DDIM(), num_steps=4)
      >>> float(jnp.abs(r).max()) < 0.1  # sigma(t_min) / sigma(t) of the noise is left
      True
    """
    from diffax.samplers import sample

    x = jnp.asarray(x)
    grid = partial_grid(process, t, num_steps)
    key_noise, key_solver = jax.random.split(key)
    t0 = jnp.full((x.shape[0],), grid[0], x.dtype)
    x_t = (expand(process.alpha(t0), x) * x
           + expand(process.sigma(t0), x) * noise(key_noise, x.shape).astype(x.dtype))
    return sample(key_solver, process, denoiser, x_t, solver=solver, schedule=grid,
                  noise_fn=lambda k, t, t_next, shape: noise(k, shape).astype(x.dtype)).x


def anomaly_scores(x: Array, reconstruction: Array) -> tuple[Array, Array]:
    """``(pixel [B, H, W], image [B])``: squared error summed over channels, and its mean.

    Example:
      >>> pix, img = anomaly_scores(jnp.zeros((1, 2, 2, 1)), jnp.array([[[[1.0], [0.0]],
      ...                                                              [[0.0], [0.0]]]]))
      >>> pix[0].tolist(), img.tolist()
      ([[1.0, 0.0], [0.0, 0.0]], [0.25])
    """
    x, reconstruction = jnp.asarray(x), jnp.asarray(reconstruction)
    if x.shape != reconstruction.shape or x.ndim != 4:
        raise ValueError(f"anomaly_scores: `x` {x.shape} and `reconstruction` "
                         f"{reconstruction.shape} must be images [B, H, W, C] of one shape.")
    pixel = jnp.sum(jnp.square(x - reconstruction), axis=-1)
    return pixel, jnp.mean(pixel, axis=(1, 2))


def baseline_scores(train_x: Any, test_x: Any, *, num_neighbors: int = 5,
                    num_components: int = 8) -> dict[str, np.ndarray]:
    """Per-image anomaly scores of two pixel-space baselines, for context next to AnoDDPM.

    ``"knn"``: the mean Euclidean distance to the ``num_neighbors`` nearest training images;
    ``"pca"``: the squared error of the reconstruction from the first ``num_components``
    principal components of the training images (both scikit-learn).

    Example:
      >>> rng = np.random.default_rng(0)
      >>> train = rng.normal(size=(50, 4, 4, 1)) * 0.1
      >>> test = np.concatenate([train[:3], train[:3] + 1.0])
      >>> s = baseline_scores(train, test, num_neighbors=1, num_components=2)
      >>> auroc(s["knn"], [0, 0, 0, 1, 1, 1]), auroc(s["pca"], [0, 0, 0, 1, 1, 1])
      (1.0, 1.0)
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    train_x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    test_x = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
    dist, _ = NearestNeighbors(n_neighbors=int(num_neighbors)).fit(train_x).kneighbors(test_x)
    pca = PCA(int(num_components)).fit(train_x)
    rec = pca.inverse_transform(pca.transform(test_x))
    return {"knn": dist.mean(axis=1), "pca": np.mean(np.square(test_x - rec), axis=1)}
