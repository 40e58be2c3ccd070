"""python -m diffax.tasks configs/tasks/digits_segdiff.py --workdir /tmp/digits_segdiff

SegDiff (Amit et al. 2021) on scikit-learn's 8x8 digits: a diffusion model of the mask given
the image (``diffax.tasks.segdiff.SegDiffUNet``: an image encoder whose features are added to
the noisy mask's first-layer features, inside a VP eps-prediction UNet), trained on the same
20 labelled train digits (2 per class, 300 held out as in ``digits_segmentation.py``) as the
pixel classifiers it is compared with: on raw 3x3 windows (with and without the whole image and
coordinates; UNet decoder features of an unconditional denoiser, Baranchuk et al., with
``segdiff.baselines`` including ``"diffusion_features"``). Two labellings: ``parts``
(background / stroke edge / interior) and ``digit_class``. 600 training steps; masks drawn with
DDIM (10 steps), averaged over 1, 2, 4 samples, argmaxed; Dice / IoU on the 300 test digits.
``:tiny`` is seconds, for tests. Figures: experiments/segdiff/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section, validation_keys
from diffax.train.options import SegDiffOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("segdiff", variant, num_steps=600)  # sized for a shared 2-core machine
    tiny = variant == "tiny"
    validation_keys(cfg, tiny, 20)
    cfg.segdiff = task_section(SegDiffOptions, **(
        {"labelled_per_class": 1, "labellings": ("parts",), "num_eval": 16, "num_samples": 2,
         "sample_counts": (1, 2), "encoder_blocks": 1, "baselines": ("pixel_window",),
         "hidden": (8,)} if tiny else
        # the diffusion-features baseline (an unconditional UNet of 2000 steps) is left out of
        # the default run for time: add it with --config.segdiff.baselines=...
        {"num_samples": 4, "sample_counts": (1, 2, 4),
         "baselines": ("untrained", "pixel_window", "pixel_window_global")}))
    cfg.pixel_train = ml_collections.ConfigDict({
        "num_steps": 4 if tiny else 1000, "batch_size": 16 if tiny else 256,
        "learning_rate": 1e-3, "ema_decay": 0.0, "steps_per_call": 4 if tiny else 500})
    cfg.lock()
    return cfg
