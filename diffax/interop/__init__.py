"""Readers of other libraries' weights: diffusers model folders as Flax modules + params.

Example:
    >>> from diffax import interop
    >>> interop.flax_path("conv_in.weight")
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

__all__ = [
    "Pretrained",
    "convert_state_dict",
    "convert_tensor",
    "flax_path",
    "load_pretrained",
    "read_folder",
    "spec_from_config",
]
