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


# --------------------------------------------------------------------------------------------
# The digits example.


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: 4x4 -> 8x8 super-resolution, PSNR against the baselines.

    Trains a :class:`ConditionalUNet` (``config.model``) on the train split with the
    low-resolution image (``config.sr.factor`` average pooling, upsampled by
    ``config.sr.upsample``) as extra channels, then for the test split (first
    ``config.sr.num_eval`` images) draws ``config.sr.num_samples`` samples each with
    ``config.sample``'s solver and reports the PSNR (in ``[-1, 1]``, data range 2) of one
    sample, of the mean of the samples, and of nearest / bicubic upsampling, plus the
    consistency error ``|downsample(sample) - low|``. Writes ``workdir/sr.png`` (rows:
    low-resolution input, bicubic, two samples, the mean, ground truth) and
    ``workdir/metrics.json``.
    """
    import os

    import numpy as np

    from diffax.evaluation.intervals import bootstrap_interval
    from diffax.tasks import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg = opts.sr
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    factor, method = cfg.factor, cfg.upsample
    prep = lambda x: upsample(downsample(x, factor), factor, method=method)
    train = pl.digits("train", data_dir=opts.data.data_dir)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    model = pl.unet(opts.model, ConditionalUNet.from_variant)
    fn = apply_fn(model)
    key_train, key_sample = jax.random.split(jax.random.key(opts.seed))
    result, loss = pl.train_denoiser(
        key_train, process, model, fn, {"x": train["x"], "low_res": prep(train["x"])},
        pl.fit_kwargs(opts.train), cond_keys=("low_res",))

    from diffax.samplers import sample

    x = jnp.asarray(test["x"][: cfg.num_eval or len(test["x"])])
    low = downsample(x, factor)
    cond = prep(x)

    @jax.jit
    def draw(key):
        denoiser = loss.denoiser(fn, result.params, low_res=cond)
        key_init, key_run = jax.random.split(key)
        x_init = process.prior_sample(key_init, x.shape)
        return sample(key_run, process, denoiser, x_init, solver=solver,
                      num_steps=num_steps).x

    samples = jnp.stack([draw(k) for k in
                         jax.random.split(key_sample, cfg.num_samples)])
    samples = jnp.clip(samples, -1.0, 1.0)
    mean = samples.mean(axis=0)
    nearest = upsample(low, factor)
    bicubic = jnp.clip(upsample(low, factor, method="bicubic"), -1.0, 1.0)
    per_image = {"sample": psnr(samples[0], x), "sample_mean": psnr(mean, x),
                 "nearest": psnr(nearest, x), "bicubic": psnr(bicubic, x)}
    metrics = {
        "psnr": {name: float(v.mean()) for name, v in per_image.items()},
        "psnr_interval": {name: list(bootstrap_interval(np.mean, np.asarray(v, np.float64)))
                          for name, v in per_image.items()},
        "consistency_rmse": float(jnp.sqrt(jnp.mean(jnp.square(
            downsample(samples[0], factor) - low)))),
        "final_loss": float(np.mean(result.losses[-50:])),
        "num_eval": int(x.shape[0]), "num_samples": cfg.num_samples,
    }
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        n = min(12, x.shape[0])
        rows = [nearest[:n], bicubic[:n], samples[0, :n], samples[-1, :n], mean[:n], x[:n]]
        pl.save_grid(os.path.join(workdir, "sr.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
