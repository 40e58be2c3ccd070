"""diffax train --config configs/digits_ddgan_vp.py --workdir /tmp/digits_ddgan_vp

The diffusion baseline of configs/digits_ddgan.py (issue #19's digits comparison): the same
UNet as DDGAN's generator (without its latent), trained as a denoising diffusion model on
score_sde's continuous VP (beta 0.1 -> 20, t in [1e-3, 1]: DDGAN's T = 4 chain discretises the
same process) with the plain eps loss, and sampled in 4 NFE with DPM-Solver++(2M) on the
log-SNR grid (``--config.sample.solver=ddim`` for DDIM). Same batch and EMA as the DDGAN
config. ``:tiny`` is a few steps of a smaller UNet, for tests. The comparison (both models,
digits and stacked digits): experiments/digits_ddgan/README.md and tools/bench_ddgan_digits.py.
"""

import os

import ml_collections

from diffax.tasks.__main__ import load_config
from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a smaller model, for tests."""
    if variant not in ("", "tiny"):
        raise ValueError(f"configs/digits_ddgan_vp.py: unknown variant {variant!r}; '' or "
                         "'tiny'.")
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-3, "t_max": 1.0})
    ddgan = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_ddgan.py")
    # The generator's network, by construction (its tiny variant for :tiny).
    cfg.model = load_config(f"{ddgan}:{variant}" if variant else ddgan).model.to_dict()
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "eps", "prediction": "eps", "time_sampler": "uniform",
         "noise_input": "time"})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 200, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 6_000, "batch_size": 128, "checkpoint_every": 500,
         "log_every": 100, "sample_every": 0, "n_jitted_steps": 1, "keep_last": 20})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="dpm_solver_pp",
                                                order=2, schedule="log_snr", num_steps=4,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=1000,
                                              likelihood=False))
    if variant == "tiny":
        cfg.optim.update({"warmup_steps": 0})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "keep_last": 2})
        cfg.sample.update({"num_samples": 16})
        cfg.eval.update({"num_samples": 64, "batch_size": 64})
    cfg.lock()
    return cfg
