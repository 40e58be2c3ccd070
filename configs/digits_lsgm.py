"""diffax train --config configs/digits_lsgm.py --workdir /tmp/digits_lsgm

LSGM (Vahdat, Kreis & Kautz 2021, "Score-based Generative Modeling in Latent Space") on the
digits upsampled to 16x16 (`digits_upsampled/16`, bilinear): LDM's KL autoencoder (f = 2:
16x16x1 -> 8x8x2 latents) and a UNet score model on its latents trained *together* on the
negative ELBO (Gaussian decoder, std ``lsgm.decoder_std`` in the model range; the latent
cross-entropy by denoising score matching on a VP diffusion with the paper's importance
sampling of t and the mixed score), :mod:`diffax.lsgm` / :mod:`diffax.train.lsgm`. The
autoencoder has its own optimiser (``lsgm.autoencoder_learning_rate``), the score network and
the mixing logits ``config.optim``. Process, UNet, sampler and data as the LDM stage 2 of
``configs/digits_ldm.py``, so the two compare at equal steps.

``diffax sample`` / ``diffax eval`` of the workdir sample latents with the mixed-score
denoiser and decode them with the trained decoder (``diffax.data.downsample_digits`` takes
them back to the 8x8 yardstick). ``:tiny`` runs a few steps of small models, for tests;
``:uniform`` draws t uniformly instead (the paper's ablation); ``:unweighted`` keeps the
importance-sampled likelihood weighting for the encoder and decoder and trains the score model
on its own unweighted eps-MSE with uniform t (the paper's separate objectives,
``lsgm.score_weighting``).
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

_VARIANTS = ("", "tiny", "uniform", "unweighted")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The LSGM config (``""``), its test variant (``"tiny"``), uniform ``t``
    (``"uniform"``) or the score model on its own unweighted objective (``"unweighted"``)."""
    if variant not in _VARIANTS:
        raise ValueError(f"configs/digits_lsgm.py: unknown variant {variant!r}; one of "
                         f"{', '.join(map(repr, _VARIANTS))}.")
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.lsgm = ml_collections.ConfigDict(
        {"autoencoder_variant": "digits", "autoencoder_kwargs": {"latent_channels": 2},
         "decoder_std": 0.05, "time_sampler": "uniform" if variant == "uniform" else "importance",
         "kl_weight": 1.0, "autoencoder_learning_rate": 1e-3, "mixing_init": 0.0})
    if variant == "unweighted":
        cfg.lsgm.score_weighting = "unweighted"
    cfg.process = ml_collections.ConfigDict(
        {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-5, "t_max": 1.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    # The score network's input map; the objective is LSGM's (likelihood weighting).
    cfg.loss = ml_collections.ConfigDict({"prediction": "eps", "noise_input": "time"})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 500, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.9995,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 20_000, "batch_size": 128, "checkpoint_every": 2_000,
         "log_every": 200, "sample_every": 2_000, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits_upsampled/16",
                                          "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=50,
                                                num_samples=100))
    # `diffax likelihood` reports LSGM's bound (diffax.train.lsgm.lsgm_likelihood); `diffax
    # eval` leaves it out (one PF-ODE solve per held-out example).
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=1000,
                                              likelihood=False))
    if variant == "tiny":
        cfg.lsgm.autoencoder_variant = "tiny"
        cfg.model.kwargs.update({"nf": 8, "ch_mult": (1,), "num_res_blocks": 1,
                                 "attn_resolutions": (), "dropout": 0.0})
        cfg.optim.ema_decays = ()  # fewer ops to compile in the test
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0})
        cfg.sample.update({"solver": "ddim", "num_steps": 3, "num_samples": 16})
        cfg.eval.update({"num_samples": 32, "batch_size": 32})
    cfg.lock()
    return cfg
