"""Linear measurement operators of medical imaging: parallel-beam CT and undersampled MRI.

Public through :mod:`diffax.inverse`. Each operator ``A`` is a callable ``A(x) -> y`` on images
``x`` ``[B, H, W, C]`` (differentiable and jit-able, so :func:`diffax.inverse.dps` takes it as
``forward_fn``) with its transpose ``A.transpose(y)``: ``<A x, y> = <x, A^T y>`` to rounding.

Both are *subsampled transforms* ``A = S T`` (Song, Shen, Xing & Ermon 2022, Sec. 3): an
(almost) invertible transform ``T`` (the Radon transform over a full grid of angles, the
orthonormal 2-D Fourier transform) followed by a selection ``S`` of the measured part (some
angles, some k-space points). :func:`diffax.inverse.consistency_sample` works in ``T``-space
through :meth:`SubsampledTransform.transform`, :meth:`~SubsampledTransform.inverse_transform`,
:meth:`~SubsampledTransform.select` and :meth:`~SubsampledTransform.embed`.

* :func:`radon`: pixel-driven parallel-beam projection (each pixel's value spread over the two
  nearest detector bins with linear weights); its transpose is linear-interpolation
  back-projection; :func:`fbp` is filtered back-projection with the Ram-Lak filter.
* :func:`fourier_undersampling`: ``y = M * F x`` with the orthonormal, centred 2-D FFT, stored
  as real numbers ``[B, H, W, C, 2]`` (real and imaginary parts); :func:`cartesian_mask` and
  :func:`random_mask` build ``M``; :func:`zero_filled` is ``A^T y``.

Example:
  >>> import jax.numpy as jnp, diffax
  >>> A = diffax.inverse.radon(jnp.linspace(0.0, 3.0, 4), image_shape=(8, 8))
  >>> y = A(jnp.ones((1, 8, 8, 1)))
  >>> y.shape, A.transpose(y).shape
  ((1, 4, 12, 1), (1, 8, 8, 1))
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value
from diffax.typing import Array, ArrayLike

__all__ = [
    "SubsampledTransform",
    "Radon",
    "radon",
    "sparse_view_radon",
    "fbp",
    "FourierUndersampling",
    "fourier_undersampling",
    "cartesian_mask",
    "random_mask",
    "zero_filled",
]

# Sizes of the ridge inverse of Radon: the dense [P, M] matrix up to _DENSE_INVERSE_LIMIT
# entries (32x32 images, 180 angles: 8.5e6), else the [P, P] inverse gram after T^T up to
# _GRAM_INVERSE_LIMIT entries (64x64: 1.7e7, 134 MB in float64 while built).
_DENSE_INVERSE_LIMIT = 5e7
_GRAM_INVERSE_LIMIT = 2e7


def _check_image(x: Array, shape: tuple[int, int], where: str, name: str = "x") -> Array:
    x = jnp.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:3]) != tuple(shape):
        raise ValueError(f"{where}: `{name}` must be images [B, H, W, C] with (H, W) = "
                         f"{tuple(shape)}, got shape {tuple(x.shape)}.")
    return x


def _check_measurement(y: Array, expected: tuple[int, ...], where: str, name: str = "y"
                       ) -> Array:
    """``expected`` is the shape after the batch axis, with ``None`` for the channel axis."""
    y = jnp.asarray(y)
    ok = y.ndim == len(expected) + 1 and all(
        e is None or s == e for s, e in zip(y.shape[1:], expected, strict=True))
    if not ok:
        shown = ", ".join("C" if e is None else str(e) for e in expected)
        raise ValueError(f"{where}: `{name}` must have shape [B, {shown}] to match the operator, "
                         f"got {tuple(y.shape)}.")
    return y


class SubsampledTransform:
    """``A = S T``: a transform ``T`` of images followed by a selection ``S`` of its entries.

    Subclasses define :meth:`transform` (``T``), :meth:`inverse_transform` (``T^{-1}``, or a
    left inverse on images), :meth:`select` (``S``) and :meth:`embed` (``S^T``: the
    measurement placed back into ``T``-space, zeros elsewhere), and :meth:`transform_transpose`
    (``T^T``). Then ``A(x) = select(transform(x))`` and ``A^T(y) =
    transform_transpose(embed(y))``.
    """

    image_shape: tuple[int, int]

    def transform(self, x: Array) -> Array:
        raise NotImplementedError

    def transform_transpose(self, z: Array) -> Array:
        raise NotImplementedError

    def inverse_transform(self, z: Array) -> Array:
        raise NotImplementedError

    def select(self, z: Array) -> Array:
        raise NotImplementedError

    def embed(self, y: Array) -> Array:
        raise NotImplementedError

    def measurement_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of ``A(x)`` for ``x`` of shape ``x_shape``."""
        return tuple(jax.eval_shape(self, jax.ShapeDtypeStruct(x_shape, jnp.float32)).shape)

    def __call__(self, x: Array) -> Array:
        """``A(x)``, ``x``: ``[B, H, W, C]``."""
        return self.select(self.transform(x))

    def transpose(self, y: Array) -> Array:
        """``A^T(y)``: the adjoint, ``<A x, y> = <x, A^T y>``."""
        return self.transform_transpose(self.embed(y))


