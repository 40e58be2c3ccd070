"""diffax train --config configs/digits_ddgan.py --workdir /tmp/digits_ddgan

A denoising diffusion GAN (Xiao, Kreis & Vahdat 2022; :mod:`diffax.ddgan`) on scikit-learn's
8x8 digits: T = 4 steps of score_sde's VP (beta 0.1 -> 20), a small UNet generator
``G(x_t, t, z) -> x0`` with a 32-dimensional latent mapped into its time embedding, a small
conv discriminator ``D(x_{t-1}, x_t, t)``, the non-saturating loss with R1 (gamma 0.05) on real
pairs, Adam(0.5, 0.9) for both networks (the paper's CIFAR-10 settings, scaled down). Sampling:
4 generator calls (``sample.solver=ddgan``). ``:tiny`` runs a few steps of smaller networks, for
tests. Then::

    diffax sample --workdir /tmp/digits_ddgan
    diffax eval --workdir /tmp/digits_ddgan
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of smaller networks, for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "ddpm", "schedule": "vp", "num_steps": 4, "beta_min": 0.1, "beta_max": 20.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.0, "embedding_type": "positional", "time_scale": 1000.0,
                   "init_scale": 1.0}})
    cfg.gan = ml_collections.ConfigDict(
        {"latent_dim": 32, "mapping_layers": 2, "r1_gamma": 0.05, "d_learning_rate": 1e-4,
         "d_b1": 0.5, "d_b2": 0.9, "d_channels": 32, "d_ch_mult": (1, 2)})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1.6e-4, "b1": 0.5, "b2": 0.9, "grad_clip": None,
         "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 128, "checkpoint_every": 2_000,
         "log_every": 200, "sample_every": 2_000, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ddgan", num_steps=4,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=1000,
                                              likelihood=False))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 8, "num_res_blocks": 1, "attn_resolutions": ()})
        cfg.gan.update({"latent_dim": 4, "d_channels": 8})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0})
        cfg.sample.update({"num_samples": 16})
        cfg.eval.update({"num_samples": 64, "batch_size": 64})
    elif variant:
        raise ValueError(f"configs/digits_ddgan.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
