"""diffax train --config configs/digits_d3pm.py --workdir /tmp/digits_d3pm

D3PM with discretised-Gaussian noise (Austin et al. 2021) on scikit-learn's 8x8 digits as
64 tokens with 17 grey levels (``digits_tokens``), as the paper did for images: 1000 steps
with beta linear from 0.02 to 1, the hybrid loss with lambda = 0.001 (the paper's image
setting), a small transformer over the 64 pixels, ancestral sampling in 250 strides.
``diffax eval`` reports held-out bits per pixel (NELBO, 50 stratified step terms) next to
n-gram baselines over the raster order, and the samples as images. ``:tiny`` runs a few steps
of a tiny model, for tests.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "d3pm_gaussian", "vocab_size": 17, "num_steps": 1000, "beta_start": 0.02,
         "beta_end": 1.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "transformer", "variant": "small", "conditional": False,
        "kwargs": {"width": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 4}})
    cfg.loss = ml_collections.ConfigDict({"hybrid_coeff": 0.001})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 200, "schedule": "cosine",
         "end_learning_rate": 1e-5, "grad_clip": 1.0, "ema_decays": (0.999,),
         "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 5000, "batch_size": 64, "checkpoint_every": 1000,
         "log_every": 100, "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits_tokens"})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ancestral",
                                                num_steps=250, num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, split="test", num_samples=100,
                                              batch_size=100, likelihood_examples=300,
                                              num_probes=1, nelbo_steps=50))
    if variant == "tiny":
        cfg.model.update({"variant": "tiny", "kwargs": {}})
        cfg.train.update({"num_steps": 2, "batch_size": 8, "checkpoint_every": 2,
                          "log_every": 1})
        cfg.sample.update({"num_steps": 4, "num_samples": 8})
        cfg.eval.update({"num_samples": 8, "batch_size": 8, "likelihood_examples": 8,
                         "nelbo_steps": 4})
    elif variant:
        raise ValueError(f"configs/digits_d3pm.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
