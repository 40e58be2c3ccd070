"""In-graph adaptive ODE integration with per-example error control (diffrax inside jit).

Shared by the adaptive probability-flow sampler and the likelihood: one place that turns a
batched vector field into a diffrax solve, counts the evaluations it spent and reports failures
as a status instead of raising from inside a compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_positive
from diffax.typing import Array, PyTree

__all__ = ["ODESolution", "integrate", "STATUS_OK", "STATUS_MAX_STEPS", "STATUS_FAILED",
           "METHODS"]

STATUS_OK = 0
"""The solve reached ``t1`` within tolerance."""
STATUS_MAX_STEPS = 1
"""The solve stopped after ``max_steps`` steps before reaching ``t1``; its output is not valid."""
STATUS_FAILED = 2
"""Any other failure (e.g. a step size that underflowed or a non-finite state)."""

METHODS: dict[str, Callable[[], diffrax.AbstractAdaptiveSolver]] = {
    "dopri5": diffrax.Dopri5,
    "tsit5": diffrax.Tsit5,
}
# Both are 7-stage explicit Runge-Kutta methods with the first-same-as-last property: every step
# attempt (accepted or rejected) evaluates the vector field 6 times.
_EVALS_PER_STEP = 6


class ODESolution(NamedTuple):
    """Result of :func:`integrate`.

    Attributes:
      y: the state at ``t1`` (a pytree like ``y0``); not valid where ``status != 0``.
      nfe: ``[B]`` vector-field evaluations spent on each example.
      num_steps: ``[B]`` step attempts (accepted and rejected) of each example.
      status: ``[B]`` int32: 0 ok, 1 ``max_steps`` reached, 2 other failure.
    """

    y: PyTree
    nfe: Array
    num_steps: Array
    status: Array


def _status(result: Any) -> Array:
    ok = result == diffrax.RESULTS.successful
    max_steps = result == diffrax.RESULTS.max_steps_reached
    return jnp.where(ok, STATUS_OK, jnp.where(max_steps, STATUS_MAX_STEPS, STATUS_FAILED)
                     ).astype(jnp.int32)


def integrate(
    fn: Callable[[Array, PyTree], PyTree],
    y0: PyTree,
    *,
    t0: Any,
    t1: Any,
    rtol: float,
    atol: float,
    method: Literal["dopri5", "tsit5"] = "dopri5",
    max_steps: int = 4096,
    dt0: Any = None,
    per_example: bool = True,
    args: PyTree = None,
    where: str = "integrate",
    norm: Callable[[PyTree], Array] | None = None,
) -> ODESolution:
    """Solves ``dy/dt = fn(t, y)`` from ``t0`` to ``t1`` (either direction) inside the graph.

    Args:
      fn: the vector field ``fn(t, y)`` (or ``fn(t, y, args)`` when ``args`` is given); ``y``
        is a pytree of arrays with a leading batch axis ``[B, ...]`` and ``t`` is ``[B]``, and
        it returns a pytree like ``y``. Examples must not interact: with ``per_example`` each
        call sees a batch of one, so per-example constants (e.g. fixed Hutchinson probes)
        belong in ``args``, never in a closure.
      y0: initial state at ``t0``.
      t0: start time (scalar).
      t1: end time (scalar); may be smaller than ``t0``.
      rtol: relative tolerance of the PID step-size controller.
      atol: absolute tolerance.
      method: ``"dopri5"`` or ``"tsit5"`` (both 5th order with an embedded 4th-order estimate).
      max_steps: the most step attempts per solve; reaching it sets ``status`` to 1.
      dt0: first step size (signed or not); ``None`` lets diffrax choose it.
      per_example: if True each example is solved with its own step sizes (the solve is
        vmapped over the batch, so an example's accuracy never depends on the others); if False
        one solve advances the whole batch with a shared step size and a norm over all of it.
      args: optional pytree of per-example constants with leading batch axis ``[B, ...]``,
        passed to ``fn`` sliced like ``y``; they take no part in error control.
      where: the name used in error messages.
      norm: the norm of the scaled error estimate ``error / (atol + rtol * |y|)`` that the
        step-size controller compares with 1; ``None`` is diffrax's RMS norm over every
        component of the state. With ``per_example`` it sees one example's state (no batch
        axis); otherwise the whole batch.

    Returns:
      An :class:`ODESolution`.

    Example:
      >>> import jax.numpy as jnp
      >>> from diffax._ode import integrate
      >>> sol = integrate(lambda t, y: -y, jnp.ones((3, 2)), t0=0.0, t1=1.0,
      ...                 rtol=1e-6, atol=1e-6)
      >>> bool(jnp.allclose(sol.y, jnp.exp(-1.0), atol=1e-5)), sol.status.tolist()
      (True, [0, 0, 0])
    """
    if method not in METHODS:
        raise ValueError(f"{where}: `method` must be one of {sorted(METHODS)}, got {method!r}.")
    check_positive("rtol", rtol, where)
    check_positive("atol", atol, where)
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"{where}: `max_steps` must be a positive integer, got {max_steps!r}.")
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
        raise ValueError(f"{where}: the state must be arrays with a leading batch axis.")
    batch = leaves[0].shape[0]
    dtype = jnp.result_type(*leaves)
    t0 = jnp.asarray(t0, dtype)
    t1 = jnp.asarray(t1, dtype)
    if dt0 is not None:
        dt0 = jnp.abs(jnp.asarray(dt0, dtype)) * jnp.sign(t1 - t0)
    solver = METHODS[method]()
    controller = diffrax.PIDController(rtol=rtol, atol=atol,
                                       **({} if norm is None else {"norm": norm}))
    kwargs = dict(stepsize_controller=controller, saveat=diffrax.SaveAt(t1=True),
                  max_steps=int(max_steps), throw=False)

    call = fn if args is not None else (lambda t, y, _: fn(t, y))

    if per_example:
        def one(y, a):
            def vf(t, y1, a1):
                add_batch = lambda tree: jax.tree_util.tree_map(lambda v: v[None], tree)  # noqa: E731
                out = call(jnp.reshape(t, (1,)).astype(dtype), add_batch(y1), add_batch(a1))
                return jax.tree_util.tree_map(lambda v: v[0], out)

            sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), solver, t0, t1, dt0, y, args=a,
                                      **kwargs)
            return (jax.tree_util.tree_map(lambda v: v[0], sol.ys),
                    sol.stats["num_steps"], _status(sol.result))

        if batch == 1:  # a while loop under vmap selects its whole state every step: skip it
            take = lambda tree: jax.tree_util.tree_map(lambda v: v[0], tree)  # noqa: E731
            y, steps, status = jax.tree_util.tree_map(lambda v: jnp.asarray(v)[None],
                                                      one(take(y0), take(args)))
        else:
            y, steps, status = jax.vmap(one)(y0, args)
    else:
        def vf(t, y, a):
            return call(jnp.broadcast_to(t, (batch,)).astype(dtype), y, a)

        sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), solver, t0, t1, dt0, y0, args=args,
                                  **kwargs)
        y = jax.tree_util.tree_map(lambda a: a[0], sol.ys)
        steps = jnp.broadcast_to(sol.stats["num_steps"], (batch,))
        status = jnp.broadcast_to(_status(sol.result), (batch,))
    steps = steps.astype(jnp.int32)
    # One evaluation at t0, then 6 per step attempt; tests/test_ode.py counts them for real.
    nfe = 1 + _EVALS_PER_STEP * steps
    return ODESolution(y=y, nfe=nfe, num_steps=steps, status=status)
