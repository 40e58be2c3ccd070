"""Time grids optimized for a solver, a denoiser and samples: :func:`optimize`.

It runs samplers, so it lives above them (``diffax.schedules.optimize`` is the same function).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.processes import Process
from diffax.schedules import (
    Karras,
    LogSNRUniform,
    Schedule,
    TimeUniform,
    check_num_steps,
    finite_log_snr_range,
    time_at_log_snr,
)
from diffax.typing import ArrayLike

__all__ = ["optimize"]


def optimize(process: Process, denoiser: Any, x_samples: ArrayLike, num_steps: int,
             solver: Any, *, init: Schedule | None = None, reference: Any = None,
             num_iters: int = 200, learning_rate: float = 0.05) -> np.ndarray:
    """The time grid on which ``solver`` best follows the probability-flow ODE from
    ``x_samples`` (in the spirit of "Align Your Steps", by direct optimization).

    The grid is parametrized by its log-SNR increments, ``lam_i = lam_max_noise + (lam_data -
    lam_max_noise) cumsum(softmax(theta))_i`` (end points pinned at ``t_max`` and ``t_min``;
    infinite log-SNRs replaced by the finite inset values :class:`LogSNRUniform` uses), and
    ``theta`` minimizes ``log mean (sample(solver, grid).x - x_ref)^2`` with Adam (optax),
    differentiating through the whole sampling loop. ``x_ref`` is the reference solution from
    the same ``x_samples``. The best grid seen is returned.

    Args:
      process: the forward process.
      denoiser: ``D(x, t)`` (differentiable in ``x``).
      x_samples: states at ``process.t_max``, ``[B, ...]`` (e.g.
        ``process.prior_sample(key, shape)``): the starting points whose final states are
        compared; use others to evaluate the grid.
      num_steps: steps of the grid (a Python int >= 1).
      solver: a deterministic fixed-grid solver from :mod:`diffax.samplers`.
      init: the starting grid (default: the best for ``solver`` on ``x_samples`` among its
        default schedule, :class:`LogSNRUniform`, :class:`TimeUniform` and :class:`Karras`).
      reference: the solver for the reference (default
        ``diffax.samplers.Adaptive(rtol=1e-7, atol=1e-7)`` in float64, ``1e-5`` otherwise).
      num_iters: Adam iterations.
      learning_rate: Adam's step size on ``theta``.

    Returns:
      A NumPy array of ``num_steps + 1`` decreasing times from ``t_max`` to ``t_min``: pass it
      as ``schedule=`` to :func:`diffax.sample` (with the same solver), or store
      ``grid.tolist()`` in a config.

    Raises:
      ValueError: naming the argument, for a stochastic or adaptive ``solver``, a bad
        ``num_steps`` / ``num_iters`` / ``learning_rate``, or ``x_samples`` without a batch axis.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> gm = diffax.testing.GaussianMixture(means=jnp.array([[1.0], [-1.0]]),
      ...                                     stds=jnp.array([0.2, 0.2]),
      ...                                     weights=jnp.array([0.5, 0.5]))
      >>> x = p.prior_sample(jax.random.key(0), (64, 1))
      >>> grid = diffax.schedules.optimize(p, gm.denoiser(p), x, 4,
      ...                                  diffax.samplers.DPMSolverPP(order=2), num_iters=20)
      >>> grid.shape, round(float(grid[0]), 6), round(float(grid[-1]), 6)
      ((5,), 1.0, 0.001)
    """
    import optax

    from diffax import samplers

    num_steps = check_num_steps(num_steps)
    num_iters = check_num_steps(num_iters, name="num_iters")
    if not isinstance(solver, samplers.Solver):
        raise ValueError(f"`solver` must be a diffax.samplers solver, got {solver!r}.")
    if solver.stochastic or not solver.fixed_grid:
        raise ValueError(f"`solver` must be deterministic and run on a fixed grid to have a grid "
                         f"optimized, got {solver!r}.")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be a positive number, got {learning_rate!r}.")
    x = jnp.asarray(x_samples)
    if x.ndim < 1 or x.shape[0] < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`x_samples` must be a floating-point array [B, ...], got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}.")
    dtype = x.dtype
    if reference is None:
        tol = 1e-7 if dtype == jnp.float64 else 1e-5
        reference = samplers.Adaptive(rtol=tol, atol=tol)
    if init is not None and not isinstance(init, Schedule):
        raise ValueError(f"`init` must be a diffax.schedules.Schedule, got {init!r}.")
    candidates = [init] if init is not None else [
        solver.default_schedule(process), LogSNRUniform(), TimeUniform(), Karras()]

    t_max, t_min = jnp.asarray(process.t_max, dtype), jnp.asarray(process.t_min, dtype)
    lam_lo, lam_hi = finite_log_snr_range(process, dtype)

    def logits(schedule):
        lam0 = jnp.clip(process.log_snr(schedule(process, num_steps, dtype=dtype)), lam_lo,
                        lam_hi)
        inc = jnp.maximum(jnp.diff(lam0), 1e-6 * (lam_hi - lam_lo))
        return jnp.log(inc / jnp.sum(inc))

    thetas = jnp.stack([logits(c) for c in candidates])

    def grid(theta):
        frac = jnp.cumsum(jax.nn.softmax(theta))
        lam = lam_lo + (lam_hi - lam_lo) * jnp.concatenate([jnp.zeros((1,), dtype), frac])
        ts = time_at_log_snr(process, lam[1:-1])
        return jnp.concatenate([t_max[None], ts, t_min[None]])

    @jax.jit
    def run(x, thetas):
        ref = samplers.sample(None, process, denoiser, x, solver=reference, num_steps=num_steps).x

        def loss(theta):
            out = samplers.sample(None, process, denoiser, x, solver=solver,
                                  schedule=grid(theta)).x
            return jnp.log(jnp.mean(jnp.square(out - ref)))

        start = jax.lax.map(loss, thetas)
        theta0 = thetas[jnp.argmin(jnp.where(jnp.isfinite(start), start, jnp.inf))]

        opt = optax.adam(learning_rate)

        def body(carry, _):
            theta, state, best, best_loss = carry
            value, g = jax.value_and_grad(loss)(theta)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            better = value < best_loss
            best = jnp.where(better, theta, best)
            best_loss = jnp.where(better, value, best_loss)
            updates, state = opt.update(g, state, theta)
            return (optax.apply_updates(theta, updates), state, best, best_loss), value

        init_carry = (theta0, opt.init(theta0), theta0, jnp.asarray(jnp.inf, dtype))
        (theta, _, best, best_loss), _ = jax.lax.scan(body, init_carry, None, length=num_iters)
        last = loss(theta)
        return grid(jnp.where(last < best_loss, theta, best))

    return np.asarray(run(x, thetas))
