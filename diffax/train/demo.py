"""The config ``diffax demo`` trains by default (also ``configs/digits_demo.py``).

It lives in the package so that the installed command needs no checkout.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

__all__ = ["demo_config"]


def demo_config(variant: str = "") -> Any:
    """The config ``diffax demo`` trains by default: EDM on 8x8 digits with a small UNet.

    Args:
      variant: ``""`` (the demo) or ``"tiny"`` (a few steps of a tiny model, for tests).

    Example:
      >>> cfg = demo_config()
      >>> cfg.data.name, cfg.process.name, cfg.sample.solver
      ('digits', 'edm', 'heun')
    """
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5})
    # Every UNet field that matters is stated, so the demo does not change with the variant.
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "edm", "prediction": "edm", "time_sampler": "lognormal",
         "lognormal_mean": -1.2, "lognormal_std": 1.2})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 100, "schedule": "constant",
         "grad_clip": 1.0, "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 2000, "batch_size": 64, "checkpoint_every": 1000, "log_every": 100,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 1})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=18,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=500, batch_size=500,
                                              likelihood_examples=200, divergence="hutchinson",
                                              num_probes=1, rtol=1e-3, atol=1e-3))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 16})
        cfg.train.update({"num_steps": 4, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 2})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
        cfg.eval.update({"num_samples": 64, "likelihood_examples": 16, "batch_size": 64})
    elif variant:
        raise ValueError(f"demo_config: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
