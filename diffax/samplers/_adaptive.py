"""Adaptive-step probability-flow ODE sampler (diffrax inside the graph, via diffax._ode)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffax import _ode
from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.parameterization import velocity_from_denoiser
from diffax.samplers._base import Solver, StepContext
from diffax.schedules import Endpoints
from diffax.typing import Array

__all__ = ["Adaptive", "AdaptiveState"]


class AdaptiveState(NamedTuple):
    """Per-example totals over the intervals solved so far, each ``[B]`` int32."""

    nfe: Array
    num_steps: Array
    status: Array


@pytree_dataclass
class Adaptive(Solver):
    """The probability-flow ODE solved with an adaptive Runge-Kutta method (diffrax, in-graph).

    Each example gets its own step sizes from its own error estimate (``per_example=True``),
    failures do not raise but are reported per example in ``SampleResult.status`` (1 =
    ``max_steps`` reached, 2 = other), and ``SampleResult.nfe`` is what was spent (the largest
    per-example count, as the batch runs together; ``stats["nfe"]`` has them all).

    By default it solves in one go from ``t_max`` to ``t_min``; ``num_steps`` does not bound
    it but sets the first step size to ``(t_max - t_min) / num_steps`` (``None``: diffrax
    chooses). Given a ``schedule``, it solves interval by interval and the trajectory holds the
    states at those times.

    The ODE's velocity is singular where ``sigma = 0``, so the grid must end where
    ``sigma > 0`` (the default ``t_min`` of every process does).

    On :class:`diffax.DiscreteVP` the velocity in ``t`` has a kink at each of its ``T`` grid
    times, so tight tolerances stall (rtol = atol = 1e-8 reaches ~6e-4 with ~20k evaluations);
    for a tight reference there, :func:`diffax.testing.log_snr_reference` integrates in the
    log-SNR, where the same ODE is smooth.

    Args:
      rtol, atol: tolerances of the PID step-size controller.
      method: ``"dopri5"`` or ``"tsit5"``.
      max_steps: the most step attempts per example and interval.
      per_example: error control per example (True) or over the whole batch (False).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=Adaptive(rtol=1e-5, atol=1e-5), num_steps=10)
      >>> res.status.tolist()
      [0, 0]
    """

    rtol: Any = 1e-5
    atol: Any = 1e-5
    method: str = static_field(default="dopri5")
    max_steps: int = static_field(default=4096)
    per_example: bool = static_field(default=True)
    order = 5
    nfe_per_step = 6  # per step attempt (7 stages, first-same-as-last)
    stochastic = False
    fixed_grid = False
    scalar_coefficients_only = False  # on a StateProcess (CLD): process.probability_flow

    def __post_init__(self):
        if self.method not in _ode.METHODS:
            raise ValueError(f"Adaptive: `method` must be one of "
                             f"{', '.join(map(repr, sorted(_ode.METHODS)))}; got {self.method!r}.")
        for name in ("rtol", "atol"):
            v = concrete_value(getattr(self, name))
            if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
                raise ValueError(f"Adaptive: `{name}` must be positive, got "
                                 f"{getattr(self, name)!r}.")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, np.integer)) \
                or self.max_steps < 1:
            raise ValueError(f"Adaptive: `max_steps` must be an int >= 1, got "
                             f"{self.max_steps!r}.")

    def default_schedule(self, process):
        return Endpoints()

    def check(self, process, times):
        v = concrete_value(times)
        if v is None or not process.scalar_coefficients:
            return
        try:
            s = concrete_value(process.sigma(v[-1]))
        except ValueError:
            return
        if s is not None and float(s) <= 0:
            raise ValueError(f"Adaptive: the grid ends at t={float(v[-1]):g} where sigma = 0 and "
                             f"the probability-flow velocity is singular; end at a time with "
                             f"sigma > 0 (e.g. the process's default t_min).")

    def init(self, process, denoiser, x, times):
        lead = jax.tree_util.tree_leaves(x)[0]
        zeros = jnp.zeros(lead.shape[:1], jnp.int32)
        return AdaptiveState(nfe=zeros, num_steps=zeros, status=zeros)

    def step(self, process, denoiser, x, state: AdaptiveState, ctx: StepContext):
        if process.scalar_coefficients:
            velocity = velocity_from_denoiser(process, denoiser)
        else:
            def velocity(u, t):
                return process.probability_flow(u, denoiser(u, t), t)
        dt0 = None
        if ctx.requested_steps is not None:
            dt0 = (ctx.times[0] - ctx.times[-1]) / ctx.requested_steps
        sol = _ode.integrate(lambda t, y: velocity(y, t), x, t0=ctx.t, t1=ctx.t_next,
                             rtol=self.rtol, atol=self.atol, method=self.method,
                             max_steps=self.max_steps, dt0=dt0, per_example=self.per_example,
                             where="Adaptive")
        state = AdaptiveState(nfe=state.nfe + sol.nfe, num_steps=state.num_steps + sol.num_steps,
                              status=jnp.maximum(state.status, sol.status))
        return sol.y, state, jnp.max(sol.nfe)

    def status(self, state: AdaptiveState, x):
        return state.status, {"nfe": state.nfe, "num_steps": state.num_steps}
