"""diffax train --config configs/toy2d_cld.py --workdir /tmp/toy2d_cld

Critically-damped Langevin diffusion (Dockhorn et al. 2022: beta 4, M^-1 4, gamma 0.04) on 2-D
eight Gaussians: a residual MLP reading (x, v) concatenated ([B, 4]) and predicting the velocity
noise, trained with hybrid score matching (eps weighting), sampled with SSCS (100 steps, 100
NFE). ``:tiny`` (300 steps) is what the end-to-end test runs. Then::

    diffax sample --workdir /tmp/toy2d_cld
    diffax likelihood --workdir /tmp/toy2d_cld   # the paper's bound on -log p(x0), nats
    diffax eval --workdir /tmp/toy2d_cld         # sample metrics of the x part (and the bound)

The likelihood of a CLD model is diffax.cld.data_log_likelihood_bound (E_v0[log p(x0, v0) -
log N(v0; 0, gamma M)] <= log p(x0), one velocity draw per example), reported in nats and
bits/dim.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a small, short version for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict({"name": "cld", "beta": 4.0, "m_inv": 4.0,
                                             "gamma": 0.04})
    cfg.model = ml_collections.ConfigDict({"name": "mlp", "variant": "toy2d", "kwargs": {}})
    cfg.loss = ml_collections.ConfigDict({"weighting": "eps", "prediction": "eps",
                                          "time_scale": 1.0})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 2e-3, "warmup_steps": 200, "schedule": "cosine",
         "end_learning_rate": 1e-5, "grad_clip": 1.0, "ema_decays": (0.999,),
         "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 10_000, "batch_size": 512, "checkpoint_every": 2_000, "log_every": 500,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "toy2d/eight_gaussians"})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="sscs", num_steps=100,
                                                num_samples=2000))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS))
    if variant == "tiny":
        cfg.optim.update({"learning_rate": 3e-3, "warmup_steps": 20})
        cfg.train.update({"num_steps": 300, "batch_size": 256, "checkpoint_every": 150,
                          "log_every": 100})
        cfg.sample.update({"num_samples": 256, "num_steps": 20})
    elif variant:
        raise ValueError(f"configs/toy2d_cld.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
