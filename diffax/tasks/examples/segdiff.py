"""The SegDiff example (:mod:`diffax.tasks.segdiff`): digits parts / classes, phantom regions.

``run(config, workdir)`` trains a :class:`diffax.tasks.segdiff.SegDiffUNet` of the mask given
the image on a few labelled images and compares its Dice / IoU on held-out images with the
pixel classifiers of :mod:`diffax.tasks.segmentation` (raw pixel windows; UNet decoder
features of an unconditional denoiser, Baranchuk et al. 2022) trained on the same labelled
images.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax import guidance
from diffax.evaluation.intervals import bootstrap_interval
from diffax.tasks import segdiff as sd
from diffax.tasks.examples.segmentation import fit_pixel_classifier
from diffax.tasks.segmentation import (
    class_labels,
    part_labels,
    pixel_baselines,
    segmentation_metrics,
    unet_features,
)

__all__ = ["run", "LABELLINGS", "labels_of", "scores"]

LABELLINGS = {"parts": 3, "digit_class": 11, "regions": 4}
"""Classes of each labelling: digits ``parts`` (:func:`part_labels`), digits ``digit_class``
(:func:`class_labels`), phantom ``regions`` (:data:`diffax.data.PHANTOM_CLASSES`)."""


def labels_of(labelling: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """The label maps ``[N, H, W]`` of a split under ``labelling``."""
    if labelling == "parts":
        return part_labels(data["x"])
    if labelling == "digit_class":
        return class_labels(data["x"], data["label"])
    return np.asarray(data["segmentation"], np.int32)


def _counts(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Per image and class ``[N, K, 3]``: ``|P & T|``, ``|P| + |T|``, ``|P | T|``."""
    axes = tuple(range(1, pred.ndim))
    p = pred[..., None] == np.arange(num_classes)
    t = target[..., None] == np.arange(num_classes)
    return np.stack([np.sum(p & t, axes), np.sum(p, axes) + np.sum(t, axes),
                     np.sum(p | t, axes)], -1).astype(np.float64)


def _pooled(counts: np.ndarray) -> tuple[float, float]:
    """``(mean foreground Dice, mean IoU)`` pooled over the images of ``counts`` (as
    :func:`diffax.tasks.segdiff.dice` and :func:`segmentation_metrics`: a class absent from
    prediction and truth is left out)."""
    inter, total, union = counts.sum(0).T
    with np.errstate(invalid="ignore", divide="ignore"):
        dice, iou = 2.0 * inter / total, inter / union
    fg = dice[1:][total[1:] > 0]
    return (float(fg.mean()) if fg.size else float("nan"), float(np.nanmean(iou)))


