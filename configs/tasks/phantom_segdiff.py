"""python -m diffax.tasks configs/tasks/phantom_segdiff.py --workdir /tmp/phantom_segdiff

SegDiff (Amit et al. 2021) on 32x32 random-ellipse phantoms (``phantoms/32``): the region map
(background / skull / brain / inner ellipses, ``diffax.data.PHANTOM_CLASSES``) drawn by a
diffusion model conditioned on the phantom, trained on the first 200 train phantoms, vs a pixel
classifier on the raw 3x3 window trained on the same phantoms; 300 training steps of batch 16;
Dice / IoU on 50 test phantoms, masks averaged over 1, 2, 4 samples. ``:tiny`` is seconds, for
tests. Figures: experiments/segdiff/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section
from diffax.train.options import SegDiffOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("segdiff", variant, num_steps=300)  # sized for a shared 2-core machine
    tiny = variant == "tiny"
    cfg.model.kwargs.image_size = 32
    if not tiny:
        cfg.train.batch_size = 16
    cfg.segdiff = task_section(
        SegDiffOptions, dataset="phantoms", size=32, labellings=("regions",),
        num_labelled=8 if tiny else 200, num_eval=4 if tiny else 50,
        num_samples=1 if tiny else 4, sample_counts=(1,) if tiny else (1, 2, 4),
        encoder_blocks=1 if tiny else 2, baselines=("pixel_window",),
        hidden=(8,) if tiny else (64, 64))
    cfg.pixel_train = ml_collections.ConfigDict({
        "num_steps": 4 if tiny else 1000, "batch_size": 16 if tiny else 256,
        "learning_rate": 1e-3, "ema_decay": 0.0, "steps_per_call": 4 if tiny else 500})
    cfg.lock()
    return cfg
