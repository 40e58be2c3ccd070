"""Samplers: solver objects run by one ``lax.scan`` loop, :func:`sample`.

Every solver is a pytree dataclass with pure ``init``/``step`` and declares ``order``,
``nfe_per_step`` and ``stochastic``; :func:`sample` runs any of them over a time grid from
:mod:`diffax.schedules`.

=======================================================  =======================================
solver                                                   file
=======================================================  =======================================
``Euler``, ``DDIM``, ``DDPM``                            ``_first_order.py``
``Heun``, ``EDMStochastic``                              ``_edm.py``
``EulerMaruyama``, ``ReverseDiffusion``,                 ``_stochastic.py``
``PredictorCorrector``, ``Langevin``
``DPMSolver``, ``DPMSolverPP``                           ``_dpm_solver.py``
``UniPC``                                                ``_unipc.py``
``DEIS``, ``IPNDM``, ``LMS``                             ``_multistep.py``
``Adaptive``                                             ``_adaptive.py``
``SSCS`` (CLD's symmetric splitting)                     ``_sscs.py``
``StepCount``, ``StepRatio``, ``Orders``,                ``_final_steps.py``
``default_rule`` (final orders)
the loop :func:`sample`; the solver interface            ``_run.py``; ``_base.py``
shared exponential-integrator pieces                     ``_exponential.py``
:func:`grid_search.optimize` (``schedules.optimize``)    ``grid_search.py``
=======================================================  =======================================

Example:
  >>> import jax, jax.numpy as jnp, diffax
  >>> p = diffax.EDM()
  >>> D = lambda x, t: jnp.zeros_like(x)
  >>> res = diffax.samplers.sample(None, p, D, jnp.ones((4, 2)), solver=diffax.samplers.Heun(),
  ...                              num_steps=17, denoise_final=True)
  >>> int(res.nfe)
  35
"""

from diffax.samplers import grid_search
from diffax.samplers._adaptive import Adaptive, AdaptiveState
from diffax.samplers._base import EmptyState, NoiseFn, Solver, StepContext, default_noise
from diffax.samplers._ddgan import DDGAN
from diffax.samplers._dpm_solver import DPMSolver, DPMSolverAdaptiveState, DPMSolverPP
from diffax.samplers._edm import EDMStochastic, Heun
from diffax.samplers._exponential import History
from diffax.samplers._final_steps import (
    FinalOrder,
    Orders,
    StepCount,
    StepRatio,
    default_rule,
    diffusers_rule,
)
from diffax.samplers._first_order import DDIM, DDPM, Euler
from diffax.samplers._multistep import DEIS, IPNDM, LMS
from diffax.samplers._run import STATUS_NONFINITE, SampleResult, sample
from diffax.samplers._sscs import SSCS
from diffax.samplers._stochastic import (
    EulerMaruyama,
    Langevin,
    PredictorCorrector,
    ReverseDiffusion,
)
from diffax.samplers._unipc import UniPC, UniPCState

__all__ = [
    "sample",
    "grid_search",
    "SampleResult",
    "STATUS_NONFINITE",
    # solvers
    "Euler",
    "Heun",
    "EDMStochastic",
    "DDPM",
    "DDIM",
    "EulerMaruyama",
    "ReverseDiffusion",
    "PredictorCorrector",
    "Langevin",
    "Adaptive",
    "AdaptiveState",
    "DPMSolver",
    "DPMSolverAdaptiveState",
    "DPMSolverPP",
    "UniPC",
    "UniPCState",
    "DEIS",
    "IPNDM",
    "LMS",
    "SSCS",
    "DDGAN",
    "History",
    # order rules near the data end (lower_order_final=...)
    "FinalOrder",
    "StepCount",
    "StepRatio",
    "Orders",
    "diffusers_rule",
    "default_rule",
    # interface for new solvers
    "Solver",
    "StepContext",
    "EmptyState",
    "NoiseFn",
    "default_noise",
]