def scores(pred: np.ndarray, target: np.ndarray, num_classes: int, *,
           versus: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy, IoU and Dice over all test pixels, with 95% percentile-bootstrap intervals
    over the test images of the mean foreground Dice and the mean IoU; with ``versus``
    (another method's labels of the same images) the interval of the paired Dice gain of
    ``pred`` over it.

    Example:
      >>> target = np.array([[[0, 1], [1, 1]], [[0, 0], [1, 1]]])
      >>> s = scores(target, target, 2)
      >>> s["mean_foreground_dice"], s["mean_foreground_dice_interval"]
      (1.0, (1.0, 1.0))
    """
    seg = segmentation_metrics(pred, target, num_classes)
    d = sd.dice(pred, target, num_classes)
    c = _counts(pred, target, num_classes)
    out = {"accuracy": seg["accuracy"], "mean_iou": seg["mean_iou"], "iou": seg["iou"],
           "mean_foreground_dice": d["mean_foreground_dice"], "dice": d["per_class"],
           "mean_foreground_dice_interval": bootstrap_interval(lambda c: _pooled(c)[0], c),
           "mean_iou_interval": bootstrap_interval(lambda c: _pooled(c)[1], c)}
    if versus is not None:
        out["dice_gain_interval"] = bootstrap_interval(
            lambda c, v: _pooled(c)[0] - _pooled(v)[0], c,
            _counts(versus, target, num_classes))
    return out


def _splits(opts) -> tuple[dict, dict, dict]:
    """``(labelled, unlabelled train, test)`` of the dataset the config names."""
    from diffax.tasks.examples import _pipeline as pl
    from diffax.tasks.medical import phantoms

    cfg = opts.segdiff
    if cfg.dataset == "phantoms":
        train = phantoms("train", size=cfg.size, data_dir=opts.data.data_dir)
        test = phantoms("test", size=cfg.size, data_dir=opts.data.data_dir,
                        max_examples=cfg.num_eval or None)
        labelled = {k: v[:cfg.num_labelled] for k, v in train.items()}
        return labelled, train, test
    train, _ = pl.validation_split(pl.digits("train", data_dir=opts.data.data_dir),
                                   opts.data.num_validation, seed=opts.data.validation_seed)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    test = {k: v[:cfg.num_eval or None] for k, v in test.items()}
    if cfg.labelled_per_class:
        chosen = np.concatenate([np.flatnonzero(train["label"] == k)[:cfg.labelled_per_class]
                                 for k in np.unique(train["label"])])
    else:
        chosen = np.arange(len(train["x"]))
    return {k: v[chosen] for k, v in train.items()}, train, test


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """SegDiff vs pixel classifiers on ``config.segdiff.dataset`` (``"digits"`` or
    ``"phantoms"``).

    Labelled images: digits, the first ``labelled_per_class`` train digits of each class (0:
    every train digit) after ``config.data.num_validation`` are held out as in the
    segmentation example; phantoms, the first ``num_labelled`` train phantoms. Test: the first
    ``num_eval`` test images (0: all). For each labelling of ``config.segdiff.labellings``:

    * SegDiff: a :class:`~diffax.tasks.segdiff.SegDiffUNet` (``config.model``,
      ``encoder_blocks``) trained (``config.train``) on ``{"x": mask channels, "cond":
      image}`` of the labelled images; :func:`~diffax.tasks.segdiff.segment` with
      ``config.sample``'s solver and the denoiser clipped to ``[-1, 1]``
      (:func:`diffax.guidance.clip`) draws ``num_samples`` masks per test image; Dice / IoU of the
      average of the first ``s`` samples for each ``s`` of ``sample_counts``;
    * ``"untrained"`` in ``baselines``: the same with the initial parameters (one sample);
    * ``"pixel_window"`` / ``"pixel_window_global"``: a pixel classifier (``hidden``,
      ``config.pixel_train``) on :func:`pixel_baselines` of the labelled images;
    * ``"diffusion_features"``: the pixel classifier on :func:`unet_features` (times
      ``feature_times``, ``blocks``) of an unconditional UNet trained on
      every train image (no labels) with ``config.train``.

    Every score carries 95% percentile-bootstrap intervals over the test images of the mean
    foreground Dice and the mean IoU; each pixel classifier also the interval of SegDiff's paired
    Dice gain over it (``segdiff_dice_gain_interval``, SegDiff averaged over the most samples).
    Writes ``workdir/segdiff.png`` (rows: images; per labelling: truth, SegDiff, the best
    baseline) and ``workdir/metrics.json``.
    """
    from diffax import models
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg = opts.segdiff
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    labelled, train, test = _splits(opts)
    keys = jax.random.split(jax.random.key(opts.seed), 4)
    metrics: dict[str, Any] = {"dataset": cfg.dataset, "num_labelled": int(len(labelled["x"])),
                               "num_eval": int(len(test["x"])), "num_samples": cfg.num_samples,
                               "num_steps": num_steps, "solver": opts.sample.solver}
    image_channels = test["x"].shape[-1]
    x_test = jnp.asarray(test["x"])
    features: dict[str, dict[str, Any]] = {}
    base = {split: pixel_baselines(d["x"]) for split, d in (("labelled", labelled),
                                                             ("test", test))}
    for name in ("pixel_window", "pixel_window_global"):
        if name in cfg.baselines:
            features[name] = {split: base[split][name] for split in base}
    if "diffusion_features" in cfg.baselines:
        start = time.time()
        model = pl.unet(opts.model, models.UNet.from_variant, num_channels=image_channels)
        result, _ = pl.train_denoiser(keys[0], process, model, models.apply_fn(model),
                                      {"x": train["x"]}, pl.fit_kwargs(opts.train))
        extract = jax.jit(lambda x: unet_features(
            model, result.params, x, process=process, times=cfg.feature_times,
            blocks=cfg.blocks, key=keys[1]))
        features["diffusion_features"] = {"labelled": extract(jnp.asarray(labelled["x"])),
                                          "test": extract(x_test)}
        metrics["unconditional_seconds"] = round(time.time() - start, 1)
    rows = [test["x"][:12]]
    pixel_fit = pl.fit_kwargs(opts.pixel_train)
    for li, labelling in enumerate(cfg.labellings):
        k = LABELLINGS[labelling]
        y_lab, y_test = labels_of(labelling, labelled), labels_of(labelling, test)
        out: dict[str, Any] = {}
        start = time.time()
        model = pl.unet(opts.model, sd.SegDiffUNet.from_variant,
                        num_channels=sd.mask_channels(k), cond_channels=image_channels,
                        encoder_blocks=cfg.encoder_blocks)
        fn = sd.apply_fn(model)
        key_train, key_sample = jax.random.split(jax.random.fold_in(keys[2], li))
        result, loss = pl.train_denoiser(
            key_train, process, model, fn,
            {"x": sd.mask_to_channels(y_lab, k), "cond": labelled["x"]},
            pl.fit_kwargs(opts.train), cond_keys=("cond",))
        train_seconds = time.time() - start
        shape = (*x_test.shape[:-1], sd.mask_channels(k))

        def draw(params, num_samples, key, model_fn=fn, loss=loss, shape=shape, k=k):
            # the x0 estimate clipped to the channels' range [-1, 1] (DDPM's clip_denoised): an
            # eps network's x0 at high noise, (x - sigma eps) / alpha, is far outside it
            D = guidance.clip(loss.denoiser(model_fn, params, cond=x_test))
            return sd.segment(key, process, D, shape, num_classes=k, num_samples=num_samples,
                              solver=solver, num_steps=num_steps).samples

        start = time.time()
        samples = jax.jit(draw, static_argnums=1)(result.params, cfg.num_samples, key_sample)
        sample_seconds = time.time() - start
        preds = {}
        for s in sorted({min(s, cfg.num_samples) for s in cfg.sample_counts}):
            pred = np.asarray(sd.channels_to_mask(jnp.mean(samples[:s], 0), k))
            out[f"segdiff_mean_of_{s}"] = scores(pred, y_test, k)
            preds["segdiff"] = pred
        out["segdiff_seconds"] = {"train": round(train_seconds, 1),
                                  "sample": round(sample_seconds, 1)}
        out["segdiff_final_loss"] = float(np.mean(result.losses[-50:]))
        if "untrained" in cfg.baselines:
            init = model.init_params(key_train)
            untrained = jax.jit(draw, static_argnums=1)(init, 1, key_sample)[0]
            out["segdiff_untrained"] = scores(
                np.asarray(sd.channels_to_mask(untrained, k)), y_test, k)
        for i, (name, f) in enumerate(features.items()):
            predict = fit_pixel_classifier(jax.random.fold_in(keys[3], 100 * li + i),
                                           f["labelled"], y_lab, num_classes=k,
                                           hidden=cfg.hidden, fit_options=pixel_fit)
            preds[name] = predict(f["test"])
            out[name] = scores(preds[name], y_test, k)
            # paired over the test images: SegDiff (mean of the most samples) minus this one
            out[name]["segdiff_dice_gain_interval"] = scores(
                preds["segdiff"], y_test, k, versus=preds[name])["dice_gain_interval"]
        pixel_names = [n for n in features]
        if pixel_names:
            best = max(pixel_names, key=lambda n: out[n]["mean_foreground_dice"])
            out["best_pixel_baseline_on_test"] = best  # for the figure only
        metrics[labelling] = out
        scale = 2.0 / (k - 1)
        shown = [y_test, preds["segdiff"]] + ([preds[best]] if pixel_names else [])
        rows += [lab[:12, ..., None].astype(np.float32) * scale - 1.0 for lab in shown]
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "segdiff.png"), rows,
                     scale=1 if cfg.dataset == "phantoms" else 4)
        pl.save_metrics(workdir, metrics)
    return metrics
