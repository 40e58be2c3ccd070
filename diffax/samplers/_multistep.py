"""Linear multistep solvers in noise prediction: DEIS (tAB), iPNDM (Zhang & Chen 2022) and
LMS (k-diffusion's linear multistep), for every process.

All three take the first-order (DDIM) step and add ``sum_j g_j (eps_j - eps_t)`` over past
noise predictions (:mod:`diffax.samplers._exponential`); they differ in the weights:

* :class:`DEIS` (tAB-DEIS, Zhang & Chen 2022, eq. 14-15): ``eps`` is interpolated by the
  Lagrange polynomial in *time* (or, with ``interpolation="log_snr"``, in the log-SNR)
  through the current and ``order - 1`` past nodes, and the
  exponential integrator's integral ``-alpha_s int e^-lam eps dlam`` is computed for each
  basis polynomial (16-point Gauss-Legendre in ``lam``; the paper integrates numerically too).
* :class:`IPNDM` (the DEIS paper's improved PNDM): the DDIM step with ``eps`` replaced by the
  Adams-Bashforth combination of the last ``order`` predictions with fixed coefficients
  (``(3, -1)/2``, ``(23, -16, 5)/12``, ``(55, -59, 37, -9)/24``), lower orders while the
  history fills; no Runge-Kutta warm start.
* :class:`LMS`: Adams-Bashforth with variable steps on ``d(x/alpha)/d(sigma/alpha) = eps``
  (EDM's frame), the Lagrange polynomial in ``sigma/alpha`` integrated exactly.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from diffax._pytree import pytree_dataclass, static_field
from diffax.samplers._base import Solver, StepContext, call, first_order_update, scalars
from diffax.samplers._exponential import (
    check_order,
    combine,
    effective_order,
    empty_history,
    gauss_legendre,
    half_log_snr,
    lagrange_weights,
    masked,
    model_output,
    pad,
    phi,
    push,
    safe_step,
    select_weights,
    t_from_half_log_snr,
)
from diffax.samplers._final_steps import as_rule, resolve
from diffax.schedules import Karras, Quadratic

__all__ = ["DEIS", "IPNDM", "LMS"]

_IPNDM = {  # weights of (eps_{-j} - eps_0), j = 1..order-1, in the DDIM step's eps
    2: (-1.0 / 2.0,),
    3: (-16.0 / 12.0, 5.0 / 12.0),
    4: (-59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}


class _NoiseMultistep(Solver):
    """Shared loop: evaluate, weigh the history, DDIM step plus corrections, push."""

    order: int
    nfe_per_step = 1
    stochastic = False
    reaches_clean_data = True  # the step to sigma = 0 is first order: x_s = alpha_s D
    max_order = 3

    def __post_init__(self):
        check_order(type(self).__name__, self.order, range(1, self.max_order + 1))
        as_rule(self.lower_order_final, type(self).__name__)

    def default_schedule(self, process):
        return Quadratic()

    def init(self, process, denoiser, x, times):
        return empty_history(x, self.order - 1)

    def _valid(self, lam):
        """Whether an output at this log-SNR can serve as an interpolation node."""
        return jnp.ones((), bool)

    def _weights(self, process, q_past: int, hist, t, lam_t, h, a_s, s_s):
        """Weights ``[q_past]`` on ``eps_j - eps_t`` for the ``q_past`` latest past nodes."""
        raise NotImplementedError

    def step(self, process, denoiser, x, hist, ctx: StepContext):
        a_t, s_t, _ = scalars(process, ctx.t)
        a_s, s_s, _ = scalars(process, ctx.t_next)
        lam_t = half_log_snr(process, ctx.t)
        h = half_log_snr(process, ctx.t_next) - lam_t
        d = call(denoiser, x, ctx.t)
        eps = model_output(x, d, a_t, s_t, noise=True)
        q = effective_order(self.order, hist.count + 1, ctx, h,
                            lower_order_final=resolve(self),
                            lam_grid=lambda: half_log_snr(process, ctx.times))
        size = hist.values.shape[0]

        def branch(n_past):
            def weights():
                if n_past == 0:
                    return jnp.zeros((size,), h.dtype)
                lam_w, h_w = safe_step(lam_t, h)
                w = self._weights(process, n_past, hist, ctx.t, lam_w, h_w, a_s, s_s)
                return pad(w, size)
            return weights

        w = masked(select_weights(q, [branch(n) for n in range(self.order)]), h)
        x_next = combine(first_order_update(x, d, a_t, s_t, a_s, s_s), eps, hist.values, w)
        hist = push(hist, eps, ctx.t, lam_t, self._valid(lam_t))
        return x_next, hist, jnp.int32(1)


@pytree_dataclass
class DEIS(_NoiseMultistep):
    """tAB-DEIS (Zhang & Chen 2022): exponential integrator with ``eps`` extrapolated by a
    polynomial in time (module docstring).

    Args:
      order: 1 to 3 (the number of ``eps`` values in the polynomial; 1 is DDIM).
      lower_order_final: ``None`` (default, :func:`~diffax.samplers.default_rule`): no
        lowering with ``interpolation="time"`` (the paper's DEIS, most accurate at full order
        on every grid measured), ``StepRatio(max_ratio=2.0)`` with
        ``"log_snr"``; ``False``, ``True`` (lower orders on the last steps of grids with fewer
        than 15 steps, diffusers' DEIS rule) or a rule of :mod:`diffax.samplers`
        (:class:`~diffax.samplers.StepRatio`, :class:`~diffax.samplers.Orders` for the order
        of every step, ...).
      interpolation: ``"time"`` (tAB-DEIS: the polynomial in ``t``) or ``"log_snr"`` (the
        polynomial in the log-SNR, as diffusers' ``DEISMultistepScheduler``'s ``logrho``).

    The default grid is :class:`~diffax.schedules.Quadratic` (the paper's quadratic time
    steps).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)), solver=DEIS(order=3),
      ...                     num_steps=10)
      >>> int(res.nfe)
      10
    """

    order: int = static_field(default=3)
    lower_order_final: Any = static_field(default=None)
    interpolation: str = static_field(default="time")

    def __post_init__(self):
        super().__post_init__()
        if self.interpolation not in ("time", "log_snr"):
            raise ValueError(f"DEIS: `interpolation` must be 'time' or 'log_snr'; got "
                             f"{self.interpolation!r}.")

    def _valid(self, lam):
        if self.interpolation == "log_snr":
            return jnp.isfinite(lam)  # a node needs a finite log-SNR
        return super()._valid(lam)

    def _weights(self, process, n_past, hist, t, lam_t, h, a_s, s_s):
        tau, gw = gauss_legendre(jnp.zeros_like(h), h)
        quad = -s_s * jnp.exp(h - tau) * gw
        if self.interpolation == "log_snr":
            nodes = jnp.concatenate([lam_t[None], hist.lam[:n_past]])
            return lagrange_weights(nodes, lam_t + tau, quad)
        nodes = jnp.concatenate([jnp.asarray(t, hist.t.dtype)[None], hist.t[:n_past]])
        at = t_from_half_log_snr(process, lam_t + tau)
        return lagrange_weights(nodes, at, quad)


@pytree_dataclass
class IPNDM(_NoiseMultistep):
    """iPNDM (Zhang & Chen 2022): the DDIM step with the Adams-Bashforth combination of the
    last ``order`` noise predictions (fixed coefficients; module docstring).

    Args:
      order: 1 to 4.
      lower_order_final: ``None`` (default: no lowering, which measured most accurate for its
        fixed weights on every grid), ``False``, ``True`` or a rule, as for :class:`DEIS`.

    The default grid is :class:`~diffax.schedules.Quadratic`, as for DEIS.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)), solver=IPNDM(),
      ...                     num_steps=10)
      >>> int(res.nfe)
      10
    """

    order: int = static_field(default=4)
    lower_order_final: Any = static_field(default=None)
    max_order = 4

    def _weights(self, process, n_past, hist, t, lam_t, h, a_s, s_s):
        ddim = -s_s * h * phi(1, h)  # sigma_s - alpha_s sigma_t / alpha_t: the weight of eps
        return ddim * jnp.asarray(_IPNDM[n_past + 1], h.dtype)


@pytree_dataclass
class LMS(_NoiseMultistep):
    """Linear multistep (Adams-Bashforth with variable steps) on the probability-flow ODE in
    EDM's frame ``d(x/alpha)/d(sigma/alpha) = eps`` (module docstring).

    Args:
      order: 1 to 4.
      lower_order_final: ``False`` (default), ``True`` or a rule, as for :class:`DEIS`.

    The default grid is :class:`~diffax.schedules.Karras` (``rho = 7``), as in k-diffusion.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.EDM(), D, jnp.ones((2, 3)), solver=LMS(),
      ...                     num_steps=10)
      >>> int(res.nfe)
      10
    """

    order: int = static_field(default=4)
    lower_order_final: Any = static_field(default=False)
    max_order = 4

    def default_schedule(self, process):
        return Karras(rho=7.0)

    def _valid(self, lam):
        return jnp.isfinite(lam)  # sigma/alpha = e^-lam must be finite to be a node

    def _weights(self, process, n_past, hist, t, lam_t, h, a_s, s_s):
        level = lambda lam: jnp.exp(-lam)  # noqa: E731 - sigma / alpha
        nodes = jnp.concatenate([level(lam_t)[None], level(hist.lam[:n_past])])
        pts, gw = gauss_legendre(level(lam_t), level(lam_t + h))
        return lagrange_weights(nodes, pts, a_s * gw)
