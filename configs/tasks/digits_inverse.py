"""python -m diffax.tasks configs/tasks/digits_inverse.py --workdir /tmp/digits_inverse

Inverse problems on scikit-learn's 8x8 digits with one unconditional VP eps-prediction UNet:
inpainting three masks with score_sde's replacement, RePaint and DPS (``diffax.inpaint``,
``diffax.inverse.dps``), PSNR over the missing pixels next to a nearest-neighbour fill from
the training digits; DPS deblurring and 2x super-resolution next to the measurement / bicubic
upsampling. ``:tiny`` is seconds, for tests. Figures: experiments/inverse_problems/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section
from diffax.train.options import InverseOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("inverse_problems", variant, num_steps=2000)
    tiny = variant == "tiny"
    cfg.inverse = task_section(InverseOptions, **(
        {"masks": ("center",), "methods": ("repaint", "dps"), "problems": ("downsample",),
         "num_steps": 3, "num_eval": 8, "jump_length": 2, "resample": 2} if tiny else {}))
    cfg.lock()
    return cfg
