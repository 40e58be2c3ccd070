"""SegDiff (Amit et al. 2021): segmentation as a conditional diffusion model of the mask.

The mask of an image is the data of a diffusion model whose denoiser also sees the image.
Amit et al. encode the noisy mask ``x_t`` with one conv layer ``F`` and the image ``I`` with a
small network ``G`` (RRDB blocks), **add** the two feature maps, and run a UNet
encoder-decoder on the sum; at inference they draw several masks and average them before
thresholding. Here:

* :func:`mask_to_channels` / :func:`channels_to_mask`: integer labels ``[B, H, W]`` as the
  diffusion state, ``+-1`` channels (one channel for two classes, one-hot otherwise), and back
  (threshold at 0, or argmax);
* :class:`ImageEncoder`: ``G``, a conv and residual blocks (GroupNorm, swish, conv) without a
  time input;
* :class:`SegDiffUNet`: ``G(I)`` concatenated to ``x_t`` in front of a
  :class:`diffax.models.UNet`. The UNet's first layer is a 3x3 conv, which is linear, so
  ``conv_in([x_t, G(I)]) = F(x_t) + G'(I)`` with ``F`` the conv's ``x_t`` part and
  ``G' = conv o G``: exactly the paper's sum of the two encoders, inside an unchanged UNet.
  Called as ``model.apply(params, x, t, cond=image)``, so
  ``diffax.losses.DenoisingLoss(..., cond_keys=("cond",))`` trains it from batches
  ``{"x": mask_to_channels(labels, K), "cond": image}``;
* :func:`segment`: ``num_samples`` masks drawn with any solver, averaged, then thresholded;
* :func:`dice`: per-class and mean Dice coefficients of label maps.

Semantic synthesis (the mask -> image direction) uses the same network with the roles
swapped: :mod:`diffax.tasks.synthesis`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = SegDiffUNet.from_variant("tiny", num_channels=1, cond_channels=1)
  >>> params = model.init_params(jax.random.key(0))
  >>> image = jnp.zeros((2, 8, 8, 1))
  >>> mask = mask_to_channels(jnp.zeros((2, 8, 8), jnp.int32), 2)
  >>> apply_fn(model)(params, mask, jnp.ones(2), cond=image).shape
  (2, 8, 8, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffax.models.layers import default_init, group_norm, init_variables, positive_int
from diffax.models.unet import VARIANTS as UNET_VARIANTS
from diffax.models.unet import UNet, UNetConfig
from diffax.typing import Array, Denoiser, PRNGKey

__all__ = ["mask_channels", "mask_to_channels", "channels_to_mask", "ImageEncoder",
           "SegDiffUNet", "apply_fn", "SegDiffResult", "segment", "dice"]


def _num_classes(num_classes: Any, where: str) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) \
            or num_classes < 2:
        raise ValueError(f"{where}: `num_classes` must be an integer >= 2, got "
                         f"{num_classes!r}.")
    return int(num_classes)


def mask_channels(num_classes: int) -> int:
    """Channels of the diffusion state of a ``num_classes`` mask: 1 for two classes, else
    ``num_classes`` (one-hot).

    Example:
      >>> mask_channels(2), mask_channels(4)
      (1, 4)
    """
    k = _num_classes(num_classes, "mask_channels")
    return 1 if k == 2 else k


def mask_to_channels(labels: Array, num_classes: int) -> Array:
    """Integer labels ``[B, H, W]`` in ``0..num_classes-1`` as ``+-1`` channels
    ``[B, H, W, mask_channels(num_classes)]`` (float32).

    Two classes: one channel, ``+1`` on class 1 and ``-1`` on class 0 (the binary mask of
    SegDiff in the model's ``[-1, 1]`` range); more: one-hot, ``2 onehot - 1``.

    Raises:
      ValueError: ``labels`` not ``[B, H, W]`` integers, or (when concrete) a label outside
        ``0..num_classes-1``.

    Example:
      >>> mask_to_channels(jnp.array([[[0, 1]]]), 2)[..., 0]
      Array([[[-1.,  1.]]], dtype=float32)
      >>> mask_to_channels(jnp.array([[[2]]]), 3)[0, 0, 0]
      Array([-1., -1.,  1.], dtype=float32)
    """
    k = _num_classes(num_classes, "mask_to_channels")
    labels = jnp.asarray(labels)
    if labels.ndim != 3 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"mask_to_channels: `labels` must be integer label maps [B, H, W], "
                         f"got {labels.dtype}{list(labels.shape)}.")
    if not isinstance(labels, jax.core.Tracer):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"mask_to_channels: `labels` must lie in 0..{k - 1} "
                             f"(num_classes={k}), got values in {lo}..{hi}.")
    if k == 2:
        return (2.0 * labels - 1.0).astype(jnp.float32)[..., None]
    return 2.0 * jax.nn.one_hot(labels, k, dtype=jnp.float32) - 1.0


def channels_to_mask(x: Array, num_classes: int) -> Array:
    """The labels ``[B, H, W]`` (int32) of channels ``[B, H, W, C]``: ``x > 0`` for two
    classes (one channel), the argmax otherwise (first of equal values).

    Inverts :func:`mask_to_channels`; applied to an average of samples it is SegDiff's
    thresholding.

    Example:
      >>> channels_to_mask(jnp.array([[[[0.3], [-0.2]]]]), 2)
      Array([[[1, 0]]], dtype=int32)
    """
    k = _num_classes(num_classes, "channels_to_mask")
    x = jnp.asarray(x)
    c = mask_channels(k)
    if x.ndim != 4 or x.shape[-1] != c:
        raise ValueError(f"channels_to_mask: `x` must be [B, H, W, {c}] for num_classes={k}, "
                         f"got shape {tuple(x.shape)}.")
    if k == 2:
        return (x[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(x, axis=-1).astype(jnp.int32)


class ImageEncoder(nn.Module):
    """SegDiff's image encoder ``G``: a 3x3 conv to ``features`` channels, then
    ``num_blocks`` residual blocks ``h + conv(swish(norm(conv(swish(norm(h))))))``; no time
    input (the image is clean).

    Attributes:
      features: output channels.
      num_blocks: residual blocks (0: the conv alone).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> enc = ImageEncoder(features=8, num_blocks=1)
      >>> params = enc.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
      >>> enc.apply(params, jnp.zeros((2, 8, 8, 1))).shape
      (2, 8, 8, 8)
    """

    features: int
    num_blocks: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image: Array) -> Array:
        conv = lambda name, scale=1.0: nn.Conv(self.features, (3, 3), dtype=self.dtype,
                                               kernel_init=default_init(scale), name=name)
        h = conv("conv_in")(image.astype(self.dtype))
        for i in range(self.num_blocks):
            r = conv(f"block_{i}_conv_0")(nn.swish(group_norm(h, dtype=self.dtype,
                                                              name=f"block_{i}_norm_0")))
            r = conv(f"block_{i}_conv_1")(nn.swish(group_norm(r, dtype=self.dtype,
                                                              name=f"block_{i}_norm_1")))
            h = h + r
        return h


class SegDiffUNet(nn.Module):
    """The SegDiff denoiser: ``UNet(conv_in([x_t, G(cond)]))`` = ``UNet(F(x_t) + G'(cond))``.

    The inner :class:`diffax.models.UNet` has config ``config`` with ``in_channels =
    num_channels + encoder_features`` (its output keeps ``num_channels``, the mask's
    channels); :class:`ImageEncoder` ``G`` maps ``cond`` ``[B, H, W, cond_channels]`` to
    ``encoder_features`` channels (default ``config.nf``, the width of ``F``'s output).

    Attributes:
      config: the UNet config of the output (``num_channels``: the mask channels).
      cond_channels: channels of the conditioning image.
      encoder_features: ``G``'s width (``None``: ``config.nf``).
      encoder_blocks: ``G``'s residual blocks.

    Example:
      >>> import jax
      >>> model = SegDiffUNet.from_variant("tiny", num_channels=3, cond_channels=1)
      >>> params = model.init_params(jax.random.key(0))
      >>> params["params"]["unet"]["conv_in"]["kernel"].shape  # 3 mask + 16 encoder channels
      (3, 3, 19, 16)
    """

    config: UNetConfig
    cond_channels: int = 1
    encoder_features: int | None = None
    encoder_blocks: int = 2

    @classmethod
    def from_variant(cls, name: str, /, *, cond_channels: int = 1,
                     encoder_features: int | None = None, encoder_blocks: int = 2,
                     **overrides: Any) -> SegDiffUNet:
        """Built on ``diffax.models.UNET_VARIANTS[name]`` with fields replaced by
        ``overrides``."""
        if name not in UNET_VARIANTS:
            raise ValueError(f"unknown UNet variant {name!r}; known: {sorted(UNET_VARIANTS)}")
        positive_int(cond_channels, "cond_channels")
        if encoder_features is not None:
            positive_int(encoder_features, "encoder_features")
        positive_int(encoder_blocks, "encoder_blocks", minimum=0)
        return cls(dataclasses.replace(UNET_VARIANTS[name], **overrides), cond_channels,
                   encoder_features, encoder_blocks)

    @property
    def _features(self) -> int:
        return self.config.nf if self.encoder_features is None else self.encoder_features

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array, Array]:
        """Zero inputs ``(x, t, cond)`` of the configured shape."""
        x = jnp.zeros((batch_size, *self.config.input_shape), jnp.float32)
        cond = jnp.zeros((*x.shape[:-1], self.cond_channels), jnp.float32)
        return x, jnp.zeros((batch_size,), jnp.float32), cond

    @nn.nowrap
    def init_params(self, key: PRNGKey) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs` (jit-compiled once per config)."""
        return init_variables(self, key)

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None, *,
                 train: bool = False) -> Array:
        """``[B, H, W, C]`` output for the noisy mask ``x`` ``[B, H, W, C]``, ``t`` ``[B]``
        and the image ``cond`` ``[B, H, W, cond_channels]``."""
        if cond is None:
            raise ValueError("SegDiffUNet: `cond` (the conditioning image) is required.")
        expected = (*x.shape[:-1], self.cond_channels)
        if tuple(cond.shape) != expected:
            raise ValueError(f"SegDiffUNet: `cond` must have shape {expected} (the image, the "
                             f"size of x); got {tuple(cond.shape)}.")
        g = ImageEncoder(features=self._features, num_blocks=self.encoder_blocks,
                         dtype=self.config.dtype, name="image_encoder")(cond.astype(x.dtype))
        inner = dataclasses.replace(self.config,
                                    in_channels=self.config.num_channels + self._features)
        h = jnp.concatenate([x, g.astype(x.dtype)], axis=-1)
        return UNet(inner, name="unet")(h, t, train=train)


def apply_fn(model: SegDiffUNet):
    """The pure ``f(params, x, t, *, cond, train=False, key=None)`` of ``model`` (``key``:
    the dropout key, needed with ``train=True`` and dropout).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = SegDiffUNet.from_variant("tiny", num_channels=1, dropout=0.0)
      >>> params = model.init_params(jax.random.key(0))
      >>> x = jnp.zeros((2, 8, 8, 1))
      >>> apply_fn(model)(params, x, jnp.ones(2), cond=x, train=True).shape
      (2, 8, 8, 1)
    """

    def f(params, x, t, *, cond, train=False, key=None):
        rngs = None if key is None else {"dropout": key}
        return model.apply(params, x, t, cond, train=train, rngs=rngs)

    return f


class SegDiffResult(NamedTuple):
    """What :func:`segment` returns.

    Attributes:
      labels: ``[B, H, W]`` int32, :func:`channels_to_mask` of ``mean``.
      mean: ``[B, H, W, C]``, the average of the samples.
      samples: ``[S, B, H, W, C]``, the drawn masks (the state at ``process.t_min``).
    """

    labels: Array
    mean: Array
    samples: Array


def segment(key: PRNGKey, process: Any, denoiser: Denoiser, shape: tuple[int, ...], *,
            num_classes: int, num_samples: int, solver: Any, num_steps: int) -> SegDiffResult:
    """SegDiff's inference: ``num_samples`` masks, their average, thresholded.

    Each sample runs ``solver`` (:func:`diffax.sample`) from ``process.prior_sample`` of
    ``shape``; the samples are drawn one after the other (``lax.map``: one compiled program,
    the memory of one), averaged, and :func:`channels_to_mask` gives the labels.

    Args:
      key: PRNG key.
      process: the process the denoiser was trained with.
      denoiser: ``D(x, t)`` of the mask given the image (e.g. ``loss.denoiser(apply_fn,
        params, cond=image)`` of a :class:`SegDiffUNet`; wrap it in
        :func:`diffax.guidance.clip` to keep its x0 estimate in the channels' range
        ``[-1, 1]``, as DDPM clips images: an eps network's ``(x - sigma eps) / alpha`` at
        high noise is far outside it).
      shape: ``[B, H, W, mask_channels(num_classes)]``.
      num_classes: classes of the mask.
      num_samples: masks averaged (the paper: a few to 100).
      solver: a solver of :mod:`diffax.samplers`.
      num_steps: its steps.

    Returns:
      a :class:`SegDiffResult`.

    Raises:
      ValueError: naming ``num_samples``, ``num_classes`` or ``shape``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.ones_like(x)  # every mask is class 1 everywhere
      >>> r = segment(jax.random.key(0), diffax.VP(), D, (2, 4, 4, 1), num_classes=2,
      ...             num_samples=3, solver=diffax.samplers.DDIM(), num_steps=5)
      >>> r.samples.shape, int(r.labels.sum())
      ((3, 2, 4, 4, 1), 32)
    """
    from diffax.samplers import sample

    k = _num_classes(num_classes, "segment")
    num_samples = positive_int(num_samples, "segment: num_samples")
    shape = tuple(int(s) for s in shape)
    c = mask_channels(k)
    if len(shape) != 4 or shape[-1] != c:
        raise ValueError(f"segment: `shape` must be [B, H, W, {c}] for num_classes={k}, got "
                         f"{shape}.")

    def one(key):
        key_init, key_run = jax.random.split(key)
        x_init = process.prior_sample(key_init, shape)
        return sample(key_run, process, denoiser, x_init, solver=solver,
                      num_steps=num_steps).x

    samples = jax.lax.map(one, jax.random.split(key, num_samples))
    mean = jnp.mean(samples, axis=0)
    return SegDiffResult(labels=channels_to_mask(mean, k), mean=mean, samples=samples)


def dice(pred: Any, target: Any, num_classes: int) -> dict[str, Any]:
    """Dice coefficients ``2 |P_k & T_k| / (|P_k| + |T_k|)`` of label maps, over all pixels.

    Args:
      pred: predicted labels ``[...]``.
      target: true labels, the same shape.
      num_classes: classes ``0..num_classes-1``; class 0 is the background.

    Returns:
      ``{"per_class": [K] (NaN for a class absent from both), "mean_foreground_dice": the
      mean over classes 1..K-1 present in either, "mean_dice": over all present classes}``.

    Example:
      >>> d = dice(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2)
      >>> [round(v, 3) for v in d["per_class"]], round(d["mean_foreground_dice"], 3)
      ([0.8, 0.667], 0.667)
    """
    k = _num_classes(num_classes, "dice")
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"dice: `pred` has shape {pred.shape}, `target` {target.shape}; they "
                         "must match.")
    per_class = []
    for c in range(k):
        p, t = pred == c, target == c
        total = int(p.sum() + t.sum())
        per_class.append(2.0 * float((p & t).sum()) / total if total else float("nan"))
    arr = np.asarray(per_class)
    fg = arr[1:][~np.isnan(arr[1:])]
    return {"per_class": per_class,
            "mean_foreground_dice": float(fg.mean()) if fg.size else float("nan"),
            "mean_dice": float(np.nanmean(arr))}
