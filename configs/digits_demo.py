"""diffax demo --workdir /tmp/diffax-demo

The main job's config: EDM (preconditioning, log-normal noise levels, Heun with 18 steps = 35
NFE) on scikit-learn's 8x8 digits with a small UNet (0.19M parameters), 3000 steps of batch 64;
then samples, the ODE likelihood (Hutchinson, 300 test digits) and metrics. About 10 minutes on
2 CPU cores in total. ``diffax demo`` uses this config by default (it is defined in
``diffax.train.demo.demo_config``, so the installed command needs no checkout); the same run
step by step::

    diffax train --config configs/digits_demo.py --workdir /tmp/diffax-demo
    diffax sample --workdir /tmp/diffax-demo
    diffax eval --workdir /tmp/diffax-demo

``:tiny`` runs a few steps of a smaller UNet, for tests. Expected figures:
experiments/digits_demo/README.md.
"""

import ml_collections

from diffax.train.demo import demo_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The demo config; ``variant`` ``"tiny"`` is a few steps of a smaller model, for tests."""
    return demo_config(variant)
