"""python -m diffax.tasks configs/tasks/digits_synthesis.py --workdir /tmp/digits_synthesis

Semantic image synthesis on scikit-learn's 8x8 digits: a diffusion model of the digit given
its part mask (background / stroke edge / stroke interior, 3 channels into the UNet through
``diffax.tasks.segdiff.SegDiffUNet``'s encoder), the mask dropped with probability 0.2 in
training for classifier-free guidance, 600 training steps. One digit per test mask (300) at
guidance scales 0 (unconditional: the baseline), 1, 2, 4 with DDIM; judged by re-segmenting
each generated digit with the labelling's own rule (``part_labels``) and comparing with the
mask asked for (Dice / IoU). ``:tiny`` is seconds, for tests. Figures:
experiments/segdiff/README.md.
"""

import ml_collections

from diffax.tasks.defaults import base_config, task_section, validation_keys
from diffax.train.options import SynthesisOptions


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = base_config("synthesis", variant, num_steps=600)  # sized for a shared 2-core machine
    tiny = variant == "tiny"
    validation_keys(cfg, tiny, 20)
    cfg.synthesis = task_section(SynthesisOptions, **(
        {"num_eval": 8, "scales": (0.0, 2.0)} if tiny else {}))
    cfg.lock()
    return cfg
