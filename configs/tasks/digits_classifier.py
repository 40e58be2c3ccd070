"""python -m diffax.tasks configs/tasks/digits_classifier.py --workdir /tmp/digits_classifier

A noise-conditional classifier for classifier guidance (Dhariwal & Nichol 2021) on
scikit-learn's 8x8 digits: the encoder of the small digits UNet, trained with cross-entropy on
``x_t = alpha x0 + sigma eps`` at uniform ``t`` of a VP process; its test accuracy against
``t``; then an unconditional VP denoiser sampled with ``diffax.guidance.classifier`` for each
class at each of ``guidance.scales``, judged by an independent classifier (logistic regression
on clean digits). ``:tiny`` is seconds, for tests. Figures:
experiments/classifier_guidance/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, classifier_section, task_section
from diffax.train.options import GuidanceOptions, TaskEvalOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("classifier", variant)
    tiny = variant == "tiny"
    cfg.classifier = classifier_section(variant)
    cfg.eval = task_section(TaskEvalOptions, **({"times": (0.001, 0.5)} if tiny else {}))
    cfg.guidance = task_section(GuidanceOptions, **(
        {"scales": (0.0, 1.0), "samples_per_class": 1} if tiny else {}))
    cfg.lock()
    return cfg
