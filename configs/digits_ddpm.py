"""diffax train --config configs/digits_ddpm.py --workdir /tmp/digits_ddpm

DDPM (Ho et al. 2020) on scikit-learn's 8x8 digits: the discrete linear beta schedule
(1000 steps, 1e-4 -> 0.02), eps prediction with the simple (unweighted eps-MSE) loss at uniformly
drawn integer steps, the step index as the network's noise input (sinusoidal embedding), and
ancestral sampling over all 1000 steps (``--config.sample.solver=ddim
--config.sample.num_steps=50`` samples faster). A small UNet; tens of minutes on a CPU.
``:tiny`` runs a few steps of a smaller UNet, for tests. Expected figures:
experiments/digits_ddpm/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a smaller model, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "ddpm", "schedule": "linear", "num_steps": 1000, "beta_start": 1e-4,
         "beta_end": 0.02})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.1, "resblock_type": "ddpm", "embedding_type": "positional",
                   "time_scale": 1.0}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "eps", "prediction": "eps", "time_sampler": "discrete",
         "noise_input": "index"})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 500, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.9995,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 128, "checkpoint_every": 2_000,
         "log_every": 200, "sample_every": 2_000, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ddpm", num_steps=1000,
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
        raise ValueError(f"configs/digits_ddpm.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
