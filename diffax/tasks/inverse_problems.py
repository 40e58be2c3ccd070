"""Inverse problems on digits with one unconditional denoiser: inpainting, deblurring, 2x SR.

The library half is :mod:`diffax.inverse` (:func:`diffax.inpaint` with score_sde's replacement
and RePaint, :func:`diffax.inverse.dps`, the measurement operators); its exactness is tested on
the analytic mixture. This module holds the measurements of the digits example
(:mod:`diffax.tasks.examples.inverse_problems`):

* :func:`masks`: named inpainting masks (``"center"``: a missing central square of half the
  side; ``"bottom_half"``; ``"random_half"``: half the pixels, fixed by a seed);
* :func:`masked_psnr`: PSNR over the missing pixels only (where the methods differ);
* :func:`nearest_neighbour_fill`: the pixel-space baseline, which fills the missing pixels
  from the training image closest on the observed ones.

Example:
  >>> m = masks("center", (8, 8))
  >>> m.shape, int(m.sum())  # 1 = observed: 64 - 16 missing
  ((8, 8, 1), 48)
  >>> x = jnp.zeros((1, 8, 8, 1))
  >>> masked_psnr(x + 0.2 * (1 - m[None]), x, m).round(2)  # error 0.2 on the missing ones
  Array([20.], dtype=float32)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value
from diffax.typing import Array

__all__ = ["MASKS", "masks", "masked_psnr", "nearest_neighbour_fill"]

MASKS = ("center", "bottom_half", "random_half")
"""The mask names :func:`masks` knows."""


def masks(name: str, shape: tuple[int, int], *, seed: int = 0) -> Array:
    """An inpainting mask ``[H, W, 1]``: 1 where observed, 0 where missing.

    Example:
      >>> masks("bottom_half", (4, 4))[..., 0].tolist()
      [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    h, w = shape
    m = np.ones((h, w), np.float32)
    if name == "center":
        m[h // 4: h - h // 4, w // 4: w - w // 4] = 0.0
    elif name == "bottom_half":
        m[h // 2:] = 0.0
    elif name == "random_half":
        flat = np.random.default_rng(seed).permutation(h * w)[: (h * w) // 2]
        m.reshape(-1)[flat] = 0.0
    else:
        raise ValueError(f"masks: `name`={name!r} is not one of {MASKS}.")
    return jnp.asarray(m[..., None])


def masked_psnr(x: Array, reference: Array, mask: Array, *, data_range: float = 2.0) -> Array:
    """PSNR per image ``[B]`` over the entries where ``mask == 0`` (the missing ones), in dB.

    Example:
      >>> m = jnp.array([[[1.0], [0.0]]])
      >>> round(float(masked_psnr(jnp.array([[[[5.0], [0.1]]]]), jnp.zeros((1, 1, 2, 1)), m)[0]), 2)
      26.02
    """
    from diffax.tasks.super_resolution import psnr

    missing = 1.0 - jnp.asarray(mask)
    concrete = concrete_value(missing)  # checked outside jit only
    if concrete is not None and not concrete.max() > 0:
        raise ValueError("masked_psnr: `mask` has no missing (0) entries.")
    return psnr(x, reference, data_range=data_range, where=missing)


def nearest_neighbour_fill(x_known: Array, mask: Array, train: Array) -> Array:
    """``x_known`` with its missing entries copied from the training image nearest to it on the
    observed entries (squared distance), the baseline of the digits example. ``mask`` (1 =
    observed) is one mask for the whole batch: ``[H, W, C]`` or ``[1, H, W, C]``.

    Example:
      >>> train = jnp.array([[[[0.0], [1.0]]], [[[5.0], [-1.0]]]])  # two 1x2 images
      >>> m = jnp.array([[[1.0], [0.0]]])
      >>> nearest_neighbour_fill(jnp.array([[[[4.0], [0.0]]]]), m, train)[0, 0, :, 0].tolist()
      [4.0, -1.0]
    """
    x_known, train = jnp.asarray(x_known), jnp.asarray(train, x_known.dtype)
    if jnp.ndim(mask) == x_known.ndim and jnp.shape(mask)[0] != 1:
        raise ValueError(f"nearest_neighbour_fill: `mask` must be one mask for the batch "
                         f"([H, W, C] or [1, H, W, C]), got shape {jnp.shape(mask)}.")
    mask_full = jnp.broadcast_to(jnp.asarray(mask, x_known.dtype), x_known.shape)
    m = mask_full[:1].reshape(1, -1)
    a, b = x_known.reshape(len(x_known), -1) * m, train.reshape(len(train), -1) * m
    dist = (jnp.sum(a * a, -1)[:, None] - 2.0 * a @ b.T + jnp.sum(b * b, -1)[None, :])
    nearest = train[jnp.argmin(dist, axis=1)]
    return mask_full * x_known + (1.0 - mask_full) * nearest
