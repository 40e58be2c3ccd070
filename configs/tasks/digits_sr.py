"""python -m diffax.tasks configs/tasks/digits_sr.py --workdir /tmp/digits_sr

SR3-style super-resolution (Saharia et al. 2022) on scikit-learn's 8x8 digits, 4x4 -> 8x8: a
VP eps-prediction UNet that sees the 2x2-average-pooled image, upsampled back (nearest), as an
extra input channel; DDIM samples; PSNR of a sample, of the mean of ``sr.num_samples`` samples,
and of nearest / bicubic upsampling on the test digits. ``:tiny`` is seconds, for tests.
Figures: experiments/super_resolution/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section
from diffax.train.options import SROptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("super_resolution", variant, num_steps=2000)
    tiny = variant == "tiny"
    cfg.sr = task_section(SROptions, **({"num_samples": 2, "num_eval": 8} if tiny else {}))
    cfg.lock()
    return cfg
