"""EDM's samplers (Karras et al. 2022): Heun (Algorithm 1) and the stochastic sampler
(Algorithm 2), for every process.

Both integrate the probability-flow ODE in EDM's scaled frame ``y = x / alpha`` against
``sigma_hat = sigma / alpha``, where ``dy/dsigma_hat = eps = (x - alpha D) / sigma``. The Heun
step from ``t`` to ``s``, multiplied back by ``alpha_s``, is

  ``x' = (sigma_s/sigma_t) x_t + (alpha_s - alpha_t sigma_s/sigma_t) D_t``   (Euler)
  ``x_s = x' + (sigma_s - alpha_s sigma_t/alpha_t) (eps(x', s) - eps(x_t, t)) / 2``

which is Algorithm 1 exactly for :class:`diffax.EDM` (``alpha = 1``). Two ends need care:

* ``sigma_s = 0`` (the grid ends at clean data): ``eps(x', s)`` is undefined, so that step is
  Euler (Algorithm 1's last step) and costs one evaluation;
* ``alpha_t = 0`` (rectified flow at ``t = 1``): ``sigma_hat_t`` is infinite, so the
  correction of that step uses the trapezoid rule on the ODE in ``(x, t)``,
  ``x_s = x_t + (s - t) (v(x_t, t) + v(x', s)) / 2`` with ``v`` the probability-flow velocity;
  the step remains second order.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass
from diffax.samplers import _sscs
from diffax.samplers._base import Solver, StepContext, call, first_order_update, scalars
from diffax.schedules import Karras, TimeUniform

__all__ = ["Heun", "EDMStochastic"]


def _velocity(process, x, d, t, a, s):
    """Probability-flow velocity ``alpha' D + sigma' eps`` at a scalar time (finite at a = 0)."""
    da, ds = process.dalpha(t), process.dsigma(t)
    return (ds / s) * x + (da - a * ds / s) * d


def heun_step(process, denoiser, x, t, t_next):
    """Heun's step from ``t`` to ``t_next`` (see the module docstring): ``(x_next, nfe)``."""
    a_t, s_t, _ = scalars(process, t)
    a_s, s_s, _ = scalars(process, t_next)
    d_t = call(denoiser, x, t)
    x_euler = first_order_update(x, d_t, a_t, s_t, a_s, s_s)

    def corrected(_):
        d_s = call(denoiser, x_euler, t_next)

        def scaled_frame(_):
            eps_t = (x - a_t * d_t) / s_t
            eps_s = (x_euler - a_s * d_s) / s_s
            safe_a_t = jnp.where(a_t > 0, a_t, 1.0)  # this branch runs only where a_t > 0
            return x_euler + 0.5 * (s_s - a_s * s_t / safe_a_t) * (eps_s - eps_t)

        def time_frame(_):
            v_t = _velocity(process, x, d_t, t, a_t, s_t)
            v_s = _velocity(process, x_euler, d_s, t_next, a_s, s_s)
            return x + 0.5 * (t_next - t) * (v_t + v_s)

        return jax.lax.cond(a_t > 0, scaled_frame, time_frame, None)

    has_noise = s_s > 0
    x_next = jax.lax.cond(has_noise, corrected, lambda _: x_euler, None)
    return x_next, jnp.where(has_noise, 2, 1).astype(jnp.int32)


@pytree_dataclass
class Heun(Solver):
    """Heun's second-order method on the probability-flow ODE (EDM Algorithm 1).

    The correction is applied on every step except one that ends at ``sigma = 0`` (Euler on
    the last step). With :class:`diffax.EDM`, the default Karras grid and
    ``denoise_final=True``, ``num_steps = 17`` reproduces Algorithm 1's 18-point grid and its
    35 evaluations (the final denoise is the Euler step from ``sigma_min`` to 0).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, diffax.EDM(), D, jnp.ones((2, 3)), solver=Heun(),
      ...                     num_steps=17, denoise_final=True)
      >>> int(res.nfe)
      35
    """

    order = 2
    nfe_per_step = 2
    stochastic = False
    scalar_coefficients_only = False  # on a StateProcess (CLD): trapezoidal Heun in t

    def default_schedule(self, process):
        if not process.scalar_coefficients:
            return TimeUniform()
        return Karras(rho=7.0)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        if not process.scalar_coefficients:
            x_next, nfe = _sscs.heun_step(process, denoiser, x, ctx)
            return x_next, state, nfe
        x_next, nfe = heun_step(process, denoiser, x, ctx.t, ctx.t_next)
        return x_next, state, nfe


