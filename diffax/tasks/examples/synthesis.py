"""The semantic synthesis example (:mod:`diffax.tasks.synthesis`): digits from part masks.

``run(config, workdir)`` trains a mask-conditional image denoiser with the mask dropped for
classifier-free guidance, generates a digit for each held-out mask at several guidance
scales, and re-segments the generated digits with the labelling's own rule
(:func:`diffax.tasks.segmentation.part_labels`: background / stroke edge / stroke interior
is a function of the image), so the re-segmentation is exact, not a learned segmenter's
guess. Scale 0 is unconditional sampling, the baseline.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.tasks import segdiff as sd
from diffax.tasks import synthesis as syn
from diffax.tasks.segmentation import part_labels

__all__ = ["run"]

NUM_CLASSES = 3


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """Digits from their part masks (``part_labels``: 3 classes), judged by re-segmentation.

    A :class:`~diffax.tasks.segdiff.SegDiffUNet` with the image as its state and the mask
    channels (:func:`~diffax.tasks.segdiff.mask_to_channels`) as ``cond`` is trained
    (``config.model``, ``config.train``) on the train digits (``config.data.num_validation``
    held out as in the other examples), the mask replaced by the null mask with probability
    ``config.synthesis.p_uncond`` (:func:`~diffax.tasks.synthesis.condition_dropout`). For
    the masks of the first ``num_eval`` test digits, one image each per guidance scale of
    ``scales`` (:func:`~diffax.tasks.synthesis.guided_denoiser`, ``config.sample``'s solver,
    the same initial noise for every scale); Dice / IoU of ``part_labels(image)`` against the
    mask asked for, and of the stroke (``part_labels > 0``) alone. Writes
    ``workdir/synthesis.png`` (rows: the masks; per scale: the images) and
    ``workdir/metrics.json``.
    """
    from diffax.tasks import denoising_loss
    from diffax.tasks.examples import _pipeline as pl
    from diffax.tasks.examples.segdiff import scores
    from diffax.train import build, fit, options

    opts = options.parse_task_config(config)
    cfg = opts.synthesis
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    train, _ = pl.validation_split(pl.digits("train", data_dir=opts.data.data_dir),
                                   opts.data.num_validation, seed=opts.data.validation_seed)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    masks = part_labels(test["x"][:cfg.num_eval or None])
    cond = sd.mask_to_channels(masks, NUM_CLASSES)
    model = pl.unet(opts.model, sd.SegDiffUNet.from_variant, num_channels=1,
                    cond_channels=sd.mask_channels(NUM_CLASSES))
    fn = sd.apply_fn(model)
    loss = denoising_loss(process, cond_keys=("cond",))
    key_init, key_fit, key_sample = jax.random.split(jax.random.key(opts.seed), 3)
    start = time.time()
    result = fit(syn.condition_dropout(loss.bind(fn), rate=cfg.p_uncond),
                 model.init_params(key_init), key_fit,
                 {"x": train["x"], "cond": sd.mask_to_channels(part_labels(train["x"]),
                                                              NUM_CLASSES)},
                 **pl.fit_kwargs(opts.train))
    metrics: dict[str, Any] = {"num_eval": int(len(masks)), "num_steps": num_steps,
                               "solver": opts.sample.solver, "p_uncond": cfg.p_uncond,
                               "train_seconds": round(time.time() - start, 1),
                               "final_loss": float(np.mean(result.losses[-50:])),
                               "scales": {}}
    net = lambda x, t, c: loss.denoiser(fn, result.params, cond=c)(x, t)

    @jax.jit
    def generate(scale, key):
        from diffax.samplers import sample

        key_init, key_run = jax.random.split(key)
        x_init = process.prior_sample(key_init, (*masks.shape, 1))
        D = syn.guided_denoiser(net, cond, scale=scale)
        return sample(key_run, process, D, x_init, solver=solver, num_steps=num_steps).x

    rows = [(masks[:12, ..., None] - 1.0).astype(np.float32)]  # 0, 1, 2 -> -1, 0, 1
    for scale in cfg.scales:
        start = time.time()
        images = np.clip(np.asarray(generate(jnp.float32(scale), key_sample)), -1.0, 1.0)
        seg = part_labels(images)
        metrics["scales"][str(scale)] = {
            **scores(seg, masks, NUM_CLASSES),
            "stroke": scores((seg > 0).astype(np.int32), (masks > 0).astype(np.int32), 2),
            "seconds": round(time.time() - start, 1)}
        rows.append(images[:12])
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "synthesis.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
