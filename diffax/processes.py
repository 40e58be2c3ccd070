"""Forward noising processes ``x_t = alpha(t) * x0 + sigma(t) * eps``, ``eps ~ N(0, I)``.

A process is defined by ``alpha(t)`` and ``sigma(t)`` on ``[t_min, t_max]`` (data at ``t_min``,
noise at ``t_max``). Everything else is derived here, once:

* ``log_snr(t) = 2 log(alpha / sigma)`` and its inverse ``t_from_log_snr`` (closed form for the
  built-in processes, an in-graph bisection for user-defined ones);
* the SDE ``dx = f(t) x dt + g(t) dw`` with ``f = alpha'/alpha`` and
  ``g^2 = -sigma^2 d(log_snr)/dt``;
* the Gaussian posterior ``q(x_s | x_t, x0)`` for ``s < t`` (DDPM's posterior on a grid);
* the prior ``N(0, sigma(t_max)^2 I)``.

Processes are pytree dataclasses: their numbers are leaves, so a jitted function taking a
process as an argument does not recompile when the numbers change, and ``jax.grad`` with
respect to them works. Nothing in a process knows about step counts.

Shapes: ``t`` is a scalar or ``[B]``; ``x`` is ``[B, ...]``; per-example coefficients are
broadcast over the trailing dimensions of ``x`` by :func:`expand`.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass
from diffax.typing import Array, ArrayLike, PRNGKey

__all__ = [
    "Process",
    "StateProcess",
    "VP",
    "CosineVP",
    "SubVP",
    "VE",
    "EDM",
    "RectifiedFlow",
    "DiscreteVP",
    "expand",
    "time_at_log_snr",
]


# --------------------------------------------------------------------------------------------
# Small helpers shared by every process.


def _float_dtype() -> Any:
    return jnp.result_type(float)


def _as_time(t: ArrayLike) -> Array:
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(_float_dtype())
    return t


def expand(coef: ArrayLike, x: Array, *, name: str = "t") -> Array:
    """Reshapes a per-example coefficient ``[B]`` (or a scalar) to broadcast against ``x``.

    Args:
      coef: a scalar or an array whose shape is a prefix of ``x.shape`` (usually ``[B]``).
      x: the array ``[B, ...]`` the coefficient multiplies.
      name: the argument named in the error message.

    Returns:
      ``coef`` reshaped to ``coef.shape + (1,) * (x.ndim - coef.ndim)``.

    Raises:
      ValueError: if ``coef``'s shape is not a prefix of ``x``'s shape.

    Example:
      >>> import jax.numpy as jnp
      >>> expand(jnp.ones(4), jnp.zeros((4, 8, 8, 3))).shape
      (4, 1, 1, 1)
    """
    coef = jnp.asarray(coef)
    if coef.ndim == 0:
        return coef
    if coef.ndim > x.ndim or tuple(x.shape[: coef.ndim]) != tuple(coef.shape):
        raise ValueError(
            f"`{name}` has shape {tuple(coef.shape)}, which does not match the batch shape of "
            f"`x` {tuple(x.shape)}: expected a scalar or shape {tuple(x.shape[:1])}."
        )
    return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_number(owner: str, name: str, value: Any, *, positive: bool = False,
                  nonnegative: bool = False) -> np.ndarray | None:
    """Validates a concrete number; silently accepts tracers and placeholders."""
    v = concrete_value(value)
    if v is None:
        return None
    _check(bool(np.all(np.isfinite(v))), f"{owner}: `{name}` must be finite, got {value!r}.")
    if positive:
        _check(bool(np.all(v > 0)), f"{owner}: `{name}` must be positive, got {value!r}.")
    if nonnegative:
        _check(bool(np.all(v >= 0)), f"{owner}: `{name}` must be non-negative, got {value!r}.")
    return v


def _check_order(owner: str, lo_name: str, lo: Any, hi_name: str, hi: Any,
                 *, strict: bool = True) -> None:
    a, b = concrete_value(lo), concrete_value(hi)
    if a is None or b is None:
        return
    ok = bool(np.all(a < b)) if strict else bool(np.all(a <= b))
    rel = "<" if strict else "<="
    _check(ok, f"{owner}: need `{lo_name}` {rel} `{hi_name}`, got {lo_name}={lo!r}, "
               f"{hi_name}={hi!r}.")


def _log_neg_expm1(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and for very negative ``x``."""
    return jnp.where(x > -0.6931471805599453, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


# --------------------------------------------------------------------------------------------
# The base class: everything derived from alpha and sigma.


class Process(abc.ABC):
    """A Gaussian forward process ``x_t = alpha(t) x0 + sigma(t) eps`` on ``[t_min, t_max]``.

    Subclasses implement ``_log_alpha`` and ``_log_sigma`` (and may override ``_alpha``,
    ``_sigma``, ``_log_snr``, ``_t_from_log_snr``, ``f`` and ``g2`` with closed forms), and
    declare ``t_min``/``t_max`` (as fields or properties) and the interval ``_domain`` on which
    ``alpha`` and ``sigma`` are meaningful. Public methods check concrete times against that
    interval; inside ``jit`` there is nothing to check and no cost.

    Example: a custom process only needs ``alpha`` and ``sigma``::

      @diffax.pytree_dataclass
      class Linear(diffax.Process):
          t_min: float = 1e-3
          t_max: float = 1.0
          def _log_alpha(self, t): return jnp.zeros_like(t)
          def _log_sigma(self, t): return jnp.log(t)
    """

    t_min: Any
    t_max: Any
    _domain: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    scalar_coefficients: ClassVar[bool] = True
    """The state is the data array and ``x_t | x0`` has scalar coefficients ``alpha``,
    ``sigma`` (see :class:`StateProcess` for the other kind)."""

    # ---- to be provided by subclasses ------------------------------------------------------

    @abc.abstractmethod
    def _log_alpha(self, t: Array) -> Array:
        """``log alpha(t)``."""

    @abc.abstractmethod
    def _log_sigma(self, t: Array) -> Array:
        """``log sigma(t)``."""

    def _alpha(self, t: Array) -> Array:
        return jnp.exp(self._log_alpha(t))

    def _sigma(self, t: Array) -> Array:
        return jnp.exp(self._log_sigma(t))

    def _log_snr(self, t: Array) -> Array:
        return 2.0 * (self._log_alpha(t) - self._log_sigma(t))

    def _t_from_log_snr(self, lam: Array) -> Array:
        """In-graph bisection on ``[t_min, t_max]`` (log-SNR decreases with time)."""
        lo = jnp.broadcast_to(jnp.asarray(self.t_min, lam.dtype), lam.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.t_max, lam.dtype), lam.shape)
        return _bisect_log_snr(self._log_snr, lam, lo, hi)

    closed_form_inverse: ClassVar[bool] = False
    """Whether :meth:`t_from_log_snr` is a closed form valid for any log-SNR (the process
    overrides ``_t_from_log_snr``), rather than the default bisection on ``[t_min, t_max]``;
    :func:`time_at_log_snr` reads it. A process overriding ``_t_from_log_snr`` sets it."""

    # ---- public interface -------------------------------------------------------------------

    def _time(self, t: ArrayLike, name: str = "t") -> Array:
        """Converts ``t`` to a float array and checks concrete values against the domain."""
        v = concrete_value(t)
        if v is not None:
            lo, hi = self._domain_bounds()
            _check(bool(np.all(np.isfinite(v))), f"{type(self).__name__}: `{name}` must be "
                                                 f"finite, got {t!r}.")
            if lo is not None and hi is not None and not bool(np.all((v >= lo) & (v <= hi))):
                raise ValueError(
                    f"{type(self).__name__}: `{name}`={_short(v)} is outside [{lo:g}, {hi:g}], "
                    f"where alpha(t) and sigma(t) are defined (the process runs on "
                    f"[t_min, t_max] = [{_short(concrete_value(self.t_min))}, "
                    f"{_short(concrete_value(self.t_max))}])."
                )
        return _as_time(t)

    def _domain_bounds(self) -> tuple[float | None, float | None]:
        return self._domain

    def alpha(self, t: ArrayLike) -> Array:
        """Signal scale ``alpha(t)``, same shape as ``t``."""
        return self._alpha(self._time(t))

    def sigma(self, t: ArrayLike) -> Array:
        """Noise scale ``sigma(t)``, same shape as ``t``."""
        return self._sigma(self._time(t))

    def log_alpha(self, t: ArrayLike) -> Array:
        """``log alpha(t)``."""
        return self._log_alpha(self._time(t))

    def log_sigma(self, t: ArrayLike) -> Array:
        """``log sigma(t)``."""
        return self._log_sigma(self._time(t))

    def log_snr(self, t: ArrayLike) -> Array:
        """Log signal-to-noise ratio ``2 log(alpha(t) / sigma(t))``; decreasing in ``t``."""
        return self._log_snr(self._time(t))

    def t_from_log_snr(self, log_snr: ArrayLike) -> Array:
        """The time at which ``log_snr(t)`` equals ``log_snr``: the inverse of :meth:`log_snr`.

        Example:
          >>> import diffax
          >>> p = diffax.VP()
          >>> float(p.t_from_log_snr(p.log_snr(0.3)))  # doctest: +ELLIPSIS
          0.3...
        """
        return self._t_from_log_snr(_as_time(log_snr))

    def dalpha(self, t: ArrayLike) -> Array:
        """``d alpha / dt`` (forward-mode autodiff unless a subclass has a closed form)."""
        t = self._time(t)
        return jax.jvp(self._alpha, (t,), (jnp.ones_like(t),))[1]

    def dsigma(self, t: ArrayLike) -> Array:
        """``d sigma / dt`` (forward-mode autodiff unless a subclass has a closed form)."""
        t = self._time(t)
        return jax.jvp(self._sigma, (t,), (jnp.ones_like(t),))[1]

    def f(self, t: ArrayLike) -> Array:
        """SDE drift coefficient ``f(t) = alpha'(t) / alpha(t) = d log alpha / dt``."""
        t = self._time(t)
        return jax.jvp(self._log_alpha, (t,), (jnp.ones_like(t),))[1]

    def g2(self, t: ArrayLike) -> Array:
        """Squared SDE diffusion ``g(t)^2 = -sigma(t)^2 d log_snr / dt``."""
        t = self._time(t)
        dlam = jax.jvp(self._log_snr, (t,), (jnp.ones_like(t),))[1]
        return -jnp.square(self._sigma(t)) * dlam

    def sde_drift(self, x: Array, t: ArrayLike) -> Array:
        """Forward SDE drift ``f(t) x``."""
        return expand(self.f(t), x) * x

    def diffusion(self, t: ArrayLike) -> Array:
        """Forward SDE diffusion ``g(t)``."""
        return jnp.sqrt(self.g2(t))

    def marginal_sample(self, key: PRNGKey, x0: Array, t: ArrayLike) -> Array:
        """Samples ``x_t ~ q(x_t | x0) = N(alpha(t) x0, sigma(t)^2 I)``.

        Args:
          key: PRNG key.
          x0: clean data ``[B, ...]``.
          t: a scalar or ``[B]`` times.

        Example:
          >>> import jax, jax.numpy as jnp, diffax
          >>> xt = diffax.VP().marginal_sample(jax.random.key(0), jnp.ones((4, 2)), 0.5)
          >>> xt.shape
          (4, 2)
        """
        t = self._time(t)
        eps = jax.random.normal(key, x0.shape, x0.dtype)
        return expand(self._alpha(t), x0) * x0 + expand(self._sigma(t), x0) * eps

    def posterior(self, x_t: Array, x0: Array, *, t: ArrayLike, s: ArrayLike
                  ) -> tuple[Array, Array]:
        """Mean and standard deviation of ``q(x_s | x_t, x0)`` for ``s < t``.

        With ``r = exp(log_snr(t) - log_snr(s))``, the posterior is
        ``N((sigma_s/sigma_t) sqrt(r) x_t + alpha_s (1 - r) x0, sigma_s^2 (1 - r))``. This form
        never divides by ``alpha``, so it holds where ``alpha(t) = 0``. On a
        :class:`DiscreteVP` grid it is exactly DDPM's ``q(x_{n-1} | x_n, x0)``.

        Returns:
          ``(mean, std)`` with ``mean`` shaped like ``x_t`` and ``std`` broadcastable to it.
        """
        t, s = self._time(t, "t"), self._time(s, "s")
        lam_t, lam_s = self._log_snr(t), self._log_snr(s)
        one_minus_r = -jnp.expm1(jnp.minimum(lam_t - lam_s, 0.0))
        r = 1.0 - one_minus_r
        sig_s, sig_t = self._sigma(s), self._sigma(t)
        c_xt = jnp.where(sig_s > 0, sig_s / sig_t * jnp.sqrt(r), 0.0)
        c_x0 = self._alpha(s) * one_minus_r
        mean = expand(c_xt, x_t) * x_t + expand(c_x0, x0) * x0
        std = expand(sig_s * jnp.sqrt(one_minus_r), x_t)
        return mean, std

    @property
    def prior_std(self) -> Array:
        """Standard deviation of the prior, ``sigma(t_max)``."""
        return self._sigma(_as_time(self.t_max))

    def prior_sample(self, key: PRNGKey, shape: tuple[int, ...], dtype: Any = None) -> Array:
        """Samples the prior ``N(0, sigma(t_max)^2 I)`` with the given shape ``[B, ...]``.

        Example:
          >>> import jax, diffax
          >>> diffax.VE().prior_sample(jax.random.key(0), (2, 3)).shape
          (2, 3)
        """
        dtype = dtype or _float_dtype()
        return self.prior_std.astype(dtype) * jax.random.normal(key, shape, dtype)

    def prior_logp(self, x: Array) -> Array:
        """Log-density of the prior at ``x`` ``[B, ...]``, summed over all but the batch axis."""
        x = jnp.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"`x` must have a batch axis, got shape {x.shape}.")
        std = self.prior_std.astype(x.dtype)
        n = math.prod(x.shape[1:])
        sq = jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=-1)
        return -0.5 * sq / jnp.square(std) - n * (jnp.log(std) + 0.5 * math.log(2 * math.pi))

    def replace(self, **changes: Any) -> Process:
        """A copy with some fields changed (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)

    def _check_times(self, name: str) -> None:
        _check_order(name, "t_min", self.t_min, "t_max", self.t_max)
        lo, hi = self._domain_bounds()
        for tname in ("t_min", "t_max"):
            v = concrete_value(getattr(self, tname))
            if v is not None and lo is not None and not bool(np.all((v >= lo) & (v <= hi))):
                raise ValueError(f"{name}: `{tname}`={_short(v)} is outside the domain "
                                 f"[{lo:g}, {hi:g}] of this process.")


class StateProcess(abc.ABC):
    """A linear Gaussian process whose state is a tuple of ``k`` arrays shaped like the data.

    The state ``u = (u_1, ..., u_k)`` (each ``[B, ...]``, batch axis leading on every leaf)
    follows a linear SDE acting the same way on every data coordinate, so that, per coordinate,
    ``u_t | x0 ~ N(m(t) x0, Sigma(t))`` with a vector ``m(t)`` in ``R^k`` and a ``k x k``
    covariance ``Sigma(t)``: there are no scalar ``alpha``/``sigma``. The denoiser contract is
    unchanged in meaning: ``D(u, t) = E[x0 | u_t = u]``, shaped like the data, and the score
    follows by generalised Tweedie, ``Sigma(t)^-1 (m(t) D - u)``.
    :class:`diffax.CLD` (critically-damped Langevin diffusion, ``k = 2``) is one.

    Solvers declare whether they run on such processes (``Solver.scalar_coefficients_only``);
    those that need scalar coefficients refuse them with an error naming the process.

    Subclasses provide ``t_min``, ``t_max``, ``state_size`` (``k``),
    ``marginal_coefficients(t) -> (m [*t.shape, k], Sigma [*t.shape, k, k])``,
    ``check_state(u, name=..., where=...)``, ``prior_sample``, ``prior_logp``,
    ``probability_flow(u, d, t)`` and ``reverse_sde(u, d, t)`` (see :class:`diffax.CLD`).
    """

    scalar_coefficients: ClassVar[bool] = False
    state_size: ClassVar[int] = 2

    @abc.abstractmethod
    def marginal_coefficients(self, t: ArrayLike) -> tuple[Array, Array]:
        """``(m(t) [*t.shape, k], Sigma(t) [*t.shape, k, k])`` of ``u_t | x0``, per coordinate."""

    @abc.abstractmethod
    def check_state(self, u: Any, *, name: str = "u", where: str = "") -> tuple[Array, ...]:
        """Returns ``u`` as a tuple of ``k`` arrays, or raises a ValueError naming ``name``."""

    @abc.abstractmethod
    def probability_flow(self, u: Any, d: Array, t: Array) -> tuple[Array, ...]:
        """``du/dt`` of the probability-flow ODE at ``u``, given ``d = D(u, t)``."""

    @abc.abstractmethod
    def reverse_sde(self, u: Any, d: Array, t: Array) -> tuple[tuple[Array, ...], Any]:
        """``(drift, diffusion)`` of the reverse-time SDE (integrated with ``dt < 0``)."""


def _short(v: Any) -> str:
    if v is None:
        return "<traced>"
    v = np.asarray(v)
    return f"{float(v):g}" if v.size == 1 else np.array2string(v, precision=4, threshold=6)


# --------------------------------------------------------------------------------------------
# Variance-preserving family: alpha^2 + sigma^2 = 1.


class _VPFamily(Process):
    """Shared closed forms for processes with ``alpha^2 + sigma^2 = 1``."""

    _domain: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def _sigma(self, t: Array) -> Array:
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))

    def _log_sigma(self, t: Array) -> Array:
        return 0.5 * _log_neg_expm1(2.0 * self._log_alpha(t))

    def _log_snr(self, t: Array) -> Array:
        la2 = 2.0 * self._log_alpha(t)
        return la2 - _log_neg_expm1(la2)

    def _neg_log_alpha_sq(self, lam: Array) -> Array:
        """``-log alpha^2`` at a given log-SNR: ``alpha^2 = sigmoid(lam)``."""
        return jax.nn.softplus(-lam)

    def g2(self, t: ArrayLike) -> Array:
        # d log_snr / dt = 2 f / sigma^2, so g^2 = -2 f.
        return -2.0 * self.f(t)


class _LinearBeta(Process):
    """``beta(t) = beta_min + t (beta_max - beta_min)``: the VP and sub-VP SDEs' shared part.

    ``log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` and ``f = -beta(t)/2``.
    """

    def _check_betas(self, owner: str) -> None:
        _check_number(owner, "beta_min", self.beta_min, nonnegative=True)
        _check_number(owner, "beta_max", self.beta_max, positive=True)
        _check_order(owner, "beta_min", self.beta_min, "beta_max", self.beta_max, strict=False)
        self._check_times(owner)

    def _log_alpha(self, t: Array) -> Array:
        return -0.25 * jnp.square(t) * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _beta(self, t: Array) -> Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _time_at_neg_log_alpha_sq(self, s: Array) -> Array:
        """Solves ``-log alpha(t)^2 = s``, i.e. ``(b1 - b0) t^2 / 2 + b0 t = s``, stably."""
        b0, b1 = self.beta_min, self.beta_max
        return 2.0 * s / (b0 + jnp.sqrt(jnp.square(b0) + 2.0 * (b1 - b0) * s))

    def f(self, t: ArrayLike) -> Array:
        return -0.5 * self._beta(self._time(t))


@pytree_dataclass
class VP(_LinearBeta, _VPFamily):
    """score_sde's VP SDE: linear ``beta(t) = beta_min + t (beta_max - beta_min)``.

    ``log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``,
    ``sigma = sqrt(1 - alpha^2)``, ``f = -beta(t)/2``, ``g^2 = beta(t)``.

    Args:
      beta_min: ``beta(0)``, non-negative.
      beta_max: ``beta(1)``, at least ``beta_min``.
      t_min: the data end of the time range (score_sde samples to 1e-3).
      t_max: the noise end.

    Example:
      >>> import diffax
      >>> p = diffax.VP(beta_min=0.1, beta_max=20.0)
      >>> round(float(p.alpha(1.0)), 5)
      0.00657
    """

    beta_min: Any = 0.1
    beta_max: Any = 20.0
    t_min: Any = 1e-3
    t_max: Any = 1.0

    def __post_init__(self):
        self._check_betas("VP")

    @classmethod
    def cosine(cls, *, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946) -> CosineVP:
        """The improved-DDPM cosine schedule as a continuous process (see :class:`CosineVP`)."""
        return CosineVP(s=s, t_min=t_min, t_max=t_max)

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        return self._time_at_neg_log_alpha_sq(self._neg_log_alpha_sq(lam))


@pytree_dataclass
class CosineVP(_VPFamily):
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021) in continuous time.

    ``alpha(t) = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s))``. The default ``t_max``
    0.9946 (as in DPM-Solver) stops short of ``alpha = 0`` so that ``log_snr`` stays finite.

    Example:
      >>> import diffax
      >>> p = diffax.VP.cosine()
      >>> round(float(p.log_snr(p.t_max)), 2)
      -9.56
    """

    s: Any = 0.008
    t_min: Any = 1e-3
    t_max: Any = 0.9946

    def __post_init__(self):
        _check_number("CosineVP", "s", self.s, positive=True)
        self._check_times("CosineVP")

    def _domain_bounds(self):
        return (0.0, 1.0)

    def _angle(self, t: Array) -> Array:
        return 0.5 * math.pi * (t + self.s) / (1.0 + self.s)

    def _log_alpha(self, t: Array) -> Array:
        c = jnp.maximum(jnp.cos(self._angle(t)), 0.0)
        return jnp.log(c) - jnp.log(jnp.cos(self._angle(jnp.zeros_like(t))))

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        alpha = jnp.exp(-0.5 * self._neg_log_alpha_sq(lam))
        c0 = jnp.cos(self._angle(jnp.zeros_like(lam)))
        return (1.0 + self.s) * (2.0 / math.pi) * jnp.arccos(alpha * c0) - self.s

    def f(self, t: ArrayLike) -> Array:
        t = self._time(t)
        return -0.5 * math.pi / (1.0 + self.s) * jnp.tan(self._angle(t))


@pytree_dataclass
class SubVP(_LinearBeta):
    """score_sde's sub-VP SDE: the VP's ``alpha`` with ``sigma = 1 - alpha^2``.

    ``g^2 = beta(t) (1 - alpha^4)``; the marginal variance never exceeds the VP's.

    Example:
      >>> import diffax
      >>> p = diffax.SubVP()
      >>> round(float(p.sigma(0.5)), 4)
      0.9242
    """

    beta_min: Any = 0.1
    beta_max: Any = 20.0
    t_min: Any = 1e-3
    t_max: Any = 1.0
    _domain: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def __post_init__(self):
        self._check_betas("SubVP")

    def _sigma(self, t: Array) -> Array:
        return -jnp.expm1(2.0 * self._log_alpha(t))

    def _log_sigma(self, t: Array) -> Array:
        return _log_neg_expm1(2.0 * self._log_alpha(t))

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        # alpha^2 / (1 - alpha^2)^2 = e^lam; with q = e^-lam,
        # -log alpha^2 = log1p(q/2 + sqrt(q (4 + q))/2).
        q = jnp.exp(-lam)
        s = jnp.log1p(0.5 * q + 0.5 * jnp.sqrt(q * (4.0 + q)))
        return self._time_at_neg_log_alpha_sq(s)

    def g2(self, t: ArrayLike) -> Array:
        t = self._time(t)
        return -self._beta(t) * jnp.expm1(4.0 * self._log_alpha(t))


@pytree_dataclass
class VE(Process):
    """score_sde's VE SDE: ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``.

    ``f = 0``, ``g^2 = 2 sigma^2 log(sigma_max/sigma_min)``.

    Example:
      >>> import diffax
      >>> p = diffax.VE(sigma_min=0.01, sigma_max=50.0)
      >>> round(float(p.sigma(1.0)), 3)
      50.0
    """

    sigma_min: Any = 0.01
    sigma_max: Any = 50.0
    t_min: Any = 1e-5
    t_max: Any = 1.0

    def __post_init__(self):
        _check_number("VE", "sigma_min", self.sigma_min, positive=True)
        _check_number("VE", "sigma_max", self.sigma_max, positive=True)
        _check_order("VE", "sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        self._check_times("VE")

    def _log_ratio(self):
        return jnp.log(self.sigma_max) - jnp.log(self.sigma_min)

    def _log_alpha(self, t: Array) -> Array:
        return jnp.zeros_like(t)

    def _alpha(self, t: Array) -> Array:
        return jnp.ones_like(t)

    def _log_sigma(self, t: Array) -> Array:
        return jnp.log(self.sigma_min) + t * self._log_ratio()

    def _log_snr(self, t: Array) -> Array:
        return -2.0 * self._log_sigma(t)

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        return (-0.5 * lam - jnp.log(self.sigma_min)) / self._log_ratio()

    def f(self, t: ArrayLike) -> Array:
        return jnp.zeros_like(self._time(t))

    def g2(self, t: ArrayLike) -> Array:
        t = self._time(t)
        return 2.0 * jnp.square(self._sigma(t)) * self._log_ratio()


@pytree_dataclass
class EDM(Process):
    """Karras et al. (2022): ``alpha = 1``, ``sigma(t) = t`` on ``[sigma_min, sigma_max]``.

    ``sigma_data`` is the data's standard deviation used by EDM preconditioning and loss
    weighting (:func:`diffax.edm_preconditioned`).

    Example:
      >>> import diffax
      >>> p = diffax.EDM()
      >>> float(p.t_max), float(p.sigma(3.0))
      (80.0, 3.0)
    """

    sigma_min: Any = 0.002
    sigma_max: Any = 80.0
    sigma_data: Any = 0.5
    _domain: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def __post_init__(self):
        _check_number("EDM", "sigma_min", self.sigma_min, nonnegative=True)
        _check_number("EDM", "sigma_max", self.sigma_max, positive=True)
        _check_number("EDM", "sigma_data", self.sigma_data, positive=True)
        _check_order("EDM", "sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    @property
    def t_min(self):
        return self.sigma_min

    @property
    def t_max(self):
        return self.sigma_max

    def _log_alpha(self, t: Array) -> Array:
        return jnp.zeros_like(t)

    def _alpha(self, t: Array) -> Array:
        return jnp.ones_like(t)

    def _log_sigma(self, t: Array) -> Array:
        return jnp.log(t)

    def _sigma(self, t: Array) -> Array:
        return t

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        return jnp.exp(-0.5 * lam)

    def f(self, t: ArrayLike) -> Array:
        return jnp.zeros_like(self._time(t))

    def g2(self, t: ArrayLike) -> Array:
        return 2.0 * self._time(t)


@pytree_dataclass
class RectifiedFlow(Process):
    """Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): ``alpha = 1 - t``,
    ``sigma = t``.

    The flow velocity ``dx/dt = eps - x0`` is the ``"velocity"`` prediction of
    :func:`diffax.as_denoiser`. ``alpha(t_max) = 0`` at the default ``t_max = 1``: samplers
    use update rules that never divide by ``alpha``. ``t_min`` defaults to 1e-3 so that the
    probability-flow drift (and so the likelihood) is finite at ``t_min``; Euler- and Heun-type
    solvers also run to ``t_min = 0``.

    Example:
      >>> import diffax
      >>> p = diffax.RectifiedFlow()
      >>> float(p.alpha(0.25)), float(p.sigma(0.25))
      (0.75, 0.25)
    """

    t_min: Any = 1e-3
    t_max: Any = 1.0
    _domain: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __post_init__(self):
        self._check_times("RectifiedFlow")

    def _alpha(self, t: Array) -> Array:
        return 1.0 - t

    def _sigma(self, t: Array) -> Array:
        return t

    def _log_alpha(self, t: Array) -> Array:
        return jnp.log1p(-t)

    def _log_sigma(self, t: Array) -> Array:
        return jnp.log(t)

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        return jax.nn.sigmoid(-0.5 * lam)

    def dalpha(self, t: ArrayLike) -> Array:
        return -jnp.ones_like(self._time(t))

    def dsigma(self, t: ArrayLike) -> Array:
        return jnp.ones_like(self._time(t))

    def f(self, t: ArrayLike) -> Array:
        return -1.0 / (1.0 - self._time(t))

    def g2(self, t: ArrayLike) -> Array:
        t = self._time(t)
        return 2.0 * t + 2.0 * jnp.square(t) / (1.0 - t)


# --------------------------------------------------------------------------------------------
# DDPM's discrete schedules.


@pytree_dataclass
class DiscreteVP(_VPFamily):
    """DDPM's T-step schedule ``beta_1..beta_T`` (Ho et al. 2020), embedded in continuous time.

    Step ``n`` (``alpha_bar_n = prod_{i<=n} (1 - beta_i)``) sits at time ``t_n = n / T``, so
    ``t_min = 1/T`` (the first noisy step) and ``t_max = 1``. Between steps, ``log alpha`` is
    interpolated linearly, which makes ``alpha`` continuous and ``log_snr`` strictly monotone so
    continuous-time solvers can run on the schedule. On the grid, :meth:`Process.posterior`
    is exactly DDPM's ``q(x_{n-1} | x_n, x0)`` (see :meth:`discrete_posterior`).

    A network trained on DDPM's integer timesteps ``0..T-1`` is called with
    ``p.index(t)`` (the step ``n - 1`` of time ``t``).

    Example:
      >>> import diffax
      >>> p = diffax.DiscreteVP.linear(num_steps=1000, beta_start=1e-4, beta_end=0.02)
      >>> p.num_steps, float(p.t_min)
      (1000, 0.001)
    """

    betas: Any

    def __post_init__(self):
        b = concrete_value(self.betas)
        if b is not None:
            _check(b.ndim == 1 and b.size >= 1,
                   f"DiscreteVP: `betas` must be a non-empty 1-D array, got shape {b.shape}.")
            _check(bool(np.all((b > 0) & (b < 1))),
                   "DiscreteVP: every entry of `betas` must lie in (0, 1).")

    @classmethod
    def linear(cls, *, num_steps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> DiscreteVP:
        """DDPM's linear schedule (Ho et al. 2020)."""
        _check(int(num_steps) >= 1, f"DiscreteVP.linear: `num_steps` must be >= 1, got "
                                    f"{num_steps}.")
        _check(0 < beta_start <= beta_end < 1,
               f"DiscreteVP.linear: need 0 < beta_start <= beta_end < 1, got "
               f"beta_start={beta_start}, beta_end={beta_end}.")
        return cls(betas=np.linspace(beta_start, beta_end, int(num_steps), dtype=np.float64))

    @classmethod
    def cosine(cls, *, num_steps: int = 1000, s: float = 0.008,
               max_beta: float = 0.999) -> DiscreteVP:
        """Improved DDPM's cosine schedule with betas clipped at ``max_beta``."""
        _check(int(num_steps) >= 1, f"DiscreteVP.cosine: `num_steps` must be >= 1, got "
                                    f"{num_steps}.")
        n = np.arange(int(num_steps) + 1, dtype=np.float64) / int(num_steps)
        abar = np.cos((n + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1 - abar[1:] / abar[:-1], 1e-12, max_beta)
        return cls(betas=betas)

    @classmethod
    def from_continuous(cls, process: Process, *, num_steps: int) -> DiscreteVP:
        """The ``T``-step discretization of a variance-preserving ``process`` on the uniform
        grid ``t_n = t_max n / T``: ``beta_n = 1 - alpha(t_n)^2 / alpha(t_{n-1})^2`` (with
        ``alpha(0) = 1``), so ``alpha_bar_n = alpha(t_n)^2`` exactly on the grid.

        Denoising diffusion GANs (Xiao et al. 2022) take few steps of score_sde's VP this way
        (``beta_min=0.1, beta_max=20``), so even ``T = 1`` ends near ``N(0, I)``.

        Example:
          >>> import numpy as np, diffax
          >>> p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=4)
          >>> bool(np.isclose(p.alphas_cumprod[-1], diffax.VP().alpha(1.0) ** 2))
          True
        """
        _check(isinstance(process, Process),
               f"DiscreteVP.from_continuous: `process` must be a diffax.Process, got "
               f"{type(process).__name__}.")
        _check(int(num_steps) == num_steps and int(num_steps) >= 1,
               f"DiscreteVP.from_continuous: `num_steps` must be an integer >= 1, got "
               f"{num_steps!r}.")
        t = np.linspace(0.0, float(process.t_max), int(num_steps) + 1)
        log_a2 = 2.0 * np.asarray(process.log_alpha(jnp.asarray(t[1:])),
                                  np.float64)
        log_a2 = np.concatenate([[0.0], log_a2])
        return cls(betas=-np.expm1(np.diff(log_a2)))

    @property
    def num_steps(self) -> int:
        """``T``, the number of discrete steps (static: part of the array's shape)."""
        return int(np.shape(self.betas)[0])

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_steps

    @property
    def t_max(self) -> float:
        return 1.0

    def _domain_bounds(self):
        return (0.0, 1.0)

    def _grid(self, dtype: Any) -> tuple[Array, Array]:
        betas = jnp.asarray(self.betas, dtype)
        half_log_abar = 0.5 * jnp.concatenate([jnp.zeros((1,), dtype),
                                               jnp.cumsum(jnp.log1p(-betas))])
        times = jnp.arange(self.num_steps + 1, dtype=dtype) / self.num_steps
        return times, half_log_abar

    def _log_alpha(self, t: Array) -> Array:
        times, half_log_abar = self._grid(t.dtype)
        return jnp.interp(t, times, half_log_abar)

    closed_form_inverse = True

    def _t_from_log_snr(self, lam: Array) -> Array:
        times, half_log_abar = self._grid(lam.dtype)
        log_alpha = -0.5 * self._neg_log_alpha_sq(lam)
        return jnp.interp(log_alpha, half_log_abar[::-1], times[::-1])

    @property
    def alphas_cumprod(self) -> Array:
        """``alpha_bar_n`` for ``n = 1..T``."""
        return jnp.cumprod(1.0 - jnp.asarray(self.betas))

    def time(self, n: ArrayLike) -> Array:
        """The continuous time ``n / T`` of step ``n`` (``n = 0`` is clean data)."""
        return _as_time(n) / self.num_steps

    def index(self, t: ArrayLike) -> Array:
        """DDPM's 0-based integer timestep ``n - 1`` for time ``t`` (nearest grid step)."""
        n = jnp.round(_as_time(t) * self.num_steps)
        return jnp.clip(n - 1, 0, self.num_steps - 1).astype(jnp.int32)

    def discrete_posterior(self, x_n: Array, x0: Array, n: ArrayLike) -> tuple[Array, Array]:
        """DDPM's ``q(x_{n-1} | x_n, x0)`` written as in Ho et al. (2020), eqs. (6)-(7).

        ``mean = sqrt(abar_{n-1}) beta_n / (1 - abar_n) x0
        + sqrt(1 - beta_n) (1 - abar_{n-1}) / (1 - abar_n) x_n``,
        ``var = (1 - abar_{n-1}) / (1 - abar_n) beta_n``. Equal to
        ``posterior(x_n, x0, t=n/T, s=(n-1)/T)``; kept separate as the textbook reference.
        """
        n = jnp.asarray(n, jnp.int32)
        dtype = x_n.dtype
        betas = jnp.asarray(self.betas, dtype)
        abar = jnp.concatenate([jnp.ones((1,), dtype), jnp.cumprod(1.0 - betas)])
        beta_n, abar_n, abar_prev = betas[n - 1], abar[n], abar[n - 1]
        c_x0 = jnp.sqrt(abar_prev) * beta_n / (1.0 - abar_n)
        c_xn = jnp.sqrt(1.0 - beta_n) * (1.0 - abar_prev) / (1.0 - abar_n)
        var = (1.0 - abar_prev) / (1.0 - abar_n) * beta_n
        return (expand(c_x0, x0) * x0 + expand(c_xn, x_n) * x_n,
                expand(jnp.sqrt(var), x_n))


def _bisect_log_snr(log_snr: Any, lam: Array, lo: Array, hi: Array) -> Array:
    """The ``t`` in ``[lo, hi]`` with ``log_snr(t) = lam`` by in-graph bisection (log-SNR
    decreases with time): 64 halvings in float64, 32 otherwise."""

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = log_snr(mid) > lam  # mid is still too early in time
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    iters = 64 if lam.dtype == jnp.float64 else 32
    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


def _differentiable_inverse(process: Process, lam: Array) -> Array:
    @jax.custom_jvp
    def inverse(lam):
        return process.t_from_log_snr(lam)

    @inverse.defjvp
    def inverse_jvp(primals, tangents):
        (lam,), (dlam,) = primals, tangents
        t = process.t_from_log_snr(lam)
        _, slope = jax.jvp(process.log_snr, (t,), (jnp.ones_like(t),))
        return t, dlam / slope

    return inverse(lam)


def time_at_log_snr(process: Process, log_snr: Array, *, lo: Array | None = None,
                    hi: Array | None = None) -> Array:
    """The time ``t`` with ``process.log_snr(t) = log_snr``: the one log-SNR -> time inverse.

    Without bounds this is ``process.t_from_log_snr(log_snr)`` with the derivative
    ``1 / (d log_snr / dt)`` (the inverse function's), so gradients flow whatever the inverse
    is computed with (also :func:`diffax.schedules.time_at_log_snr`). With ``lo`` and ``hi`` (arrays
    of ``log_snr``'s dtype, broadcastable to its shape; ``lo`` may lie below ``t_min``, as the
    likelihood's ``t_start`` may): a process with a closed-form inverse
    (:attr:`Process.closed_form_inverse`) gives it clipped to ``[lo, hi]``, any other is
    bisected on ``[lo, hi]`` through ``process.log_snr``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> from diffax.processes import time_at_log_snr
      >>> p = diffax.VP()
      >>> float(time_at_log_snr(p, p.log_snr(0.3)))  # doctest: +ELLIPSIS
      0.3...
      >>> round(float(time_at_log_snr(p, jnp.asarray(50.0), lo=jnp.asarray(1e-3),
      ...                             hi=jnp.asarray(1.0))), 6)  # clipped to lo
      0.001
    """
    if lo is None and hi is None:
        return _differentiable_inverse(process, log_snr)
    if lo is None or hi is None:
        raise ValueError("time_at_log_snr: give both `lo` and `hi`, or neither.")
    if process.closed_form_inverse:
        return jnp.clip(process.t_from_log_snr(log_snr), lo, hi)
    return _bisect_log_snr(process.log_snr, log_snr, jnp.broadcast_to(lo, log_snr.shape),
                           jnp.broadcast_to(hi, log_snr.shape))
