"""diffax train --config configs/cifar10_edm.py --workdir gs://BUCKET/cifar10_edm

EDM (Karras et al. 2022), unconditional CIFAR-10 with the DDPM++ backbone ("config F", VP
architecture with EDM preconditioning): sigma in [0.002, 80], sigma_data 0.5, log-normal noise
levels (P_mean -1.2, P_std 1.2) with the EDM weighting, c_noise = ln(sigma)/4 into a sinusoidal
embedding, UNet nf 128, ch_mult 2-2-2, 4 blocks per level, attention at 16x16, dropout 0.13
(56M parameters); Adam 1e-3 ramped up over 10 Mimg, batch 512 for 200 Mimg (390,625 steps),
EMA with a half-life of 0.5 Mimg (decay 0.99929 per step at batch 512), random flips. Samples
with Heun's 2nd-order method on the Karras schedule (rho 7, 18 steps = 35 NFE). diffax has no
EDM's non-leaky augmentation pipeline (see the experiment README). Needs accelerators
(EDM: 2 days on 8 V100s) and CIFAR-10 prepared for TFDS in array_record. ``:tiny`` is the same
process, loss and sampler on a tiny UNet and 8x8 digits, for tests. Paper figures:
experiments/cifar10_edm/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` runs on CPU (tiny UNet, digits), for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "cifar10", "conditional": False,
        "kwargs": {"ch_mult": (2, 2, 2), "num_res_blocks": 4, "attn_resolutions": (16,),
                   "dropout": 0.13, "embedding_type": "positional", "time_scale": 1.0}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "edm", "prediction": "edm", "time_sampler": "lognormal",
         "lognormal_mean": -1.2, "lognormal_std": 1.2})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 19_531, "schedule": "constant", "b1": 0.9,
         "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "grad_clip": None,
         "ema_decays": (0.99929,), "ema_warmup": False})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 390_625, "batch_size": 512, "checkpoint_every": 10_000,
         "log_every": 100, "sample_every": 50_000, "n_jitted_steps": 5, "keep_last": 2,
         "keep_every": 50_000})
    cfg.data = ml_collections.ConfigDict(
        {"name": "cifar10", "random_flip": True, "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=18,
                                                num_samples=64))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=10_000,
                                              batch_size=1000, feature_dim=64,
                                              likelihood_examples=10_000,
                                              divergence="hutchinson", rtol=1e-5, atol=1e-5))
    if variant == "tiny":
        cfg.model.variant = "tiny"
        cfg.model.kwargs = {"ch_mult": (2, 2), "attn_resolutions": (4,), "dropout": 0.13,
                            "embedding_type": "positional", "time_scale": 1.0}
        cfg.optim.warmup_steps = 1
        cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0),
                                              "random_flip": True})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0, "n_jitted_steps": 1,
                          "keep_every": None})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
        cfg.eval.update({"num_samples": 64, "batch_size": 64, "feature_dim": 16,
                         "likelihood_examples": 16})
    elif variant:
        raise ValueError(f"configs/cifar10_edm.py: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg
