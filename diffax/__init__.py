"""diffax: diffusion models in JAX/Flax, written as pure functions.

This file is the public API: everything importable as ``diffax.<name>`` is re-exported here
explicitly. See README.md for a tour.
"""

import importlib as _importlib

from diffax import (
    cld,
    discrete,
    divae,
    guidance,
    inverse,
    latent,
    likelihood,
    losses,
    lsgm,
    models,
    parameterization,
    processes,
    samplers,
    schedules,
    testing,
    typing,
)
from diffax._pytree import pytree_dataclass, static_field
from diffax.cld import CLD
from diffax.divae import DiVAE
from diffax.inverse import inpaint
from diffax.latent import Latent
from diffax.likelihood import LikelihoodResult, bits_per_dim, log_likelihood
from diffax.lsgm import LSGMObjective
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
    StateProcess,
    SubVP,
)
from diffax.samplers import SampleResult, sample

__version__ = "0.1.0"

# Subpackages with heavy dependencies (orbax, tensorflow-datasets, grain, matplotlib) load on
# first use: ``diffax.train``, ``diffax.data``, ``diffax.evaluation``, ``diffax.interop``;
# ``diffax.ddgan`` (denoising diffusion GANs) and ``diffax.patchgan`` (autoencoders against a
# patch discriminator) build on ``diffax.train``'s state and step.
_LAZY_SUBMODULES = ("train", "data", "evaluation", "tasks", "interop", "ddgan", "patchgan")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = _importlib.import_module(f"diffax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'diffax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY_SUBMODULES])

__all__ = [
    # modules
    "cld",
    "parameterization",
    "processes",
    "samplers",
    "schedules",
    "likelihood",
    "discrete",
    "divae",
    "guidance",
    "inverse",
    "latent",
    "losses",
    "lsgm",
    "models",
    "testing",
    "typing",
    "train",
    "data",
    "evaluation",
    "tasks",
    "interop",
    "ddgan",
    "patchgan",
    # processes
    "Process",
    "VP",
    "CosineVP",
    "SubVP",
    "VE",
    "EDM",
    "RectifiedFlow",
    "DiscreteVP",
    "CLD",
    "StateProcess",
    # parameterizations
    "PREDICTIONS",
    "as_denoiser",
    "edm_coefficients",
    "edm_preconditioned",
    "probability_flow_drift",
    "reverse_sde_drift",
    "score_from_denoiser",
    # sampling
    "sample",
    "SampleResult",
    # conditional generation
    "inpaint",
    # latent diffusion
    "Latent",
    "LSGMObjective",
    "DiVAE",
    # likelihood
    "log_likelihood",
    "bits_per_dim",
    "LikelihoodResult",
    # utilities
    "pytree_dataclass",
    "static_field",
]
