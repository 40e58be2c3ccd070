"""UniPC (Zhao et al. 2023): a multistep predictor (UniP) and a corrector (UniC) that reuses
the next step's evaluation, in data prediction, for every process.

In the notation of :mod:`diffax.samplers._exponential` (half log-SNR ``lam``, model output
``m = D``, exact coefficients ``C_k = alpha_s h phi_{k+1}(-h)``), with nodes at relative
positions ``rho_j = (lam_j - lam_t) / h`` and ``D_j = m_j - m_t``:

* UniP-p: ``x~_s = first(x_t -> s) + sum_j w_j D_j / rho_j`` over the ``p - 1`` previous
  nodes, with ``sum_j w_j rho_j^(k-1) = k! C_k`` for ``k = 1..p-1`` (the paper's
  ``w = B(h) a``, ``R_p a = g_p / B(h)``; exact, so ``B(h)`` cancels) — except with one node,
  where UniPC takes ``a = 1/2``: ``w = B(h)/2`` with ``B(h) = alpha_s h`` ("bh1") or
  ``alpha_s (1 - e^-h)`` ("bh2"; UniP-2 with bh2 is DPM-Solver++(2M)).
* UniC-p: after ``m_s = D(x~_s, s)`` is evaluated (the next step needs it anyway),
  ``x_s = first(x_t -> s) + sum_j w_j D_j / rho_j`` over the same previous nodes and the new
  one (``rho = 1``), ``p`` conditions (``a = 1/2`` when the new node is alone). It raises the
  order by one at no extra evaluation; the final step has no corrector.

The loop carries the predicted ``x~`` (so the state at ``t_min`` is the last prediction); the
corrected state at the last node, the order used there and the history of outputs live in
:class:`UniPCState`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from diffax._pytree import pytree_dataclass, static_field
from diffax.samplers._base import Solver, StepContext, call, first_order_update, scalars
from diffax.samplers._exponential import (
    History,
    check_clean_order,
    check_flags,
    check_order,
    clean_end_estimate,
    combine,
    effective_order,
    empty_history,
    half_log_snr,
    masked,
    pad,
    phi,
    push,
    safe_step,
    select_weights,
    taylor_weights,
)
from diffax.samplers._final_steps import as_rule, resolve
from diffax.schedules import LogSNRUniform
from diffax.typing import Array

__all__ = ["UniPC", "UniPCState"]

_VARIANTS = ("bh1", "bh2")


class UniPCState(NamedTuple):
    """UniPC's carry.

    Attributes:
      history: the last ``order`` denoiser outputs (most recent first; see ``History``).
      x_prev: the corrected state at the last node ``times[index - 1]``.
      order_prev: int32, the predictor order used from that node (0 before the first step).
    """

    history: History
    x_prev: Array
    order_prev: Array


@pytree_dataclass
class UniPC(Solver):
    """UniPC (Zhao et al. 2023) in data prediction: UniP-``order`` predictor and UniC
    corrector (see the module docstring).

    Args:
      order: the predictor's order, 1 to 3. With the corrector the method is of order
        ``order + 1`` (``convergence_order``).
      variant: ``"bh1"`` (``B(h) = h``) or ``"bh2"`` (``B(h) = 1 - e^-h``).
      corrector: apply UniC (no extra evaluations). ``order=1, corrector=False`` is DDIM.
      lower_order_final: the order on the last steps. ``None`` (default): by the step sizes,
        ``StepRatio(max_ratio=2.0, long_step=1.0)`` (:func:`~diffax.samplers.default_rule`);
        ``True``: ``min(order, steps left)`` on grids with fewer than 15 steps (the rule
        before); ``False``: never; or a rule of :mod:`diffax.samplers`
        (:class:`~diffax.samplers.StepRatio`, :class:`~diffax.samplers.StepCount`,
        :func:`~diffax.samplers.diffusers_rule`, :class:`~diffax.samplers.Orders` for the
        order of every step).
      clean_order: the order of a step that ends at clean data (``sigma = 0``): 1 (default)
        is ``x = alpha D`` (diffusers' ``final_sigmas_type="zero"``); 2 or 3 (at most
        ``order``) extrapolate ``D`` to ``sigma = 0`` through the last outputs with a
        polynomial in ``sigma^2 / alpha^2``, as :class:`~diffax.samplers.DPMSolverPP`.

    The default grid is :class:`~diffax.schedules.LogSNRUniform`, as for DPM-Solver++.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=UniPC(order=2), num_steps=10)
      >>> int(res.nfe)
      10
    """

    order: int = static_field(default=2)
    variant: str = static_field(default="bh2")
    corrector: bool = static_field(default=True)
    lower_order_final: Any = static_field(default=None)
    clean_order: int = static_field(default=1)
    nfe_per_step = 1
    stochastic = False
    reaches_clean_data = True

    def __post_init__(self):
        check_order("UniPC", self.order, (1, 2, 3))
        if self.variant not in _VARIANTS:
            raise ValueError(f"UniPC: `variant` must be 'bh1' or 'bh2'; got {self.variant!r}.")
        check_flags("UniPC", self, ("corrector",))
        check_clean_order("UniPC", self.clean_order, self.order)
        as_rule(self.lower_order_final, "UniPC")

    @property
    def convergence_order(self) -> int:
        """``order + 1`` with the corrector (the paper's order of accuracy). The warm-up steps
        use lower orders, so for ``order=3`` the measured global rate lies between 3 and 4."""
        return self.order + int(self.corrector)

    def default_schedule(self, process):
        return LogSNRUniform()

    def init(self, process, denoiser, x, times):
        return UniPCState(history=empty_history(x, self.order), x_prev=x,
                          order_prev=jnp.int32(0))

    def _b(self, a_s, h):
        if self.variant == "bh1":
            return a_s * h
        return a_s * -jnp.expm1(-h)

    def _weights(self, rho: Array, q: Array, size: int, a_s: Array, h: Array,
                 with_new: bool) -> Array:
        """Weights on ``(m_j - m_0)`` of the ``size`` history slots (and the new node last when
        ``with_new``) for order ``q``: ``q - 1`` past nodes (+ the new one)."""
        coef = [a_s * h * phi(k + 1, -h) for k in range(1, self.order + 1)]

        def branch(n_past):
            def weights():
                nodes = rho[:n_past]
                if with_new:
                    nodes = jnp.concatenate([nodes, jnp.ones((1,), rho.dtype)])
                n = nodes.shape[0]
                if n == 0:
                    w = jnp.zeros((0,), rho.dtype)
                elif n == 1:  # UniPC's a = 1/2: w = B(h) / 2 on D_1 / rho_1
                    w = (0.5 * self._b(a_s, h) / nodes[0])[None]
                else:
                    w = taylor_weights(nodes, jnp.stack(coef[:n]))
                if with_new:
                    return pad(w[:-1], size), w[-1]
                return pad(w, size), jnp.zeros((), rho.dtype)
            return weights

        w, w_new = select_weights(q, [branch(n) for n in range(self.order)])
        return masked(w, h), masked(w_new, h)

    def step(self, process, denoiser, x, state: UniPCState, ctx: StepContext):
        hist = state.history
        size = hist.values.shape[0]
        a_t, s_t, _ = scalars(process, ctx.t)
        lam_t = half_log_snr(process, ctx.t)
        d = call(denoiser, x, ctx.t)

        if self.corrector:
            # UniC for the step that ended here, from the corrected state at the last node.
            t_p = ctx.times[jnp.maximum(ctx.index - 1, 0)]
            a_p, s_p, _ = scalars(process, t_p)
            lam_p = half_log_snr(process, t_p)
            h_c = lam_t - lam_p
            use = (state.order_prev > 0) & jnp.isfinite(h_c)
            lam_p, h_c = safe_step(lam_p, h_c)
            h_c = jnp.where(use, h_c, 1.0)  # no NaN from an unused correction, nor its gradient
            q_c = jnp.maximum(state.order_prev, 1)
            rho_c = (hist.lam[1:] - lam_p) / h_c if size > 1 else jnp.zeros((0,), x.dtype)
            w, w_new = self._weights(jnp.concatenate([rho_c, jnp.zeros((1,), x.dtype)]),
                                     q_c, size, a_t, h_c, with_new=True)
            d_p = hist.values[0]
            past = jnp.concatenate([hist.values[1:], jnp.zeros_like(hist.values[:1])])
            x_c = combine(first_order_update(state.x_prev, d_p, a_p, s_p, a_t, s_t), d_p,
                          past, w)
            x_c = x_c + w_new.astype(x.dtype) * (d - d_p)
            x = jnp.where(use, x_c, x)

        # UniP from here.
        a_s, s_s, _ = scalars(process, ctx.t_next)
        h = half_log_snr(process, ctx.t_next) - lam_t
        hist = push(hist, d, ctx.t, lam_t, jnp.isfinite(lam_t))
        q = effective_order(self.order, hist.count, ctx, h,
                            lower_order_final=resolve(self),
                            lam_grid=lambda: half_log_snr(process, ctx.times))
        lam_w, h_w = safe_step(lam_t, h)
        rho = (hist.lam[1:] - lam_w) / h_w if size > 1 else jnp.zeros((0,), x.dtype)
        w, _ = self._weights(jnp.concatenate([rho, jnp.zeros((1,), x.dtype)]), q, size, a_s,
                             h_w, with_new=False)
        # w[j] weighs the history slot j + 1 (slot 0 is the current output itself).
        past = jnp.concatenate([hist.values[1:], jnp.zeros_like(hist.values[:1])])
        x_next = combine(first_order_update(x, d, a_t, s_t, a_s, s_s), d, past, w)
        if self.clean_order > 1:  # the higher-order step to sigma = 0
            est = clean_end_estimate(hist.lam, hist.values, hist.count, self.clean_order)
            x_next = jnp.where(jnp.isposinf(lam_t + h), a_s * est, x_next)
        return x_next, UniPCState(history=hist, x_prev=x, order_prev=q), jnp.int32(1)
