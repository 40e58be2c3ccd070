"""Sparse-view CT and undersampled MRI on procedural phantoms with one unconditional denoiser.

Song, Shen, Xing & Ermon (ICLR 2022): an unconditional score model of the images, and at
sampling time a measurement-consistency step (:func:`diffax.inverse.consistency_sample`),
compared here with DPS (:func:`diffax.inverse.dps`) and with the classical baselines, filtered
back-projection (:func:`diffax.inverse.fbp`) for CT and the zero-filled inverse FFT
(:func:`diffax.inverse.zero_filled`) for MRI. The images are the ``phantoms/<size>`` dataset
(:func:`diffax.data.sample_phantoms`); the operators act on the model's range ``[-1, 1]``
(a known affine map of the intensities, so the information is the same).

* :func:`phantoms`: a split in memory, ``{"x": [N, S, S, 1] in [-1, 1], "segmentation"}``;
* :func:`reconstruction_metrics`: PSNR and SSIM of reconstructions against the truth
  (:func:`per_image_metrics`: per image);
* :func:`operator_for`: the operator of a setting (``"ct"`` with a number of views, ``"mri"``
  with an acceleration).

Example:
  >>> import jax.numpy as jnp
  >>> x = jnp.zeros((2, 16, 16, 1))
  >>> m = reconstruction_metrics(x + 0.1, x)
  >>> round(m["psnr"], 2), round(m["ssim"], 3)
  (26.02, 0.995)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.typing import Array

__all__ = ["phantoms", "reconstruction_metrics", "per_image_metrics", "operator_for",
           "gaussian_prior_denoiser", "operator_norm_squared", "PROBLEMS", "METHODS", "PRIORS"]

PROBLEMS = ("ct", "mri")
METHODS = ("consistency", "dps")
MASKS = ("cartesian", "random")
PRIORS = ("unet", "gaussian")


def phantoms(split: str, *, size: int, data_dir: str | None = None,
             max_examples: int | None = None) -> dict[str, np.ndarray]:
    """A split of ``phantoms/<size>``: ``{"x": float32 [N, S, S, 1] in [-1, 1],
    "segmentation": int32 [N, S, S]}`` (labels: :data:`diffax.data.PHANTOM_CLASSES`)."""
    from diffax.data import data_source, to_model_range

    source = data_source(f"phantoms/{size}", split=split, data_dir=data_dir)
    n = len(source) if max_examples is None else min(len(source), int(max_examples))
    rows = [source[i] for i in range(n)]
    return {"x": to_model_range(np.stack([r["image"] for r in rows])),
            "segmentation": np.stack([r["segmentation"][..., 0] for r in rows]).astype(np.int32)}


def per_image_metrics(x: Array, reference: Array) -> dict[str, Array]:
    """PSNR (dB, ``[B]``) and SSIM (``[B]``) of each image ``[B, H, W, C]`` in ``[-1, 1]``
    against the truth, as :func:`reconstruction_metrics` averages them: ``x`` clipped to
    ``[-1, 1]``, PSNR over the range 2, SSIM of the intensities ``(x + 1) / 2``.

    Example:
      >>> x = jnp.zeros((2, 16, 16, 1))
      >>> [round(float(v), 2) for v in per_image_metrics(x + jnp.array([0.1, 0.2])[:, None, None,
      ...                                                   None], x)["psnr"]]
      [26.02, 20.0]
    """
    from diffax.evaluation import ssim
    from diffax.tasks.super_resolution import psnr

    x = jnp.clip(jnp.asarray(x), -1.0, 1.0)
    return {"psnr": psnr(x, jnp.asarray(reference, x.dtype)),
            "ssim": ssim((np.asarray(x) + 1) / 2, (np.asarray(reference) + 1) / 2,
                         data_range=1.0)}


def reconstruction_metrics(x: Array, reference: Array) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of images ``[B, H, W, C]`` in ``[-1, 1]`` against the truth.

    PSNR over the range 2 (as :func:`diffax.tasks.psnr`); SSIM
    (:func:`diffax.evaluation.ssim`) of the intensities ``(x + 1) / 2`` in ``[0, 1]``. ``x``
    is clipped to ``[-1, 1]`` first (the intensities' range). The means of
    :func:`per_image_metrics`.
    """
    m = per_image_metrics(x, reference)
    return {"psnr": float(jnp.mean(m["psnr"])), "ssim": float(np.mean(m["ssim"]))}


