"""Samplers on a process with a pytree state (:class:`diffax.CLD`'s ``u = (x, v)``).

* :class:`SSCS`, the symmetric splitting CLD sampler (Dockhorn et al. 2022, Sec. 3.3): in
  reverse time ``tau`` the generative SDE splits into a linear part
  ``dx = -beta m_inv v dtau``, ``dv = (beta x - beta Gamma m_inv v) dtau + sqrt(2 Gamma beta)
  dW``, solved exactly (:meth:`diffax.CLD.ou_step`), and the score part
  ``dv = 2 Gamma beta (score_v(u, t) + m_inv v) dtau`` (the score minus the stationary
  velocity score ``-m_inv v``), taken with one Euler step. A step from ``t`` to ``s`` is a
  half step of the linear part, the score step evaluated at the midpoint time
  ``(t + s) / 2``, and another half step (Strang splitting): one denoiser evaluation.
* The generic steps :func:`euler_step`, :func:`heun_step` (probability-flow ODE in ``(x, v)``
  with plain Euler and the trapezoidal Heun rule in ``t``) and :func:`euler_maruyama_step`
  (reverse SDE), which :class:`~diffax.samplers.Euler`, :class:`~diffax.samplers.Heun` and
  :class:`~diffax.samplers.EulerMaruyama` use on such processes through
  ``process.probability_flow`` / ``process.reverse_sde``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffax._pytree import pytree_dataclass, static_field
from diffax.samplers._base import Solver, StepContext, call

__all__ = ["SSCS", "euler_step", "heun_step", "euler_maruyama_step"]


def _axpy(u, a, du):
    return tuple(x + a * d for x, d in zip(u, du, strict=True))


def euler_step(process, denoiser, u, ctx: StepContext):
    """Euler on the probability-flow ODE ``du/dt = process.probability_flow(u, D, t)``."""
    d = call(denoiser, u, ctx.t)
    return _axpy(u, ctx.t_next - ctx.t, process.probability_flow(u, d, ctx.t)), jnp.int32(1)


def heun_step(process, denoiser, u, ctx: StepContext):
    """Heun's (trapezoidal) second-order step on the probability-flow ODE in ``t``."""
    dt = ctx.t_next - ctx.t
    k1 = process.probability_flow(u, call(denoiser, u, ctx.t), ctx.t)
    u_e = _axpy(u, dt, k1)
    k2 = process.probability_flow(u_e, call(denoiser, u_e, ctx.t_next), ctx.t_next)
    return _axpy(u, 0.5 * dt, tuple(a + b for a, b in zip(k1, k2, strict=True))), jnp.int32(2)


def euler_maruyama_step(process, denoiser, u, ctx: StepContext, key):
    """Euler-Maruyama on the reverse SDE: ``u + dt drift + sqrt(-dt) G z`` (``dt < 0``;
    components without noise get none)."""
    dt = ctx.t_next - ctx.t
    d = call(denoiser, u, ctx.t)
    drift, diffusion = process.reverse_sde(u, d, ctx.t)
    out = []
    for i, (x, f, g) in enumerate(zip(u, drift, diffusion, strict=True)):
        x = x + dt * f
        if g is not None:
            x = x + jnp.sqrt(-dt) * g * ctx.noise(jax.random.fold_in(key, i), x.shape)
        out.append(x)
    return tuple(out), jnp.int32(1)


@pytree_dataclass
class SSCS(Solver):
    """The symmetric splitting CLD sampler (see the module docstring).

    Args:
      final_step: the paper's denoising at the end of sampling: after the last step (at the
        grid's final time ``t_min``), one noise-free Euler step of the reverse SDE from
        ``t_min`` to ``0`` (one more evaluation). Off by default. (``diffax.sample``'s
        ``denoise_final=True`` instead returns ``D(u, t_min) = E[x0 | u]``, the posterior mean.)

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.CLD()
      >>> D = lambda u, t: jnp.zeros_like(u[0])
      >>> u = p.prior_sample(jax.random.key(0), (4, 2))
      >>> res = diffax.sample(jax.random.key(1), p, D, u, solver=SSCS(), num_steps=10)
      >>> res.x[0].shape, int(res.nfe)
      ((4, 2), 10)
    """

    final_step: bool = static_field(default=False)
    # Strang splitting around an Euler step of the score part: weak order 1 (the Euler step's
    # O(h^2) local error). Measured on an exact 1-D mixture (tools/bench_cld.py --order, error
    # of E[u u^T] at t_min, 8 -> 128 steps): per doubling 1.12, 1.06, 1.27, 1.46, 2.2-6.4x below
    # Euler-Maruyama's error at equal NFE (tests/samplers/test_sscs_order.py).
    order = 1
    nfe_per_step = 1
    stochastic = True
    scalar_coefficients_only = False
    state_process_only = True

    def step(self, process, denoiser, u, state, ctx: StepContext):
        t, s = ctx.t, ctx.t_next
        h = t - s
        k1, k2, k3, k4 = jax.random.split(ctx.key, 4)
        x, v = u
        noise = lambda k: ctx.noise(k, x.shape)  # noqa: E731
        u = process.ou_step(u, 0.5 * h, noise(k1), noise(k2))
        t_mid = t - 0.5 * h
        d = call(denoiser, u, t_mid)
        x, v = u
        gb = (process.damping * jnp.asarray(process.beta)).astype(v.dtype)
        m_inv = jnp.asarray(process.m_inv, v.dtype)
        v = v + h * 2.0 * gb * (process._score_v(u, d, t_mid) + m_inv * v)
        u = process.ou_step((x, v), 0.5 * h, noise(k3), noise(k4))
        nfe = jnp.int32(1)
        if self.final_step:
            last = ctx.index == ctx.num_steps - 1

            def denoise(u):
                d = call(denoiser, u, s)
                drift, _ = process.reverse_sde(u, d, s)
                return _axpy(u, -s, drift)

            u = jax.lax.cond(last, denoise, lambda u: u, u)
            nfe = nfe + last.astype(jnp.int32)
        return u, state, nfe
