"""python -m diffax.tasks configs/tasks/digits_segmentation.py --workdir /tmp/digits_seg

Label-efficient segmentation from diffusion features (Baranchuk et al. 2022) on scikit-learn's
8x8 digits: a VP eps-prediction UNet trained on the digits; decoder activations at
``seg.times`` and ``seg.blocks`` (indices into ``diffax.tasks.segmentation.decoder_blocks``),
bilinearly upsampled to 8x8; an MLP pixel classifier trained on ``seg.num_labelled`` labelled
images of synthetic part labels (background / stroke edge / stroke interior); pixel accuracy
and IoU on the 300 test digits, next to the same MLP on raw 3x3 pixel windows. ``:tiny`` is
seconds, for tests. Figures: experiments/segmentation/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("segmentation", variant)
    tiny = variant == "tiny"
    cfg.seg = ml_collections.ConfigDict({
        "times": (0.05,) if tiny else (0.05, 0.2), "blocks": (0, 1) if tiny else (0, 1, 2, 3),
        "num_labelled": 2 if tiny else 10, "hidden": (8,) if tiny else (64, 64)})
    cfg.pixel_train = ml_collections.ConfigDict({
        "num_steps": 4 if tiny else 1000, "batch_size": 16 if tiny else 256,
        "learning_rate": 1e-3, "ema_decay": 0.0, "steps_per_call": 4 if tiny else 500})
    cfg.lock()
    return cfg
