"""diffax train --config configs/text8_d3pm_absorbing.py --workdir /tmp/text8_d3pm_absorbing

D3PM with absorbing (mask) noise (Austin et al. 2021; 1000 steps, beta_k = 1/(T - k + 1)) as a
character-level language model on ``pydoc_text`` (Python's ``pydoc_data.topics`` normalised
text8-style to ``[a-z ]``, sequences of 256 characters): the same small transformer as
configs/text8_masked.py, the hybrid loss L_vb + 0.01 L_aux (the paper's text8 setting),
ancestral sampling in 250 strides of 4 steps. ``diffax eval`` reports held-out bits/char from
the NELBO (50 stratified step terms per sequence, an unbiased estimate of the sum over all
1000) next to n-gram baselines. ``:tiny`` runs a few steps of a tiny model, for tests.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "d3pm_absorbing", "vocab_size": 27, "num_steps": 1000})
    cfg.model = ml_collections.ConfigDict({
        "name": "transformer", "variant": "small", "conditional": False,
        "kwargs": {"width": 128, "depth": 3, "num_heads": 4, "mlp_ratio": 4}})
    cfg.loss = ml_collections.ConfigDict({"hybrid_coeff": 0.01})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 2e-3, "warmup_steps": 100, "schedule": "cosine",
         "end_learning_rate": 1e-4, "grad_clip": 1.0, "ema_decays": (0.99,),
         "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 800, "batch_size": 16, "checkpoint_every": 200,
         "log_every": 50, "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "pydoc_text"})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ancestral",
                                                num_steps=250, num_samples=8))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, split="test", num_samples=8,
                                              batch_size=8, likelihood_examples=73,
                                              num_probes=1, nelbo_steps=50))
    if variant == "tiny":
        cfg.model.update({"variant": "tiny", "kwargs": {}})
        cfg.train.update({"num_steps": 2, "batch_size": 8, "checkpoint_every": 2,
                          "log_every": 1})
        cfg.sample.update({"num_steps": 4, "num_samples": 8})
        cfg.eval.update({"num_samples": 8, "batch_size": 8, "likelihood_examples": 8,
                         "nelbo_steps": 4})
    elif variant:
        raise ValueError(f"configs/text8_d3pm_absorbing.py: unknown variant {variant!r}; '' "
                         "or 'tiny'.")
    cfg.lock()
    return cfg
