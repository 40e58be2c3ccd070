"""The digits example of :mod:`diffax.tasks.inverse_problems`: inpainting, deblurring and super-
resolution with one denoiser.

``run(config, workdir)`` runs ``configs/tasks/digits_inverse.py`` (``diffax task CONFIG
--workdir DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.tasks.inverse_problems import masked_psnr, masks, nearest_neighbour_fill

__all__ = ["run"]


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
    from diffax.evaluation.intervals import bootstrap_interval
    from diffax.inverse import downsample, dps, gaussian_blur, masking
    from diffax.tasks.examples import _pipeline as pl
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
    D, final_loss = pl.unconditional_denoiser(cfg.prior, key_train, process, opts, train["x"])
    extra_metrics = {"prior": "gaussian"} if final_loss is None else {"final_loss": final_loss}
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
