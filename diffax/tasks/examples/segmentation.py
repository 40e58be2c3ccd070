"""The digits example of :mod:`diffax.tasks.segmentation`: label-efficient segmentation from UNet
decoder features.

``run(config, workdir)`` runs ``configs/tasks/digits_segmentation.py`` (``diffax task CONFIG
--workdir DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.evaluation.metrics import segmentation_metrics
from diffax.tasks.segmentation import (
    PixelClassifier,
    class_labels,
    part_labels,
    pixel_baselines,
    pixel_loss,
    unet_features,
)
from diffax.typing import Array

__all__ = ["run"]


def _confusions(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-image confusion matrices ``[B, K, K]`` (``[b, target, pred]`` counts)."""
    b = pred.shape[0]
    flat = (target.reshape(b, -1) * num_classes + pred.reshape(b, -1)).astype(np.int64)
    out = np.zeros((b, num_classes * num_classes), np.int64)
    np.add.at(out, (np.arange(b)[:, None], flat), 1)
    return out.reshape(b, num_classes, num_classes)


def _mean_iou(conf: np.ndarray) -> float:
    """Mean IoU of summed confusion matrices (classes absent from both left out), as
    :func:`segmentation_metrics` computes it from the pixels."""
    total = conf.sum(0)
    inter = np.diag(total)
    union = total.sum(0) + total.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


