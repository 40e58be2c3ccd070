"""The phantom CT/MRI example's image size: bad sizes named before any compute."""

import os

import pytest

from diffax.tasks.__main__ import load_config
from diffax.tasks.examples import medical

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "configs", "tasks")


def _config(**medical_keys):
    cfg = load_config(os.path.join(CONFIGS, "phantom_ct.py:tiny"))
    with cfg.unlocked():
        for k, v in medical_keys.items():
            setattr(cfg.medical, k, v)
    return cfg


def test_sizes_without_phantoms_or_with_a_mismatched_unet_are_named(tmp_path):
    """phantoms/<size> exists for 32 and 64 only; a UNet prior must have the images' size
    (config.model.kwargs.image_size). Both raise before data is read or a workdir written."""
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"config\.medical\.size=48.*\(32, 64\)"):
        medical.run(_config(size=48), workdir)
    with pytest.raises(ValueError, match=r"config\.model\.kwargs\.image_size=64 \(it is 32\)"):
        medical.run(_config(size=64), workdir)
    assert not os.path.exists(workdir)