@pytree_dataclass
class EDMStochastic(Solver):
    """EDM's stochastic sampler (Algorithm 2): add noise, then a Heun step.

    At each step with scaled noise level ``sigma_hat_t = sigma_t / alpha_t`` in
    ``[S_min, S_max]``, the noise level is raised by ``gamma = min(S_churn / N, sqrt(2) - 1)``
    (``N`` = number of steps) to ``sigma_hat = (1 + gamma) sigma_hat_t`` at the time
    ``t_hat`` with that log-SNR, by adding fresh noise of scale ``S_noise``; then a Heun step
    runs from ``t_hat`` to ``t_next``. ``S_churn = 0`` is :class:`Heun`. Steps starting where
    ``alpha = 0`` (pure noise already) add none.

    Args:
      S_churn: total stochasticity; EDM uses 40-80 for ImageNet-64.
      S_min, S_max: the range of scaled noise levels where noise is added.
      S_noise: noise inflation, slightly above 1 in EDM (1.003 - 1.007).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> s = EDMStochastic(S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003)
      >>> res = diffax.sample(jax.random.key(0), diffax.EDM(), D, jnp.ones((2, 3)), solver=s,
      ...                     num_steps=8)
      >>> res.x.shape
      (2, 3)
    """

    S_churn: Any = 0.0
    S_min: Any = 0.0
    S_max: Any = math.inf
    S_noise: Any = 1.0
    order = 2
    nfe_per_step = 2
    stochastic = True

    def __post_init__(self):
        for name in ("S_churn", "S_min", "S_noise"):
            v = concrete_value(getattr(self, name))
            if v is not None and not (np.all(np.isfinite(v)) and np.all(v >= 0)):
                raise ValueError(f"EDMStochastic: `{name}` must be finite and non-negative, got "
                                 f"{getattr(self, name)!r}.")
        lo, hi = concrete_value(self.S_min), concrete_value(self.S_max)
        if lo is not None and hi is not None and not bool(np.all(lo <= hi)):
            raise ValueError(f"EDMStochastic: need S_min <= S_max, got S_min={self.S_min!r}, "
                             f"S_max={self.S_max!r}.")

    def default_schedule(self, process):
        return Karras(rho=7.0)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        t = ctx.t
        a_t, s_t, lam_t = scalars(process, t)
        has_alpha = a_t > 0
        safe_a_t = jnp.where(has_alpha, a_t, 1.0)
        level = s_t / safe_a_t
        churn = jnp.minimum(self.S_churn / ctx.num_steps, math.sqrt(2.0) - 1.0)
        gamma = jnp.where(has_alpha & (level >= self.S_min) & (level <= self.S_max), churn, 0.0)
        churning = gamma > 0
        t_hat = jnp.where(churning, process.t_from_log_snr(lam_t - 2.0 * jnp.log1p(gamma)), t)
        a_h, s_h, _ = scalars(process, t_hat)
        scale = jnp.where(churning, a_h / safe_a_t, 1.0)
        std = jnp.sqrt(jnp.maximum(jnp.square(s_h) - jnp.square(scale * s_t), 0.0))
        z = ctx.noise(ctx.key, x.shape)
        x_hat = scale * x + (self.S_noise * std) * z
        x_next, nfe = heun_step(process, denoiser, x_hat, t_hat, ctx.t_next)
        return x_next, state, nfe
