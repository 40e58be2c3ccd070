"""python -m diffax.tasks configs/tasks/phantom_mri.py --workdir /tmp/phantom_mri

Undersampled MRI on 32x32 random-ellipse phantoms (``phantoms/32``) after Song, Shen, Xing &
Ermon (ICLR 2022): one unconditional VP eps-prediction UNet; 4x and 8x Cartesian k-space
undersampling (conjugate-symmetric rows, fully sampled centre); the paper's consistency
sampler (``diffax.inverse.consistency_sample``, predictor-corrector, lambda = 1) and DPS
(``diffax.inverse.dps``) vs the zero-filled inverse FFT, PSNR/SSIM on held-out phantoms.
``--config.medical.denoiser_from=/tmp/phantom_ct/denoiser.msgpack`` reuses the CT run's
denoiser (same data, model and training) instead of training again. ``:tiny`` is seconds, for
tests. Figures: experiments/medical_mri/README.md.
"""

import ml_collections

from diffax.tasks.defaults import medical_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The config; ``variant`` ``"tiny"`` is a few steps of a tiny model, for tests."""
    cfg = medical_config("mri", variant, (4, 8))
    cfg.lock()
    return cfg
