"""The digits example of :mod:`diffax.tasks.anomaly`: AnoDDPM-style anomaly detection.

``run(config, workdir)`` runs ``configs/tasks/digits_anomaly.py`` (``diffax task CONFIG
--workdir DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.evaluation.metrics import auroc
from diffax.tasks.anomaly import (
    NoiseDenoisingLoss,
    anomaly_scores,
    baseline_scores,
    gaussian_noise,
    reconstruct,
    simplex_noise,
)

__all__ = ["run"]


def _balanced(data: dict, is_anomaly: np.ndarray, num: int) -> dict:
    """The first ``num // 2`` anomalies and normal inputs of ``data`` (all when ``num`` is 0)."""
    if not num:
        return data
    half = int(num) // 2
    idx = np.sort(np.concatenate([np.flatnonzero(is_anomaly)[:half],
                                  np.flatnonzero(~is_anomaly)[:half]]))
    return {k: v[idx] for k, v in data.items()}


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: train on normal classes, choose ``t`` on validation, AUROC on test.

    ``config.data.num_validation`` digits of the train split (all classes) are held out by a
    fixed-seed permutation (``config.data.validation_seed``) as the validation split. For each
    noise in ``config.anomaly.noises`` (``"gaussian"``, ``"simplex"``) a denoiser is trained on
    the remaining train digits of the classes ``config.data.normal_classes`` with that noise;
    every validation and test image is reconstructed ``config.anomaly.num_draws`` times
    (independent forward and solver noise) from each time in ``config.anomaly.times`` with
    ``config.sample``'s solver (a stochastic one, e.g. ``ddpm``, injects the same kind of noise
    at each step); the per-pixel maps and per-image scores are averaged over the draws. The
    time with the best **validation** AUROC is chosen per noise, and the test AUROC at that time
    is reported with a stratified bootstrap interval (``"chosen"``); the test AUROC at every
    time (and of one draw) is reported too, for the table, not for choosing. Two pixel-space
    baselines (:func:`baseline_scores`, fitted on the same normal train digits) give context.
    Writes ``workdir/anomaly.png`` (rows: inputs, then reconstruction of the first draw and
    the mean anomaly map per noise at the chosen time) and ``workdir/metrics.json``.

    Returns:
      the metrics: ``{"auroc": {noise: {t: test value}}, "auroc_validation": ...,
      "auroc_single_draw": ..., "chosen": {noise: {"t", "auroc", "interval",
      "validation_auroc"}}, "baselines": {"knn": value, "pca": value}, ...}``.
    """
    import functools
    import os

    from diffax import models
    from diffax.evaluation.intervals import bootstrap_interval
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg, data_cfg = opts.anomaly, opts.data
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    num_draws = cfg.num_draws
    normal, anomalous = data_cfg.normal_classes, data_cfg.anomaly_classes
    every = normal + anomalous
    full_train = pl.digits("train", classes=every, data_dir=data_cfg.data_dir)
    fit_part, val = pl.validation_split(full_train, data_cfg.num_validation,
                                        seed=data_cfg.validation_seed)
    train = {k: v[np.isin(fit_part["label"], normal)] for k, v in fit_part.items()}
    test = pl.digits("test", classes=every, data_dir=data_cfg.data_dir)
    num_eval = cfg.num_eval  # half anomalies, half normal inputs
    splits = {name: _balanced(d, np.isin(d["label"], anomalous), num_eval)
              for name, d in (("validation", val), ("test", test))}
    labels = {name: np.isin(d["label"], anomalous).astype(np.int32)
              for name, d in splits.items()}
    for name, y in labels.items():
        if y.min() == y.max():
            raise ValueError(f"config.data.num_validation={data_cfg.num_validation}: the "
                             f"{name} split holds only one class; hold out more digits.")
    is_anomaly = labels["test"]
    test = splits["test"]
    model = pl.unet(opts.model, models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    key = jax.random.key(opts.seed)
    interval = lambda scores, y: list(bootstrap_interval(auroc, scores, y, strata=y))
    baselines = baseline_scores(train["x"], test["x"])
    metrics: dict[str, Any] = {
        "auroc": {}, "auroc_validation": {}, "auroc_single_draw": {}, "final_loss": {},
        "num_draws": num_draws, "chosen": {},
        "baselines": {name: auroc(v, is_anomaly) for name, v in baselines.items()},
        "baselines_interval": {name: interval(v, is_anomaly) for name, v in baselines.items()}}
    maps, chosen_t = {}, {}
    for noise_name in cfg.noises:
        noise = gaussian_noise if noise_name == "gaussian" else functools.partial(
            simplex_noise, frequency=cfg.simplex_frequency, octaves=cfg.simplex_octaves,
            persistence=cfg.simplex_persistence)
        key, key_train, key_rec = jax.random.split(key, 3)
        loss = NoiseDenoisingLoss(loss=pl.denoising_loss(process), noise=noise)
        result, dloss = pl.train_denoiser(key_train, process, model, apply_fn, {"x": train["x"]},
                                          pl.fit_kwargs(opts.train),
                                          loss_fn=loss.bind(apply_fn))
        metrics["final_loss"][noise_name] = float(np.mean(result.losses[-50:]))
        denoiser = dloss.denoiser(apply_fn, result.params)
        for name in ("auroc", "auroc_validation", "auroc_single_draw"):
            metrics[name][noise_name] = {}
        scores = {}
        for t in cfg.times:
            for split, data in splits.items():
                x = jnp.asarray(data["x"])
                # One program for all draws: the draws are a vmapped axis over keys.
                rec_fn = jax.jit(jax.vmap(lambda k, t=t, noise=noise, denoiser=denoiser, x=x: (
                    reconstruct(k, process, denoiser, x, t=t, solver=solver,
                                num_steps=num_steps, noise=noise))))
                key_split = key_rec if split == "test" else jax.random.fold_in(key_rec, 1)
                rec = rec_fn(jax.random.split(key_split, num_draws))
                pixel, image = jax.vmap(anomaly_scores, in_axes=(None, 0))(x, rec)
                mean_score = np.asarray(image.mean(0))
                if split == "validation":
                    metrics["auroc_validation"][noise_name][str(t)] = auroc(
                        mean_score, labels[split])
                    continue
                scores[str(t)] = mean_score
                metrics["auroc"][noise_name][str(t)] = auroc(mean_score, is_anomaly)
                metrics["auroc_single_draw"][noise_name][str(t)] = auroc(np.asarray(image[0]),
                                                                         is_anomaly)
                maps[(noise_name, str(t))] = (rec[0], pixel.mean(0))
        val_auroc = metrics["auroc_validation"][noise_name]
        t = max(val_auroc, key=val_auroc.get)  # the first of equal values
        chosen_t[noise_name] = t
        metrics["chosen"][noise_name] = {
            "t": float(t), "validation_auroc": val_auroc[t],
            "auroc": metrics["auroc"][noise_name][t],
            "interval": interval(scores[t], is_anomaly)}
    metrics["num_test"] = {"normal": int((is_anomaly == 0).sum()),
                           "anomalous": int(is_anomaly.sum())}
    metrics["num_validation"] = {"normal": int((labels["validation"] == 0).sum()),
                                 "anomalous": int(labels["validation"].sum())}
    metrics["num_train"] = int(len(train["x"]))
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        show = np.concatenate([np.flatnonzero(is_anomaly == 1)[:6],
                               np.flatnonzero(is_anomaly == 0)[:6]])
        rows = [test["x"][show]]
        for n, t in chosen_t.items():
            rec, pixel = maps[(n, t)]
            heat = np.asarray(pixel)[show][..., None]
            rows += [np.asarray(rec)[show], 2.0 * heat / max(float(heat.max()), 1e-6) - 1.0]
        pl.save_grid(os.path.join(workdir, "anomaly.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