def _accuracy(conf: np.ndarray) -> float:
    total = conf.sum(0)
    return float(np.trace(total) / total.sum())


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: a pixel classifier on UNet decoder features from a few images.

    ``config.data.num_validation`` train digits are held out (fixed-seed permutation,
    ``config.data.validation_seed``). An unconditional denoiser (``config.model``,
    ``config.train``) is trained on the rest; :func:`unet_features` are extracted at
    ``config.seg.blocks`` (module names: :func:`decoder_blocks`, ``mid_block_1``,
    ``mid_attn``, ...) for each candidate set of times in ``config.seg.times`` (a tuple of
    times, or a tuple of such tuples). For each labelling of ``config.seg.labellings``
    (``"parts"``: :func:`part_labels`; ``"digit_class"``: :func:`class_labels`) a
    :class:`PixelClassifier` is trained on ``config.seg.labelled_per_class`` labelled train
    images of each class per candidate; the candidate with the best **validation** mean IoU is
    chosen, and its test pixel accuracy and IoU are reported with bootstrap intervals over the
    test images, next to the same classifier on :func:`pixel_baselines`. Writes
    ``workdir/segmentation.png`` (first row the images; per labelling: truth, prediction from
    diffusion features, prediction from the baseline best on validation) and
    ``workdir/metrics.json``.
    """
    import os

    from diffax import models
    from diffax.evaluation.intervals import bootstrap_interval
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build, fit, options

    opts = options.parse_task_config(config)
    cfg = opts.seg
    pixel_opts = pl.fit_kwargs(opts.pixel_train)
    process = build.build_process(opts.process)
    per_class = cfg.labelled_per_class
    candidates = list(cfg.times)
    train, val = pl.validation_split(pl.digits("train", data_dir=opts.data.data_dir),
                                     opts.data.num_validation, seed=opts.data.validation_seed)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    keys = jax.random.split(jax.random.key(opts.seed), 3)
    model = pl.unet(opts.model, models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    result, _ = pl.train_denoiser(keys[0], process, model, apply_fn, {"x": train["x"]},
                                  pl.fit_kwargs(opts.train))
    blocks = list(cfg.blocks)
    chosen = np.concatenate([np.flatnonzero(train["label"] == k)[:per_class]
                             for k in np.unique(train["label"])])
    labelled = {k: v[chosen] for k, v in train.items()}
    splits = {"labelled": labelled, "validation": val, "test": test}
    features: dict[str, dict[str, Array]] = {}
    for times in candidates:
        extract = jax.jit(lambda x, times=times: unet_features(
            model, result.params, x, process=process, times=times, blocks=blocks, key=keys[1]))
        features[f"diffusion_features@{list(times)}"] = {
            split: extract(jnp.asarray(d["x"])) for split, d in splits.items()}
    base = {split: pixel_baselines(d["x"]) for split, d in splits.items()}
    features.update({name: {split: base[split][name] for split in splits}
                     for name in base["test"]})
    metrics: dict[str, Any] = {"denoiser_final_loss": float(np.mean(result.losses[-50:])),
                               "num_labelled_images": int(len(chosen)),
                               "num_validation": int(len(val["x"])),
                               "num_train": int(len(train["x"])),
                               "feature_dim": {k: int(v["test"].shape[-1])
                                               for k, v in features.items()}}
    rows = [test["x"][:12]]
    for labelling in cfg.labellings:
        if labelling == "parts":
            targets = {split: part_labels(d["x"]) for split, d in splits.items()}
            num_classes = 3
        else:
            targets = {split: class_labels(d["x"], d["label"]) for split, d in splits.items()}
            num_classes = 11
        y_test = targets["test"]
        results, preds = {}, {}
        for i, (name, f) in enumerate(features.items()):
            ftr = f["labelled"]
            mean = jnp.mean(ftr, axis=(0, 1, 2), keepdims=True)
            std = jnp.std(ftr, axis=(0, 1, 2), keepdims=True) + 1e-6
            clf = PixelClassifier(num_classes=num_classes, hidden=cfg.hidden)
            key_init, key_fit = jax.random.split(jax.random.fold_in(keys[2], i))
            params = clf.init(key_init, jnp.zeros((1, ftr.shape[-1])))
            data = {"f": ((ftr - mean) / std).reshape(-1, ftr.shape[-1]),
                    "label": targets["labelled"].reshape(-1)}
            fitted = fit(pixel_loss(clf), params, key_fit, data, **pixel_opts)
            predict = lambda fe, fitted=fitted, clf=clf, mean=mean, std=std: np.asarray(
                jnp.argmax(clf.apply(fitted.params, (fe - mean) / std), -1))
            pred, pred_val = predict(f["test"]), predict(f["validation"])
            preds[name] = pred
            stroke = y_test > 0
            conf = _confusions(pred, y_test, num_classes)
            results[name] = {
                **segmentation_metrics(pred, y_test, num_classes),
                "mean_iou_interval": list(bootstrap_interval(_mean_iou, conf)),
                "accuracy_interval": list(bootstrap_interval(_accuracy, conf)),
                "validation_mean_iou": _mean_iou(_confusions(
                    pred_val, targets["validation"], num_classes)),
                "stroke_pixel_accuracy": float(np.mean(pred[stroke] == y_test[stroke])),
                "stroke_vs_background": segmentation_metrics(pred > 0, stroke, 2)}
        on_val = {name: r["validation_mean_iou"] for name, r in results.items()}
        by_val = lambda names, on_val=on_val: max(names, key=on_val.get)
        diffusion = [n for n in results if n.startswith("diffusion_features@")]
        best = by_val(diffusion)  # the first of equal values
        best_base = by_val([n for n in results if n not in diffusion])
        metrics[labelling] = {
            "diffusion_features": {**results[best], "times": list(candidates[
                diffusion.index(best)])},
            "diffusion_features_candidates": {
                n.partition("@")[2]: {"validation_mean_iou": results[n]["validation_mean_iou"],
                                      "mean_iou": results[n]["mean_iou"]} for n in diffusion},
            **{n: results[n] for n in results if n not in diffusion},
            "best_baseline": best_base}
        scale = 2.0 / (num_classes - 1)
        for lab in (y_test, preds[best], preds[best_base]):
            rows.append(lab[:12, ..., None].astype(np.float32) * scale - 1.0)
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "segmentation.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
