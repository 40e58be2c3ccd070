"""python -m diffax.tasks configs/tasks/digits_segmentation.py --workdir /tmp/digits_seg

Label-efficient segmentation from diffusion features (Baranchuk et al. 2022) on scikit-learn's
8x8 digits: a VP eps-prediction UNet trained on the digits (300 train digits held out as a
validation split); activations of the blocks named in ``seg.blocks`` (the bottleneck and the
decoder) at each candidate set of ``seg.times``, bilinearly upsampled to 8x8; an MLP pixel
classifier trained on ``seg.labelled_per_class`` labelled images per class, for each labelling
in ``seg.labellings``: ``parts`` (background / stroke edge / stroke interior, a function of the
3x3 window) and ``digit_class`` (background or the digit's class on its stroke: semantic, not
local). The times with the best validation mean IoU are chosen; pixel accuracy and IoU on the
300 test digits (bootstrap intervals), next to the same MLP on raw pixel windows (with and
without the whole image and the pixel's coordinates). ``:tiny`` is seconds, for tests. Figures:
experiments/segmentation/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section, validation_keys
from diffax.train.options import SegOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("segmentation", variant, num_steps=2000)
    tiny = variant == "tiny"
    validation_keys(cfg, tiny, 20)  # held out of the train split; seg.times is chosen on it
    # seg.times: candidate sets of feature times; the best on validation mean IoU is used.
    cfg.seg = task_section(SegOptions, **(
        {"times": ((0.05,), (0.2,)), "blocks": ("mid_attn", "up_0_block_0"),
         "labelled_per_class": 1, "labellings": ("digit_class",), "hidden": (8,)}
        if tiny else {}))
    cfg.pixel_train = ml_collections.ConfigDict({
        "num_steps": 4 if tiny else 1000, "batch_size": 16 if tiny else 256,
        "learning_rate": 1e-3, "ema_decay": 0.0, "steps_per_call": 4 if tiny else 500})
    cfg.lock()
    return cfg
