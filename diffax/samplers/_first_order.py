"""First-order samplers: Euler on the probability-flow ODE, DDIM and DDPM.

All three are written in the process's own ``(alpha, sigma)`` frame with coefficients that
never divide by ``alpha``, so they run on every process, including rectified flow from
``alpha(t_max) = 0``. For a step from ``t`` to ``s < t`` with ``D = D(x_t, t)``,
``eps = (x_t - alpha_t D) / sigma_t`` and ``r = exp(log_snr_t - log_snr_s)`` (in ``[0, 1]``):

* Euler:  ``x_s = alpha_s D + sigma_s eps``;
* DDIM:   ``x_s = alpha_s D + sqrt(sigma_s^2 - c^2) eps + c z``,
  ``c = eta sigma_s sqrt(1 - r)`` (Song et al. 2021, eq. 12 and 16);
* DDPM:   ``x_s ~ q(x_s | x_t, x0 = D) = N(sigma_s/sigma_t sqrt(r) x_t + alpha_s (1 - r) D,
  sigma_s^2 (1 - r))`` (Ho et al. 2020, eq. 6-7; :meth:`diffax.Process.posterior`).

DDIM with ``eta = 1`` is DDPM, and with ``eta = 0`` it is Euler.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass
from diffax.samplers._base import (
    Solver,
    StepContext,
    call,
    first_order_update,
    is_zero,
    one_minus_snr_ratio,
    scalars,
)

__all__ = ["Euler", "DDIM", "DDPM"]


@pytree_dataclass
class Euler(Solver):
    """The first-order step of the probability-flow ODE in the scaled frame.

    Euler's method on ``d(x/alpha) = eps d(sigma/alpha)`` (EDM's frame), written as
    ``x_s = (sigma_s/sigma_t) x_t + (alpha_s - alpha_t sigma_s/sigma_t) D(x_t, t)``: the same
    update as DDIM with ``eta = 0``, DPM-Solver-1 and flow-matching Euler, for every process.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(None, p, D, jnp.ones((2, 3)), solver=Euler(), num_steps=4)
      >>> res.x.shape, int(res.nfe)
      ((2, 3), 4)
    """

    order = 1
    nfe_per_step = 1
    stochastic = False

    def step(self, process, denoiser, x, state, ctx: StepContext):
        a_t, s_t, _ = scalars(process, ctx.t)
        a_s, s_s, _ = scalars(process, ctx.t_next)
        d = call(denoiser, x, ctx.t)
        return first_order_update(x, d, a_t, s_t, a_s, s_s), state, jnp.int32(1)


@pytree_dataclass
class DDIM(Solver):
    """DDIM (Song et al. 2021) with stochasticity ``eta``.

    ``eta = 0`` is deterministic (identical to :class:`Euler`); ``eta = 1`` draws from the
    same posterior as :class:`DDPM`. For ``eta > 0`` the noise term ``c z`` is actually added
    (the variance is not just rescaled).

    Args:
      eta: in ``[0, 1]`` (values above 1 are allowed while ``c <= sigma_s``; the deterministic
        coefficient is clipped at 0).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(jax.random.key(0), diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=DDIM(eta=1.0), num_steps=4)
      >>> res.x.shape
      (2, 3)
    """

    eta: Any = 0.0
    order = 1
    nfe_per_step = 1
    reaches_clean_data = True

    def __post_init__(self):
        v = concrete_value(self.eta)
        if v is not None and not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"DDIM: `eta` must be finite and non-negative, got {self.eta!r}.")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return not is_zero(self.eta)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        a_t, s_t, lam_t = scalars(process, ctx.t)
        a_s, s_s, lam_s = scalars(process, ctx.t_next)
        d = call(denoiser, x, ctx.t)
        if not self.stochastic:
            return first_order_update(x, d, a_t, s_t, a_s, s_s), state, jnp.int32(1)
        c = self.eta * s_s * jnp.sqrt(one_minus_snr_ratio(lam_t, lam_s))
        c_eps = jnp.sqrt(jnp.maximum(jnp.square(s_s) - jnp.square(c), 0.0))
        eps = (x - a_t * d) / s_t
        z = ctx.noise(ctx.key, x.shape)
        return a_s * d + c_eps * eps + c * z, state, jnp.int32(1)


@pytree_dataclass
class DDPM(Solver):
    """Ancestral sampling from the posterior ``q(x_s | x_t, x0 = D(x_t, t))`` (Ho et al. 2020).

    On a :class:`diffax.DiscreteVP` grid this is DDPM's sampler with the posterior variance
    ``beta_tilde``; between grid points and for the other processes it is the same posterior
    in continuous time (:meth:`diffax.Process.posterior`). With ``denoise_final=True`` the last
    step to clean data is DDPM's noise-free ``x_0 = D(x_1, t_1)``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.linear(num_steps=10)
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(jax.random.key(0), p, D, jnp.ones((2, 3)), solver=DDPM(),
      ...                     num_steps=9, denoise_final=True)
      >>> int(res.nfe)
      10
    """

    order = 1
    nfe_per_step = 1
    stochastic = True
    reaches_clean_data = True

    def step(self, process, denoiser, x, state, ctx: StepContext):
        return ancestral_step(process, denoiser, x, ctx, ctx.key), state, jnp.int32(1)


def ancestral_step(process, denoiser, x, ctx: StepContext, key: jax.Array | None):
    """One draw from the posterior ``q(x_{t_next} | x_t, x0 = D(x_t, t))``."""
    d = call(denoiser, x, ctx.t)
    mean, std = process.posterior(x, d, t=ctx.t, s=ctx.t_next)
    return mean + std * ctx.noise(key, x.shape)
