"""DPM-Solver (Lu et al. 2022, noise prediction) and DPM-Solver++ (Lu et al. 2022b, data
prediction, with the SDE variants), singlestep and multistep, for every process.

Derived in :mod:`diffax.samplers._exponential`: with ``h = lam_s - lam_t`` in the half log-SNR
``lam = log(alpha/sigma)``, the model output ``m`` (``eps`` or ``D``) and the exact
coefficients ``C_k`` (data: ``alpha_s h phi_{k+1}(-h)``, noise: ``-sigma_s h phi_{k+1}(h)``),

* order 1 is the DDIM step (identical to :class:`~diffax.samplers.Euler` for both);
* singlestep order 2 (Lu et al. 2022 Alg. 1, and DPM-Solver++(2S), ``r1 = 1/2``):
  ``u = first(x_t -> s1)`` at ``lam_s1 = lam_t + r1 h``,
  ``x_s = first(x_t -> s) + C_0 / (2 r1) (m(u, s1) - m_t)``;
* singlestep order 3 (Lu et al. 2022 Alg. 2, ``r1 = 1/3``, ``r2 = 2/3``):
  ``u1 = first(x_t -> s1)``, ``u2 = first(x_t -> s2) + (r2/r1) C_1(s2, r2 h) (m(u1) - m_t)``,
  ``x_s = first(x_t -> s) + C_1(s, h) / r2 (m(u2) - m_t)``;
* multistep order 2 (DPM-Solver++(2M), Lu et al. 2022b Alg. 2; the same form in noise
  prediction): ``x_s = first + C_0 / 2 (m_t - m_prev) / r``, ``r = h_prev / h``;
* multistep order 3 (3M): ``x_s = first + C_1 E_1 + C_2 E_2`` with ``E_k ~ h^k m^(k)`` from the
  quadratic through the last three outputs (exact Taylor coefficients);
* SDE-DPM-Solver++ (``sde=True``, data prediction, multistep): the reverse SDE integrated
  exactly in its linear part, ``x_s = (sigma_s/sigma_t) e^-h x_t + alpha_s (1 - e^-2h) D_t
  + sigma_s sqrt(1 - e^-2h) z`` (the DDPM posterior step) plus ``C_0/2 E_1`` (2M) or
  ``C_1 E_1 + C_2 E_2`` with ``C_k = alpha_s 2h phi_{k+1}(-2h)`` (3M).
* ``method="adaptive"`` (DPMSolver only; Lu et al. 2022 Alg. 4, DPM-Solver-12/-23): inside
  each grid interval, steps in ``lam`` chosen by comparing the order ``k`` and ``k - 1``
  singlestep results, which share their evaluations.

``lower_order_final``: by default (``None``) the multistep methods lower the order near the
data end by the step sizes, for every ``N`` (DPM-Solver++: ``StepRatio(max_ratio=2.0,
long_step=1.0)``; DPM-Solver: ``StepRatio(max_ratio=2.0)``; see
:func:`~diffax.samplers.default_rule`) and the singlestep ones use ``True``: on grids with
fewer than 15 steps the last steps use order ``min(order, steps left)`` (DPM-Solver-fast's
order pattern ``[3, ..., 3, 2, 1]``); it also takes a rule object from
:mod:`diffax.samplers._final_steps` (``StepRatio``, ``StepCount``, ``Orders``: per-step
orders).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.samplers._base import (
    Solver,
    StepContext,
    call,
    first_order_update,
    one_minus_snr_ratio,
    scalars,
)
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
    model_output,
    pad,
    phi,
    push,
    safe_step,
    select_weights,
    t_from_half_log_snr,
    taylor_weights,
)
from diffax.samplers._final_steps import as_rule, resolve
from diffax.schedules import Endpoints, LogSNRUniform
from diffax.typing import Array

__all__ = ["DPMSolver", "DPMSolverPP", "DPMSolverAdaptiveState"]

_METHODS = ("singlestep", "multistep", "adaptive")


class DPMSolverAdaptiveState(NamedTuple):
    """Per-batch totals of the adaptive method: evaluations and accepted/rejected steps."""

    nfe: Array
    num_steps: Array
    num_rejected: Array
    status: Array


class _DPMBase(Solver):
    """Shared singlestep/multistep machinery; subclasses fix the frame."""

    order: int
    method: str
    lower_order_final: bool

    noise_prediction = False  # the model output is eps (True) or D (False)

    # ---- frame ------------------------------------------------------------------------------

    @property
    def _sde(self) -> bool:
        return False

    def _coef(self, k: int, a_s: Array, s_s: Array, h: Array) -> Array:
        """``C_k``: the exact weight of ``E_k = h^k m^(k)`` in a step of length ``h`` to ``s``."""
        if self.noise_prediction:
            return -s_s * h * phi(k + 1, h)
        if self._sde:
            return a_s * 2.0 * h * phi(k + 1, -2.0 * h)
        return a_s * h * phi(k + 1, -h)

    def _model(self, x, d, a, s):
        return model_output(x, d, a, s, noise=self.noise_prediction)

    # ---- Solver interface --------------------------------------------------------------------

    @property
    def nfe_per_step(self) -> int:  # type: ignore[override]
        return self.order if self.method == "singlestep" else 1

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self._sde

    @property
    def reaches_clean_data(self) -> bool:  # type: ignore[override]
        return self.method != "adaptive"

    def default_schedule(self, process):
        return LogSNRUniform()

    def init(self, process, denoiser, x, times):
        if self.method == "multistep":
            return empty_history(x, self.order - 1)
        return super().init(process, denoiser, x, times)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        if self.method == "multistep":
            return self._multistep(process, denoiser, x, state, ctx)
        x_next, nfe = self._singlestep(process, denoiser, x, ctx)
        return x_next, state, nfe

    # ---- multistep ---------------------------------------------------------------------------

    def _base(self, x, d, ctx, a_t, s_t, a_s, s_s, lam_t, lam_s):
        """The first-order step: DDIM, or for the SDE the DDPM posterior draw."""
        if not self._sde:
            return first_order_update(x, d, a_t, s_t, a_s, s_s)
        decay = jnp.exp(jnp.minimum(lam_t - lam_s, 0.0))  # e^-h
        var = one_minus_snr_ratio(2.0 * lam_t, 2.0 * lam_s)  # 1 - e^-2h
        mean = (s_s / s_t) * decay * x + a_s * var * d
        return mean + s_s * jnp.sqrt(var) * ctx.noise(ctx.key, x.shape)

    def _multistep(self, process, denoiser, x, hist: History, ctx: StepContext):
        a_t, s_t, _ = scalars(process, ctx.t)
        a_s, s_s, _ = scalars(process, ctx.t_next)
        lam_t, lam_s = half_log_snr(process, ctx.t), half_log_snr(process, ctx.t_next)
        h = lam_s - lam_t
        d = call(denoiser, x, ctx.t)
        m0 = self._model(x, d, a_t, s_t)
        q = effective_order(self.order, hist.count + 1, ctx, h,
                            lower_order_final=resolve(self),
                            lam_grid=lambda: half_log_snr(process, ctx.times))
        size = hist.values.shape[0]
        lam_w, h_w = safe_step(lam_t, h)
        rho = (hist.lam - lam_w) / h_w  # past nodes, negative

        def order1():
            return jnp.zeros((size,), h.dtype)

        def order2():  # DPM-Solver++(2M): C_0/2 E_1, E_1 = (m_1 - m_0) / rho_1
            return pad((0.5 * self._coef(0, a_s, s_s, h_w) / rho[0])[None], size)

        def order3():
            coefs = jnp.stack([self._coef(1, a_s, s_s, h_w), self._coef(2, a_s, s_s, h_w)])
            return pad(taylor_weights(rho[:2], coefs), size)

        weights = masked(select_weights(q, [order1, order2, order3][:self.order]), h)
        x_first = self._base(x, d, ctx, a_t, s_t, a_s, s_s, lam_t, lam_s)
        x_next = combine(x_first, m0, hist.values, weights)
        if getattr(self, "clean_order", 1) > 1:  # DPMSolverPP's higher-order step to sigma = 0
            est = clean_end_estimate(jnp.concatenate([lam_t[None], hist.lam]),
                                     jnp.concatenate([m0[None], hist.values]),
                                     hist.count + 1, self.clean_order)
            x_next = jnp.where(jnp.isposinf(lam_s), a_s * est, x_next)
        hist = push(hist, m0, ctx.t, lam_t, jnp.isfinite(lam_t))
        return x_next, hist, jnp.int32(1)

    # ---- singlestep --------------------------------------------------------------------------

    def _singlestep(self, process, denoiser, x, ctx: StepContext):
        a_t, s_t, _ = scalars(process, ctx.t)
        lam_t, lam_s = half_log_snr(process, ctx.t), half_log_snr(process, ctx.t_next)
        h = lam_s - lam_t
        d = call(denoiser, x, ctx.t)
        q = effective_order(self.order, jnp.int32(self.order), ctx, h,
                            lower_order_final=resolve(self),
                            lam_grid=lambda: half_log_snr(process, ctx.times))
        x_next, extra = singlestep_update(self, process, denoiser, x, d, ctx.t, ctx.t_next, q)
        return x_next, 1 + extra


def singlestep_stages(solver: _DPMBase, process, denoiser, x, d, t, t_next, *, r1: float,
                      third: bool):
    """The singlestep results from ``t`` to ``t_next`` given ``d = D(x, t)``: the first-order
    step, DPM-Solver-2 with its stage at ``r1``, and with ``third`` DPM-Solver-3 (stages at
    ``r1`` and ``2/3``; otherwise ``None``). Their stages are shared."""
    a_t, s_t, _ = scalars(process, t)
    a_s, s_s, _ = scalars(process, t_next)
    lam_t, lam_s = half_log_snr(process, t), half_log_snr(process, t_next)
    h = lam_s - lam_t
    m0 = solver._model(x, d, a_t, s_t)
    x_first = first_order_update(x, d, a_t, s_t, a_s, s_s)

    def stage(r, correction=None):
        tm = t_from_half_log_snr(process, lam_t + r * h)
        a_m, s_m, _ = scalars(process, tm)
        u = first_order_update(x, d, a_t, s_t, a_m, s_m)
        if correction is not None:
            u = u + correction(a_m, s_m)
        return solver._model(u, call(denoiser, u, tm), a_m, s_m)

    m1 = stage(r1)
    c2 = jnp.where(h > 0, solver._coef(0, a_s, s_s, h) / (2.0 * r1), 0.0)
    second = x_first + c2 * (m1 - m0)
    if not third:
        return x_first, second, None
    r2 = 2.0 / 3.0
    m2 = stage(r2, lambda a_m, s_m: (r2 / r1) * solver._coef(1, a_m, s_m, r2 * h) * (m1 - m0))
    c3 = jnp.where(h > 0, solver._coef(1, a_s, s_s, h) / r2, 0.0)
    return x_first, second, x_first + c3 * (m2 - m0)


def singlestep_update(solver: _DPMBase, process, denoiser, x, d, t, t_next, q):
    """One singlestep DPM-Solver step of order ``q`` (1, 2 or 3; ``d = D(x, t)`` given):
    ``(x_next, extra evaluations)``."""

    def order1(_):
        a_t, s_t, _ = scalars(process, t)
        a_s, s_s, _ = scalars(process, t_next)
        return first_order_update(x, d, a_t, s_t, a_s, s_s), jnp.int32(0)

    def order2(_):
        return singlestep_stages(solver, process, denoiser, x, d, t, t_next, r1=0.5,
                                 third=False)[1], jnp.int32(1)

    def order3(_):
        return singlestep_stages(solver, process, denoiser, x, d, t, t_next, r1=1.0 / 3.0,
                                 third=True)[2], jnp.int32(2)

    branches = [order1, order2, order3][:max(int(solver.order), 1)]
    return jax.lax.switch(q - 1, branches, None)


@pytree_dataclass
class DPMSolver(_DPMBase):
    """DPM-Solver (Lu et al. 2022): exponential integrator of the probability-flow ODE in
    noise prediction, in the half log-SNR ``lam = log(alpha/sigma)`` (module docstring).

    Args:
      order: 1, 2 or 3 (1 is DDIM, identical to :class:`~diffax.samplers.Euler`).
      method: ``"singlestep"`` (``order`` evaluations per step, Lu et al. Alg. 1-2),
        ``"multistep"`` (one evaluation per step, lower orders on the first steps) or
        ``"adaptive"`` (Alg. 4: DPM-Solver-12 for ``order=2``, -23 for ``order=3``; step sizes in
        ``lam`` from an error estimate, inside every interval of the grid; by default one
        interval from ``t_max`` to ``t_min``).
      lower_order_final: the order on the last steps. ``None`` (default): by the step sizes,
        ``StepRatio(max_ratio=2.0)`` for the multistep method
        (:func:`~diffax.samplers.default_rule`), ``True`` for the others;
        ``True``: ``min(order, steps left)`` on grids with fewer than 15 steps (the rule
        before); ``False``: never; or a rule of :mod:`diffax.samplers`
        (:class:`~diffax.samplers.StepRatio`, :class:`~diffax.samplers.StepCount`,
        :func:`~diffax.samplers.diffusers_rule`, :class:`~diffax.samplers.Orders` for the
        order of every step).
      rtol, atol, theta, max_steps: the adaptive method's tolerances (Alg. 4's defaults, set
        for data in [-1, 1]), safety factor and most step attempts per interval.

    The default grid is :class:`~diffax.schedules.LogSNRUniform` (the paper's ``logSNR``
    steps).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=DPMSolver(order=3, method="singlestep"), num_steps=4)
      >>> int(res.nfe)  # orders 3, 3, 2, 1 (lower_order_final)
      9
    """

    order: int = static_field(default=2)
    method: str = static_field(default="multistep")
    lower_order_final: Any = static_field(default=None)
    rtol: Any = 0.05
    atol: Any = 0.0078
    theta: Any = 0.9
    max_steps: int = static_field(default=1000)

    noise_prediction = True

    def __post_init__(self):
        if self.method not in _METHODS:
            raise ValueError(f"DPMSolver: `method` must be one of {', '.join(map(repr, _METHODS))}"
                             f"; got {self.method!r}.")
        check_order("DPMSolver", self.order, (2, 3) if self.method == "adaptive" else (1, 2, 3))
        as_rule(self.lower_order_final, "DPMSolver")
        for name in ("rtol", "atol", "theta"):
            v = concrete_value(getattr(self, name))
            if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
                raise ValueError(f"DPMSolver: `{name}` must be positive, got "
                                 f"{getattr(self, name)!r}.")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, np.integer)) \
                or self.max_steps < 1:
            raise ValueError(f"DPMSolver: `max_steps` must be an int >= 1, got "
                             f"{self.max_steps!r}.")

    @property
    def fixed_grid(self) -> bool:  # type: ignore[override]
        return self.method != "adaptive"

    @property
    def nfe_per_step(self) -> int:  # type: ignore[override]
        return 1 if self.method == "multistep" else self.order

    def default_schedule(self, process):
        if self.method == "adaptive":
            return Endpoints()
        return LogSNRUniform()

    def init(self, process, denoiser, x, times):
        if self.method == "adaptive":
            zero = jnp.int32(0)
            return DPMSolverAdaptiveState(nfe=zero, num_steps=zero, num_rejected=zero,
                                          status=zero)
        return super().init(process, denoiser, x, times)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        if self.method == "adaptive":
            return self._adaptive(process, denoiser, x, state, ctx)
        return super().step(process, denoiser, x, state, ctx)

    def status(self, state, x):
        if self.method != "adaptive":
            return super().status(state, x)
        b = x.shape[:1]
        return (jnp.broadcast_to(state.status, b),
                {"nfe": jnp.broadcast_to(state.nfe, b),
                 "num_steps": jnp.broadcast_to(state.num_steps, b),
                 "num_rejected": jnp.broadcast_to(state.num_rejected, b)})

    def _adaptive(self, process, denoiser, x, state: DPMSolverAdaptiveState, ctx: StepContext):
        """Alg. 4 on one interval ``[ctx.t, ctx.t_next]``: lower (order k-1) and higher (order
        k) singlestep results share the stage evaluations; a step is accepted when the RMS of
        their difference, scaled by ``max(atol, rtol max(|x_lower|, |x_prev|))``, is <= 1, and
        the next ``h`` is ``min(theta h E^(-1/k), lam_end - lam)``."""
        k = self.order
        lam_end = half_log_snr(process, ctx.t_next)
        lam0 = half_log_snr(process, ctx.t)
        # A start at an infinite log-SNR (alpha = 0) is taken as one first-order step to the
        # time 1e-3 of the interval inside it, where lam is finite.
        finite_start = jnp.isfinite(lam0)
        t_in = jnp.where(finite_start, ctx.t, ctx.t + 1e-3 * (ctx.t_next - ctx.t))
        a0, s0, _ = scalars(process, ctx.t)
        a1, s1, _ = scalars(process, t_in)
        d0 = call(denoiser, x, ctx.t)
        x = jnp.where(finite_start, x, first_order_update(x, d0, a0, s0, a1, s1))
        nfe0 = jnp.where(finite_start, 0, 1).astype(jnp.int32)
        lam_start = half_log_snr(process, t_in)
        # Alg. 4 starts with h0 = 0.05 in lam for data in [-1, 1]; for any grid we start from
        # the requested number of steps spread over the interval.
        steps = ctx.requested_steps or 10
        h0 = (lam_end - lam_start) / steps
        lam_end_finite = jnp.isfinite(lam_end)
        lam_stop = jnp.where(lam_end_finite, lam_end, half_log_snr(
            process, ctx.t_next + 1e-3 * (ctx.t - ctx.t_next)))

        def cond(c):
            lam, _, _, _, n, _ = c
            return (lam < lam_stop - 1e-12 * jnp.abs(lam_stop)) & (n < self.max_steps)

        def body(c):
            lam, x, h, nfe, n, rej = c
            h = jnp.minimum(h, lam_stop - lam)
            t = t_from_half_log_snr(process, lam)
            t = jnp.where(lam == lam_start, t_in, t)
            t_s = t_from_half_log_snr(process, lam + h)
            t_s = jnp.where(lam + h >= lam_stop, jnp.where(lam_end_finite, ctx.t_next, t_s), t_s)
            d = call(denoiser, x, t)
            lower, higher = _embedded_pair(self, process, denoiser, x, d, t, t_s, k)
            scale = jnp.maximum(self.atol, self.rtol * jnp.maximum(jnp.abs(lower), jnp.abs(x)))
            err = jnp.sqrt(jnp.mean(jnp.square((higher - lower) / scale)))
            accept = err <= 1.0
            new_h = self.theta * h * jnp.power(jnp.maximum(err, 1e-10), -1.0 / k)
            lam = jnp.where(accept, lam + h, lam)
            x = jnp.where(accept, higher, x)
            return lam, x, new_h, nfe + k, n + 1, rej + (1 - accept.astype(jnp.int32))

        init = (lam_start, x, h0, nfe0, jnp.int32(0), jnp.int32(0))
        lam, x, _, nfe, n, rej = jax.lax.while_loop(cond, body, init)
        # A grid ending at sigma = 0 (lam = inf) finishes with a first-order step.
        t_last = t_from_half_log_snr(process, lam_stop)
        a_l, s_l, _ = scalars(process, t_last)
        a_e, s_e, _ = scalars(process, ctx.t_next)

        def finish(x):
            return first_order_update(x, call(denoiser, x, t_last), a_l, s_l, a_e, s_e)

        x = jax.lax.cond(lam_end_finite, lambda x: x, finish, x)
        nfe = nfe + jnp.where(lam_end_finite, 0, 1).astype(jnp.int32)
        failed = (n >= self.max_steps).astype(jnp.int32)
        state = DPMSolverAdaptiveState(nfe=state.nfe + nfe, num_steps=state.num_steps + n - rej,
                                       num_rejected=state.num_rejected + rej,
                                       status=jnp.maximum(state.status, failed))
        return x, state, nfe


def _embedded_pair(solver, process, denoiser, x, d, t, t_next, k):
    """Alg. 4's pair: DPM-Solver-1 and -2 (``k = 2``, ``r1 = 1/2``), or DPM-Solver-2 with
    ``r1 = 1/3`` and DPM-Solver-3 (``k = 3``), sharing the evaluation at ``s1``."""
    first, second, third = singlestep_stages(solver, process, denoiser, x, d, t, t_next,
                                             r1=0.5 if k == 2 else 1.0 / 3.0, third=k == 3)
    return (first, second) if k == 2 else (second, third)


@pytree_dataclass
class DPMSolverPP(_DPMBase):
    """DPM-Solver++ (Lu et al. 2022b): exponential integrator in data prediction, and with
    ``sde=True`` SDE-DPM-Solver++ (the reverse SDE; 2M/3M) — see the module docstring.

    Args:
      order: 1, 2 or 3 (order 1 is DDIM = :class:`~diffax.samplers.Euler`; with ``sde=True``
        it is :class:`~diffax.samplers.DDPM`'s posterior step).
      method: ``"singlestep"`` (2S/3S) or ``"multistep"`` (2M/3M).
      lower_order_final: the order on the last steps. ``None`` (default): by the step sizes,
        ``StepRatio(max_ratio=2.0, long_step=1.0)`` for the multistep method
        (:func:`~diffax.samplers.default_rule`), ``True`` for singlestep;
        ``True``: ``min(order, steps left)`` on grids with fewer than 15 steps (the rule
        before); ``False``: never; or a rule of :mod:`diffax.samplers`
        (:class:`~diffax.samplers.StepRatio`, :class:`~diffax.samplers.StepCount`,
        :func:`~diffax.samplers.diffusers_rule`, :class:`~diffax.samplers.Orders` for the
        order of every step).
      sde: integrate the reverse SDE instead of the probability-flow ODE (multistep only);
        needs a PRNG key.
      clean_order: the order of a multistep ODE step that ends at clean data (``sigma = 0``,
        a grid ending at ``t = 0``): 1 (default) is ``x = alpha D``, diffusers'
        ``final_sigmas_type="zero"``; 2 or 3 (at most ``order``) extrapolate ``D`` to
        ``sigma = 0`` through the last 2 or 3 outputs with a polynomial in
        ``sigma^2 / alpha^2`` (an LMS-style higher-order last step, no ``denoise_final``).

    The default grid is :class:`~diffax.schedules.LogSNRUniform`.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=DPMSolverPP(order=2), num_steps=10)
      >>> int(res.nfe)
      10
    """

    order: int = static_field(default=2)
    method: str = static_field(default="multistep")
    lower_order_final: Any = static_field(default=None)
    sde: bool = static_field(default=False)
    clean_order: int = static_field(default=1)

    def __post_init__(self):
        if self.method not in ("singlestep", "multistep"):
            raise ValueError(f"DPMSolverPP: `method` must be 'singlestep' or 'multistep'; got "
                             f"{self.method!r}.")
        check_order("DPMSolverPP", self.order, (1, 2, 3))
        check_flags("DPMSolverPP", self, ("sde",))
        as_rule(self.lower_order_final, "DPMSolverPP")
        if self.sde and self.method != "multistep":
            raise ValueError("DPMSolverPP: `sde=True` needs method='multistep' (SDE-DPM-Solver++ "
                             "2M/3M).")
        check_clean_order("DPMSolverPP", self.clean_order, self.order)
        if self.clean_order > 1 and (self.sde or self.method != "multistep"):
            raise ValueError("DPMSolverPP: `clean_order` > 1 needs method='multistep' and "
                             "sde=False.")

    @property
    def _sde(self) -> bool:
        return self.sde
