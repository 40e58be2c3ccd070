"""python -m diffax.tasks configs/tasks/phantom_ct.py --workdir /tmp/phantom_ct

Sparse-view CT on 32x32 random-ellipse phantoms (``phantoms/32``) after Song, Shen, Xing &
Ermon (ICLR 2022): one unconditional VP eps-prediction UNet; 4, 8, 16 and 23 parallel-beam
views out of a 180-angle grid; the paper's consistency sampler
(``diffax.inverse.consistency_sample``, predictor-corrector, lambda = 1) and DPS
(``diffax.inverse.dps``) vs filtered back-projection, PSNR/SSIM on held-out phantoms. The
trained denoiser is saved as ``WORKDIR/denoiser.msgpack`` (``phantom_mri.py`` can reuse it
with ``--config.medical.denoiser_from=...``). ``:tiny`` is seconds, for tests. Figures:
experiments/medical_ct/README.md.
"""

import ml_collections

from diffax.tasks.defaults import medical_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = medical_config("ct", variant, (4, 8, 16, 23))
    cfg.lock()
    return cfg
