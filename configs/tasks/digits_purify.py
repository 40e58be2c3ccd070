"""python -m diffax.tasks configs/tasks/digits_purify.py --workdir /tmp/digits_purify

DiffPure-style adversarial purification (Nie et al. 2022) on scikit-learn's 8x8 digits: a
noise-conditional classifier (used at ``t_min``) is attacked by FGSM and by Gaussian noise on
the test digits; each input is noised to ``purify.t0`` and denoised with DDIM by a VP
eps-prediction UNet (SDEdit), and the classifier's accuracy before and after is reported.
``:tiny`` is seconds, for tests. Figures: experiments/purification/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, classifier_section, task_section, validation_keys
from diffax.train.options import PurifyOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("purification", variant, num_steps=2000)
    tiny = variant == "tiny"
    cfg.classifier = classifier_section(variant, num_steps=1500)
    validation_keys(cfg, tiny, 20)  # held out of the train split; t0 is chosen on it
    cfg.purify = task_section(PurifyOptions, **({"t0": (0.3,)} if tiny else {}))
    cfg.lock()
    return cfg