# --------------------------------------------------------------------------------------------
# Parallel-beam CT


def _check_angles(angles: Any, name: str = "angles") -> np.ndarray:
    a = concrete_value(angles)
    if a is None:
        raise ValueError(f"`{name}` must be concrete numbers (the projection geometry is fixed "
                         f"at construction), got {angles!r}.")
    a = np.asarray(a, np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be a non-empty 1-D array of finite angles in radians, "
                         f"got shape {a.shape}.")
    if np.any(a < 0) or np.any(a >= np.pi):
        raise ValueError(f"`{name}` must lie in [0, pi) (parallel beams at theta and theta + pi "
                         f"see the same lines), got values in [{a.min():.6g}, {a.max():.6g}].")
    return a


def _check_shape(image_shape: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_shape)
        ok = (h, w) == tuple(image_shape) and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`image_shape` must be (H, W) with positive ints, got {image_shape!r}.")
    return h, w


def _projection_weights(angles: np.ndarray, shape: tuple[int, int], num_detectors: int):
    """Pixel-driven linear weights: ``index [A, P, 2]`` (detector bins) and ``weight [A, P, 2]``.

    Pixel ``(i, j)`` has centre ``(x, y) = (j - (W - 1) / 2, (H - 1) / 2 - i)`` (unit pixels,
    ``y`` up); it projects at angle ``theta`` to ``s = x cos(theta) + y sin(theta)``; detector
    bin ``k`` is centred at ``k - (K - 1) / 2`` (unit spacing). Out-of-range bins get weight 0.
    """
    h, w = shape
    ys, xs = np.meshgrid((h - 1) / 2 - np.arange(h), np.arange(w) - (w - 1) / 2, indexing="ij")
    s = np.cos(angles)[:, None] * xs.reshape(1, -1) + np.sin(angles)[:, None] * ys.reshape(1, -1)
    u = s + (num_detectors - 1) / 2
    k0 = np.floor(u)
    frac = u - k0
    index = np.stack([k0, k0 + 1], axis=-1)
    weight = np.stack([1.0 - frac, frac], axis=-1)
    valid = (index >= 0) & (index < num_detectors)
    return np.where(valid, index, 0).astype(np.int32), np.where(valid, weight, 0.0)


