"""Shared mathematics of the exponential-integrator and multistep solvers (DPM-Solver,
DPM-Solver++, UniPC, DEIS, iPNDM, LMS).

Everything is written in the process's own frame with the *half* log-SNR
``lam = log(alpha / sigma) = process.log_snr(t) / 2`` as the integration variable. For a step
from ``t`` to ``s`` (``h = lam_s - lam_t > 0``) the probability-flow ODE has the exact
solutions (Lu et al. 2022, eq. 3.4; Lu et al. 2022b, eq. 8)

  data prediction:  ``x_s = (sigma_s/sigma_t) x_t + sigma_s int_{lam_t}^{lam_s} e^lam D dlam``
  noise prediction: ``x_s = (alpha_s/alpha_t) x_t - alpha_s int_{lam_t}^{lam_s} e^-lam eps dlam``

With the model output ``m`` (``D`` or ``eps``) expanded around ``lam_t`` as
``sum_k m^(k) (lam - lam_t)^k / k!``, both become
``x_s = first_order + sum_{k>=1} C_k E_k`` with ``E_k = h^k m^(k)(lam_t)`` and

  data:  ``C_k = alpha_s h phi_{k+1}(-h)``,   noise: ``C_k = -sigma_s h phi_{k+1}(h)``,

``phi_1(z) = (e^z - 1)/z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!)/z``. The ``k = 0`` term of both
is the same first-order (DDIM) step, taken from :func:`first_order_update`, which never divides
by ``alpha``. The reverse SDE with data prediction (SDE-DPM-Solver++) has
``C_k = alpha_s 2h phi_{k+1}(-2h)`` around the DDPM posterior step.

Multistep solvers estimate the ``E_k`` (or integrate a Lagrange interpolant) from their
history and update with ``x_s = first_order + sum_j g_j (m_j - m_0)``: a handful of scalar
weights ``g_j`` per step, one pass over the arrays.

Where the log-SNR is infinite (``alpha = 0`` at rectified flow's ``t = 1``, ``sigma = 0`` at a
grid ending on clean data), ``h`` is infinite: such steps are first order (the exact limit of
every rule), and history entries at an infinite log-SNR carry no information in ``lam`` and
are not used by solvers that interpolate in ``lam``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffax.samplers._base import StepContext
from diffax.typing import Array

LOWER_ORDER_FINAL_BELOW = 15
"""``lower_order_final`` lowers the order of the last steps of grids with fewer steps."""


def check_order(owner: str, order: object, allowed: Sequence[int]) -> None:
    """Raises a ValueError naming ``owner``'s ``order`` unless it is an int in ``allowed``."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in allowed:
        raise ValueError(f"{owner}: `order` must be one of {', '.join(map(str, allowed))}; got "
                         f"{order!r}.")


