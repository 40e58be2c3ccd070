"""diffax train --config configs/text8_masked.py --workdir /tmp/text8_masked

Continuous-time masked diffusion (MDLM, Sahoo et al. 2024; MD4, Shi et al. 2024) as a
character-level language model on ``pydoc_text``: Python's own ``pydoc_data.topics``
normalised text8-style to ``[a-z ]`` (27 tokens + the mask), sequences of 256 characters.
A small bidirectional adaLN transformer, MDLM's 1/t-weighted cross-entropy on the masked
tokens, ancestral sampling. Sized for under 30 minutes on 2 CPU cores: 8000 steps, 8 per
jitted call (one scratch buffer per call; with :mod:`diffax.train.malloc` it is reused).
``diffax eval`` reports held-out bits/char (NELBO) next to n-gram baselines and writes sample
text. ``:tiny`` runs a few steps of a tiny model, for tests. Expected figures:
experiments/text8_masked/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict({"name": "masked", "vocab_size": 27})
    cfg.model = ml_collections.ConfigDict({
        "name": "transformer", "variant": "small", "conditional": False,
        "kwargs": {"width": 128, "depth": 3, "num_heads": 4, "mlp_ratio": 4, "conv_kernel": 5}})
    cfg.loss = ml_collections.ConfigDict({"t_eps": 1e-3, "low_discrepancy": True})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 3e-3, "warmup_steps": 50, "schedule": "cosine",
         "end_learning_rate": 2e-4, "grad_clip": 1.0, "ema_decays": (0.99,),
         "ema_warmup": True, "weight_decay": 0.0})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 8000, "batch_size": 12, "checkpoint_every": 1000,
         "log_every": 200, "sample_every": 0, "n_jitted_steps": 8, "keep_last": 9})
    cfg.data = ml_collections.ConfigDict({"name": "pydoc_text"})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ancestral",
                                                num_steps=256, num_samples=8))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, split="test", num_samples=8,
                                              batch_size=8, likelihood_examples=73,
                                              num_probes=8, likelihood=True))
    if variant == "tiny":
        cfg.model.update({"variant": "tiny", "kwargs": {}})
        cfg.train.update({"num_steps": 2, "batch_size": 8, "checkpoint_every": 2,
                          "log_every": 1, "n_jitted_steps": 1})
        cfg.sample.update({"num_steps": 4, "num_samples": 8})
        cfg.eval.update({"num_samples": 8, "batch_size": 8, "likelihood_examples": 8,
                         "num_probes": 1})
    elif variant:
        raise ValueError(f"configs/text8_masked.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
