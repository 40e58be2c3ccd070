"""diffax train --config configs/digits_edm.py --workdir /tmp/digits_edm

EDM (Karras et al. 2022) on scikit-learn's 8x8 digits: sigma in [0.002, 80], the network
preconditioned with sigma_data = 0.5 and fed ln(sigma)/4, log-normal noise levels
(P_mean -1.2, P_std 1.2) with the EDM weighting, and Heun's second-order sampler on the Karras
schedule (rho 7, 18 steps = 35 NFE). A longer, larger version of the demo (configs/digits_demo.py);
tens of minutes on a CPU. ``:tiny`` runs a few steps of a smaller UNet, for tests. Expected
figures: experiments/digits_edm/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a smaller model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "edm", "prediction": "edm", "time_sampler": "lognormal",
         "lognormal_mean": -1.2, "lognormal_std": 1.2})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 500, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.9995,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 128, "checkpoint_every": 2_000,
         "log_every": 200, "sample_every": 2_000, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=18,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=1000,
                                              likelihood_examples=300,
                                              divergence="hutchinson"))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 16, "num_res_blocks": 1})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
        cfg.eval.update({"num_samples": 64, "batch_size": 64, "likelihood_examples": 16})
    elif variant:
        raise ValueError(f"configs/digits_edm.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