class _Projector:
    """The sparse matrix of :func:`_projection_weights`: ``project`` (a segment sum over
    pixels) and its exact transpose ``back_project`` (a gather)."""

    def __init__(self, angles: np.ndarray, shape: tuple[int, int], num_detectors: int):
        self.num_angles, self.shape, self.num_detectors = len(angles), shape, num_detectors
        index, weight = _projection_weights(angles, shape, num_detectors)
        offsets = (np.arange(len(angles)) * num_detectors)[:, None, None]
        self.index = (index + offsets).reshape(-1)
        self.weight = weight.reshape(-1)
        self.pixel = np.broadcast_to(np.arange(shape[0] * shape[1])[None, :, None],
                                     index.shape).reshape(-1)

    def project(self, x: Array) -> Array:
        b, h, w, c = x.shape
        cols = jnp.moveaxis(x.reshape(b, h * w, c), 1, 0).reshape(h * w, b * c)
        data = cols[self.pixel] * jnp.asarray(self.weight, x.dtype)[:, None]
        out = jax.ops.segment_sum(data, jnp.asarray(self.index),
                                  num_segments=self.num_angles * self.num_detectors)
        return jnp.transpose(out.reshape(self.num_angles, self.num_detectors, b, c),
                             (2, 0, 1, 3))

    def back_project(self, y: Array) -> Array:
        b, c = y.shape[0], y.shape[-1]
        h, w = self.shape
        rows = jnp.transpose(y, (1, 2, 0, 3)).reshape(-1, b * c)
        data = rows[self.index] * jnp.asarray(self.weight, y.dtype)[:, None]
        cols = jax.ops.segment_sum(data, jnp.asarray(self.pixel), num_segments=h * w)
        return jnp.moveaxis(cols.reshape(h * w, b, c), 0, 1).reshape(b, h, w, c)


