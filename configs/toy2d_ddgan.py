"""diffax train --config configs/toy2d_ddgan.py --workdir /tmp/toy2d_ddgan

A denoising diffusion GAN (Xiao, Kreis & Vahdat 2022; :mod:`diffax.ddgan`) on 2-D eight
Gaussians: T = 4 steps of score_sde's VP (beta 0.1 -> 20), a residual MLP generator
``G(x_t, t, z) -> x0`` with a 16-dimensional latent added to its time embedding, an MLP
discriminator ``D(x_{t-1}, x_t, t)``, the non-saturating loss with R1 (gamma 0.05) on real pairs,
Adam(0.5, 0.9) for both networks. Sampling: 4 generator calls (``sample.solver=ddgan``). A few
minutes on a CPU; ``:tiny`` (a few steps) is what the end-to-end test runs. Then::

    diffax sample --workdir /tmp/toy2d_ddgan
    diffax eval --workdir /tmp/toy2d_ddgan

``--config.process.num_steps=1 --config.sample.num_steps=1`` is a plain GAN.
Measured against diffusion at the same NFE: tools/bench_ddgan.py (README).
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a small, short version for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "ddpm", "schedule": "vp", "num_steps": 4, "beta_min": 0.1, "beta_max": 20.0})
    cfg.model = ml_collections.ConfigDict(
        {"name": "mlp", "variant": "toy2d", "kwargs": {"init_scale": 1.0}})
    cfg.gan = ml_collections.ConfigDict(
        {"latent_dim": 16, "mapping_layers": 2, "r1_gamma": 0.05, "d_learning_rate": 1e-4,
         "d_b1": 0.5, "d_b2": 0.9, "d_width": 128, "d_depth": 3})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-4, "b1": 0.5, "b2": 0.9, "grad_clip": None,
         "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 512, "checkpoint_every": 5_000, "log_every": 500,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "toy2d/eight_gaussians"})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="ddgan", num_steps=4,
                                                num_samples=2000))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=5000, batch_size=5000,
                                              feature_dim=2, likelihood=False))
    if variant == "tiny":
        cfg.model.update({"variant": "tiny"})
        cfg.gan.update({"latent_dim": 4, "d_width": 16, "d_depth": 1})
        cfg.train.update({"num_steps": 4, "batch_size": 64, "checkpoint_every": 2,
                          "log_every": 2})
        cfg.sample.update({"num_samples": 64})
        cfg.eval.update({"num_samples": 256, "batch_size": 256})
    elif variant:
        raise ValueError(f"configs/toy2d_ddgan.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
