"""diffax train --config configs/digits_divae.py --workdir /tmp/digits_divae

DiVAE (Shi et al. 2022, :mod:`diffax.divae`) on the digits upsampled to 16x16
(`digits_upsampled/16`): a VQ autoencoder's decoder replaced by a diffusion decoder
``p(x | z_q)``, in two stages:

1. ``diffax train --config configs/digits_divae.py:autoencoder --workdir /tmp/digits_divae_vq``
   trains the VQ autoencoder of ``configs/digits_ldm.py:autoencoder_vq`` (f = 2: 16x16x1 images
   -> 8x8x2 codes) and measures the codes' scale into ``latent_scale.json``.
2. ``diffax train --config configs/digits_divae.py --workdir /tmp/digits_divae`` (this line)
   trains a UNet on the 16x16 pixels whose input is ``x_t`` with the scaled codes of the frozen
   encoder (``config.latent.workdir``) upsampled to 16x16 (nearest neighbour) and
   concatenated on the channel axis (``latent.role = "decoder"``).
   ``diffax sample`` decodes the codes of held-out digits; ``diffax eval`` compares these
   reconstructions with the VQ model's own deterministic decoder (PSNR, and FD / digit score
   after ``diffax.data.downsample_digits`` to the 8x8 yardstick).

``:tiny`` and ``:autoencoder_tiny`` run a few steps of small models, for tests
(``:autoencoder_tiny`` updates the codebook by EMA, ``loss.codebook_update = "ema"``).
"""

import importlib.util
import os

import ml_collections

from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

STAGE1_WORKDIR = "/tmp/digits_divae_vq"
_VARIANTS = ("", "tiny", "autoencoder", "autoencoder_tiny")


def _ldm():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_ldm.py")
    spec = importlib.util.spec_from_file_location("_digits_ldm_for_divae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Stage 2, the diffusion decoder (``""``, ``"tiny"``), or stage 1, the VQ autoencoder
    (``"autoencoder"``, ``"autoencoder_tiny"``)."""
    if variant not in _VARIANTS:
        raise ValueError(f"configs/digits_divae.py: unknown variant {variant!r}; one of "
                         f"{', '.join(map(repr, _VARIANTS))}.")
    if variant.startswith("autoencoder"):
        cfg = _ldm().get_config("autoencoder_vq")
        if variant == "autoencoder_tiny":
            cfg.unlock()
            cfg.model.variant = "tiny"
            cfg.loss = ml_collections.ConfigDict(
                {"reconstruction": "l1", "commitment": 0.25, "codebook_weight": 0.0,
                 "codebook_update": "ema", "codebook_decay": 0.9})
            cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 1,
                              "log_every": 1})
            cfg.lock()
        return cfg
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.latent = ml_collections.ConfigDict(
        {"workdir": STAGE1_WORKDIR, "step": None, "autoencoder": "autoencoder_vq",
         "scale_factor": None, "sample_posterior": False, "role": "decoder"})
    cfg.process = ml_collections.ConfigDict(
        {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-3, "t_max": 1.0})
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 16, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (),
                   "dropout": 0.0, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "eps", "prediction": "eps", "time_sampler": "uniform",
         "noise_input": "time"})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 200, "schedule": "constant", "grad_clip": 1.0,
         "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 1_200, "batch_size": 32, "checkpoint_every": 400,
         "log_every": 100, "sample_every": 0, "n_jitted_steps": 1, "keep_last": 2})
    cfg.data = ml_collections.ConfigDict({"name": "digits_upsampled/16",
                                          "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=20,
                                                num_samples=64))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=300, batch_size=100,
                                              likelihood=False))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 8, "ch_mult": (1,)})
        cfg.train.update({"num_steps": 2, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 1})
        cfg.sample.update({"solver": "ddim", "num_steps": 2, "num_samples": 16})
        cfg.eval.update({"num_samples": 16, "batch_size": 16})
    cfg.lock()
    return cfg
