"""python -m diffax.tasks configs/tasks/digits_anomaly.py --workdir /tmp/digits_anomaly

AnoDDPM (Wyatt et al. 2022) on scikit-learn's 8x8 digits: eps-prediction VP denoisers trained on
classes 0-8 only, one with Gaussian and one with multi-octave simplex noise; every test digit is
noised to each of ``anomaly.times``, reconstructed with DDIM, and scored by its mean squared
reconstruction error; the AUROC for detecting the 9s is reported per noise and time.
``:tiny`` is seconds, for tests. Figures: experiments/anomaly_detection/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("anomaly", variant)
    tiny = variant == "tiny"
    cfg.data.normal_classes = (0, 1, 2, 3, 4, 5, 6, 7, 8)
    cfg.data.anomaly_classes = (9,)
    cfg.anomaly = ml_collections.ConfigDict({
        "noises": ("gaussian", "simplex"), "times": (0.3,) if tiny else (0.2, 0.4),
        "simplex_frequency": 1.0, "simplex_octaves": 3, "simplex_persistence": 0.8,
        "num_eval": 20 if tiny else 0})
    cfg.lock()
    return cfg
