"""Readers of other libraries' formats: diffusers model folders as Flax modules + params
(:func:`load_pretrained`) and diffusers' scheduler configs (:func:`load_scheduler`).

Example:
  >>> import diffax
  >>> diffax.interop.load_scheduler({"_class_name": "UniPCMultistepScheduler"}).prediction
  'eps'
  >>> diffax.interop.flax_path("conv_in.weight")
  ('conv_in', 'weight')
"""

from diffax.interop.diffusers import (
    Pretrained,
    convert_state_dict,
    convert_tensor,
    flax_path,
    load_pretrained,
    read_folder,
    spec_from_config,
)
from diffax.interop.pipeline import sample_pretrained, unet_fn
from diffax.interop.schedulers import (
    Scheduler,
    betas_from_config,
    load_scheduler,
    timestep_denoiser,
)

__all__ = [
    "Pretrained",
    "Scheduler",
    "betas_from_config",
    "convert_state_dict",
    "convert_tensor",
    "flax_path",
    "load_pretrained",
    "load_scheduler",
    "read_folder",
    "sample_pretrained",
    "spec_from_config",
    "timestep_denoiser",
    "unet_fn",
]
