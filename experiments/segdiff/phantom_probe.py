"""Why phantom SegDiff trails the pixel classifiers: one trained model, its sampling varied.

Trains the SegDiff denoiser of ``configs/tasks/phantom_segdiff.py`` exactly as the task does
(the same labelled phantoms, model, loss, keys and ``config.train``: with the same overrides
the same parameters, so ``mean_of_4`` at ``ddim10_clip`` reproduces the task's figure), saves
its EMA parameters to ``WORKDIR/segdiff.msgpack``, then segments the test phantoms with the
trained network under several sampling settings (solver, steps, clipping of the x0 estimate,
number of samples averaged). ``--init_from`` continues training from a saved
``segdiff.msgpack`` for ``--config.train.num_steps`` more steps (a fresh Adam state with the
config's warmup, the EMA starting at those parameters): more training vs the same sampling.
Writes ``WORKDIR/probe.json``.

  python experiments/segdiff/phantom_probe.py --workdir /tmp/probe \\
      --config.train.num_steps=2000 --config.train.steps_per_call=4 --config.train.unroll=4

``--config`` (default ``configs/tasks/phantom_segdiff.py``) and ``--config.KEY=VALUE`` are
ml_collections' config flags, as for ``diffax task``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import serialization
from ml_collections import config_flags

from diffax import guidance, samplers
from diffax.tasks import denoising_loss
from diffax.tasks import segdiff as sd
from diffax.tasks.examples.segdiff import LABELLINGS, labels_of, scores
from diffax.tasks.medical import phantoms
from diffax.train import build, fit, options

# (name, solver, steps, clip, samples; None: the config's num_samples): the task's setting first
SETTINGS = (("ddim10_clip", samplers.DDIM(), 10, True, None),
            ("ddim10_clip_16", samplers.DDIM(), 10, True, 16),
            ("ddim50_clip", samplers.DDIM(), 50, True, 4),
            ("ddim10_noclip", samplers.DDIM(), 10, False, 4),
            ("ddpm100_clip", samplers.DDPM(), 100, True, 4))


def _summary(s: dict) -> dict:
    return {"mean_foreground_dice": round(s["mean_foreground_dice"], 4),
            "interval": [round(v, 4) for v in s["mean_foreground_dice_interval"]],
            "mean_iou": round(s["mean_iou"], 4), "accuracy": round(s["accuracy"], 4),
            "dice_per_class": [round(v, 4) for v in s["dice"]]}


_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/tasks/phantom_segdiff.py", "The task config (FILE[:variant]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_INIT_FROM = flags.DEFINE_string("init_from", None, "A segdiff.msgpack to continue from.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    opts = options.parse_task_config(_CONFIG.value)
    cfg = opts.segdiff
    if cfg.dataset != "phantoms" or len(cfg.labellings) != 1:
        raise ValueError("phantom_probe: a phantom config with one labelling")
    process = build.build_process(opts.process)
    train = phantoms("train", size=cfg.size, data_dir=opts.data.data_dir)
    test = phantoms("test", size=cfg.size, data_dir=opts.data.data_dir,
                    max_examples=cfg.num_eval or None)
    labelled = {k: v[:cfg.num_labelled] for k, v in train.items()}
    labelling = cfg.labellings[0]
    k = LABELLINGS[labelling]
    y_lab, y_test = labels_of(labelling, labelled), labels_of(labelling, test)
    model = sd.SegDiffUNet.from_variant(opts.model.variant, **opts.model.model_kwargs(),
                                        num_channels=sd.mask_channels(k),
                                        cond_channels=test["x"].shape[-1],
                                        encoder_blocks=cfg.encoder_blocks)
    fn = sd.apply_fn(model)
    loss = denoising_loss(process, cond_keys=("cond",))
    # the task's keys (diffax.tasks.examples.segdiff.run, labelling 0)
    keys = jax.random.split(jax.random.key(opts.seed), 4)
    key_train, key_sample = jax.random.split(jax.random.fold_in(keys[2], 0))
    key_init, key_fit = jax.random.split(key_train)
    params = model.init_params(key_init)
    if _INIT_FROM.value:
        with open(_INIT_FROM.value, "rb") as f:
            params = serialization.from_bytes(params, f.read())
    start = time.time()
    result = fit(loss.bind(fn), params, key_fit,
                 {"x": sd.mask_to_channels(y_lab, k), "cond": labelled["x"]},
                 **opts.train.to_dict())
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    out = {"init_from": _INIT_FROM.value, "overrides": overrides,
           "train_seconds": round(time.time() - start, 1),
           "loss_last_200": float(np.mean(result.losses[-200:])), "settings": {}}
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, "segdiff.msgpack"), "wb") as f:
        f.write(serialization.to_bytes(result.params))
    x_test = jnp.asarray(test["x"])
    shape = (*x_test.shape[:-1], sd.mask_channels(k))
    for name, solver, num_steps, clip, num_samples in SETTINGS:
        start = time.time()
        num_samples = num_samples or cfg.num_samples

        def draw(params, key, solver=solver, num_steps=num_steps, clip=clip,
                 num_samples=num_samples):
            D = loss.denoiser(fn, params, cond=x_test)
            D = guidance.clip(D) if clip else D
            return sd.segment(key, process, D, shape, num_classes=k, num_samples=num_samples,
                              solver=solver, num_steps=num_steps).samples

        samples = jax.jit(draw)(result.params, key_sample)
        entry = {"seconds": round(time.time() - start, 1)}
        for s in (1, 2, 4, 8, 16):
            if s <= num_samples:
                pred = np.asarray(sd.channels_to_mask(jnp.mean(samples[:s], 0), k))
                entry[f"mean_of_{s}"] = _summary(scores(pred, y_test, k))
        out["settings"][name] = entry
        print(name, json.dumps(entry), flush=True)
    with open(os.path.join(_WORKDIR.value, "probe.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    app.run(main)
