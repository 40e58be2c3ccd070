"""Critically-damped Langevin diffusion (CLD; Dockhorn, Vahdat & Kreis, ICLR 2022).

The data ``x`` is coupled to a velocity ``v`` of the same shape; the state is the pair
``u = (x, v)`` and, per data coordinate, the forward SDE is

  ``dx = beta m_inv v dt``
  ``dv = -beta x dt - beta Gamma m_inv v dt + sqrt(2 Gamma beta) dW``

with inverse mass ``m_inv = 1/M``, critical damping ``Gamma = 2 sqrt(M)`` and time scale
``beta``; noise enters only through ``v``. The initial velocity is ``v0 ~ N(0, gamma M)``,
independent of the data. The drift matrix ``A = beta [[0, m_inv], [-1, -Gamma m_inv]]`` has the
double eigenvalue ``-beta sqrt(m_inv)`` (critical damping), so with ``s = beta t`` and
``a = s sqrt(m_inv)``

  ``exp(A t) = e^{-a} [[1 + a, s m_inv], [-s, 1 - a]]``.

Marginalising ``v0``, ``u_t | x0 ~ N(m(t) x0, Sigma(t))`` per coordinate with
``m(t) = e^{-a} (1 + a, -s)`` and, from ``Sigma(t) = Sigma_inf + exp(At) (Sigma_0 -
Sigma_inf) exp(At)^T`` (the Lyapunov equation's solution, ``Sigma_inf = diag(1, M)``,
``Sigma_0 = diag(0, gamma M)``):

  ``Sigma_xx = P(3, 2a) + gamma a^2 e^{-2a}``   (``P`` the regularised lower incomplete gamma:
  ``1 - e^{-2a} (1 + 2a + 2a^2)`` without cancellation at small ``t``)
  ``Sigma_xv = s e^{-2a} (gamma (1 - a) + 2a)``
  ``Sigma_vv = M (1 - e^{-2a} (a^2 + (1 - a)^2) + gamma (1 - a)^2 e^{-2a})``

The prior is the stationary ``N(0, diag(1, M))``.

**The denoiser contract, generalised.** A denoiser still returns ``D(u, t) = E[x0 | u_t = u]``
(shaped like the data). Since ``u_t = m(t) x0 + xi`` with ``xi ~ N(0, Sigma(t))`` independent
of ``x0`` (``xi`` collects the propagated initial velocity and the injected noise),
``p_t(u) = integral N(u; m x0, Sigma) p(x0) dx0`` and

  ``grad_u log p_t(u) = E[grad_u log N(u; m x0, Sigma) | u] = E[Sigma^-1 (m x0 - u) | u]
  = Sigma^-1 (m D(u, t) - u)``

(generalised Tweedie, per coordinate, :meth:`CLD.score`). Only the velocity part of the score
enters the reverse SDE and the probability-flow ODE, because the noise acts on ``v`` only.

Also here: the hybrid score matching loss (:class:`HSMLoss`, ``v0`` marginalised, the paper's
``epsilon`` and likelihood weightings), the network parameterization for ``(x, v)`` inputs
(:class:`CLDPredict`: channels concatenated) and the paper's bound on ``log p(x0)``
(:func:`data_log_likelihood_bound`). The symmetric splitting sampler is
:class:`diffax.samplers.SSCS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammainc

from diffax._checks import check_finite_examples, check_key
from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.processes import StateProcess, expand
from diffax.typing import ApplyFn, Array, ArrayLike, Denoiser, PRNGKey, PyTree

__all__ = ["CLD", "CLDPredict", "EpsWeighting", "LikelihoodWeighting", "HSMLoss",
           "data_log_likelihood_bound"]

_LOG_2PI = math.log(2.0 * math.pi)


def _number(owner: str, name: str, value: Any, *, positive: bool = False,
            nonnegative: bool = False) -> None:
    v = concrete_value(value)
    if v is None:
        return
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{owner}: `{name}` must be finite, got {value!r}.")
    if positive and not np.all(v > 0):
        raise ValueError(f"{owner}: `{name}` must be positive, got {value!r}.")
    if nonnegative and not np.all(v >= 0):
        raise ValueError(f"{owner}: `{name}` must be non-negative, got {value!r}.")


def _flow_entries(s: Array, m_inv: Array) -> tuple[Array, Array, Array, Array]:
    """``exp(A t)`` per coordinate as ``(e_xx, e_xv, e_vx, e_vv)`` for ``s = beta t``."""
    a = s * jnp.sqrt(m_inv)
    e = jnp.exp(-a)
    return e * (1.0 + a), e * s * m_inv, -e * s, e * (1.0 - a)


def _cov_entries(s: Array, m_inv: Array, gamma: Array) -> tuple[Array, Array, Array]:
    """``Sigma(t)`` from ``Sigma_0 = diag(0, gamma M)`` as ``(xx, xv, vv)`` (module docstring)."""
    a = s * jnp.sqrt(m_inv)
    e2 = jnp.exp(-2.0 * a)
    xx = gammainc(jnp.asarray(3.0, a.dtype), 2.0 * a) + gamma * jnp.square(a) * e2
    xv = s * e2 * (gamma * (1.0 - a) + 2.0 * a)
    vv = (-jnp.expm1(-2.0 * a) + e2 * (2.0 * a - 2.0 * jnp.square(a))
          + gamma * jnp.square(1.0 - a) * e2) / m_inv
    return xx, xv, vv


@pytree_dataclass
class CLD(StateProcess):
    """Critically-damped Langevin diffusion on the state ``u = (x, v)`` (see the module doc).

    Args:
      beta: the time scale ``beta`` (> 0).
      m_inv: the inverse mass ``M^-1`` (> 0); the damping is critical, ``Gamma = 2 sqrt(M)``.
      gamma: the initial velocity's variance in units of ``M``: ``v0 ~ N(0, gamma M)`` (>= 0).
      t_min, t_max: the time interval (data near ``t_min``, the prior at ``t_max``).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.CLD(beta=4.0, m_inv=4.0, gamma=0.04)
      >>> (mx, mv), cov = p.marginal(jnp.ones((2, 3)), 0.5)
      >>> mx.shape, cov.shape
      ((2, 3), (2, 3, 2, 2))
      >>> x, v = p.prior_sample(jax.random.key(0), (2, 3))
      >>> p.prior_logp((x, v)).shape
      (2,)
    """

    beta: Any = 4.0
    m_inv: Any = 4.0
    gamma: Any = 0.04
    t_min: Any = 1e-3
    t_max: Any = 1.0
    state_size = 2

    def __post_init__(self):
        _number("CLD", "beta", self.beta, positive=True)
        _number("CLD", "m_inv", self.m_inv, positive=True)
        _number("CLD", "gamma", self.gamma, nonnegative=True)
        _number("CLD", "t_min", self.t_min, nonnegative=True)
        _number("CLD", "t_max", self.t_max, positive=True)
        lo, hi = concrete_value(self.t_min), concrete_value(self.t_max)
        if lo is not None and hi is not None and not np.all(lo < hi):
            raise ValueError(f"CLD: need `t_min` < `t_max`, got t_min={self.t_min!r}, "
                             f"t_max={self.t_max!r}.")

    # ---- coefficients -------------------------------------------------------------------

    @property
    def mass(self) -> Array:
        """``M = 1 / m_inv``."""
        return 1.0 / jnp.asarray(self.m_inv)

    @property
    def damping(self) -> Array:
        """The critical damping ``Gamma = 2 sqrt(M)``."""
        return 2.0 / jnp.sqrt(jnp.asarray(self.m_inv))

    def _t(self, t: ArrayLike) -> Array:
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.floating):
            t = t.astype(jnp.result_type(float))
        v = concrete_value(t)
        if v is not None and not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"CLD: `t` must be finite and >= 0, got {t!r}.")
        return t

    def _params(self, dtype: Any) -> tuple[Array, Array, Array]:
        return (jnp.asarray(self.beta, dtype), jnp.asarray(self.m_inv, dtype),
                jnp.asarray(self.gamma, dtype))

    def _coefs(self, t: Array) -> tuple[Array, Array, Array, Array, Array]:
        """``(m_x, m_v, Sigma_xx, Sigma_xv, Sigma_vv)``, each shaped like ``t``."""
        beta, m_inv, gamma = self._params(t.dtype)
        s = beta * t
        e_xx, _, e_vx, _ = _flow_entries(s, m_inv)
        return (e_xx, e_vx, *_cov_entries(s, m_inv, gamma))

    def marginal_coefficients(self, t: ArrayLike) -> tuple[Array, Array]:
        """``(m(t) [..., 2], Sigma(t) [..., 2, 2])`` of ``u_t | x0`` per coordinate, ``v0``
        marginalised.

        Example:
          >>> import diffax
          >>> m, cov = diffax.CLD().marginal_coefficients(0.5)
          >>> m.shape, cov.shape
          ((2,), (2, 2))
        """
        mx, mv, xx, xv, vv = self._coefs(self._t(t))
        m = jnp.stack([mx, mv], axis=-1)
        cov = jnp.stack([jnp.stack([xx, xv], -1), jnp.stack([xv, vv], -1)], -2)
        return m, cov

    def marginal(self, x0: ArrayLike, t: ArrayLike) -> tuple[tuple[Array, Array], Array]:
        """``q(u_t | x0)`` with ``v0 ~ N(0, gamma M)`` marginalised.

        Args:
          x0: data ``[B, ...]``.
          t: a scalar or ``[B]``.

        Returns:
          ``((mean_x, mean_v), cov)``: means shaped like ``x0`` and the per-coordinate
          covariance ``[B, ..., 2, 2]`` (ordered ``(x, v)``).

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> (mx, mv), cov = diffax.CLD().marginal(jnp.zeros((4, 2)), 1.0)
          >>> cov.shape
          (4, 2, 2, 2)
        """
        x0 = jnp.asarray(x0)
        t = _per_example(self._t(t), x0)
        mx, mv, xx, xv, vv = (expand(c, x0) for c in self._coefs(t))
        cov = jnp.stack([jnp.stack([xx, xv], -1), jnp.stack([xv, vv], -1)], -2)
        cov = jnp.broadcast_to(cov, x0.shape + (2, 2))
        return (mx * x0, mv * x0), cov

    def marginal_sample(self, key: PRNGKey, x0: ArrayLike, t: ArrayLike
                        ) -> tuple[Array, Array]:
        """Draws ``u_t = (x_t, v_t) ~ q(u_t | x0)``.

        Example:
          >>> import jax, jax.numpy as jnp, diffax
          >>> x, v = diffax.CLD().marginal_sample(jax.random.key(0), jnp.ones((4, 2)), 0.3)
          >>> x.shape, v.shape
          ((4, 2), (4, 2))
        """
        x0 = jnp.asarray(x0)
        eps = jax.random.normal(key, (2,) + x0.shape, x0.dtype)
        return self._perturb(x0, _per_example(self._t(t), x0), eps[0], eps[1])[0]

    def _perturb(self, x0: Array, t: Array, eps_x: Array, eps_v: Array):
        """``u_t = m x0 + L eps`` with ``L`` the lower Cholesky factor of ``Sigma`` (order
        ``(x, v)``); also returns ``ell = 1 / L_vv``, the HSM scale: the conditional velocity
        score is ``-ell eps_v``."""
        mx, mv, xx, xv, vv = (expand(c, x0) for c in self._coefs(t))
        l11 = jnp.sqrt(xx)
        l21 = xv / l11
        l22 = jnp.sqrt(jnp.maximum(vv - jnp.square(l21), jnp.finfo(x0.dtype).tiny))
        x = mx * x0 + l11 * eps_x
        v = mv * x0 + l21 * eps_x + l22 * eps_v
        return (x, v), 1.0 / l22

    # ---- state checks, prior ---------------------------------------------------------------

    def check_state(self, u: Any, *, name: str = "u", where: str = "") -> tuple[Array, Array]:
        """Returns ``u`` as ``(x, v)`` arrays, or raises a ValueError naming ``name``.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> x, v = diffax.CLD().check_state((jnp.zeros((2, 3)), jnp.zeros((2, 3))))
        """
        pre = f"{where}: " if where else ""
        if not isinstance(u, (tuple, list)) or len(u) != 2:
            raise ValueError(f"{pre}`{name}` must be the CLD state, a pair (x, v) of arrays "
                             f"[B, ...] shaped alike; got {type(u).__name__}"
                             f"{'' if not hasattr(u, 'shape') else ' of shape ' + str(u.shape)}.")
        x, v = u
        for part, a in (("x", x), ("v", v)):
            if not hasattr(a, "shape") or not hasattr(a, "dtype"):
                raise ValueError(f"{pre}`{name}` = (x, v): `{part}` must be an array, got "
                                 f"{type(a).__name__}.")
            if len(a.shape) < 1 or a.shape[0] < 1:
                raise ValueError(f"{pre}`{name}` = (x, v): `{part}` must have a non-empty "
                                 f"batch axis [B, ...], got shape {tuple(a.shape)}.")
            if not jnp.issubdtype(a.dtype, jnp.floating):
                raise ValueError(f"{pre}`{name}` = (x, v): `{part}` must be floating-point, "
                                 f"got {a.dtype}.")
        if tuple(x.shape) != tuple(v.shape) or x.dtype != v.dtype:
            raise ValueError(f"{pre}`{name}` = (x, v): `x` and `v` must have the same shape "
                             f"and dtype, got {tuple(x.shape)} {x.dtype} and "
                             f"{tuple(v.shape)} {v.dtype}.")
        return jnp.asarray(x), jnp.asarray(v)

    def prior_sample(self, key: PRNGKey, shape: tuple[int, ...], dtype: Any = None
                     ) -> tuple[Array, Array]:
        """Draws ``(x, v)`` from the stationary prior ``N(0, I) x N(0, M I)``, each ``shape``.

        Example:
          >>> import jax, diffax
          >>> x, v = diffax.CLD().prior_sample(jax.random.key(0), (8, 2))
          >>> x.shape, v.shape
          ((8, 2), (8, 2))
        """
        dtype = dtype or jnp.result_type(float)
        kx, kv = jax.random.split(key)
        x = jax.random.normal(kx, shape, dtype)
        v = jnp.sqrt(self.mass).astype(dtype) * jax.random.normal(kv, shape, dtype)
        return x, v

    def prior_logp(self, u: Any) -> Array:
        """Log-density ``[B]`` of the prior ``N(0, I) x N(0, M I)`` at ``u = (x, v)``.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> lp = diffax.CLD(m_inv=1.0).prior_logp((jnp.zeros((1, 1)), jnp.zeros((1, 1))))
          >>> round(float(lp[0]), 5)  # -log(2 pi)
          -1.83788
        """
        x, v = self.check_state(u, name="u", where="CLD.prior_logp")
        n = math.prod(x.shape[1:])
        mass = self.mass.astype(x.dtype)
        sq = jnp.sum((jnp.square(x) + jnp.square(v) / mass).reshape(x.shape[0], -1), axis=-1)
        return -0.5 * sq - n * (_LOG_2PI + 0.5 * jnp.log(mass))

    # ---- the SDE -----------------------------------------------------------------------------

    def sde_drift(self, u: Any, t: ArrayLike) -> tuple[Array, Array]:
        """Forward drift ``beta (m_inv v, -x - Gamma m_inv v)``."""
        x, v = u
        beta, m_inv, _ = self._params(x.dtype)
        return beta * m_inv * v, -beta * x - beta * self.damping.astype(x.dtype) * m_inv * v

    def diffusion(self, t: ArrayLike) -> tuple[Array, Array]:
        """Forward diffusion per component ``(0, sqrt(2 Gamma beta))`` (noise on ``v`` only)."""
        t = self._t(t)
        beta = jnp.asarray(self.beta, t.dtype)
        g = jnp.sqrt(2.0 * self.damping.astype(t.dtype) * beta)
        return jnp.zeros_like(t), jnp.broadcast_to(g, t.shape)

    def score(self, u: Any, d: Array, t: ArrayLike) -> tuple[Array, Array]:
        """``grad_u log p_t(u) = Sigma(t)^-1 (m(t) d - u)`` (generalised Tweedie; module doc)
        given ``d = D(u, t) = E[x0 | u_t = u]``.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> u = (jnp.ones((2, 3)), jnp.zeros((2, 3)))
          >>> sx, sv = diffax.CLD().score(u, jnp.zeros((2, 3)), 0.5)
          >>> sx.shape
          (2, 3)
        """
        x, v = u
        t = _per_example(self._t(t), x)
        mx, mv, xx, xv, vv = (expand(c, x) for c in self._coefs(t.astype(x.dtype)))
        det = xx * vv - jnp.square(xv)
        rx, rv = mx * d - x, mv * d - v
        return (vv * rx - xv * rv) / det, (xx * rv - xv * rx) / det

    def _score_v(self, u, d, t):
        return self.score(u, d, t)[1]

    def probability_flow(self, u: Any, d: Array, t: Array) -> tuple[Array, Array]:
        """``du/dt = f(u) - G G^T score / 2``: ``(beta m_inv v, -beta x - beta Gamma m_inv v -
        Gamma beta score_v)`` given ``d = D(u, t)``."""
        fx, fv = self.sde_drift(u, t)
        gb = (self.damping * jnp.asarray(self.beta)).astype(fv.dtype)
        return fx, fv - gb * self._score_v(u, d, t)

    def reverse_sde(self, u: Any, d: Array, t: Array) -> tuple[tuple[Array, Array], Any]:
        """``(drift, diffusion)`` of the reverse SDE ``du = (f - G G^T score) dt + G dW``
        (integrated with ``dt < 0``): the diffusion is ``(None, sqrt(2 Gamma beta))``, ``None``
        marking a component without noise."""
        fx, fv = self.sde_drift(u, t)
        gb = (self.damping * jnp.asarray(self.beta)).astype(fv.dtype)
        return (fx, fv - 2.0 * gb * self._score_v(u, d, t)), (None, jnp.sqrt(2.0 * gb))

    # ---- the symmetric splitting sampler's analytic half-step --------------------------------

    def ou_step(self, u: Any, h: Array, eps_x: Array, eps_v: Array) -> tuple[Array, Array]:
        """Exact solution over reverse time ``h`` of SSCS's linear part
        ``dx = -beta m_inv v dt``, ``dv = (beta x - beta Gamma m_inv v) dt +
        sqrt(2 Gamma beta) dW``: its drift matrix is ``J A J`` with ``J = diag(-1, 1)``, so the
        mean is ``J exp(A h) J u`` and the covariance ``J Sigma_0(h) J`` with ``Sigma_0`` the
        forward covariance from a deterministic start (``gamma = 0``). ``eps_x``, ``eps_v``
        are standard normal."""
        x, v = u
        beta, m_inv, _ = self._params(x.dtype)
        s = beta * jnp.asarray(h, x.dtype)
        e_xx, e_xv, e_vx, e_vv = _flow_entries(s, m_inv)
        xx, xv, vv = _cov_entries(s, m_inv, jnp.zeros((), x.dtype))
        xv = -xv
        l11 = jnp.sqrt(xx)
        l21 = jnp.where(l11 > 0, xv / jnp.where(l11 > 0, l11, 1.0), 0.0)
        l22 = jnp.sqrt(jnp.maximum(vv - jnp.square(l21), 0.0))
        mean_x = e_xx * x - e_xv * v
        mean_v = -e_vx * x + e_vv * v
        return mean_x + l11 * eps_x, mean_v + l21 * eps_x + l22 * eps_v


def _per_example(t: Array, x: Array) -> Array:
    if t.ndim == 0:
        return jnp.broadcast_to(t, x.shape[:1])
    if t.shape != x.shape[:1]:
        raise ValueError(f"CLD: `t` has shape {tuple(t.shape)}, expected a scalar or "
                         f"({x.shape[0]},) for x of shape {tuple(x.shape)}.")
    return t


# --------------------------------------------------------------------------------------------
# Network parameterization and the hybrid score matching loss.


def _net_input(u: tuple[Array, Array]) -> Array:
    """``(x, v)`` as one array with the channels (last axis) concatenated: ``[B, ..., 2C]``
    for images ``[B, H, W, C]`` and ``[B, 2D]`` for vectors ``[B, D]``."""
    return jnp.concatenate(u, axis=-1)


@pytree_dataclass
class CLDPredict:
    """What a CLD network predicts, and how it becomes a denoiser ``D(u, t) = E[x0 | u_t]``.

    The network is ``apply_fn(params, concat([x, v], axis=-1), scale * t, **cond)`` (the
    channels of ``x`` and ``v`` concatenated, so an MLP gets ``2D`` inputs and a UNet ``2C``
    channels) and returns an array shaped like ``x``:

    * ``prediction="eps"``: ``eps_hat``, the velocity noise, with ``score_v = -ell(t) eps_hat``
      (the paper's HSM parameterization; ``ell = 1 / L_vv``, ``L`` the Cholesky factor of
      ``Sigma(t)``);
    * ``prediction="x0"``: ``D`` itself.

    ``eps`` converts to ``D`` through the generalised Tweedie relation: with ``Sigma =
    [[a, b], [b, c]]``, ``score_v = (a (m_v D - v) - b (m_x D - x)) / det``, solved for ``D``
    (its coefficient ``(a m_v - b m_x) / det`` is negative for every ``t > 0``).

    Args:
      prediction: ``"eps"`` or ``"x0"``.
      time_scale: the network sees ``time_scale * t``.
    """

    prediction: str = static_field(default="eps")
    time_scale: Any = 999.0

    def __post_init__(self):
        if self.prediction not in ("eps", "x0"):
            raise ValueError(f"CLDPredict: `prediction` must be 'eps' or 'x0', got "
                             f"{self.prediction!r}.")

    def network_output(self, apply_fn: ApplyFn, params: PyTree, u, t: Array, **kwargs) -> Array:
        x = u[0]
        return apply_fn(params, _net_input(u), t * jnp.asarray(self.time_scale, t.dtype),
                        **kwargs).astype(x.dtype)

    def to_denoiser(self, process: CLD, u, t: Array, out: Array) -> Array:
        """``D`` from the network output ``out`` at ``(u, t)``."""
        if self.prediction == "x0":
            return out
        x, v = u
        mx, mv, xx, xv, vv = (expand(c, x) for c in process._coefs(t.astype(x.dtype)))
        det = xx * vv - jnp.square(xv)
        ell = jnp.sqrt(xx / det)
        score_v = -ell * out
        return (det * score_v + xx * v - xv * x) / (xx * mv - xv * mx)

    def denoiser(self, apply_fn: ApplyFn, params: PyTree, process: CLD, **cond: Any
                 ) -> Denoiser:
        """The denoiser ``D(u, t)`` of the network, for samplers and likelihoods."""

        def denoiser(u, t):
            x, v = process.check_state(u, name="u", where="CLDPredict.denoiser")
            t = _per_example(jnp.asarray(t, x.dtype), x)
            return self.to_denoiser(process, (x, v), t,
                                    self.network_output(apply_fn, params, (x, v), t, **cond))

        return denoiser


@pytree_dataclass
class EpsWeighting:
    """HSM with ``lambda(t) = ell(t)^-2``: the loss is ``||eps_hat - eps_v||^2`` (the paper's
    objective for sample quality)."""

    def factor(self, process: CLD, t: Array, ell: Array) -> Array:
        del process, t
        return 1.0 / jnp.square(ell)


@pytree_dataclass
class LikelihoodWeighting:
    """HSM with ``lambda(t) = Gamma beta`` (half the squared diffusion of ``v``): the paper's
    maximum-likelihood weighting, a bound on the negative log-likelihood of ``(x0, v0)``."""

    def factor(self, process: CLD, t: Array, ell: Array) -> Array:
        del t
        return jnp.broadcast_to((process.damping * jnp.asarray(process.beta)).astype(ell.dtype),
                                ell.shape)


@pytree_dataclass
class HSMLoss:
    """Hybrid score matching for CLD (Dockhorn et al. 2022, eq. 9): conditional on ``x0`` only
    (the initial velocity is marginalised), regressing the velocity score.

    With ``t ~ U[t_min, t_max]``, ``eps ~ N(0, I_2)`` per coordinate and
    ``u_t = m(t) x0 + L(t) eps`` (``L`` the Cholesky factor of ``Sigma(t)``), the conditional
    velocity score is ``grad_v log p(u_t | x0) = -ell(t) eps_v`` (``ell = 1 / L_vv``) and the
    per-example loss is ``lambda(t) ||s_v(u_t, t) + ell(t) eps_v||^2`` (summed over
    coordinates, or averaged with ``reduce_mean``), where ``s_v`` is the network's velocity
    score (from its denoiser by generalised Tweedie). A drop-in for
    :class:`diffax.losses.DenoisingLoss` in the train step (``bind``, ``denoiser``).

    Args:
      process: a :class:`CLD`.
      weighting: :class:`EpsWeighting` (``lambda = ell^-2``) or :class:`LikelihoodWeighting`
        (``lambda = Gamma beta``).
      parameterization: a :class:`CLDPredict`.
      reduce_mean: average over coordinates instead of summing.
      data_key, cond_keys, key_arg: as in :class:`diffax.losses.DenoisingLoss`.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> loss = diffax.cld.HSMLoss(process=diffax.CLD())
      >>> apply_fn = lambda params, xv, t: params * xv[..., :2]
      >>> value, aux = loss.bind(apply_fn)(1.0, jax.random.key(0), {"x": jnp.ones((8, 2))})
      >>> value.shape, aux["t"].shape
      ((), (8,))
    """

    process: CLD
    weighting: Any = dataclasses.field(default_factory=EpsWeighting)
    parameterization: CLDPredict = dataclasses.field(default_factory=CLDPredict)
    reduce_mean: bool = static_field(default=True)
    data_key: str = static_field(default="x")
    cond_keys: tuple[str, ...] = static_field(default=("label",))
    key_arg: str | None = static_field(default=None)

    def __post_init__(self):
        if not isinstance(self.process, CLD):
            raise ValueError(f"HSMLoss: `process` must be a diffax.CLD, got {self.process!r}.")
        if not isinstance(self.weighting, (EpsWeighting, LikelihoodWeighting)):
            raise ValueError(f"HSMLoss: `weighting` must be EpsWeighting() or "
                             f"LikelihoodWeighting(), got {self.weighting!r}.")
        if not isinstance(self.parameterization, CLDPredict):
            raise ValueError(f"HSMLoss: `parameterization` must be a CLDPredict, got "
                             f"{self.parameterization!r}.")
        object.__setattr__(self, "cond_keys", tuple(self.cond_keys))

    def denoiser(self, apply_fn: ApplyFn, params: PyTree, **cond: Any) -> Denoiser:
        """The denoiser ``D(u, t)`` of a network trained with this loss."""
        return self.parameterization.denoiser(apply_fn, params, self.process, **cond)

    def per_example(self, apply_fn: ApplyFn, params: PyTree, x0: Array, t: Array,
                    eps_x: Array, eps_v: Array, *, cond: Mapping[str, Any] | None = None,
                    key: PRNGKey | None = None) -> Array:
        """The weighted HSM loss ``[B]`` at given times and noise."""
        process, par = self.process, self.parameterization
        u, ell = process._perturb(x0, t, eps_x, eps_v)
        kwargs = dict(cond or {})
        if self.key_arg is not None:
            kwargs[self.key_arg] = key
        out = par.network_output(apply_fn, params, u, t, **kwargs)
        if out.shape != x0.shape:
            raise ValueError(f"HSMLoss: the network returned shape {out.shape} for data of "
                             f"shape {x0.shape}; it must return the data's shape.")
        if par.prediction == "eps":
            err = jnp.square(ell) * jnp.square(out - eps_v)  # ||-ell out + ell eps_v||^2
        else:
            score_v = process._score_v(u, out, t)
            err = jnp.square(score_v + ell * eps_v)
        weight = expand(jnp.ones_like(t), x0) * self.weighting.factor(process, t, ell)
        err = (weight * err).reshape(x0.shape[0], -1)
        return jnp.mean(err, axis=-1) if self.reduce_mean else jnp.sum(err, axis=-1)

    def __call__(self, apply_fn: ApplyFn, params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, dict[str, Array]]:
        """The Monte Carlo loss of a batch: ``(loss, aux)`` with ``aux["t"]``,
        ``aux["per_example"]``."""
        if isinstance(batch, Mapping):
            if self.data_key not in batch:
                raise ValueError(f"HSMLoss: the batch has no {self.data_key!r} entry "
                                 f"(`data_key`); it has {sorted(batch)}.")
            x0 = jnp.asarray(batch[self.data_key])
            cond = {k: batch[k] for k in self.cond_keys if k in batch}
        else:
            x0, cond = jnp.asarray(batch), {}
        check_key(key, where="HSMLoss", allow_none=False)
        if x0.ndim < 2 or x0.shape[0] == 0 or not jnp.issubdtype(x0.dtype, jnp.floating):
            raise ValueError(f"HSMLoss: the data must be a non-empty floating-point batch "
                             f"[B, ...], got shape {x0.shape} and dtype {x0.dtype}.")
        check_finite_examples(x0, name="batch", where="HSMLoss")
        k_t, k_eps, k_net = jax.random.split(key, 3)
        tdtype = jnp.promote_types(x0.dtype, jnp.float32)
        lo = jnp.asarray(self.process.t_min, tdtype)
        hi = jnp.asarray(self.process.t_max, tdtype)
        t = lo + jax.random.uniform(k_t, x0.shape[:1], tdtype) * (hi - lo)
        eps = jax.random.normal(k_eps, (2,) + x0.shape, x0.dtype)
        per = self.per_example(apply_fn, params, x0, t, eps[0], eps[1], cond=cond, key=k_net)
        return jnp.mean(per), {"t": t, "per_example": per}

    def bind(self, apply_fn: ApplyFn):
        """The pure ``loss_fn(params, key, batch) -> (loss, aux)`` for a network."""

        def loss_fn(params, key, batch):
            return self(apply_fn, params, key, batch)

        return loss_fn


# --------------------------------------------------------------------------------------------
# The paper's bound on log p(x0).


def data_log_likelihood_bound(key: PRNGKey, process: CLD, denoiser: Denoiser, x: ArrayLike, *,
                              num_samples: int = 1, **kwargs: Any) -> Array:
    """The paper's lower bound on ``log p(x)`` at ``t_min``, in nats per example ``[B]``:
    ``log p(x) >= E_{v ~ N(0, gamma M)} [log p(x, v) - log N(v; 0, gamma M)]`` (the gap is
    ``KL(N(0, gamma M) || p(v | x))``), with ``log p(x, v)`` from the probability-flow ODE
    (:func:`diffax.log_likelihood`) and ``num_samples`` velocity draws per example.

    Args:
      key: PRNG key for the velocities (and Hutchinson probes, if requested in ``kwargs``).
      process: a :class:`CLD` with ``gamma > 0``.
      denoiser: ``D(u, t)``.
      x: data ``[B, ...]`` (the position at ``t_min``).
      num_samples: velocity draws per example.
      **kwargs: passed to :func:`diffax.log_likelihood`.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.CLD()
      >>> gm = diffax.testing.GaussianMixture(means=jnp.zeros((1, 1)), stds=jnp.ones(1),
      ...                                     weights=jnp.ones(1))
      >>> b = diffax.cld.data_log_likelihood_bound(jax.random.key(0), p, gm.denoiser(p),
      ...                                          jnp.zeros((2, 1)))
      >>> b.shape
      (2,)
    """
    return _bound_and_nfe(key, process, denoiser, x, num_samples=num_samples, **kwargs)[0]


def _bound_and_nfe(key: PRNGKey, process: CLD, denoiser: Denoiser, x: ArrayLike, *,
                   num_samples: int = 1, **kwargs: Any) -> tuple[Array, Array]:
    """:func:`data_log_likelihood_bound` ``[B]`` and the denoiser evaluations per example
    ``[B]`` its ODE solves took (summed over the velocity draws), for ``diffax likelihood``."""
    from diffax.likelihood import log_likelihood  # likelihood depends on processes, not cld

    x = jnp.asarray(x)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"data_log_likelihood_bound: `num_samples` must be a positive "
                         f"integer, got {num_samples!r}.")
    g = concrete_value(process.gamma)
    if g is not None and not np.all(g > 0):
        raise ValueError("data_log_likelihood_bound: needs `gamma` > 0 (a velocity "
                         "distribution with a density).")
    var = (jnp.asarray(process.gamma) * process.mass).astype(x.dtype)
    n = math.prod(x.shape[1:])
    total = jnp.zeros(x.shape[:1], x.dtype)
    nfe = jnp.zeros(x.shape[:1], jnp.int32)
    for i in range(int(num_samples)):
        kv, kl = jax.random.split(jax.random.fold_in(key, i))
        v = jnp.sqrt(var) * jax.random.normal(kv, x.shape, x.dtype)
        log_q = (-0.5 * jnp.sum(jnp.square(v).reshape(x.shape[0], -1), -1) / var
                 - 0.5 * n * (_LOG_2PI + jnp.log(var)))
        ll = log_likelihood(kl if kwargs.get("divergence") == "hutchinson" else None,
                            process, denoiser, (x, v), **kwargs)
        total = total + ll.logp - log_q
        nfe = nfe + ll.nfe
    return total / num_samples, nfe
