"""python -m diffax.tasks configs/tasks/digits_anomaly.py --workdir /tmp/digits_anomaly

AnoDDPM (Wyatt et al. 2022) on scikit-learn's 8x8 digits: eps-prediction VP denoisers trained on
classes 0-8 only, one with Gaussian and one with multi-octave simplex noise; every test digit is
noised to each of ``anomaly.times`` and reconstructed with ``sample.solver`` (``ddpm``:
AnoDDPM's ancestral steps, drawing each step's noise from the same noise function) in
``anomaly.num_draws`` independent draws, and scored by its squared reconstruction error
averaged over the draws; the AUROC for detecting the 9s is reported per noise and time, next
to two pixel-space baselines (k-nearest-neighbour distance, PCA reconstruction error).
``:tiny`` is seconds, for tests. Figures: experiments/anomaly_detection/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section, validation_keys
from diffax.train.options import AnomalyOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("anomaly", variant, num_steps=2000)
    tiny = variant == "tiny"
    cfg.data.normal_classes = (0, 1, 2, 3, 4, 5, 6, 7, 8)
    cfg.data.anomaly_classes = (9,)
    validation_keys(cfg, tiny, 60)  # held out of the train split; t is chosen on it
    cfg.sample.solver = "ddpm"  # AnoDDPM's ancestral steps (a trial: AUROC 0.909, DDIM 0.883)
    # :tiny trains one model (the gaussian path differs only in the noise function).
    cfg.anomaly = task_section(AnomalyOptions, **(
        {"noises": ("simplex",), "times": (0.3,), "num_draws": 2, "num_eval": 20}
        if tiny else {}))
    cfg.lock()
    return cfg
