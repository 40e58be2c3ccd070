"""Sparse-view CT and undersampled MRI on procedural phantoms with one unconditional denoiser.

Song, Shen, Xing & Ermon (ICLR 2022): an unconditional score model of the images, and at
sampling time a measurement-consistency step (:func:`diffax.inverse.consistency_sample`),
compared here with DPS (:func:`diffax.inverse.dps`) and with the classical baselines, filtered
back-projection (:func:`diffax.inverse.fbp`) for CT and the zero-filled inverse FFT
(:func:`diffax.inverse.zero_filled`) for MRI. The images are the ``phantoms/<size>`` dataset
(:func:`diffax.data.sample_phantoms`); the operators act on the model's range ``[-1, 1]``
(a known affine map of the intensities, so the information is the same).

* :func:`phantoms`: a split in memory, ``{"x": [N, S, S, 1] in [-1, 1], "segmentation"}``;
* :func:`reconstruction_metrics`: PSNR and SSIM of reconstructions against the truth;
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

from diffax.tasks.defaults import medical_config  # re-exported: the configs import it here
from diffax.typing import Array

__all__ = ["phantoms", "reconstruction_metrics", "operator_for", "medical_config",
           "gaussian_prior_denoiser", "operator_norm_squared", "run", "PROBLEMS", "METHODS",
           "PRIORS"]

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


def reconstruction_metrics(x: Array, reference: Array) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of images ``[B, H, W, C]`` in ``[-1, 1]`` against the truth.

    PSNR over the range 2 (as :func:`diffax.tasks.psnr`); SSIM
    (:func:`diffax.evaluation.ssim`) of the intensities ``(x + 1) / 2`` in ``[0, 1]``. ``x``
    is clipped to ``[-1, 1]`` first (the intensities' range).
    """
    from diffax.evaluation import ssim
    from diffax.tasks.super_resolution import psnr

    x = jnp.clip(jnp.asarray(x), -1.0, 1.0)
    return {"psnr": float(jnp.mean(psnr(x, jnp.asarray(reference, x.dtype)))),
            "ssim": float(np.mean(ssim((np.asarray(x) + 1) / 2, (np.asarray(reference) + 1) / 2,
                                       data_range=1.0)))}


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


def _baseline(problem: str, op, y: Array) -> Array:
    from diffax import inverse

    return inverse.fbp(op, y) if problem == "ct" else inverse.zero_filled(op, y)




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
    mean of the samples, next to FBP (CT) or zero-filling (MRI). Writes
    ``workdir/medical.png`` (per setting: truth, baseline, one sample of each method) and
    ``workdir/metrics.json``. ``config.medical.prior = "gaussian"`` replaces the UNet by
    :func:`gaussian_prior_denoiser` of the train split (no training).
    ``config.medical.inverse_ridge`` is the CT operator's ``inverse_ridge`` (0: FBP).
    """
    import os
    import time

    from flax import serialization

    from diffax import inverse, models, samplers
    from diffax.tasks import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    med = opts.medical
    process = build.build_process(opts.process)
    problem = med.problem
    size, num_steps, num_samples = med.size, med.num_steps, med.num_samples
    data_dir = opts.data.data_dir
    test = phantoms("test", size=size, data_dir=data_dir, max_examples=int(med.num_eval))
    x = jnp.asarray(test["x"])
    model = pl.unet(opts.model, models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    key_train, key_run = jax.random.split(jax.random.key(opts.seed))
    metrics: dict[str, Any] = {"problem": problem, "num_eval": int(x.shape[0]),
                               "num_samples": num_samples, "num_steps": num_steps,
                               "lam": float(med.lam), "noise_std": float(med.noise_std),
                               "settings": {}}
    loss = pl.denoising_loss(process)
    prior = med.prior
    metrics["prior"] = prior
    if prior == "gaussian":
        train = phantoms("train", size=size, data_dir=data_dir)
        D = gaussian_prior_denoiser(train["x"], process)
    elif med.denoiser_from:
        with open(med.denoiser_from, "rb") as f:
            params = serialization.from_bytes(model.init_params(key_train), f.read())
        metrics["denoiser_from"] = med.denoiser_from
    else:
        train = phantoms("train", size=size, data_dir=data_dir)
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
        out: dict[str, Any] = {"baseline": reconstruction_metrics(base, x),
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
                step_size = float(med.dps_step_size) / out["operator_norm_squared"]
                fn = lambda k, x0, op=op, y=y, step_size=step_size: inverse.dps(
                    k, process, D, x0, y, op, step_size=step_size, num_steps=num_steps).x
            draw = jax.jit(lambda k, fn=fn: fn(k, process.prior_sample(
                jax.random.fold_in(k, 1), x.shape)))
            start = time.time()
            keys = jax.random.split(jax.random.fold_in(k_setting, j), num_samples)
            samples = jnp.clip(jnp.stack([draw(k) for k in keys]), -1.0, 1.0)
            out[method] = {"sample": reconstruction_metrics(samples[0], x),
                           "sample_mean": reconstruction_metrics(samples.mean(0), x),
                           "measurement_rmse": float(jnp.sqrt(jnp.mean(jnp.square(
                               op(samples[0]) - y)))),
                           "seconds": round(time.time() - start, 1)}
            shown.append(samples[0, :8])
        metrics["settings"][str(setting)] = out
        rows += shown
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "medical.png"), rows, scale=2)
        pl.save_metrics(workdir, metrics)
    return metrics
