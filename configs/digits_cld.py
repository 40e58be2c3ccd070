"""diffax train --config configs/digits_cld.py --workdir /tmp/digits_cld

Critically-damped Langevin diffusion (Dockhorn et al. 2022: beta 4, M^-1 4, gamma 0.04) on
scikit-learn's 8x8 digits: the digits UNet reading (x, v) with the channels concatenated
([B, 8, 8, 2]) and predicting the velocity noise, trained with hybrid score matching (eps
weighting), sampled with SSCS (100 steps). The same model, optimiser and step count as
configs/digits_vp_continuous.py's UNet, for the comparison in experiments/cld/README.md
(experiments/cld/digits_equal_steps.sh). ``:tiny`` runs a few steps of a smaller UNet, for
tests.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a smaller model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict({"name": "cld", "beta": 4.0, "m_inv": 4.0,
                                             "gamma": 0.04})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict({"weighting": "eps", "prediction": "eps",
                                          "time_scale": 1.0})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 500, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.9995,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 128, "checkpoint_every": 2_000,
         "log_every": 200, "sample_every": 2_000, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="sscs", num_steps=100,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 16, "num_res_blocks": 1})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
    elif variant:
        raise ValueError(f"configs/digits_cld.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
