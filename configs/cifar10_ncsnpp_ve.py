"""diffax train --config configs/cifar10_ncsnpp_ve.py --workdir gs://BUCKET/cifar10_ncsnpp_ve

score_sde's "NCSN++ cont. (VE)" on CIFAR-10 (Song et al. 2021, configs/ve/
cifar10_ncsnpp_continuous.py): the VE SDE with sigma 0.01 -> 50, the noise level fed through
random Fourier features (scale 16), score_sde's output scaling ``score = model / sigma`` (eps
prediction) with the sigma^2-weighted score-matching loss summed over pixels (eps-MSE,
``reduce_mean=False``), BigGAN residual blocks (nf 128, ch_mult 1-2-2-2, 4 blocks, attention at
16x16, dropout 0.1), Adam 2e-4 with 5000 warmup steps and gradient clipping at 1, EMA 0.999,
batch 128 for 1.3M steps, images in [0, 1], random flips. Samples with predictor-corrector
(reverse diffusion + Langevin, snr 0.16, 1000 steps) and a final denoising step. diffax's UNet
has no FIR resampling and no progressive input/output branches of NCSN++ (see the experiment
README). Needs
accelerators and CIFAR-10 prepared for TFDS in array_record. ``:tiny`` is the same process,
loss and sampler on a tiny UNet and 8x8 digits, for tests. Paper figures:
experiments/cifar10_ncsnpp_ve/README.md.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` runs on CPU (tiny UNet, digits), for tests."""
    cfg = ml_collections.ConfigDict()
    cfg.seed = 42  # score_sde's
    cfg.process = ml_collections.ConfigDict(
        {"name": "ve", "sigma_min": 0.01, "sigma_max": 50.0, "t_min": 1e-5, "t_max": 1.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "cifar10", "conditional": False,
        "kwargs": {"embedding_type": "fourier", "fourier_scale": 16.0, "time_scale": 1.0}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "eps", "prediction": "eps", "time_sampler": "uniform",
         "noise_input": "log_snr", "reduce_mean": False})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 2e-4, "warmup_steps": 5000, "schedule": "constant", "b1": 0.9,
         "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "grad_clip": 1.0,
         "ema_decays": (0.999,), "ema_warmup": False})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 1_300_000, "batch_size": 128, "checkpoint_every": 10_000,
         "log_every": 100, "sample_every": 50_000, "n_jitted_steps": 5, "keep_last": 2,
         "keep_every": 50_000})
    # score_sde's VE configs keep images in [0, 1] (data.centered = False).
    cfg.data = ml_collections.ConfigDict(
        {"name": "cifar10", "random_flip": True, "value_range": (0.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="pc", num_steps=1000,
                                                snr=0.16, num_samples=64, denoise_final=True))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=10_000,
                                              batch_size=1000, feature_dim=64,
                                              likelihood_examples=10_000,
                                              divergence="hutchinson", rtol=1e-5, atol=1e-5))
    if variant == "tiny":
        cfg.model.variant = "tiny"
        cfg.model.kwargs = {"embedding_type": "fourier", "fourier_scale": 16.0,
                            "ch_mult": (1, 2), "attn_resolutions": (4,)}
        cfg.optim.warmup_steps = 1
        cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (0.0, 1.0),
                                              "random_flip": True})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0, "n_jitted_steps": 1,
                          "keep_every": None})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
        cfg.eval.update({"num_samples": 64, "batch_size": 64, "feature_dim": 16,
                         "likelihood_examples": 16})
    elif variant:
        raise ValueError(f"configs/cifar10_ncsnpp_ve.py: unknown variant {variant!r}; '' or "
                         "'tiny'.")
    cfg.lock()
    return cfg
