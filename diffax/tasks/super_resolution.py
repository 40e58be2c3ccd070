"""Super-resolution with a conditional denoiser, SR3 style (Saharia et al. 2022).

SR3 trains a denoiser of the high-resolution image ``x`` that also sees the low-resolution
image, upsampled to the output size and concatenated to ``x_t`` as extra input channels; any
sampler then draws ``x ~ p(x | low)``. Here:

* :func:`downsample` (``factor x factor`` average pooling) makes the low-resolution inputs and
  :func:`upsample` (nearest neighbour or bicubic, ``jax.image.resize``) brings them back to the
  output size;
* :class:`ConditionalUNet` wraps :class:`diffax.models.UNet`: the inner UNet gets
  ``C + C_cond`` input channels and only its first ``C`` output channels are returned, so no
  model code changes; called as ``model.apply(params, x, t, low_res=up)``, so
  ``diffax.losses.DenoisingLoss(..., cond_keys=("low_res",))`` trains it from batches
  ``{"x": high, "low_res": up}`` and ``loss.denoiser(apply_fn, params, low_res=up)`` samples it;
* :func:`psnr`: peak signal-to-noise ratio.

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = ConditionalUNet.from_variant("tiny", num_channels=1)
  >>> params = model.init_params(jax.random.key(0))
  >>> x = jnp.zeros((2, 8, 8, 1))
  >>> up = upsample(downsample(x, 2), 2)
  >>> apply_fn(model)(params, x, jnp.ones(2), low_res=up).shape
  (2, 8, 8, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax import inverse
from diffax.evaluation.metrics import psnr  # re-exported: it moved there
from diffax.models.layers import init_variables, positive_int
from diffax.models.unet import VARIANTS as UNET_VARIANTS
from diffax.models.unet import UNet, UNetConfig
from diffax.typing import Array, PRNGKey

__all__ = ["ConditionalUNet", "apply_fn", "downsample", "upsample", "psnr"]


def _factor(x: Array, factor: int, fn: str) -> int:
    factor = positive_int(factor, "factor")
    if x.ndim != 4:
        raise ValueError(f"{fn}: `x` must be images [B, H, W, C], got shape {tuple(x.shape)}.")
    return factor


def downsample(x: Array, factor: int) -> Array:
    """``factor x factor`` average pooling of images ``[B, H, W, C]``.

    ``diffax.inverse.downsample(factor=factor)(x)`` (the forward operator of super-resolution)
    after checking the arguments.

    Example:
      >>> downsample(jnp.arange(16.0).reshape(1, 4, 4, 1), 2)[0, ..., 0]
      Array([[ 2.5,  4.5],
             [10.5, 12.5]], dtype=float32)
    """
    x = jnp.asarray(x)
    factor = _factor(x, factor, "downsample")
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downsample: `factor`={factor} must divide the image size {h}x{w}.")
    return inverse.downsample(factor=factor)(x)  # the one average pooling


def upsample(x: Array, factor: int, *, method: str = "nearest") -> Array:
    """Images ``[B, h, w, C]`` resized to ``[B, factor h, factor w, C]``.

    Args:
      x: low-resolution images.
      factor: the integer scale.
      method: ``"nearest"`` (each pixel repeated; ``downsample`` inverts it exactly) or any
        ``jax.image.resize`` method (``"bicubic"``, ``"linear"``, ...).

    Example:
      >>> upsample(jnp.array([[1.0, 2.0]]).reshape(1, 1, 2, 1), 2)[0, ..., 0]
      Array([[1., 1., 2., 2.],
             [1., 1., 2., 2.]], dtype=float32)
    """
    x = jnp.asarray(x)
    factor = _factor(x, factor, "upsample")
    if method == "nearest":
        return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h * factor, w * factor, c), method=method)


class ConditionalUNet(nn.Module):
    """A :class:`diffax.models.UNet` denoiser that also sees an image ``low_res`` as channels.

    ``out = UNet([x, low_res])[..., :C]``: the inner UNet (config ``config`` with
    ``num_channels = C + cond_channels``) gets the concatenation; the extra output channels
    are dropped.

    Attributes:
      config: the UNet config of the *output* (``num_channels = C``).
      cond_channels: channels of ``low_res`` (default: ``C``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = ConditionalUNet.from_variant("tiny")
      >>> params = model.init_params(jax.random.key(0))
      >>> params["params"]["unet"]["conv_in"]["kernel"].shape  # 3 + 3 input channels
      (3, 3, 6, 16)
    """

    config: UNetConfig
    cond_channels: int | None = None

    @classmethod
    def from_variant(cls, name: str, /, *, cond_channels: int | None = None,
                     **overrides: Any) -> ConditionalUNet:
        """Built on ``diffax.models.UNET_VARIANTS[name]`` with fields replaced by ``overrides``."""
        if name not in UNET_VARIANTS:
            raise ValueError(f"unknown UNet variant {name!r}; known: {sorted(UNET_VARIANTS)}")
        return cls(dataclasses.replace(UNET_VARIANTS[name], **overrides), cond_channels)

    @property
    def _cond_channels(self) -> int:
        c = self.config.num_channels if self.cond_channels is None else self.cond_channels
        return positive_int(c, "cond_channels")

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array, Array]:
        """Zero inputs ``(x, t, low_res)`` of the configured shape."""
        x = jnp.zeros((batch_size, *self.config.input_shape), jnp.float32)
        cond = jnp.zeros((*x.shape[:-1], self._cond_channels), jnp.float32)
        return x, jnp.zeros((batch_size,), jnp.float32), cond

    @nn.nowrap
    def init_params(self, key: PRNGKey) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs` (jit-compiled once per config)."""
        return init_variables(self, key)

    @nn.compact
    def __call__(self, x: Array, t: Array, low_res: Array | None = None, *,
                 label: Array | None = None, train: bool = False) -> Array:
        """``[B, H, W, C]`` output for ``x`` ``[B, H, W, C]``, ``t`` ``[B]`` and ``low_res``
        ``[B, H, W, cond_channels]`` (already upsampled to ``H x W``)."""
        if low_res is None:
            raise ValueError("ConditionalUNet: `low_res` (the upsampled conditioning image) is "
                             "required.")
        expected = (*x.shape[:-1], self._cond_channels)
        if tuple(low_res.shape) != expected:
            raise ValueError(f"ConditionalUNet: `low_res` must have shape {expected} (upsampled "
                             f"to the size of x); got {tuple(low_res.shape)}.")
        inner = dataclasses.replace(
            self.config, num_channels=self.config.num_channels + self._cond_channels)
        h = jnp.concatenate([x, low_res.astype(x.dtype)], axis=-1)
        kwargs = {} if label is None else {"label": label}
        out = UNet(inner, name="unet")(h, t, train=train, **kwargs)
        return out[..., : self.config.num_channels]


def apply_fn(model: ConditionalUNet):
    """The pure ``f(params, x, t, *, low_res, label=None, train=False, key=None)`` of ``model``.

    Like :func:`diffax.models.apply_fn`, plus the conditioning image ``low_res``; ``key`` is
    the dropout key (needed with ``train=True`` and dropout).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = ConditionalUNet.from_variant("tiny", num_channels=1, dropout=0.0)
      >>> params = model.init_params(jax.random.key(0))
      >>> x = jnp.zeros((2, 8, 8, 1))
      >>> apply_fn(model)(params, x, jnp.ones(2), low_res=x, train=True).shape
      (2, 8, 8, 1)
    """

    def f(params, x, t, *, low_res, label=None, train=False, key=None):
        rngs = None if key is None else {"dropout": key}
        return model.apply(params, x, t, low_res, label=label, train=train, rngs=rngs)

    return f