class Radon(SubsampledTransform):
    """The parallel-beam Radon transform of images ``[B, H, W, C]`` at fixed angles.

    Build with :func:`radon` or :func:`sparse_view_radon`. ``A(x)`` is the sinogram
    ``[B, num_angles, num_detectors, C]``: line integrals in pixel units (a pixel has side 1,
    detector bins have width 1). ``T`` (for the consistency sampler) is the transform over
    ``full_angles``, which contains ``angles``; ``T^{-1}`` is :func:`fbp` over them.
    """

    def __init__(self, angles: ArrayLike, *, image_shape: tuple[int, int],
                 num_detectors: int | None = None, full_angles: ArrayLike | None = None,
                 inverse_ridge: float | None = None):
        self.angles = _check_angles(angles)
        self.image_shape = _check_shape(image_shape)
        h, w = self.image_shape
        if num_detectors is None:
            num_detectors = int(math.ceil(math.hypot(h - 1, w - 1))) + 2
        if isinstance(num_detectors, bool) or not isinstance(num_detectors, (int, np.integer)) \
                or num_detectors < 1:
            raise ValueError(f"`num_detectors` must be an int >= 1, got {num_detectors!r}.")
        self.num_detectors = int(num_detectors)
        full = self.angles if full_angles is None else _check_angles(full_angles, "full_angles")
        where = np.abs(full[None, :] - self.angles[:, None]) < 1e-9
        if not np.all(where.any(axis=1)):
            missing = self.angles[~where.any(axis=1)]
            raise ValueError(f"`angles` must all be in `full_angles`; not found: {missing[:5]}.")
        self.full_angles = full
        self.selected = np.argmax(where, axis=1).astype(np.int32)
        p, m = h * w, len(full) * self.num_detectors
        if inverse_ridge is not None:
            ridge = inverse_ridge
            if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge > 0:
                raise ValueError(f"`inverse_ridge` must be a positive number or None, got "
                                 f"{ridge!r}.")
            if p * m > _DENSE_INVERSE_LIMIT and p * p > _GRAM_INVERSE_LIMIT:
                raise ValueError(f"`inverse_ridge`: the dense inverse would hold {p} x {m} "
                                 f"entries (P * M <= {_DENSE_INVERSE_LIMIT:.0e}), its gram "
                                 f"form {p} x {p} (P * P <= {_GRAM_INVERSE_LIMIT:.0e}, e.g. "
                                 f"64 x 64 images); use None (FBP) for larger images.")
        self._full = _Projector(full, self.image_shape, self.num_detectors)
        self._measured = _Projector(self.angles, self.image_shape, self.num_detectors)
        self.inverse_ridge = inverse_ridge
        self._pinv = self._gram_inv = None
        if inverse_ridge is not None and p * m <= _DENSE_INVERSE_LIMIT:
            self._pinv = self._ridge_inverse(inverse_ridge)
        elif inverse_ridge is not None:
            self._gram_inv = self._ridge_gram_inverse(inverse_ridge)

    def _ridge_inverse(self, ridge: float) -> np.ndarray:
        """``(T^T T + ridge * mean(diag(T^T T)) I)^{-1} T^T`` as a dense ``[P, M]`` matrix."""
        p = self.image_shape[0] * self.image_shape[1]
        m = len(self.full_angles) * self.num_detectors
        t = np.zeros((m, p))
        np.add.at(t, (self._full.index, self._full.pixel), self._full.weight)
        gram = t.T @ t
        gram += ridge * np.trace(gram) / p * np.eye(p)
        return np.linalg.solve(gram, t.T)

    def _ridge_gram_inverse(self, ridge: float) -> np.ndarray:
        """``(T^T T + ridge * mean(diag(T^T T)) I)^{-1}`` as a dense ``[P, P]`` matrix, ``T``
        kept sparse: the form of :meth:`_ridge_inverse` for images whose ``[P, M]`` inverse is
        too large (applied after the back-projection ``T^T``; the same operator)."""
        from scipy import sparse  # a dependency of jax

        p = self.image_shape[0] * self.image_shape[1]
        m = len(self.full_angles) * self.num_detectors
        t = sparse.csr_matrix((self._full.weight, (self._full.index, self._full.pixel)),
                              shape=(m, p))
        gram = (t.T @ t).toarray()
        gram += ridge * np.trace(gram) / p * np.eye(p)
        return np.linalg.inv(gram)

    def __repr__(self) -> str:
        return (f"Radon(num_angles={len(self.angles)}, num_full_angles={len(self.full_angles)},"
                f" image_shape={self.image_shape}, num_detectors={self.num_detectors})")

    def __call__(self, x: Array) -> Array:
        """``A(x)``: sinograms ``[B, num_angles, K, C]`` (only the measured angles computed)."""
        return self._measured.project(_check_image(x, self.image_shape, "Radon"))

    def transpose(self, y: Array) -> Array:
        """``A^T(y)``: linear-interpolation back-projection of ``[B, num_angles, K, C]``."""
        y = _check_measurement(y, (len(self.angles), self.num_detectors, None),
                               "Radon.transpose", "y")
        return self._measured.back_project(y)

    def transform(self, x: Array) -> Array:
        """``T x``: sinograms over ``full_angles``, ``[B, num_full_angles, K, C]``."""
        return self._full.project(_check_image(x, self.image_shape, "Radon"))

    def transform_transpose(self, z: Array) -> Array:
        """``T^T z``: back-projection of full-grid sinograms."""
        z = _check_measurement(z, (len(self.full_angles), self.num_detectors, None),
                               "Radon.transform_transpose", "z")
        return self._full.back_project(z)

    def inverse_transform(self, z: Array) -> Array:
        """``T^{-1}``: :func:`fbp` of a full-grid sinogram, or with ``inverse_ridge`` the
        ridge-regularised least-squares inverse ``(T^T T + r I)^{-1} T^T``."""
        if self._pinv is None and self._gram_inv is None:
            return _fbp(self.transform_transpose, z)
        z = _check_measurement(z, (len(self.full_angles), self.num_detectors, None),
                               "Radon.inverse_transform", "z")
        if self._pinv is None:  # large images: (T^T T + r I)^{-1} applied to T^T z
            back = self._full.back_project(z)
            b, h, w, c = back.shape
            rows = jnp.moveaxis(back, -1, 1).reshape(b * c, h * w)
            x = rows @ jnp.asarray(self._gram_inv, z.dtype)  # symmetric
            return jnp.moveaxis(x.reshape(b, c, h, w), 1, -1)
        b, c = z.shape[0], z.shape[-1]
        rows = jnp.moveaxis(z, -1, 1).reshape(b * c, -1)
        x = rows @ jnp.asarray(self._pinv.T, z.dtype)
        return jnp.moveaxis(x.reshape(b, c, *self.image_shape), 1, -1)

    def select(self, z: Array) -> Array:
        return z[:, self.selected]

    def embed(self, y: Array) -> Array:
        y = _check_measurement(y, (len(self.angles), self.num_detectors, None), "Radon", "y")
        full = jnp.zeros((y.shape[0], len(self.full_angles), *y.shape[2:]), y.dtype)
        return full.at[:, self.selected].set(y)


