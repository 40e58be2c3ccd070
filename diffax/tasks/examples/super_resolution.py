"""The digits example of :mod:`diffax.tasks.super_resolution`: SR3-style super-resolution.

``run(config, workdir)`` runs ``configs/tasks/digits_sr.py`` (``diffax task CONFIG --workdir
DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diffax.evaluation.metrics import psnr
from diffax.tasks.super_resolution import ConditionalUNet, apply_fn, downsample, upsample

__all__ = ["run"]


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
    from diffax.tasks.examples import _pipeline as pl
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
