"""diffax train --config configs/digits_stacked_ddgan.py --workdir /tmp/digits_stacked_ddgan

configs/digits_ddgan.py (DDGAN, T = 4 steps of score_sde's VP, UNet generator, conv
discriminator, non-saturating loss + R1) on stacked digits (``digits_stacked``: three 8x8
digits on the channels of one image, 1000 modes), the mode-coverage yardstick of issue #19.
Its diffusion baseline is configs/digits_stacked_vp.py. ``:tiny`` is the tiny variant of
configs/digits_ddgan.py on the same data, for tests. Modes are counted by
tools/bench_ddgan_digits.py; figures in experiments/digits_ddgan/README.md.
"""

import os

import ml_collections

from diffax.tasks.__main__ import load_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """configs/digits_ddgan.py[:variant] with ``data.name = "digits_stacked"``."""
    if variant not in ("", "tiny"):
        raise ValueError(f"configs/digits_stacked_ddgan.py: unknown variant {variant!r}; '' "
                         "or 'tiny'.")
    base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_ddgan.py")
    cfg = load_config(f"{base}:{variant}" if variant else base)
    with cfg.unlocked():
        cfg.data.name = "digits_stacked"
    return cfg
