"""diffax train --config configs/digits_ldm.py --workdir /tmp/digits_ldm

Latent diffusion (Rombach et al. 2022) on the digits upsampled to 16x16 (`digits_upsampled/16`,
bilinear), in two stages:

1. ``diffax train --config configs/digits_ldm.py:autoencoder --workdir /tmp/digits_ldm_ae``
   trains LDM's KL autoencoder (f = 2: 16x16x1 images -> 8x8x2 latents; L1 reconstruction,
   KL weight 1e-6 per data dimension) and, when it finishes, measures
   ``scale_factor = 1 / std`` of the training latents into ``/tmp/digits_ldm_ae/latent_scale.json``
   (``:autoencoder_vq`` trains a VQ autoencoder instead: 256 codewords, commitment 0.25;
   ``:autoencoder_gan`` / ``:autoencoder_vqgan`` train them against a patch discriminator
   after step 2000, :mod:`diffax.patchgan`: ``loss.disc_weight`` 0.5 / 0.8 as LDM / taming,
   hinge loss, a 1-layer PatchDiscriminator whose logits each see 16x16 pixels).
2. ``diffax train --config configs/digits_ldm.py --workdir /tmp/digits_ldm`` (this line) trains
   a UNet on the frozen, scaled latents of the checkpoint in ``config.latent.workdir``
   (default ``/tmp/digits_ldm_ae``; ``--config.latent.workdir=...`` points elsewhere), with the
   process, loss and solver of ``configs/digits_vp_continuous.py``. ``diffax sample`` /
   ``diffax eval`` of ``/tmp/digits_ldm`` decode the samples to 16x16 images
   (``diffax.data.downsample_digits`` takes them back to the 8x8 yardstick).

``:tiny``, ``:autoencoder_tiny`` and ``:autoencoder_gan_tiny`` run a few steps of small models,
for tests.
"""

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

STAGE1_WORKDIR = "/tmp/digits_ldm_ae"
_VARIANTS = ("", "tiny", "autoencoder", "autoencoder_tiny", "autoencoder_vq", "autoencoder_gan",
             "autoencoder_vqgan", "autoencoder_gan_tiny")


def _autoencoder(variant: str) -> ml_collections.ConfigDict:
    vq = variant in ("autoencoder_vq", "autoencoder_vqgan")
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.model = ml_collections.ConfigDict({
        "name": "autoencoder_vq" if vq else "autoencoder_kl", "variant": "digits",
        "conditional": False, "kwargs": {"latent_channels": 2}})
    cfg.loss = ml_collections.ConfigDict(
        {"reconstruction": "l1", "commitment": 0.25, "codebook_weight": 1.0} if vq
        else {"reconstruction": "l1", "kl_weight": 1e-6})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 200, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 4_000, "batch_size": 64, "checkpoint_every": 1_000, "log_every": 200,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits_upsampled/16",
                                          "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, likelihood=False))
    if "gan" in variant:  # the patch discriminator (diffax.patchgan), on after step 2000
        cfg.loss.update({"disc_weight": 0.8 if vq else 0.5, "disc_start": 2_000,
                         "disc_loss": "hinge", "disc_channels": 32, "disc_layers": 1})
    if variant in ("autoencoder_tiny", "autoencoder_gan_tiny"):
        cfg.model.variant = "tiny"
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1})
    if variant == "autoencoder_gan_tiny":  # on after 1 update: both phases in 4 updates
        cfg.model.kwargs.update({"nf": 4, "ch_mult": (1,)})  # one level (f = 1): one compile
        cfg.loss.update({"disc_start": 1, "disc_channels": 4})
        cfg.train.update({"num_steps": 4, "batch_size": 8})
    return cfg


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Stage 2 (``""``, ``"tiny"``) or stage 1 (``"autoencoder"``, ``"autoencoder_tiny"``,
    ``"autoencoder_vq"``, ``"autoencoder_gan"``, ``"autoencoder_vqgan"``,
    ``"autoencoder_gan_tiny"``)."""
    if variant not in _VARIANTS:
        raise ValueError(f"configs/digits_ldm.py: unknown variant {variant!r}; one of "
                         f"{', '.join(map(repr, _VARIANTS))}.")
    if variant.startswith("autoencoder"):
        cfg = _autoencoder(variant)
        cfg.lock()
        return cfg
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.latent = ml_collections.ConfigDict(
        {"workdir": STAGE1_WORKDIR, "step": None, "autoencoder": "autoencoder_kl",
         "scale_factor": None, "sample_posterior": True})
    cfg.process = ml_collections.ConfigDict(
        {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-5, "t_max": 1.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 2, "attn_resolutions": (4,),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "likelihood", "prediction": "eps", "time_sampler": "importance",
         "noise_input": "time"})
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
    # `diffax likelihood` reports the latent NLL + decoder term (a bound with posterior
    # samples); `diffax eval` leaves it out (eval.likelihood=False), as before.
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=1000,
                                              likelihood=False))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 8, "ch_mult": (1,), "num_res_blocks": 1,
                                 "attn_resolutions": ()})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1, "sample_every": 0})
        cfg.sample.update({"solver": "ddim", "num_steps": 3, "num_samples": 16})
        cfg.eval.update({"num_samples": 32, "batch_size": 32})
    cfg.lock()
    return cfg