def radon(angles: ArrayLike, *, image_shape: tuple[int, int], num_detectors: int | None = None,
          full_angles: ArrayLike | None = None, inverse_ridge: float | None = None) -> Radon:
    """``A(x)``: the parallel-beam Radon transform at ``angles`` (radians in ``[0, pi)``).

    Pixel-driven: each pixel's value (times its unit area) is spread over the two detector
    bins nearest to its projected centre with linear weights, so a constant region of density
    1 gives its chord length. The transpose is the linear-interpolation back-projection.

    Args:
      angles: projection angles ``[A]`` in ``[0, pi)``, concrete (fixed geometry).
      image_shape: ``(H, W)``.
      num_detectors: detector bins ``K`` of unit width (default: enough for the diagonal).
      full_angles: the grid of the transform ``T`` the consistency sampler uses (must
        contain ``angles``; default ``angles``).
      inverse_ridge: ``None``: ``T^{-1}`` is :func:`fbp` over ``full_angles`` (the paper's
        choice; its round trip loses detail, ~22 dB on 32x32 phantoms). A number ``r``:
        ``T^{-1} = (T^T T + r m I)^{-1} T^T`` with ``m`` the mean diagonal of ``T^T T``, a
        dense matrix built once (``[P, M]``, or where that would exceed 5e7 entries and
        ``P <= 4472`` pixels, e.g. 64x64, the ``[P, P]`` inverse of the regularised gram
        applied after ``T^T``; larger images: an error; ``r = 1e-5``: a ~55 dB round trip, but
        the consistency sampler does better with ``r = 1e-2``, which damps the checkerboard
        modes the pixel-driven projector barely sees; experiments/medical_ct).

    Returns:
      A :class:`Radon`: ``A(x)`` maps ``[B, H, W, C]`` to ``[B, A, K, C]``.

    Raises:
      ValueError: naming the argument, for angles outside ``[0, pi)`` or not 1-D, a bad
        ``image_shape`` or ``num_detectors``, angles missing from ``full_angles``; at call
        time for images or sinograms of the wrong shape.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> A = diffax.inverse.radon(jnp.array([0.0]), image_shape=(4, 4), num_detectors=4)
      >>> A(jnp.ones((1, 4, 4, 1)))[0, 0, :, 0]  # each column sums to its height
      Array([4., 4., 4., 4.], dtype=float32)
    """
    return Radon(angles, image_shape=image_shape, num_detectors=num_detectors,
                 full_angles=full_angles, inverse_ridge=inverse_ridge)


