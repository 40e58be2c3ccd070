"""diffax train --config configs/digits_stacked_vp.py --workdir /tmp/digits_stacked_vp

The diffusion baseline of configs/digits_stacked_ddgan.py: configs/digits_ddgan_vp.py (the
generator's UNet as an eps-prediction model on score_sde's continuous VP, DPM-Solver++(2M) at
4 NFE) on stacked digits (``digits_stacked``: three 8x8 digits on the channels of one image,
1000 modes). ``:tiny`` is the tiny variant of configs/digits_ddgan_vp.py on the same data, for
tests. Figures: experiments/digits_ddgan/README.md (tools/bench_ddgan_digits.py).
"""

import os

import ml_collections

from diffax.tasks.__main__ import load_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """configs/digits_ddgan_vp.py[:variant] on ``digits_stacked``."""
    if variant not in ("", "tiny"):
        raise ValueError(f"configs/digits_stacked_vp.py: unknown variant {variant!r}; '' or "
                         "'tiny'.")
    here = os.path.dirname(os.path.abspath(__file__))
    cfg = load_config(os.path.join(here, "digits_ddgan_vp.py") + (f":{variant}" * bool(variant)))
    with cfg.unlocked():
        cfg.data.name = "digits_stacked"
    return cfg