def check_clean_order(owner: str, value: object, order: int) -> None:
    """Raises a ValueError naming ``owner``'s ``clean_order`` unless it is an int in
    ``1..order``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            1 <= value <= order):
        raise ValueError(f"{owner}: `clean_order` must be an int from 1 to order={order}; got "
                         f"{value!r}.")


def check_flags(owner: str, solver: object, names: Sequence[str]) -> None:
    """Raises a ValueError naming the first of ``names`` on ``solver`` that is not a bool."""
    for name in names:
        if not isinstance(getattr(solver, name), bool):
            raise ValueError(f"{owner}: `{name}` must be a bool, got {getattr(solver, name)!r}.")


def half_log_snr(process, t: Array) -> Array:
    """``lam = log(alpha / sigma)`` at ``t`` (DPM-Solver's lambda)."""
    return 0.5 * process.log_snr(t)


def t_from_half_log_snr(process, lam: Array) -> Array:
    """The time at which ``log(alpha / sigma) = lam``."""
    return process.t_from_log_snr(2.0 * lam)


def phi(k: int, z: Array) -> Array:
    """``phi_k(z) = sum_{n>=0} z^n / (n + k)!`` (``k >= 1``), accurate for every ``z``.

    Series for ``|z| < 1`` (no cancellation), the recurrence from ``expm1`` otherwise;
    ``phi_k(-inf) = 0``.
    """
    z = jnp.asarray(z)
    small = jnp.abs(z) < 1.0
    zs = jnp.where(small, z, 0.0)
    series = jnp.zeros_like(z)
    for n in reversed(range(20)):
        series = series * zs + 1.0 / math.factorial(n + k)
    zl = jnp.where(small, 1.0, z)
    direct = jnp.expm1(zl) / zl
    for j in range(1, k):
        direct = (direct - 1.0 / math.factorial(j)) / zl
    return jnp.where(small, series, direct)


def model_output(x: Array, d: Array, a: Array, s: Array, *, noise: bool) -> Array:
    """The solver's model output: ``D`` (data prediction) or ``eps = (x - alpha D) / sigma``."""
    if not noise:
        return d
    return (x - a * d) / jnp.where(s > 0, s, 1.0)


def masked(weights: Array, h: Array) -> Array:
    """Weights of a step, zeroed where they are not finite or the step has zero length
    (padded grids repeat ``t_min``: coinciding nodes make interpolation weights singular, but
    a zero-length step must leave the state unchanged)."""
    return jnp.where(jnp.isfinite(weights) & (h > 0), weights, 0.0)


# --------------------------------------------------------------------------------------------
# History of a multistep solver.


class History(NamedTuple):
    """The last model outputs of a multistep solver, most recent first.

    Attributes:
      values: ``[K, B, ...]`` model outputs (``D`` or ``eps``).
      t: ``[K]`` their times.
      lam: ``[K]`` their half log-SNRs ``log(alpha / sigma)``.
      count: int32 scalar, how many entries are valid (the first steps have fewer).
    """

    values: Array
    t: Array
    lam: Array
    count: Array


def empty_history(x: Array, size: int) -> History:
    size = max(size, 1)  # a zero-size history would have no entries to roll
    return History(values=jnp.zeros((size,) + x.shape, x.dtype), t=jnp.zeros((size,), x.dtype),
                   lam=jnp.zeros((size,), x.dtype), count=jnp.int32(0))


def push(history: History, value: Array, t: Array, lam: Array, valid: Array) -> History:
    """Adds ``value`` in front; ``valid = False`` empties the history (its older entries are
    not usable across that point either)."""
    size = history.values.shape[0]
    count = jnp.where(valid, jnp.minimum(history.count + 1, size), 0).astype(jnp.int32)
    lam = jnp.where(valid, lam, 0.0)  # an unused node must not put inf/NaN in gradients
    return History(values=jnp.concatenate([value[None], history.values[:-1]]),
                   t=jnp.concatenate([jnp.asarray(t, history.t.dtype)[None], history.t[:-1]]),
                   lam=jnp.concatenate([jnp.asarray(lam, history.lam.dtype)[None],
                                        history.lam[:-1]]),
                   count=count)


def safe_step(lam_t: Array, h: Array) -> tuple[Array, Array]:
    """``(lam_t, h)`` with infinite values replaced by finite ones, for computing weights: a
    step with an infinite ``h`` is first order and ignores them, but an inf in the unused
    weights would still make their gradients NaN."""
    finite = jnp.isfinite(lam_t) & jnp.isfinite(h)
    return jnp.where(finite, lam_t, 0.0), jnp.where(finite, h, 1.0)


def effective_order(order: int, available: Array, ctx: StepContext, h: Array, *,
                    lower_order_final: Any, lam_grid: Callable[[], Array] | None = None
                    ) -> Array:
    """The order a step can use: at most ``order`` and ``available`` (history + 1), at most
    the bound of the ``lower_order_final`` rule (``True``: the last steps of grids with fewer
    than 15 steps; a :mod:`~diffax.samplers._final_steps` rule, which may read the grid's half
    log-SNRs from ``lam_grid()``), and 1 where ``h`` is infinite."""
    q = jnp.minimum(jnp.int32(order), available.astype(jnp.int32))
    if lower_order_final is True:
        if ctx.num_steps < LOWER_ORDER_FINAL_BELOW:
            q = jnp.minimum(q, jnp.int32(ctx.num_steps) - ctx.index)
    elif lower_order_final not in (None, False):
        q = jnp.minimum(q, lower_order_final.cap(ctx, lam_grid() if lam_grid else None))
    q = jnp.maximum(q, 1)
    return jnp.where(jnp.isfinite(h), q, 1).astype(jnp.int32)


def combine(x_first: Array, m0: Array, values: Array, weights: Array) -> Array:
    """``x_first + sum_j weights[j] (values[j] - m0)`` (``values`` ``[K, B, ...]``)."""
    w = weights.astype(values.dtype)
    diff = values - m0[None]
    return x_first + jnp.tensordot(w, diff, axes=1)


def select_weights(q: Array, branches: Sequence[Callable[[], Array]]) -> Array:
    """``branches[q - 1]()``: scalar weights for order ``q`` (each branch returns ``[K]``)."""
    return jax.lax.switch(q - 1, list(branches))


def pad(weights: Array, size: int) -> Array:
    """Zero-pads a weight vector to ``[size]``."""
    return jnp.concatenate([weights, jnp.zeros((size - weights.shape[0],), weights.dtype)])


# --------------------------------------------------------------------------------------------
# Weights from Taylor expansions in lam (DPM-Solver, UniPC) and from Lagrange interpolation
# in any variable (DEIS, LMS).


def taylor_weights(rho: Array, coefs: Array) -> Array:
    """Weights ``g`` with ``sum_j g_j (m_j - m_0) = sum_k coefs[k-1] E_k`` where the ``E_k``
    (``k = 1..n``) are the scaled derivatives of the interpolating polynomial through
    ``(0, m_0)`` and ``(rho_j, m_j)``.

    ``rho`` ``[n]`` are the nodes' positions ``(lam_j - lam_0) / h``; exact for polynomials of
    degree ``n``: with ``V[j, k] = rho_j^k / k!``, ``E = V^-1 (m - m_0)`` and ``g = coefs V^-1``.
    """
    n = rho.shape[0]
    ks = np.arange(1, n + 1)
    fact = np.array([math.factorial(k) for k in ks], dtype=float)
    v = rho[:, None] ** ks[None, :] / fact[None, :].astype(rho.dtype)
    return coefs @ jnp.linalg.inv(v)


_GL_POINTS, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


def gauss_legendre(a: Array, b: Array) -> tuple[Array, Array]:
    """16-point Gauss-Legendre nodes and weights on ``[a, b]`` (either order)."""
    mid, half = 0.5 * (a + b), 0.5 * (b - a)
    pts = mid + half * jnp.asarray(_GL_POINTS, jnp.result_type(a))
    return pts, half * jnp.asarray(_GL_WEIGHTS, jnp.result_type(a))


def lagrange_weights(nodes: Array, at: Array, quad_weights: Array) -> Array:
    """``g_j = sum_i quad_weights[i] l_j(at[i])`` for the Lagrange basis ``l_j`` on ``nodes``
    (``[n + 1]``, the current node first), for the past nodes ``j = 1..n``: the weights of
    ``sum_j g_j (m_j - m_0)`` when ``m`` is interpolated through all ``n + 1`` nodes."""
    n1 = nodes.shape[0]
    out = []
    for j in range(1, n1):
        basis = jnp.ones_like(at)
        for k in range(n1):
            if k != j:
                basis = basis * (at - nodes[k]) / (nodes[j] - nodes[k])
        out.append(jnp.sum(quad_weights * basis))
    return jnp.stack(out)


# --------------------------------------------------------------------------------------------
# The step to clean data (sigma = 0, lam = inf) at higher order, in data prediction.


def clean_end_estimate(lam: Array, values: Array, count: Array, order: int) -> Array:
    """``D`` extrapolated to ``sigma = 0`` from the latest ``q = min(order, count)`` outputs:
    the Lagrange polynomial in ``z = sigma^2 / alpha^2 = e^(-2 lam)`` through the nodes
    ``(z_j, values[j])`` (most recent first), evaluated at ``z = 0``.

    The exact step to clean data in data prediction is ``x_0 = alpha_0 D(x_0, 0)`` (the
    integral's weight ``e^(lam - lam_s)`` concentrates at ``lam_s = inf``), so the first-order
    step uses ``D`` at the last node; along the trajectory ``D`` is smooth in ``sigma/alpha``
    with no linear term (``d x/alpha / d(sigma/alpha) = (x/alpha - D) / (sigma/alpha)`` is
    ``O(sigma/alpha)``), so the polynomial is in its square. ``order = 1`` (or ``count = 1``)
    returns ``values[0]``.
    """
    z = jnp.exp(-2.0 * jnp.where(jnp.isfinite(lam), lam, 0.0))

    def branch(q):
        def estimate():
            w = []
            for j in range(q):
                basis = jnp.ones((), z.dtype)
                for k in range(q):
                    if k != j:
                        basis = basis * z[k] / (z[k] - z[j])
                w.append(basis)
            return jnp.tensordot(jnp.stack(w).astype(values.dtype), values[:q], axes=1)
        return estimate

    q = jnp.clip(jnp.minimum(jnp.int32(order), count), 1, order)
    return jax.lax.switch(q - 1, [branch(k) for k in range(1, order + 1)])