def sparse_view_radon(num_views: int, *, image_shape: tuple[int, int], num_full: int = 180,
                      num_detectors: int | None = None, inverse_ridge: float | None = None
                      ) -> Radon:
    """Sparse-view CT: ``num_views`` angles spread evenly over a grid of ``num_full`` angles.

    The full grid is ``pi k / num_full``, ``k < num_full``; the views are the grid points
    nearest to ``pi j / num_views`` (``j < num_views``). The operator's ``T`` is the Radon
    transform over the full grid (what :func:`diffax.inverse.consistency_sample` needs);
    ``inverse_ridge`` as in :func:`radon`.

    Example:
      >>> import diffax
      >>> A = diffax.inverse.sparse_view_radon(4, image_shape=(8, 8), num_full=8)
      >>> (A.angles / (3.14159265 / 8)).round(3).tolist()
      [0.0, 2.0, 4.0, 6.0]
    """
    for name, value in (("num_views", num_views), ("num_full", num_full)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"sparse_view_radon: `{name}` must be an int >= 1, got {value!r}.")
    if num_views > num_full:
        raise ValueError(f"sparse_view_radon: `num_views` ({num_views}) must be <= `num_full` "
                         f"({num_full}).")
    full = np.pi * np.arange(num_full) / num_full
    chosen = np.unique(np.round(np.arange(num_views) * num_full / num_views).astype(int))
    return Radon(full[chosen], image_shape=image_shape, num_detectors=num_detectors,
                 full_angles=full, inverse_ridge=inverse_ridge)


def _ram_lak(num_detectors: int) -> np.ndarray:
    """The Ram-Lak filter as a ``[K, K]`` Toeplitz matrix for unit detector spacing
    (Kak & Slaney, eq. 3.61): ``h(0) = 1/4``, ``h(n) = -1 / (pi n)^2`` for odd ``n``, 0 for
    even ``n != 0``. Applied by a matrix, so there is no wrap-around."""
    n = np.arange(num_detectors)[:, None] - np.arange(num_detectors)[None, :]
    h = np.where(n % 2 == 1, -1.0 / np.square(np.pi * np.maximum(np.abs(n), 1)), 0.0)
    return np.where(n == 0, 0.25, h)


def _fbp(back_project, z: Array) -> Array:
    """Ram-Lak filtering along the detector axis, back-projection, times the angle step."""
    z = jnp.asarray(z)
    q = jnp.einsum("kl,balc->bakc", jnp.asarray(_ram_lak(z.shape[2]), z.dtype), z)
    return (np.pi / z.shape[1]) * back_project(q)


def fbp(operator: Radon, y: ArrayLike) -> Array:
    """Filtered back-projection of a sinogram measured by ``operator``: the CT baseline.

    Each projection is convolved with the Ram-Lak filter, back-projected (linear
    interpolation: ``operator``'s transpose) and scaled by ``pi / num_angles`` (the angle
    step). With few views it shows the streaks the diffusion methods remove. An angle grid
    evenly covering ``[0, pi)`` is assumed.

    Args:
      operator: a :class:`Radon`.
      y: its sinogram ``[B, A, K, C]``.

    Returns:
      images ``[B, H, W, C]``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> A = diffax.inverse.radon(jnp.linspace(0.0, 3.1, 64), image_shape=(16, 16))
      >>> yy, xx = jnp.mgrid[-7.5:8.0, -7.5:8.0]
      >>> x = jnp.exp(-(xx**2 + yy**2) / 18.0)[None, :, :, None]
      >>> bool(jnp.abs(diffax.inverse.fbp(A, A(x)) - x).max() < 0.05)
      True
    """
    if not isinstance(operator, Radon):
        raise ValueError(f"fbp: `operator` must be a diffax.inverse.Radon, got {operator!r}.")
    y = _check_measurement(y, (len(operator.angles), operator.num_detectors, None), "fbp")
    return _fbp(operator.transpose, y)


# --------------------------------------------------------------------------------------------
# Undersampled MRI


