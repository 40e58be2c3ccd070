"""diffax train --config configs/toy2d_vp.py --workdir /tmp/toy2d_vp

score_sde's VP SDE (beta 0.1 -> 20) on 2-D eight Gaussians: a residual MLP predicting
v = alpha eps - sigma x0 with the v-MSE loss at uniform times (bounded at both ends of time,
unlike eps prediction, whose x0 estimate is divided by alpha(1) = 0.0066), Heun on the
probability-flow ODE (50 steps, 100 NFE), exact likelihoods (2-D: the divergence is two JVPs).
A few minutes on a CPU; ``:tiny`` (500 steps) is what the end-to-end test runs. Then::

    diffax sample --workdir /tmp/toy2d_vp
    diffax eval --workdir /tmp/toy2d_vp

Other distributions: ``--config.data.name=toy2d/two_moons`` (checkerboard, swiss_roll,
spirals). Expected figures: experiments/toy2d_vp/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a small, short version for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict({"name": "vp", "beta_min": 0.1, "beta_max": 20.0})
    cfg.model = ml_collections.ConfigDict({"name": "mlp", "variant": "toy2d", "kwargs": {}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "v", "prediction": "v", "time_sampler": "uniform",
         "variates": "low_discrepancy"})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 2e-3, "warmup_steps": 200, "schedule": "cosine",
         "end_learning_rate": 1e-5, "grad_clip": 1.0, "ema_decays": (0.999,),
         "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 10_000, "batch_size": 512, "checkpoint_every": 2_000, "log_every": 500,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "toy2d/eight_gaussians"})
    # Heun needs ~50 uniform steps here: the mixture's components are narrow (std 0.25), so
    # the ODE is stiff near the data (10 steps put the exact denoiser's samples at radius 2.6
    # instead of 2.0).
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=50,
                                                num_samples=2000))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=5000, batch_size=5000,
                                              feature_dim=2, likelihood_examples=2000))
    if variant == "tiny":
        cfg.optim.update({"learning_rate": 3e-3, "warmup_steps": 20})
        cfg.train.update({"num_steps": 500, "batch_size": 256, "checkpoint_every": 250,
                          "log_every": 100})
        cfg.sample.update({"num_samples": 512})
        cfg.eval.update({"num_samples": 1000, "batch_size": 1000, "likelihood_examples": 200,
                         "rtol": 1e-4, "atol": 1e-4})
    elif variant:
        raise ValueError(f"configs/toy2d_vp.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
