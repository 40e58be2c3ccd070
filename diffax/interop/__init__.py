"""Readers of other libraries' formats: diffusers' scheduler configs (:func:`load_scheduler`).

Example:
  >>> import diffax
  >>> diffax.interop.load_scheduler({"_class_name": "UniPCMultistepScheduler"}).prediction
  'eps'
"""

from diffax.interop.schedulers import (
    Scheduler,
    betas_from_config,
    load_scheduler,
    timestep_denoiser,
)

__all__ = ["load_scheduler", "Scheduler", "betas_from_config", "timestep_denoiser"]
