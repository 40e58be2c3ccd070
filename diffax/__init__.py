"""diffax: diffusion models in JAX/Flax, written as pure functions.

This file is the public API: everything importable as ``diffax.<name>`` is re-exported here
explicitly. See README.md for a tour.
"""

from diffax import parameterization, processes, testing, typing
from diffax._pytree import pytree_dataclass, static_field
from diffax.parameterization import (
    PREDICTIONS,
    as_denoiser,
    edm_coefficients,
    edm_preconditioned,
    probability_flow_drift,
    reverse_sde_drift,
    score_from_denoiser,
)
from diffax.processes import (
    EDM,
    VE,
    VP,
    CosineVP,
    DiscreteVP,
    Process,
    RectifiedFlow,
    SubVP,
)

__version__ = "0.1.0"

__all__ = [
    # modules
    "parameterization",
    "processes",
    "testing",
    "typing",
    # processes
    "Process",
    "VP",
    "CosineVP",
    "SubVP",
    "VE",
    "EDM",
    "RectifiedFlow",
    "DiscreteVP",
    # parameterizations
    "PREDICTIONS",
    "as_denoiser",
    "edm_coefficients",
    "edm_preconditioned",
    "probability_flow_drift",
    "reverse_sde_drift",
    "score_from_denoiser",
    # utilities
    "pytree_dataclass",
    "static_field",
]
