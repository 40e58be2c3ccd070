"""The sampling loop: one ``lax.scan`` over the time grid runs any solver.

No Python loop over steps, no host round-trip and no ``jit`` inside: callers jit
:func:`sample` (with the process, the schedule array and the inputs as arguments, so new
numbers do not recompile), and compile time does not depend on ``num_steps``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_denoiser_accepts, check_finite_examples, check_key
from diffax._pytree import concrete_value
from diffax.processes import Process, StateProcess
from diffax.samplers._base import (
    NoiseFn,
    Solver,
    StepContext,
    call,
    check_capability,
    default_noise,
)
from diffax.schedules import Schedule, check_num_steps, resolve
from diffax.typing import Array, ArrayLike, Denoiser, PRNGKey

__all__ = ["sample", "SampleResult", "check_inputs"]


STATUS_NONFINITE = 3
"""``SampleResult.status`` of an example whose final state has a NaN or infinite entry."""


class SampleResult(NamedTuple):
    """What :func:`sample` returns.

    Attributes:
      x: the final state ``[B, ...]``: the state at the grid's last time (``p.t_min`` by
        default), or its denoised value with ``denoise_final=True``.
      nfe: int32 scalar, the denoiser evaluations spent, as calls on the whole batch (for
        :class:`~diffax.samplers.Adaptive`, per interval of the grid the largest per-example
        count, since the batch runs together; ``stats["nfe"]`` has each example's own).
      times: the grid ``[num_steps + 1]`` the loop ran over.
      trajectory: with ``return_trajectory=True``, the states at ``times``,
        ``[num_steps + 1, B, ...]`` (``trajectory[0]`` is ``x_init``); otherwise ``None``.
      status: int32 ``[B]``, 0 where the solver succeeded; adaptive solvers report 1 =
        ``max_steps`` reached and 2 = another failure; any solver reports
        :data:`STATUS_NONFINITE` (3) where the final state has a NaN or infinite entry (e.g.
        the denoiser returned NaN) and no other failure was reported.
      stats: solver-specific per-example statistics (``Adaptive``: ``"nfe"`` and
        ``"num_steps"``, each ``[B]``).
    """

    x: Array
    nfe: Array
    times: Array
    trajectory: Array | None = None
    status: Array | None = None
    stats: dict[str, Array] | None = None


def mark_nonfinite(status: Array, x: Array) -> Array:
    """``status`` with :data:`STATUS_NONFINITE` where it is 0 and ``x`` ``[B, ...]`` (or a
    pytree of such leaves, e.g. CLD's ``(x, v)``) has a NaN or infinite entry.

    Example:
      >>> import jax.numpy as jnp
      >>> mark_nonfinite(jnp.zeros(2, jnp.int32), jnp.array([[0.0], [jnp.nan]])).tolist()
      [0, 3]
    """
    finite = functools.reduce(jnp.logical_and, [
        jnp.all(jnp.isfinite(leaf).reshape(leaf.shape[0], -1), axis=-1)
        for leaf in jax.tree_util.tree_leaves(x)])
    return jnp.where((status == 0) & ~finite, STATUS_NONFINITE, status).astype(jnp.int32)


def check_inputs(key, process, denoiser, x_init, solver, noise_fn):
    """Raises a ValueError naming the argument of :func:`sample` that is invalid.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> check_inputs(None, diffax.VP(), lambda x, t: x, jnp.zeros((2, 3)), diffax.samplers.DDIM,
      ...              None)
      Traceback (most recent call last):
      ...
      ValueError: `solver` must be a solver object, got the class DDIM; did you mean DDIM()?
    """
    if isinstance(solver, type) and issubclass(solver, Solver):
        raise ValueError(f"`solver` must be a solver object, got the class {solver.__name__}; "
                         f"did you mean {solver.__name__}()?")
    if not isinstance(solver, Solver):
        raise ValueError(f"`solver` must be a diffax.samplers solver (e.g. "
                         f"diffax.samplers.Euler()), got {solver!r}.")
    if not isinstance(process, (Process, StateProcess)):
        raise ValueError(f"`process` must be a diffax.Process, got {type(process).__name__}.")
    if not callable(denoiser):
        raise ValueError(f"`denoiser` must be a function D(x, t), got {denoiser!r}.")
    check_capability(solver, process)
    if not process.scalar_coefficients:
        # A pytree state (e.g. CLD's (x, v)): the process checks its own structure.
        leaves = process.check_state(x_init, name="x_init")
        check_key(key)
        for i, leaf in enumerate(leaves):
            check_finite_examples(leaf, name=f"x_init[{i}]")
    else:
        if not hasattr(x_init, "shape") or not hasattr(x_init, "dtype"):
            raise ValueError(f"`x_init` must be an array [B, ...], got "
                             f"{type(x_init).__name__}.")
        if len(x_init.shape) < 1 or x_init.shape[0] < 1:
            raise ValueError(f"`x_init` must have a non-empty batch axis [B, ...], got shape "
                             f"{tuple(x_init.shape)}.")
        if not jnp.issubdtype(x_init.dtype, jnp.floating):
            raise ValueError(f"`x_init` must be a floating-point array, got dtype "
                             f"{x_init.dtype}.")
        check_key(key)
        check_finite_examples(x_init, name="x_init")
    if solver.stochastic and key is None:
        raise ValueError(f"`key` is None, but {type(solver).__name__} is stochastic: pass a "
                         f"PRNG key (jax.random.key(seed)).")
    if noise_fn is not None and not callable(noise_fn):
        raise ValueError(f"`noise_fn` must be a function noise_fn(key, t, t_next, shape), got "
                         f"{noise_fn!r}.")


def check_clean_end(solver: Solver, process: Process, times: Array) -> None:
    """Raises a ValueError when a grid ends below ``t_min`` (at clean data) for a solver that
    cannot take that step (values checked only when concrete)."""
    v, lo = concrete_value(times), concrete_value(process.t_min)
    if v is None or lo is None or solver.reaches_clean_data:
        return
    if float(v[-1]) < float(lo) - 1e-6 * max(1.0, abs(float(lo))):
        raise ValueError(
            f"`schedule` ends at t={float(v[-1]):g}, below t_min={float(lo):g} (clean data), "
            f"which {type(solver).__name__} cannot step to; solvers that can: DDIM, "
            f"DDPM, DPMSolver, DPMSolverPP, UniPC, DEIS, IPNDM, LMS.")


def sample(
    key: PRNGKey | None,
    process: Process,
    denoiser: Denoiser,
    x_init: ArrayLike,
    *,
    solver: Solver,
    num_steps: int | None = None,
    schedule: Schedule | ArrayLike | None = None,
    denoise_final: bool = False,
    noise_fn: NoiseFn | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Runs ``solver`` from ``x_init`` at the first grid time (``process.t_max``) to the last
    (``process.t_min``).

    Args:
      key: a PRNG key; used by stochastic solvers (may be ``None`` for deterministic ones).
        Step ``i`` uses ``jax.random.fold_in(key, i)``.
      process: the forward process the denoiser belongs to.
      denoiser: ``D(x, t) -> E[x0 | x_t = x]`` with ``x`` ``[B, ...]`` and ``t`` ``[B]``
        (see :func:`diffax.as_denoiser`).
      x_init: the state at the first grid time, ``[B, ...]`` (e.g.
        ``process.prior_sample(key, shape)``); for a :class:`diffax.processes.StateProcess`
        such as :class:`diffax.CLD` the process's state, a tuple ``(x, v)`` of arrays
        ``[B, ...]`` (the batch axis leads on every leaf), and ``SampleResult.x`` is then such a
        tuple too (or ``D(u, t_min)``, shaped like ``x``, with ``denoise_final=True``).
      solver: a solver object from :mod:`diffax.samplers`.
      num_steps: the number of steps (a Python int >= 1). Optional when ``schedule`` is an
        explicit array. Adaptive solvers choose their own steps and use it only for the first
        step size.
      schedule: a :mod:`diffax.schedules` object (default: the solver's
        ``default_schedule(process)``), or an explicit strictly decreasing array of
        ``num_steps + 1`` times in ``[t_min, t_max]`` (for solvers with
        ``reaches_clean_data``, such as DDIM, DPMSolverPP and UniPC, the last time may also
        be one below ``t_min`` where ``sigma = 0``, e.g. ``t = 0``: the grid then ends at clean
        data and no ``denoise_final`` is needed).
      denoise_final: apply the denoiser once at the last time and return ``D(x, t_min)``
        (one more evaluation). Off by default: ``x`` is then the state at ``t_min``.
      noise_fn: ``noise_fn(key, t, t_next, shape)`` drawing the standard normal noise of
        stochastic steps (default ``jax.random.normal``); lets a caller drive a sampler with
        given noise.
      return_trajectory: also return the states at every grid time.

    Returns:
      A :class:`SampleResult` with ``x``, ``nfe``, ``times`` and, on request, ``trajectory``.

    Raises:
      ValueError: before any compilation, naming the argument: ``x_init`` not accepted by the
        denoiser, not shaped ``[B, ...]``, not floating-point, or (when concrete) with NaN or
        infinite entries; ``num_steps`` < 1 or not an int; a ``schedule``
        of the wrong length, not decreasing, or outside ``[t_min, t_max]``; a missing ``key``
        for a stochastic solver.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> gm = diffax.testing.GaussianMixture(means=jnp.array([[1.0, -1.0]]),
      ...                                     stds=jnp.array([0.5]), weights=jnp.array([1.0]))
      >>> x_init = p.prior_sample(jax.random.key(0), (8, 2))
      >>> run = jax.jit(lambda p, x: diffax.sample(None, p, gm.denoiser(p), x,
      ...                                          solver=diffax.samplers.Heun(), num_steps=10))
      >>> res = run(p, x_init)
      >>> res.x.shape, int(res.nfe)
      ((8, 2), 20)
    """
    check_inputs(key, process, denoiser, x_init, solver, noise_fn)
    for name, flag in (("denoise_final", denoise_final), ("return_trajectory",
                                                          return_trajectory)):
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"`{name}` must be True or False, got {flag!r}.")
    if process.scalar_coefficients:
        x_init = jnp.asarray(x_init)
    else:
        x_init = tuple(process.check_state(x_init, name="x_init"))
    dtype = jax.tree_util.tree_leaves(x_init)[0].dtype
    if num_steps is not None:
        num_steps = check_num_steps(num_steps)
    if schedule is None:
        schedule = solver.default_schedule(process)
    if isinstance(schedule, Schedule):
        if num_steps is None and solver.fixed_grid:
            raise ValueError("`num_steps` is required unless `schedule` is an explicit array of "
                             "times.")
        times = schedule(process, num_steps if num_steps is not None else 1, dtype=dtype)
    else:
        # Solvers that pick their own steps take an explicit grid of any length (the times at
        # which to report the state); `num_steps` then only sets their first step size.
        times = resolve(schedule, process, num_steps if solver.fixed_grid else None,
                        dtype=dtype, clean_end=solver.reaches_clean_data)
    check_clean_end(solver, process, times)
    solver.check(process, times)
    rule = getattr(solver, "lower_order_final", None)
    if hasattr(rule, "check"):
        rule.check(int(times.shape[0]) - 1)
    grid_steps = int(times.shape[0]) - 1
    check_denoiser_accepts(denoiser, x_init, name="x_init")
    cast = lambda tree: jax.tree_util.tree_map(lambda a: a.astype(dtype), tree)  # noqa: E731

    draw = noise_fn if noise_fn is not None else default_noise

    def noise(k, t, t_next, shape):
        return jnp.asarray(draw(k, t, t_next, shape)).astype(dtype)

    state = solver.init(process, denoiser, x_init, times)

    def body(carry, xs):
        x, state, nfe = carry
        i, t, t_next = xs
        step_key = None if key is None else jax.random.fold_in(key, i)
        ctx = StepContext(index=i, t=t, t_next=t_next, times=times, key=step_key,
                          num_steps=grid_steps,
                          requested_steps=num_steps,
                          noise_fn=noise, denoise_final=bool(denoise_final))
        x_next, state, n = solver.step(process, denoiser, x, state, ctx)
        x_next = cast(x_next)
        return (x_next, state, nfe + jnp.asarray(n, jnp.int32)), (
            x_next if return_trajectory else None)

    xs = (jnp.arange(grid_steps, dtype=jnp.int32), times[:-1], times[1:])
    (x, state, nfe), ys = jax.lax.scan(body, (x_init, state, jnp.int32(0)), xs)
    trajectory = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], axis=0),
                                        x_init, ys) if return_trajectory else None
    if denoise_final:
        x = call(denoiser, x, times[-1])
        nfe = nfe + 1
    status, stats = solver.status(state, x)
    status = mark_nonfinite(status, x)
    return SampleResult(x=x, nfe=nfe, times=times, trajectory=trajectory, status=status,
                        stats=stats)
