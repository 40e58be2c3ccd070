"""The solver interface shared by every sampler family.

A solver is a pytree dataclass (its numbers are leaves, its options static) with two pure
functions, in the style of optax's gradient transformations:

* ``init(process, denoiser, x, times) -> state``: an explicit state (a NamedTuple) carried by
  the sampling loop; :class:`EmptyState` for one-step methods, a history of past denoiser
  outputs for multistep ones.
* ``step(process, denoiser, x, state, ctx) -> (x_next, state, nfe)``: one step from
  ``ctx.t`` to ``ctx.t_next`` (``t_next < t``), returning the denoiser evaluations it spent
  (an int32 scalar: the number of calls on the whole batch).

and three declared properties checked by the tests: ``order``, ``nfe_per_step`` and
``stochastic``. ``default_schedule(process)`` gives the grid used when ``diffax.sample`` gets
no ``schedule``.

A multistep solver keeps its history in its state, for example::

  class MyState(NamedTuple):
      denoised: Array   # [K, B, ...] the last K denoiser outputs
      log_snr: Array    # [K] their log-SNRs
      count: Array      # int32 []: how many are valid (the first steps have fewer)

and reads anything else it needs about the grid from ``ctx`` (``ctx.index``, ``ctx.times``,
``ctx.num_steps``: e.g. lower order on the last steps).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from diffax._pytree import concrete_value
from diffax.processes import Process
from diffax.schedules import Schedule, TimeUniform
from diffax.typing import Array, Denoiser, PRNGKey

__all__ = ["Solver", "StepContext", "EmptyState", "NoiseFn", "default_noise"]

NoiseFn = Callable[[PRNGKey, Array, Array, tuple[int, ...]], Array]
"""``noise_fn(key, t, t_next, shape) -> Array``: the standard normal noise a stochastic step
from ``t`` to ``t_next`` uses (``t_next == t`` for a corrector's noise at ``t``)."""


def default_noise(key: PRNGKey, t: Array, t_next: Array, shape: tuple[int, ...]) -> Array:
    """Standard normal noise from ``key`` (the default ``noise_fn``)."""
    del t, t_next
    return jax.random.normal(key, shape)


class EmptyState(NamedTuple):
    """The state of a solver that carries nothing between steps."""


class StepContext(NamedTuple):
    """What a step knows about where it is in the loop.

    Attributes:
      index: int32 scalar, the step number ``i`` in ``[0, num_steps)``.
      t: the time at the start of the step (scalar).
      t_next: the time at the end of the step (scalar, ``< t``).
      times: the whole grid ``[num_steps + 1]``; ``times[index] == t``.
      key: a PRNG key for this step (``None`` when the caller gave no key).
      num_steps: the number of steps in the grid (a Python int).
      requested_steps: the ``num_steps`` the caller gave (a Python int, or ``None`` when the
        grid came from an explicit array alone); differs from ``num_steps`` only for solvers
        that choose their own steps.
      noise_fn: draws the noise, ``noise_fn(key, t, t_next, shape)``; already casts to the
        state's dtype.
      denoise_final: whether :func:`diffax.sample` evaluates the denoiser once more after the
        last step (a Python bool; lower-order rules may count it as a step).
    """

    index: Array
    t: Array
    t_next: Array
    times: Array
    key: PRNGKey | None
    num_steps: int
    requested_steps: int | None
    noise_fn: NoiseFn
    denoise_final: bool = False

    def noise(self, key: PRNGKey | None, shape: tuple[int, ...], *,
              t: Array | None = None, t_next: Array | None = None) -> Array:
        """Noise for this step (``t``/``t_next`` default to the step's own)."""
        if key is None:
            raise ValueError("This solver is stochastic: diffax.sample needs a PRNG `key`.")
        return self.noise_fn(key, self.t if t is None else t,
                             self.t_next if t_next is None else t_next, shape)


class Solver(abc.ABC):
    """Base class of samplers run by :func:`diffax.sample` (see the module docstring)."""

    order: ClassVar[int] = 1
    nfe_per_step: ClassVar[int] = 1
    stochastic: ClassVar[bool] = False
    fixed_grid: ClassVar[bool] = True
    """False for solvers that choose their own steps inside each interval of the grid
    (``Adaptive``): the grid then only says where to report the state."""
    reaches_clean_data: ClassVar[bool] = False
    """True for solvers whose step to a time where ``sigma = 0`` (clean data, below
    ``t_min``: e.g. ``t = 0`` of :class:`diffax.DiscreteVP`) is exact in the data-prediction
    frame (``x_s = alpha_s D``); only they accept a grid ending there. (:class:`Euler` takes
    the same step but keeps refusing such grids, as before; use :class:`DDIM`.)"""
    scalar_coefficients_only: ClassVar[bool] = True
    """True for solvers written with a process's scalar ``alpha(t)``/``sigma(t)``; False for
    those that also run on a :class:`diffax.processes.StateProcess` (CLD's ``(x, v)``), through
    its ``probability_flow``/``reverse_sde``. :func:`diffax.sample` refuses the combination
    a solver cannot run, naming both."""
    state_process_only: ClassVar[bool] = False
    """True for solvers that run only on a :class:`diffax.processes.StateProcess` (SSCS)."""

    def default_schedule(self, process: Process) -> Schedule:
        """The grid used when ``diffax.sample`` is given no ``schedule``."""
        del process
        return TimeUniform()

    def check(self, process: Process, times: Array) -> None:
        """Eager checks of the grid for this solver, before anything is traced or compiled
        (values are checked only where concrete). Raises a ValueError on a problem."""
        del process, times

    def init(self, process: Process, denoiser: Denoiser, x: Array, times: Array) -> Any:
        """The initial solver state (no denoiser evaluations)."""
        del process, denoiser, x, times
        return EmptyState()

    @abc.abstractmethod
    def step(self, process: Process, denoiser: Denoiser, x: Array, state: Any,
             ctx: StepContext) -> tuple[Array, Any, Array]:
        """One step from ``ctx.t`` to ``ctx.t_next``: ``(x_next, state, nfe)``."""

    def status(self, state: Any, x: Array) -> tuple[Array, dict[str, Array]]:
        """Per-example solver status ``[B]`` (0 ok) and extra statistics, from the final state."""
        del state
        lead = jax.tree_util.tree_leaves(x)[0]
        return jnp.zeros(lead.shape[:1], jnp.int32), {}


# --------------------------------------------------------------------------------------------
# Helpers shared by the solver families.


def call(denoiser: Denoiser, x: Any, t: Array) -> Array:
    """Calls the denoiser with per-example times ``[B]``, returning the state's dtype (for a
    pytree state, its first leaf's).

    Example:
      >>> import jax.numpy as jnp
      >>> call(lambda x, t: x * t[:, None], jnp.ones((2, 3), jnp.float32), 0.5)[:, 0].tolist()
      [0.5, 0.5]
    """
    lead = jax.tree_util.tree_leaves(x)[0]
    return denoiser(x, jnp.broadcast_to(t, lead.shape[:1])).astype(lead.dtype)


def check_capability(solver: Solver, process: Any) -> None:
    """Raises a ValueError naming the solver and the process when the solver cannot run on
    the process (a declared capability, see :class:`Solver`)."""
    name, pname = type(solver).__name__, type(process).__name__
    if solver.scalar_coefficients_only and not process.scalar_coefficients:
        raise ValueError(
            f"`solver`: {name} is written with scalar alpha(t)/sigma(t) coefficients, which "
            f"the process {pname} does not have (its state is a tuple like (x, v) with matrix "
            f"coefficients); use one of SSCS(), EulerMaruyama(), Euler(), Heun() or "
            f"Adaptive().")
    if solver.state_process_only and process.scalar_coefficients:
        raise ValueError(f"`solver`: {name} runs only on a process with a (x, v) state such as "
                         f"diffax.CLD, got the process {pname}.")


def scalars(process: Process, t: Array) -> tuple[Array, Array, Array]:
    """``(alpha, sigma, log_snr)`` at a scalar time."""
    return process.alpha(t), process.sigma(t), process.log_snr(t)


def one_minus_snr_ratio(lam_t: Array, lam_s: Array) -> Array:
    """``1 - exp(lam_t - lam_s)`` for ``lam_t <= lam_s``, accurate and finite at ``-inf``.

    Example:
      >>> import jax.numpy as jnp
      >>> r = one_minus_snr_ratio(jnp.array([-jnp.inf, -1.0]), jnp.array([0.0, 0.0]))
      >>> [round(float(v), 4) for v in r]  # 1 - exp(-inf), 1 - exp(-1)
      [1.0, 0.6321]
    """
    return -jnp.expm1(jnp.minimum(lam_t - lam_s, 0.0))


def first_order_update(x: Array, denoised: Array, a_t: Array, s_t: Array, a_s: Array,
                       s_s: Array) -> Array:
    """``x_s = (sigma_s/sigma_t) x_t + (alpha_s - alpha_t sigma_s/sigma_t) D``.

    The first-order step of the probability-flow ODE in the scaled frame: DDIM with eta = 0,
    DPM-Solver-1 and flow-matching Euler. Never divides by alpha.
    """
    ratio = s_s / s_t
    return ratio * x + (a_s - a_t * ratio) * denoised


def is_zero(value: Any) -> bool:
    """True when ``value`` is a concrete zero (so a noise term can be left out statically)."""
    v = concrete_value(value)
    return v is not None and bool((v == 0).all())