def _check_mask(mask: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    m = concrete_value(mask)
    if m is None:
        raise ValueError(f"`mask` must be a concrete array [H, W] (fixed sampling pattern), got "
                         f"{mask!r}.")
    m = np.asarray(m, np.float64)
    if m.ndim != 2 or (shape is not None and m.shape != tuple(shape)):
        want = "[H, W]" if shape is None else f"{tuple(shape)}"
        raise ValueError(f"`mask` must have shape {want}, got {m.shape}.")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("`mask` must hold 0 (not measured) and 1 (measured) only.")
    return m


class FourierUndersampling(SubsampledTransform):
    """``A(x) = M * F x``: undersampled k-space of images ``[B, H, W, C]``.

    ``F`` is the orthonormal 2-D DFT over ``(H, W)`` with the zero frequency at the centre
    (``fftshift``), so ``F^T F = I`` on real images. Measurements are real arrays
    ``[B, H, W, C, 2]`` (real, imaginary), zero where ``mask == 0``. Build with
    :func:`fourier_undersampling`.
    """

    def __init__(self, mask: ArrayLike):
        self.mask = _check_mask(mask)
        self.image_shape = self.mask.shape

    def __repr__(self) -> str:
        return (f"FourierUndersampling(image_shape={self.image_shape}, "
                f"sampled_fraction={self.mask.mean():.4f})")

    def transform(self, x: Array) -> Array:
        x = _check_image(x, self.image_shape, "FourierUndersampling")
        k = jnp.fft.fftshift(jnp.fft.fft2(x, axes=(1, 2), norm="ortho"), axes=(1, 2))
        return jnp.stack([k.real, k.imag], axis=-1).astype(x.dtype)

    def transform_transpose(self, z: Array) -> Array:
        z = _check_measurement(z, (*self.image_shape, None, 2), "FourierUndersampling", "y")
        k = jnp.fft.ifftshift(jax.lax.complex(z[..., 0], z[..., 1]), axes=(1, 2))
        return jnp.fft.ifft2(k, axes=(1, 2), norm="ortho").real.astype(z.dtype)

    def inverse_transform(self, z: Array) -> Array:
        return self.transform_transpose(z)

    def _mask(self, z: Array) -> Array:
        return jnp.asarray(self.mask, z.dtype)[None, :, :, None, None]

    def select(self, z: Array) -> Array:
        return self._mask(z) * z

    def embed(self, y: Array) -> Array:
        y = _check_measurement(y, (*self.image_shape, None, 2), "FourierUndersampling", "y")
        return self._mask(y) * y


def fourier_undersampling(mask: ArrayLike) -> FourierUndersampling:
    """``A(x) = mask * F x``: 2-D Fourier undersampling (MRI), centred orthonormal DFT.

    Args:
      mask: ``[H, W]`` of 0/1 in centred k-space layout (zero frequency at ``(H//2, W//2)``),
        e.g. from :func:`cartesian_mask` or :func:`random_mask`.

    Returns:
      A :class:`FourierUndersampling`: ``[B, H, W, C]`` -> ``[B, H, W, C, 2]``.

    Raises:
      ValueError: naming ``mask`` when it is not ``[H, W]`` of 0/1; at call time naming
        ``x``/``y`` when their shape does not match the mask.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> A = diffax.inverse.fourier_undersampling(jnp.ones((4, 4)))
      >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
      >>> bool(jnp.allclose(A.transpose(A(x)), x, atol=1e-5))  # fully sampled: exact
      True
    """
    return FourierUndersampling(mask)


def _check_acceleration(acceleration: Any, center_fraction: Any, where: str) -> None:
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)) or \
            not acceleration >= 1:
        raise ValueError(f"{where}: `acceleration` must be a number >= 1, got {acceleration!r}.")
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float)) or \
            not 0 <= center_fraction <= 1.0 / acceleration:
        raise ValueError(f"{where}: `center_fraction` must be in [0, 1 / acceleration], got "
                         f"{center_fraction!r}.")


def _partner(index: np.ndarray, n: int) -> np.ndarray:
    """The centred-layout index of the frequency ``-f`` for the index of ``f``."""
    return (n - index) % n


