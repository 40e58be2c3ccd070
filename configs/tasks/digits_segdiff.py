"""python -m diffax.tasks configs/tasks/digits_segdiff.py --workdir /tmp/digits_segdiff

SegDiff (Amit et al. 2021) on scikit-learn's 8x8 digits: a diffusion model of the mask given
the image (``diffax.tasks.segdiff.SegDiffUNet``: an image encoder whose features are added to
the noisy mask's first-layer features, inside a VP eps-prediction UNet), trained on the same
20 labelled train digits (2 per class, 300 held out as in ``digits_segmentation.py``) as the
pixel classifiers it is compared with: on raw 3x3 windows (with and without the whole image and
coordinates) and on UNet decoder features of an unconditional denoiser (Baranchuk et al.). Two
labellings: ``parts`` (background / stroke edge / interior) and ``digit_class``. Masks drawn
with DDIM, averaged over 1, 2, 4, 8 samples, argmaxed; Dice / IoU on the 300 test digits.
``:tiny`` is seconds, for tests. Figures: experiments/segdiff/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section, validation_keys
from diffax.train.options import SegDiffOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("segdiff", variant, num_steps=2000)
    tiny = variant == "tiny"
    validation_keys(cfg, tiny, 20)
    cfg.segdiff = task_section(SegDiffOptions, **(
        {"labelled_per_class": 1, "labellings": ("parts",), "num_eval": 16, "num_samples": 2,
         "sample_counts": (1, 2), "encoder_blocks": 1, "baselines": ("pixel_window",),
         "hidden": (8,)} if tiny else {}))
    cfg.pixel_train = ml_collections.ConfigDict({
        "num_steps": 4 if tiny else 1000, "batch_size": 16 if tiny else 256,
        "learning_rate": 1e-3, "ema_decay": 0.0, "steps_per_call": 4 if tiny else 500})
    cfg.lock()
    return cfg