def operator_for(problem: str, setting: float, *, size: int, num_full_views: int = 180,
                 mask: str = "cartesian", center_fraction: float = 0.08, seed: int = 0,
                 inverse_ridge: float | None = None):
    """The operator of one setting: ``"ct"``: :func:`diffax.inverse.sparse_view_radon` with
    ``setting`` views out of ``num_full_views``; ``"mri"``: :func:`fourier_undersampling` of a
    ``mask`` (``"cartesian"`` or ``"random"``) mask with acceleration ``setting``.
    ``inverse_ridge``: the CT operator's ``T^{-1}`` (see :func:`diffax.inverse.radon`).

    Example:
      >>> operator_for("ct", 4, size=32).angles.shape
      (4,)
    """
    from diffax import inverse

    if problem == "ct":
        return inverse.sparse_view_radon(int(setting), image_shape=(size, size),
                                         num_full=num_full_views, inverse_ridge=inverse_ridge)
    if problem == "mri":
        if mask not in MASKS:
            raise ValueError(f"config.medical.mask: {mask!r} is not one of {MASKS}.")
        build = inverse.cartesian_mask if mask == "cartesian" else inverse.random_mask
        m = build((size, size), acceleration=float(setting), center_fraction=center_fraction,
                  seed=seed)
        return inverse.fourier_undersampling(m)
    raise ValueError(f"config.medical.problem: {problem!r} is not one of {PROBLEMS}.")


def gaussian_prior_denoiser(x_train: Any, process: Any, *, jitter: float = 1e-4):
    """The exact denoiser of ``N(mu, Sigma)`` fitted to ``x_train`` ``[N, ...]`` (its mean and
    covariance, plus ``jitter`` on the diagonal), for ``process``:

    ``D(x, t) = mu + U diag(alpha lam / (alpha^2 lam + sigma^2)) U^T (x - alpha mu)`` with
    ``Sigma = U diag(lam) U^T``. A prior with no training: the consistency sampler and DPS
    with it are exact-denoiser baselines of the same pipeline (a Gaussian is a crude model of
    phantoms with sharp edges).

    Example:
      >>> import diffax
      >>> x = np.random.default_rng(0).normal(size=(500, 2, 2, 1))
      >>> D = gaussian_prior_denoiser(x, diffax.VP())
      >>> D(jnp.zeros((3, 2, 2, 1)), jnp.full((3,), 1.0)).shape
      (3, 2, 2, 1)
    """
    flat = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    mu = flat.mean(0)
    lam, u = np.linalg.eigh(np.cov(flat, rowvar=False) + jitter * np.eye(flat.shape[1]))
    lam = np.maximum(lam, jitter)
    shape = tuple(np.shape(x_train)[1:])
    mu_j, lam_j, u_j = (jnp.asarray(v, jnp.float32) for v in (mu, lam, u))

    def denoiser(x, t):
        b = x.shape[0]
        a = jnp.reshape(process.alpha(t), (b, 1)).astype(x.dtype)
        s = jnp.reshape(process.sigma(t), (b, 1)).astype(x.dtype)
        r = x.reshape(b, -1) - a * mu_j[None]
        coef = a * lam_j[None] / (a * a * lam_j[None] + s * s)
        return (mu_j[None] + ((r @ u_j) * coef) @ u_j.T).reshape(b, *shape).astype(x.dtype)

    return denoiser


def operator_norm_squared(op: Any, shape: tuple[int, ...], *, iterations: int = 30) -> float:
    """``||A||^2``, the largest eigenvalue of ``A^T A``, by power iteration from a fixed start.

    Example:
      >>> from diffax import inverse
      >>> A = inverse.fourier_undersampling(np.ones((4, 4)))
      >>> round(operator_norm_squared(A, (1, 4, 4, 1)), 4)
      1.0
    """
    v = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    step = jax.jit(lambda v: op.transpose(op(v)))
    norm = 0.0
    for _ in range(iterations):
        w = step(v)
        norm = float(jnp.sqrt(jnp.sum(w * w)) / jnp.sqrt(jnp.sum(v * v)))
        v = w / jnp.sqrt(jnp.sum(w * w))
    return norm