def _draw_symmetric(chosen: np.ndarray, partner: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Adds conjugate pairs, drawn uniformly without replacement, until ``num`` are chosen."""
    rng = np.random.default_rng(seed)
    for i in rng.permutation(np.flatnonzero(~chosen)):
        if chosen.sum() >= num:
            break
        if not chosen[i]:
            chosen[i] = chosen[partner[i]] = True
    return chosen


def cartesian_mask(shape: tuple[int, int], *, acceleration: float,
                   center_fraction: float = 0.08, seed: int = 0) -> np.ndarray:
    """A Cartesian k-space mask ``[H, W]``: whole rows (phase-encoding lines) measured.

    About ``H / acceleration`` rows: the ``2 floor(round(H * center_fraction) / 2) + 1`` rows
    around the zero frequency, and rows drawn uniformly without replacement from the others
    (``np.random.default_rng(seed)``) together with their mirror rows (frequency ``-f`` with
    ``f``: the image is real, so a measured frequency also gives its conjugate partner, and
    the mask is made conjugate-symmetric so that measuring exactly what is selected is
    consistent), until at least ``round(H / acceleration)`` rows are chosen.

    Example:
      >>> m = cartesian_mask((16, 16), acceleration=4, center_fraction=0.125, seed=0)
      >>> m.shape, int(m[:, 0].sum()), m[7:10, 0].tolist()  # 3 central rows, then a pair
      ((16, 16), 5, [1.0, 1.0, 1.0])
    """
    h, w = _check_shape(shape)
    _check_acceleration(acceleration, center_fraction, "cartesian_mask")
    num = max(1, int(round(h / acceleration)))
    half = int(round(h * center_fraction)) // 2
    rows = np.zeros(h, bool)
    rows[h // 2 - half: h // 2 + half + 1] = True
    rows = _draw_symmetric(rows, _partner(np.arange(h), h), num, seed)
    return np.broadcast_to(rows[:, None], (h, w)).astype(np.float64)


def random_mask(shape: tuple[int, int], *, acceleration: float,
                center_fraction: float = 0.08, seed: int = 0) -> np.ndarray:
    """A random k-space mask ``[H, W]`` with a fully sampled centre square.

    The centre square of odd side about ``sqrt(center_fraction H W)`` around the zero
    frequency, then points drawn uniformly without replacement from the rest together with
    their conjugate partners (see :func:`cartesian_mask`), until at least
    ``round(H W / acceleration)`` are chosen.

    Example:
      >>> m = random_mask((16, 16), acceleration=4, center_fraction=1 / 16, seed=0)
      >>> flipped = np.roll(m[::-1, ::-1], 1, axis=(0, 1))  # frequency -f at the place of f
      >>> int(m.sum()), float(m[7:10, 7:10].sum()), bool((m == flipped).all())
      (64, 9.0, True)
    """
    h, w = _check_shape(shape)
    _check_acceleration(acceleration, center_fraction, "random_mask")
    num = max(1, int(round(h * w / acceleration)))
    half = max(0, int(round(math.sqrt(center_fraction * h * w))) - 1) // 2
    m = np.zeros((h, w), bool)
    m[h // 2 - half: h // 2 + half + 1, w // 2 - half: w // 2 + half + 1] = True
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    partner = (_partner(rows, h) * w + _partner(cols, w)).reshape(-1)
    return _draw_symmetric(m.reshape(-1), partner, num, seed).reshape(h, w).astype(np.float64)


def zero_filled(operator: FourierUndersampling, y: ArrayLike) -> Array:
    """The zero-filled reconstruction ``Re F^{-1}(y)`` (``= A^T y``): the MRI baseline.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> A = diffax.inverse.fourier_undersampling(jnp.ones((2, 2)))
      >>> diffax.inverse.zero_filled(A, A(jnp.ones((1, 2, 2, 1))))[0, :, :, 0].round(5)
      Array([[1., 1.],
             [1., 1.]], dtype=float32)
    """
    if not isinstance(operator, FourierUndersampling):
        raise ValueError(f"zero_filled: `operator` must be a "
                         f"diffax.inverse.FourierUndersampling, got {operator!r}.")
    return operator.transpose(y)
