"""Inverse problems on digits with one unconditional denoiser: inpainting, deblurring, 2x SR.

The library half is :mod:`diffax.inverse` (:func:`diffax.inpaint` with score_sde's replacement
and RePaint, :func:`diffax.inverse.dps`, the measurement operators); its exactness is tested on
the analytic mixture. This module is the digits example and its measurements:

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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value
from diffax.typing import Array

__all__ = ["MASKS", "masks", "masked_psnr", "nearest_neighbour_fill", "run"]

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


# --------------------------------------------------------------------------------------------
# The digits example.



def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: one unconditional denoiser solves several inverse problems.

    Trains an eps-prediction denoiser (``config.model``, ``config.train``) on the train split.
    For each mask of ``config.inverse.masks`` every test digit (the first
    ``config.inverse.num_eval``) is inpainted ``config.inverse.num_samples`` times by each
    method of ``config.inverse.methods`` (``"replace"``, ``"repaint"`` with
    ``jump_length``/``resample``, ``"dps"`` with :func:`diffax.inverse.masking` and
    ``dps_step_size``), all with ``config.inverse.num_steps`` DDPM steps; PSNR over the
    missing pixels (:func:`masked_psnr`) of one sample and of the mean of the samples, next to
    :func:`nearest_neighbour_fill` and the training mean. For each problem of
    ``config.inverse.problems`` (``"blur"``: :func:`diffax.inverse.gaussian_blur` with
    ``blur_std``; ``"downsample"``: 2x average pooling), DPS's PSNR next to the measurement's
    own (blur) or bicubic upsampling (downsample). Writes ``workdir/inverse.png`` and
    ``workdir/metrics.json``. ``config.inverse.prior = "gaussian"`` replaces the trained UNet
    by :func:`diffax.tasks.medical.gaussian_prior_denoiser` of the train digits (the exact
    denoiser of a fitted Gaussian, no training: the tests' cheap prior of known quality).
    """
    import itertools
    import os

    import diffax
    from diffax import models
    from diffax.evaluation.intervals import bootstrap_interval
    from diffax.inverse import downsample, dps, gaussian_blur, masking
    from diffax.tasks import _pipeline as pl
    from diffax.tasks.super_resolution import psnr, upsample
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg = opts.inverse
    process = build.build_process(opts.process)
    num_steps, num_samples = cfg.num_steps, cfg.num_samples
    train = pl.digits("train", data_dir=opts.data.data_dir)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    x = jnp.asarray(test["x"][: cfg.num_eval or len(test["x"])])
    key_train, key_run = jax.random.split(jax.random.key(opts.seed))
    if cfg.prior == "gaussian":  # the exact denoiser of a Gaussian fitted to the train digits
        from diffax.tasks.medical import gaussian_prior_denoiser

        D, extra_metrics = gaussian_prior_denoiser(train["x"], process), {"prior": "gaussian"}
    else:
        model = pl.unet(opts.model, models.UNet.from_variant)
        apply_fn = models.apply_fn(model)
        result, loss = pl.train_denoiser(key_train, process, model, apply_fn,
                                         {"x": train["x"]}, pl.fit_kwargs(opts.train))
        D = loss.denoiser(apply_fn, result.params)
        extra_metrics = {"final_loss": float(np.mean(result.losses[-50:]))}
    step_size = cfg.dps_step_size

    def draws(fn):
        """``num_samples`` draws of ``fn(key, x_init)``, ``[S, B, ...]``, clipped to [-1, 1]."""
        run_one = jax.jit(lambda k: fn(k, process.prior_sample(jax.random.fold_in(k, 1),
                                                               x.shape)))
        keys = jax.random.split(jax.random.fold_in(key_run, next(problem_index)), num_samples)
        return jnp.clip(jnp.stack([run_one(k) for k in keys]), -1.0, 1.0)

    def scores(samples, score):
        """``score`` (per image, ``[B]``) of one sample and of the mean of the samples."""
        one, mean = score(samples[0]), score(samples.mean(0))
        return {"sample": float(one.mean()), "sample_mean": float(mean.mean()),
                "sample_interval": interval(one), "sample_mean_interval": interval(mean)}

    interval = lambda v: list(bootstrap_interval(np.mean, np.asarray(v, np.float64)))

    problem_index = itertools.count(1)  # each problem draws its own keys
    metrics: dict[str, Any] = {**extra_metrics, "num_eval": int(x.shape[0]),
                               "num_samples": num_samples, "num_steps": num_steps,
                               "inpainting": {}, "problems": {}}
    rows = []
    train_mean = jnp.mean(jnp.asarray(train["x"]), axis=0, keepdims=True)
    for mask_name in cfg.masks:
        mask = masks(mask_name, x.shape[1:3])[None]
        known = x * mask
        nn_fill = masked_psnr(nearest_neighbour_fill(known, mask, train["x"]), x, mask)
        mean_fill = masked_psnr(mask * x + (1 - mask) * train_mean, x, mask)
        out: dict[str, Any] = {
            "nearest_neighbour": float(nn_fill.mean()),
            "train_mean": float(mean_fill.mean()),
            "nearest_neighbour_interval": interval(nn_fill),
            "train_mean_interval": interval(mean_fill)}
        shown = {}
        for method in cfg.methods:
            if method == "dps":
                fn = lambda k, x0, mask=mask, known=known: dps(
                    k, process, D, x0, known, masking(mask), step_size=step_size,
                    num_steps=num_steps).x
            else:
                extra = ({"jump_length": cfg.jump_length, "resample": cfg.resample}
                         if method == "repaint" else {})
                fn = lambda k, x0, mask=mask, known=known, method=method, extra=extra: (
                    diffax.inpaint(k, process, D, x0, known, mask, method=method,
                                   num_steps=num_steps, **extra).x)
            samples = draws(fn)
            out[method] = scores(samples, lambda s, mask=mask: masked_psnr(s, x, mask))
            shown[method] = samples[0]
        metrics["inpainting"][mask_name] = out
        n = min(10, x.shape[0])
        # The observed pixels, the missing ones grey; then one sample of each method.
        rows += [jnp.where(mask > 0, x, 0.0)[:n]] + [shown[m][:n] for m in cfg.methods]
    for problem in cfg.problems:
        if problem == "blur":
            forward = gaussian_blur(std=cfg.blur_std)
            y = forward(x)
            base = psnr(jnp.clip(y, -1, 1), x)
            baseline = {"measurement": float(base.mean()),
                        "measurement_interval": interval(base)}
            shown_y = y
        else:
            forward = downsample(factor=2)
            y = forward(x)
            bicubic = jnp.clip(upsample(y, 2, method="bicubic"), -1.0, 1.0)
            base = psnr(bicubic, x)
            baseline = {"bicubic": float(base.mean()), "bicubic_interval": interval(base)}
            shown_y = upsample(y, 2)
        samples = draws(lambda k, x0, y=y, forward=forward: dps(
            k, process, D, x0, y, forward, step_size=step_size, num_steps=num_steps).x)
        metrics["problems"][problem] = {
            "dps": scores(samples, lambda s: psnr(s, x)),
            **baseline,
            "measurement_rmse": float(jnp.sqrt(jnp.mean(jnp.square(forward(samples[0]) - y))))}
        n = min(10, x.shape[0])
        rows += [jnp.clip(shown_y, -1.0, 1.0)[:n], samples[0, :n]]
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        rows.append(x[: min(10, x.shape[0])])
        pl.save_grid(os.path.join(workdir, "inverse.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
