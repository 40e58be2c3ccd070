"""The phantom example of :mod:`diffax.tasks.medical`: sparse-view CT and undersampled MRI
with one unconditional denoiser.

``run(config, workdir)`` runs ``configs/tasks/phantom_ct.py`` / ``phantom_mri.py``
(``diffax task CONFIG --workdir DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.evaluation.intervals import bootstrap_interval
from diffax.tasks.medical import (
    gaussian_prior_denoiser,
    operator_for,
    operator_norm_squared,
    per_image_metrics,
    phantoms,
    reconstruction_metrics,
)
from diffax.typing import Array

__all__ = ["run"]


def _baseline(problem: str, op, y: Array) -> Array:
    from diffax import inverse

    return inverse.fbp(op, y) if problem == "ct" else inverse.zero_filled(op, y)


def _scored(x: Array, reference: Array, *, versus: dict | None = None) -> dict[str, Any]:
    """:func:`reconstruction_metrics` (the same numbers) with the per-image PSNR / SSIM and the
    95% percentile-bootstrap intervals of their means over the images; with ``versus`` (another
    method's ``_scored`` on the same images) also the interval of the mean paired PSNR gain
    over it."""
    m = per_image_metrics(x, reference)
    psnr, ssim = np.asarray(m["psnr"], np.float64), np.asarray(m["ssim"], np.float64)
    out = {"psnr": float(jnp.mean(m["psnr"])), "ssim": float(np.mean(m["ssim"])),
           "psnr_interval": bootstrap_interval(np.mean, psnr),
           "ssim_interval": bootstrap_interval(np.mean, ssim),
           "per_image": {"psnr": [round(float(v), 4) for v in psnr],
                         "ssim": [round(float(v), 5) for v in ssim]}}
    if versus is not None:
        out["psnr_gain_interval"] = bootstrap_interval(
            np.mean, psnr - np.asarray(versus["per_image"]["psnr"]))
    return out


def _validation_psnr(process, D, op, x: Array, candidates: tuple[float, ...], norm: float, *,
                     noise_std: float, problem: str, num_steps: int, key) -> dict[str, float]:
    """One-sample DPS PSNR on the validation phantoms ``x`` for each candidate step
    (``candidate / norm``), with their own measurement noise and sampling keys."""
    from diffax import inverse

    k_noise, k_sample = jax.random.split(key)
    y = op(x)
    y = y + float(noise_std) * jax.random.normal(k_noise, y.shape, y.dtype)
    if problem == "mri":
        y = op.select(y)

    @jax.jit
    def draw(step_size):
        x0 = process.prior_sample(jax.random.fold_in(k_sample, 1), x.shape)
        return inverse.dps(k_sample, process, D, x0, y, op, step_size=step_size,
                           num_steps=num_steps).x

    return {str(c): reconstruction_metrics(draw(jnp.asarray(c / norm, jnp.float32)), x)["psnr"]
            for c in candidates}


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The phantom example: CT at ``config.medical.settings`` views or MRI at those
    accelerations.

    Trains an eps-prediction UNet (``config.model``, ``config.train``) on the train split of
    ``phantoms/<size>`` (or loads its parameters from ``config.medical.denoiser_from``, a file
    a previous run wrote as ``workdir/denoiser.msgpack``), then on the first
    ``config.medical.num_eval`` test phantoms, for each setting, measures
    ``y = A(x) + noise_std * noise`` and reconstructs it ``num_samples`` times with each
    method: ``"consistency"`` (:func:`diffax.inverse.consistency_sample`, predictor-corrector
    with the reverse-diffusion predictor and a Langevin corrector at ``snr``, weight ``lam``)
    and ``"dps"`` (DDPM with :func:`diffax.inverse.dps`, step ``dps_step_size / ||A||^2``
    with :func:`operator_norm_squared`), each with
    ``num_steps`` steps; PSNR/SSIM (:func:`reconstruction_metrics`) of one sample and of the
    mean of the samples, next to FBP (CT) or zero-filling (MRI), each with its per-image
    values and 95% bootstrap intervals over the test phantoms (``psnr_interval``,
    ``ssim_interval``; ``psnr_gain_interval``: the mean paired PSNR gain over the baseline;
    DPS's ``psnr_gain_over_consistency_interval``: over the consistency sampler). Writes
    ``workdir/medical.png`` (per setting: truth, baseline, one sample of each method) and
    ``workdir/metrics.json``. ``config.medical.prior = "gaussian"`` replaces the UNet by
    :func:`gaussian_prior_denoiser` of the train split (no training).
    ``config.medical.inverse_ridge`` is the CT operator's ``inverse_ridge`` (0: FBP).

    With candidates ``config.medical.dps_step_sizes``, ``config.medical.num_validation``
    phantoms are held out of the train split (``data.validation_seed``; the prior is fitted
    or trained on the rest) and, for each setting, DPS's step is the candidate with the best
    one-sample PSNR on them (own measurement noise and sampling keys); the test phantoms are
    reconstructed with that step only (``metrics.json``: ``dps.step_size`` and
    ``dps.validation_psnr``). Without candidates ``dps_step_size`` is used as given. A
    ``denoiser_from`` run uses the same held-out phantoms (held out of its training only if the
    run that wrote it had candidates too).
    """
    import os
    import time

    from flax import serialization

    from diffax import inverse, models, samplers
    from diffax.data import PHANTOM_SIZES
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    med = opts.medical
    process = build.build_process(opts.process)
    problem = med.problem
    size, num_steps, num_samples = med.size, med.num_steps, med.num_samples
    data_dir = opts.data.data_dir
    if size not in PHANTOM_SIZES:
        raise ValueError(f"config.medical.size={size!r}: the phantoms come in sizes "
                         f"{PHANTOM_SIZES} (the phantoms/<size> dataset).")
    model = pl.unet(opts.model, models.UNet.from_variant)
    if med.prior == "unet" and model.config.image_size != size:
        raise ValueError(f"config.medical.size={size} needs a UNet of that size: set "
                         f"config.model.kwargs.image_size={size} (it is "
                         f"{model.config.image_size}), or config.medical.prior='gaussian'.")
    test = phantoms("test", size=size, data_dir=data_dir, max_examples=int(med.num_eval))
    x = jnp.asarray(test["x"])
    apply_fn = models.apply_fn(model)
    key_train, key_run = jax.random.split(jax.random.key(opts.seed))
    metrics: dict[str, Any] = {"problem": problem, "num_eval": int(x.shape[0]),
                               "num_samples": num_samples, "num_steps": num_steps,
                               "lam": float(med.lam), "noise_std": float(med.noise_std),
                               "settings": {}}
    loss = pl.denoising_loss(process)
    prior = med.prior
    metrics["prior"] = prior
    candidates = tuple(float(c) for c in med.dps_step_sizes or ()) if "dps" in med.methods else ()
    validation = None

    def train_split():
        nonlocal validation
        train = phantoms("train", size=size, data_dir=data_dir)
        if candidates:
            train, validation = pl.validation_split(train, med.num_validation,
                                                    seed=opts.data.validation_seed)
            validation = jnp.asarray(validation["x"])
            metrics["num_validation"] = int(validation.shape[0])
        return train

    if prior == "gaussian":
        D = gaussian_prior_denoiser(train_split()["x"], process)
    elif med.denoiser_from:
        with open(med.denoiser_from, "rb") as f:
            params = serialization.from_bytes(model.init_params(key_train), f.read())
        metrics["denoiser_from"] = med.denoiser_from
    else:
        train = train_split()
        result, loss = pl.train_denoiser(key_train, process, model, apply_fn,
                                         {"x": train["x"]}, pl.fit_kwargs(opts.train))
        params = result.params
        metrics["final_loss"] = float(np.mean(result.losses[-50:]))
        if workdir is not None:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "denoiser.msgpack"), "wb") as f:
                f.write(serialization.to_bytes(params))
    if prior == "unet":
        D = loss.denoiser(apply_fn, params)
    if candidates and validation is None:  # a loaded denoiser: the same held-out phantoms
        train_split()
    pc = samplers.PredictorCorrector(predictor="reverse_diffusion", corrector="langevin",
                                     snr=float(med.snr))
    rows = [x[:8]]
    for i, setting in enumerate(med.settings):
        op = operator_for(problem, setting, size=size, num_full_views=int(med.num_full_views),
                          mask=med.mask, center_fraction=float(med.center_fraction),
                          seed=opts.seed,
                          inverse_ridge=float(med.inverse_ridge or 0) or None)
        k_noise, k_setting = jax.random.split(jax.random.fold_in(key_run, i))
        y = op(x)
        y = y + float(med.noise_std) * jax.random.normal(k_noise, y.shape, y.dtype)
        if problem == "mri":
            y = op.select(y)  # noise only where measured
        base = _baseline(problem, op, y)
        out: dict[str, Any] = {"baseline": _scored(base, x),
                               "operator_norm_squared": operator_norm_squared(op, x.shape[:1]
                                                                              + x.shape[1:])}
        if problem == "mri":
            out["sampled_fraction"] = float(op.mask.mean())
        shown = [jnp.clip(base, -1, 1)[:8]]
        for j, method in enumerate(med.methods):
            if method == "consistency":
                fn = lambda k, x0, op=op, y=y: inverse.consistency_sample(
                    k, process, D, x0, y, op, num_steps=num_steps, lam=float(med.lam),
                    solver=pc).x
            else:
                # DPS's step is normalised by the residual, not by the operator: divide by
                # ||A||^2 (1 for the orthonormal MRI operator, ~views x size for CT).
                norm = out["operator_norm_squared"]
                chosen = float(med.dps_step_size)
                if candidates:
                    scores = _validation_psnr(
                        process, D, op, validation, candidates, norm, noise_std=med.noise_std,
                        problem=problem, num_steps=num_steps,
                        key=jax.random.fold_in(jax.random.fold_in(key_run, 10_000), i))
                    chosen = candidates[int(np.argmax([scores[str(c)] for c in candidates]))]
                step_size = chosen / norm
                fn = lambda k, x0, op=op, y=y, step_size=step_size: inverse.dps(
                    k, process, D, x0, y, op, step_size=step_size, num_steps=num_steps).x
            draw = jax.jit(lambda k, fn=fn: fn(k, process.prior_sample(
                jax.random.fold_in(k, 1), x.shape)))
            start = time.time()
            keys = jax.random.split(jax.random.fold_in(k_setting, j), num_samples)
            samples = jnp.clip(jnp.stack([draw(k) for k in keys]), -1.0, 1.0)
            out[method] = {"sample": _scored(samples[0], x, versus=out["baseline"]),
                           "sample_mean": _scored(samples.mean(0), x, versus=out["baseline"]),
                           "measurement_rmse": float(jnp.sqrt(jnp.mean(jnp.square(
                               op(samples[0]) - y)))),
                           "seconds": round(time.time() - start, 1)}
            if method == "dps" and candidates:
                out[method].update(step_size=chosen, validation_psnr=scores)
            if method == "dps" and "consistency" in out:  # paired: DPS minus consistency
                out[method]["psnr_gain_over_consistency_interval"] = {
                    k: _scored(s, x, versus=out["consistency"][k])["psnr_gain_interval"]
                    for k, s in (("sample", samples[0]), ("sample_mean", samples.mean(0)))}
            shown.append(samples[0, :8])
        metrics["settings"][str(setting)] = out
        rows += shown
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "medical.png"), rows, scale=2)
        pl.save_metrics(workdir, metrics)
    return metrics
