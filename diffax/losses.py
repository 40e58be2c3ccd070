"""Denoising score-matching losses as typed objects composed into one pure function.

A loss is four choices, each a small pytree object:

* a **weighting** (:class:`EpsMSE`, :class:`X0MSE`, :class:`VMSE`, :class:`ScoreMSE`,
  :class:`Likelihood`, :class:`EDMWeighting`, :class:`FlowMatching`): the mean-squared error in
  one prediction space times a factor ``h(t)``. Every weighting is documented (and tested) by
  its weight ``w(t)`` *relative to eps-MSE*: the loss of a denoiser at ``t`` equals
  ``w(t) * ||eps_hat - eps||^2``, whatever the network predicts;
* a **time sampler** (:class:`UniformTime`, :class:`LogNormalSigma`, :class:`ImportanceTime`,
  :class:`DiscreteTime`), each with ``low_discrepancy=`` and ``antithetic=`` options. A sampler
  either *defines* the objective's distribution of ``t`` or (:class:`ImportanceTime`) is a
  proposal whose importance weights make the estimate unbiased for uniform ``t``;
* a **parameterization** of the network (:class:`Predict`, :class:`EDMPrecond`): what the
  network outputs and which scalar it sees as its noise level (a :class:`NoiseInput`:
  :class:`TimeInput`, :class:`LogSNRInput`, :class:`EDMNoiseInput`, :class:`IndexInput`). The
  same object builds the :data:`~diffax.typing.Denoiser` samplers use, through
  :func:`diffax.as_denoiser` or :func:`diffax.edm_preconditioned`, so a trained model is
  sampled with exactly the conventions it was trained with;
* the **process** (any :class:`diffax.Process`).

:class:`DenoisingLoss` holds the four and gives ``loss(apply_fn, params, key, batch)``;
``loss.bind(apply_fn)`` is the pure ``loss_fn(params, key, batch) -> (loss, aux)`` a train step
differentiates, for any ``apply_fn(params, x, t, **cond)``.

The regression is computed in the network's own output space (no division by small
``alpha`` or ``sigma`` for the natural pairs): with ``c_P(t)`` the change of prediction ``P`` per
unit change of ``eps_hat`` at fixed ``x_t``, a weighting in space ``S`` with factor ``h`` applied
to a network predicting ``O`` is ``h * c_S^2 / c_O^2 * ||out - target_O||^2``, and the ratio is
exactly 1 when ``S == O``.

==================  ========================================  ===================================
weighting           definition                                weight relative to eps-MSE
==================  ========================================  ===================================
``EpsMSE``          ``||eps_hat - eps||^2`` (DDPM L_simple)   ``1``
``X0MSE``           ``||x0_hat - x0||^2``                     ``sigma^2 / alpha^2``
``VMSE``            ``||v_hat - v||^2``                       ``(alpha^2 + sigma^2)^2 / alpha^2``
``ScoreMSE``        ``sigma^2 ||s_hat - s||^2`` (score_sde)   ``1``
``Likelihood``      ``g^2 ||s_hat - s||^2`` (Song 2021)       ``g^2 / sigma^2 = -d log_snr / dt``
``EDMWeighting``    ``lambda(s) ||D - x0||^2`` (EDM eq. 8)    ``(s^2 + sd^2) / sd^2``
``FlowMatching``    ``||u_hat - u||^2``, ``u = dx_t / dt``    ``(sigma' - sigma alpha'/alpha)^2``
==================  ========================================  ===================================

(``s = sigma / alpha`` is EDM's noise level, ``sd`` the data's standard deviation.)

Example:
  >>> import jax, jax.numpy as jnp, diffax
  >>> from diffax import losses
  >>> loss = losses.DenoisingLoss(process=diffax.VP(), weighting=losses.EpsMSE(),
  ...                             parameterization=losses.Predict(prediction="eps"))
  >>> apply_fn = lambda params, x, t: params["w"] * x
  >>> loss_fn = loss.bind(apply_fn)
  >>> value, aux = loss_fn({"w": jnp.ones(())}, jax.random.key(0), {"x": jnp.ones((8, 2))})
  >>> value.shape, aux["t"].shape
  ((), (8,))
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

from diffax._checks import check_finite_examples, check_key
from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.parameterization import (
    EDM_F_SPACE,
    PREDICTIONS,
    EDMNoiseInput,
    EDMPrecond,
    IndexInput,
    LogSNRInput,
    NoiseInput,
    Parameterization,
    Predict,
    TimeInput,
    resolve_sigma_data,
)
from diffax.processes import Process, expand
from diffax.typing import ApplyFn, Array, Denoiser, PRNGKey, PyTree

__all__ = [
    # what the network sees as its noise level
    "NoiseInput",
    "TimeInput",
    "LogSNRInput",
    "EDMNoiseInput",
    "IndexInput",
    # what the network predicts
    "Parameterization",
    "Predict",
    "EDMPrecond",
    # weightings
    "Weighting",
    "EpsMSE",
    "X0MSE",
    "VMSE",
    "ScoreMSE",
    "Likelihood",
    "EDMWeighting",
    "FlowMatching",
    # time samplers
    "TimeSampler",
    "UniformTime",
    "LogNormalSigma",
    "ImportanceTime",
    "DiscreteTime",
    "uniform_variates",
    # the loss
    "DenoisingLoss",
    "LossFn",
]

LossFn = Callable[[PyTree, PRNGKey, Any], tuple[Array, dict[str, Array]]]
"""``loss_fn(params, key, batch) -> (loss, aux)``: a scalar loss and a dict of arrays."""

_EDM_F = EDM_F_SPACE  # the output space of an EDM-preconditioned network (its raw F)


def _frozen(cls):
    """A frozen keyword-only dataclass used as a base holding shared (static) fields."""
    return dataclasses.dataclass(frozen=True, eq=False, kw_only=True)(cls)


def _sigma_data(owner: str, value: Any, process: Process) -> Any:
    return resolve_sigma_data(process, value, where=owner)


# --------------------------------------------------------------------------------------------
# Per-space gains: how much a prediction moves per unit change of eps_hat at fixed x_t.


def _log_gain_sq(space: str, process: Process, t: Array, sigma_data: Any = None) -> Array:
    """``log c_P(t)^2`` with ``c_P = d P_hat / d eps_hat`` at fixed ``x_t`` (``[B]``).

    ``eps: 1``; ``x0: -sigma/alpha``; ``v: (alpha^2 + sigma^2)/alpha``; ``score: -1/sigma``;
    ``velocity: sigma' - sigma alpha'/alpha``; EDM's raw output ``F``:
    ``-sqrt(sigma^2 + alpha^2 sd^2) / (alpha sd)``.
    """
    if space == "eps":
        return jnp.zeros_like(t)
    log_a, log_s = process.log_alpha(t), process.log_sigma(t)
    if space == "x0":
        return 2.0 * (log_s - log_a)
    if space == "v":
        return 2.0 * jnp.logaddexp(2.0 * log_a, 2.0 * log_s) - 2.0 * log_a
    if space == "score":
        return -2.0 * log_s
    if space == "velocity":
        a, s = process.alpha(t), process.sigma(t)
        cross = a * process.dsigma(t) - s * process.dalpha(t)
        return 2.0 * jnp.log(jnp.abs(cross)) - 2.0 * log_a
    if space == _EDM_F:
        log_sd = jnp.log(jnp.asarray(sigma_data, t.dtype))
        return (jnp.logaddexp(2.0 * log_s, 2.0 * (log_a + log_sd)) - 2.0 * log_a
                - 2.0 * log_sd)
    raise ValueError(f"unknown prediction space {space!r}; expected one of "
                     f"{', '.join(map(repr, PREDICTIONS))}.")


def _target(space: str, process: Process, t: Array, x0: Array, eps: Array,
            sigma_data: Any = None) -> Array:
    """The regression target in ``space`` computed from ``(x0, eps)`` (not from ``x_t``)."""
    if space == "eps":
        return eps
    if space == "x0":
        return x0
    a, s = expand(process.alpha(t), x0), expand(process.sigma(t), x0)
    if space == "v":
        return a * eps - s * x0
    if space == "score":
        return -eps / s
    if space == "velocity":
        da, ds = expand(process.dalpha(t), x0), expand(process.dsigma(t), x0)
        return da * x0 + ds * eps
    if space == _EDM_F:
        # (x0 - c_skip x_t) / c_out, simplified so that it stays finite as sigma -> 0.
        sd = jnp.asarray(sigma_data, x0.dtype)
        return (s * x0 - a * sd**2 * eps) / (sd * jnp.sqrt(jnp.square(s) + jnp.square(a) * sd**2))
    raise ValueError(f"unknown prediction space {space!r}.")


# --------------------------------------------------------------------------------------------
# Weightings: an MSE in one prediction space times a factor.


class Weighting:
    """An MSE in prediction space :attr:`space`, times :meth:`factor` ``h(t)``.

    :meth:`eps_weight` gives the documented weight relative to eps-MSE,
    ``h(t) c_space(t)^2``.
    """

    space: str = "eps"

    def factor(self, process: Process, t: Array) -> Array:
        """``h(t)`` multiplying the squared error in :attr:`space`, ``[B]``."""
        return jnp.ones_like(t)

    def _sigma_data(self, process: Process) -> Any:
        return None

    def eps_weight(self, process: Process, t: Array) -> Array:
        """The weight ``w(t)`` relative to eps-MSE: the loss is ``w(t) ||eps_hat - eps||^2``.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> p = diffax.EDM()
          >>> diffax.losses.X0MSE().eps_weight(p, jnp.array([2.0]))  # sigma^2 / alpha^2
          Array([4.], dtype=float32)
        """
        t = jnp.asarray(t)
        log_gain = _log_gain_sq(self.space, process, t, self._sigma_data(process))
        return self.factor(process, t) * jnp.exp(log_gain)


@pytree_dataclass
class EpsMSE(Weighting):
    """``||eps_hat - eps||^2``: DDPM's L_simple (Ho et al. 2020). Weight 1 relative to eps-MSE.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.EpsMSE().eps_weight(diffax.VP(), jnp.array([0.5]))
      Array([1.], dtype=float32)
    """

    space = "eps"


@pytree_dataclass
class X0MSE(Weighting):
    """``||x0_hat - x0||^2``. Weight ``sigma^2 / alpha^2 = exp(-log_snr)`` relative to eps-MSE.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.X0MSE().eps_weight(diffax.EDM(), jnp.array([3.0]))
      Array([9.], dtype=float32)
    """

    space = "x0"


@pytree_dataclass
class VMSE(Weighting):
    """``||v_hat - v||^2`` with ``v = alpha eps - sigma x0`` (Salimans & Ho 2022).

    Weight ``(alpha^2 + sigma^2)^2 / alpha^2`` relative to eps-MSE (``1 / alpha^2``, i.e.
    "SNR + 1" relative to x0-MSE, for variance-preserving processes).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> w = diffax.losses.VMSE().eps_weight(p, jnp.array([0.5]))
      >>> bool(jnp.allclose(w, 1 / p.alpha(0.5) ** 2))
      True
    """

    space = "v"


@pytree_dataclass
class ScoreMSE(Weighting):
    """score_sde's ``sigma^2 ||s_hat - grad log p(x_t | x0)||^2``: weight 1 relative to eps-MSE.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.ScoreMSE().eps_weight(diffax.VE(), jnp.array([0.5])).round(5)
      Array([1.], dtype=float32)
    """

    space = "score"

    def factor(self, process, t):
        return jnp.square(process.sigma(t))


@pytree_dataclass
class Likelihood(Weighting):
    """Likelihood weighting ``g(t)^2 ||s_hat - s||^2`` (Song et al. 2021, score_sde's
    ``likelihood_weighting=True``).

    Weight ``g^2 / sigma^2 = -d log_snr / dt`` relative to eps-MSE. With summed (not averaged)
    squared errors (``DenoisingLoss(reduce_mean=False)``) and uniform ``t`` on
    ``[t_min, t_max]``, ``(t_max - t_min) / 2`` times the loss is the diffusion term of the
    negative ELBO in nats. Pair it with :class:`ImportanceTime` for the low-variance estimator
    of the same expectation.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> w = diffax.losses.Likelihood().eps_weight(p, jnp.array([0.5]))
      >>> bool(jnp.allclose(w, p.g2(0.5) / p.sigma(0.5) ** 2))
      True
    """

    space = "score"

    def factor(self, process, t):
        return process.g2(t)


@pytree_dataclass
class EDMWeighting(Weighting):
    """EDM's ``lambda(s) ||D - x0||^2`` with ``lambda(s) = (s^2 + sd^2) / (s sd)^2`` (Karras et
    al. 2022, eq. 8), at EDM noise level ``s = sigma / alpha``.

    Weight ``(s^2 + sd^2) / sd^2`` relative to eps-MSE; with :class:`EDMPrecond` the loss is the
    unit-weight MSE of the raw network output, as in EDM.

    Args:
      sigma_data: ``sd``; ``None`` takes ``process.sigma_data``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.EDMWeighting().eps_weight(diffax.EDM(sigma_data=0.5), jnp.array([0.5]))
      Array([2.], dtype=float32)
    """

    sigma_data: Any = None
    space = "x0"

    def _sigma_data(self, process):
        return _sigma_data("EDMWeighting", self.sigma_data, process)

    def factor(self, process, t):
        sd2 = jnp.square(jnp.asarray(self._sigma_data(process), t.dtype))
        s2 = jnp.exp(-process.log_snr(t))  # (sigma / alpha)^2
        return (s2 + sd2) / (s2 * sd2)


@pytree_dataclass
class FlowMatching(Weighting):
    """Flow matching / rectified flow ``||u_hat - u||^2`` with ``u = alpha' x0 + sigma' eps``.

    Weight ``(sigma' - sigma alpha' / alpha)^2`` relative to eps-MSE; ``1 / (1 - t)^2`` for
    :class:`diffax.RectifiedFlow`, whose target is ``eps - x0``. Pair it with
    ``Predict(prediction="velocity")``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.FlowMatching().eps_weight(diffax.RectifiedFlow(), jnp.array([0.5]))
      Array([4.], dtype=float32)
    """

    space = "velocity"


# --------------------------------------------------------------------------------------------
# Time samplers.


def uniform_variates(key: PRNGKey, num: int, *, low_discrepancy: bool = False,
                     antithetic: bool = False, dtype: Any = None) -> Array:
    """``num`` variates in ``[0, 1)``: independent, low-discrepancy, or antithetic pairs.

    ``low_discrepancy`` draws one ``u0`` and returns ``(u0 + i / num) mod 1`` (Kingma et al.
    2021): exactly one variate per stratum ``[i/num, (i+1)/num)``. ``antithetic`` returns pairs
    ``(u, 1 - u)``. Both are unbiased per element.

    Example:
      >>> import jax
      >>> u = uniform_variates(jax.random.key(0), 4, low_discrepancy=True)
      >>> sorted((u * 4).astype(int).tolist())
      [0, 1, 2, 3]
    """
    dtype = dtype or jnp.result_type(float)
    if low_discrepancy and antithetic:
        raise ValueError("uniform_variates: choose at most one of `low_discrepancy` and "
                         "`antithetic`.")
    if low_discrepancy:
        u0 = jax.random.uniform(key, (), dtype)
        return jnp.mod(u0 + jnp.arange(num, dtype=dtype) / num, 1.0)
    if antithetic:
        half = jax.random.uniform(key, ((num + 1) // 2,), dtype)
        return jnp.concatenate([half, 1.0 - half])[:num]
    return jax.random.uniform(key, (num,), dtype)


@_frozen
class TimeSampler(abc.ABC):
    """Draws training times ``t`` ``[B]`` and importance corrections ``[B]``.

    Every sampler maps uniform variates through an inverse CDF, so all take
    ``low_discrepancy=True`` (one variate per stratum of the batch) or ``antithetic=True``.
    The correction multiplies the per-example loss: 1 for samplers that define the objective's
    distribution, ``q(t) / p(t)`` with ``q`` uniform on ``[t_min, t_max]`` for importance
    proposals.
    """

    low_discrepancy: bool = static_field(default=False)
    antithetic: bool = static_field(default=False)

    def __post_init__(self):
        if self.low_discrepancy and self.antithetic:
            raise ValueError(f"{type(self).__name__}: choose at most one of `low_discrepancy` "
                             "and `antithetic`.")

    @abc.abstractmethod
    def from_uniform(self, process: Process, u: Array) -> tuple[Array, Array]:
        """Maps variates ``u`` in ``[0, 1)`` to ``(t, correction)``."""

    def sample(self, key: PRNGKey, process: Process, num: int, dtype: Any = None
               ) -> tuple[Array, Array]:
        """Returns ``(t, correction)``, each ``[num]``.

        Example:
          >>> import jax, diffax
          >>> t, w = diffax.losses.UniformTime().sample(jax.random.key(0), diffax.VP(), 4)
          >>> t.shape, float(w.sum())
          ((4,), 4.0)
        """
        u = uniform_variates(key, num, low_discrepancy=self.low_discrepancy,
                             antithetic=self.antithetic, dtype=dtype)
        return self.from_uniform(process, u)


def _bounds(process: Process, dtype: Any) -> tuple[Array, Array]:
    return jnp.asarray(process.t_min, dtype), jnp.asarray(process.t_max, dtype)


@pytree_dataclass
class UniformTime(TimeSampler):
    """``t ~ U[t_min, t_max]`` (score_sde, flow matching).

    Example:
      >>> import jax, diffax
      >>> t, _ = diffax.losses.UniformTime().sample(jax.random.key(0), diffax.VP(), 1000)
      >>> bool((t >= 1e-3).all() and (t <= 1.0).all())
      True
    """

    def from_uniform(self, process, u):
        lo, hi = _bounds(process, u.dtype)
        return lo + u * (hi - lo), jnp.ones_like(u)


@pytree_dataclass
class LogNormalSigma(TimeSampler):
    """EDM's log-normal noise levels: ``ln(sigma / alpha) ~ N(mean, std^2)`` (Karras et al.
    2022 use ``mean=-1.2``, ``std=1.2``), mapped to ``t`` with ``process.t_from_log_snr``.

    Args:
      mean: mean of ``ln(sigma / alpha)``.
      std: its standard deviation.
      truncate: restrict to ``[t_min, t_max]`` (an exact truncated normal through the inverse
        CDF); EDM itself does not truncate.

    Example:
      >>> import jax, diffax
      >>> t, _ = diffax.losses.LogNormalSigma().sample(jax.random.key(0), diffax.EDM(), 4)
      >>> t.shape
      (4,)
    """

    mean: Any = -1.2
    std: Any = 1.2
    truncate: bool = static_field(default=False)

    def __post_init__(self):
        super().__post_init__()
        v = concrete_value(self.std)
        if v is not None and not bool((v > 0).all()):
            raise ValueError(f"LogNormalSigma: `std` must be positive, got {self.std}.")

    def from_uniform(self, process, u):
        dtype = u.dtype
        mean, std = jnp.asarray(self.mean, dtype), jnp.asarray(self.std, dtype)
        tiny = jnp.finfo(dtype).eps
        if self.truncate:
            lo, hi = _bounds(process, dtype)
            # ln(sigma/alpha) = -log_snr / 2 increases with t.
            c_lo = ndtr((-0.5 * process.log_snr(lo) - mean) / std)
            c_hi = ndtr((-0.5 * process.log_snr(hi) - mean) / std)
            u = c_lo + u * (c_hi - c_lo)
        u = jnp.clip(u, tiny, 1.0 - tiny)
        log_sigma = mean + std * ndtri(u)
        t = process.t_from_log_snr(-2.0 * log_sigma)
        if self.truncate:
            t = jnp.clip(t, *_bounds(process, dtype))
        return t, jnp.ones_like(u)


@pytree_dataclass
class ImportanceTime(TimeSampler):
    """Importance sampling of ``t`` with density ``p(t) ∝ g^2/sigma^2 = -d log_snr/dt``
    (Song et al. 2021, sec. 5): ``log_snr`` uniform on ``[log_snr(t_max), log_snr(t_min)]``.

    The correction ``q(t) / p(t)`` (``q`` uniform on ``[t_min, t_max]``) keeps any weighting's
    expectation equal to the uniform-time one; with :class:`Likelihood` weighting the product
    is the constant ``(log_snr(t_min) - log_snr(t_max)) / (t_max - t_min)``, which removes the
    variance coming from ``t``.

    Example:
      >>> import jax, diffax
      >>> t, c = diffax.losses.ImportanceTime().sample(jax.random.key(0), diffax.VP(), 4)
      >>> t.shape, c.shape
      ((4,), (4,))
    """

    def from_uniform(self, process, u):
        lo, hi = _bounds(process, u.dtype)
        lam_hi, lam_lo = process.log_snr(lo), process.log_snr(hi)
        lam = lam_lo + u * (lam_hi - lam_lo)
        t = jnp.clip(process.t_from_log_snr(lam), lo, hi)
        _, dlam = jax.jvp(process.log_snr, (t,), (jnp.ones_like(t),))
        correction = (lam_hi - lam_lo) / ((hi - lo) * -dlam)
        return t, correction


@pytree_dataclass
class DiscreteTime(TimeSampler):
    """DDPM's discrete steps: ``n ~ U{1, ..., T}``, ``t = n / T`` (:class:`diffax.DiscreteVP`).

    With :class:`EpsMSE`, ``Predict(prediction="eps", noise_input=IndexInput())`` this is
    DDPM's ``L_simple`` exactly as Ho et al. (2020) train it.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.linear(num_steps=10)
      >>> t, _ = diffax.losses.DiscreteTime().sample(jax.random.key(0), p, 4)
      >>> bool(jnp.allclose(t * 10, jnp.round(t * 10)))
      True
    """

    def from_uniform(self, process, u):
        num_steps = getattr(process, "num_steps", None)
        if num_steps is None:
            raise ValueError(f"DiscreteTime: the process {type(process).__name__} has no "
                             "`num_steps`; use it with diffax.DiscreteVP or choose another "
                             "`time_sampler` (UniformTime, ImportanceTime, LogNormalSigma).")
        n = jnp.clip(jnp.floor(u * num_steps) + 1, 1, num_steps)
        return n / num_steps, jnp.ones_like(u)


# --------------------------------------------------------------------------------------------
# The loss.


_LABEL_DROP_STREAM = 0x1ab31  # fold_in constant of the label-dropout key


def _time_dtype(data_dtype: Any) -> Any:
    """Times and coefficients in at least float32, even for bfloat16 data."""
    return jnp.promote_types(data_dtype, jnp.float32)


def _check_batch(x0: Array, cond: Mapping[str, Any], key: Any, label_key: str) -> None:
    """The loss's input checks: a PRNG key, a non-empty batch of finite examples, and
    conditioning entries with one row per example (labels as integers)."""
    check_key(key, where="DenoisingLoss", allow_none=False)
    if x0.ndim < 2 or x0.shape[0] == 0:
        raise ValueError(f"DenoisingLoss: the data must be a non-empty batch [B, ...] with "
                         f"B >= 1, got shape {x0.shape}.")
    check_finite_examples(x0, name="batch", where="DenoisingLoss")
    for name, value in cond.items():
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) == 0 or shape[0] != x0.shape[0]:
            raise ValueError(f"DenoisingLoss: batch entry {name!r} must have one row per "
                             f"example ({x0.shape[0]}), got shape {shape}.")
        if name == label_key and not jnp.issubdtype(value.dtype, jnp.integer):
            raise ValueError(f"DenoisingLoss: batch entry {name!r} must hold integer class "
                             f"indices, got {value.dtype}.")


@pytree_dataclass
class DenoisingLoss:
    """Denoising score matching: a process, a weighting, a time sampler and a parameterization.

    The loss of a batch is the mean over examples of
    ``correction(t) * w(t) * ||eps_hat(x_t, t) - eps||^2`` (computed in the network's own
    output space), with ``x_t = alpha(t) x0 + sigma(t) eps``, ``t`` from the time sampler and
    ``||.||^2`` averaged (``reduce_mean=True``) or summed over the non-batch axes.

    Args:
      process: the forward process.
      weighting: a :class:`Weighting` (default :class:`EpsMSE`).
      time_sampler: a :class:`TimeSampler` (default :class:`UniformTime`).
      parameterization: a :class:`Parameterization` (default ``Predict(prediction="eps")``).
      reduce_mean: average the squared error over non-batch axes (DDPM) instead of summing it
        (score_sde's ``reduce_mean=False``; use it for likelihood weighting in nats).
      data_key: the batch entry holding the data when the batch is a mapping.
      cond_keys: batch entries passed to the network as keyword arguments when present
        (``label`` for class-conditional models).
      key_arg: the keyword under which the network receives a PRNG key (e.g. ``"key"`` for
        :func:`diffax.models.apply_fn` with dropout); ``None`` passes none.
      p_uncond: label dropout for classifier-free guidance (Ho & Salimans 2022): when the
        batch has a ``label_key`` entry, each label is replaced by ``null_label`` with this
        probability (:func:`diffax.models.drop_labels`), so one network learns both the
        conditional and the unconditional denoiser. A leaf: changing it does not recompile.
      null_label: the label index meaning "no label" (a conditional model's
        ``config.null_label``); required when ``p_uncond > 0``.
      label_key: the batch entry label dropout applies to.
      noise_fn: ``noise_fn(key, shape) -> eps`` draws the noise ``eps`` (default ``None``:
        standard Gaussian). AnoDDPM trains with simplex noise this way
        (:func:`diffax.tasks.anomaly.simplex_noise`), so the network learns to remove that
        noise. A static field: pass a hashable function (``functools.partial`` is).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> from diffax import losses
      >>> edm = losses.DenoisingLoss(
      ...     process=diffax.EDM(), weighting=losses.EDMWeighting(),
      ...     time_sampler=losses.LogNormalSigma(), parameterization=losses.EDMPrecond())
      >>> apply_fn = lambda params, x, c_noise: params * x
      >>> value, _ = jax.jit(edm.bind(apply_fn))(0.5, jax.random.key(0), jnp.ones((4, 3)))
      >>> D = edm.denoiser(apply_fn, 0.5)  # what a sampler uses
      >>> D(jnp.ones((4, 3)), 1.0).shape
      (4, 3)
    """

    process: Process
    weighting: Weighting = dataclasses.field(default_factory=EpsMSE)
    time_sampler: TimeSampler = dataclasses.field(default_factory=UniformTime)
    parameterization: Parameterization = dataclasses.field(default_factory=Predict)
    reduce_mean: bool = static_field(default=True)
    data_key: str = static_field(default="x")
    cond_keys: tuple[str, ...] = static_field(default=("label",))
    key_arg: str | None = static_field(default=None)
    p_uncond: Any = 0.0
    null_label: int | None = static_field(default=None)
    label_key: str = static_field(default="label")
    noise_fn: Callable[[PRNGKey, tuple[int, ...]], Array] | None = static_field(default=None)

    def __post_init__(self):
        for name, value, kind in (("process", self.process, Process),
                                  ("weighting", self.weighting, Weighting),
                                  ("time_sampler", self.time_sampler, TimeSampler),
                                  ("parameterization", self.parameterization, Parameterization)):
            if not isinstance(value, kind):
                raise ValueError(f"DenoisingLoss: `{name}` must be a {kind.__module__}."
                                 f"{kind.__name__}, got {value!r}.")
        object.__setattr__(self, "cond_keys", tuple(self.cond_keys))
        if self.noise_fn is not None and not callable(self.noise_fn):
            raise ValueError(f"DenoisingLoss: `noise_fn` must be a function (key, shape) -> "
                             f"eps or None, got {self.noise_fn!r}.")
        p = concrete_value(self.p_uncond)
        if p is not None:
            if p.ndim != 0 or not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"DenoisingLoss: `p_uncond` must be a probability in [0, 1], "
                                 f"got {self.p_uncond!r}.")
            if float(p) > 0 and self.null_label is None:
                raise ValueError("DenoisingLoss: `p_uncond` > 0 needs `null_label` (the "
                                 "model's config.null_label) to replace dropped labels with.")
        if self.null_label is not None:
            object.__setattr__(self, "null_label", int(self.null_label))

    def drop_labels(self, key: PRNGKey, cond: Mapping[str, Any]) -> dict[str, Any]:
        """``cond`` with its ``label_key`` entry replaced by ``null_label`` with probability
        ``p_uncond`` per example (unchanged without labels, ``null_label`` or ``p_uncond``).

        Example:
          >>> import jax, jax.numpy as jnp, diffax
          >>> loss = diffax.losses.DenoisingLoss(process=diffax.VP(), p_uncond=1.0,
          ...                                    null_label=10)
          >>> loss.drop_labels(jax.random.key(0), {"label": jnp.arange(3)})["label"]
          Array([10, 10, 10], dtype=int32)
        """
        cond = dict(cond)
        p = concrete_value(self.p_uncond)
        if (self.label_key not in cond or self.null_label is None
                or (p is not None and float(p) == 0.0)):
            return cond
        from diffax.models.layers import drop_labels  # Flax models load only when used

        cond[self.label_key] = drop_labels(key, jnp.asarray(cond[self.label_key]),
                                           null_label=self.null_label, rate=self.p_uncond)
        return cond

    # ---- pieces -----------------------------------------------------------------------------

    def eps_weight(self, t: Array) -> Array:
        """The weighting's ``w(t)`` relative to eps-MSE (without the sampler's correction)."""
        return self.weighting.eps_weight(self.process, jnp.asarray(t))

    def denoiser(self, apply_fn: ApplyFn, params: PyTree, **cond: Any) -> Denoiser:
        """The denoiser ``D(x, t)`` of a network trained with this loss, for samplers.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> loss = diffax.losses.DenoisingLoss(process=diffax.VP())
          >>> D = loss.denoiser(lambda params, x, t: jnp.zeros_like(x), None)
          >>> D(jnp.ones((2, 2)), 0.5).shape
          (2, 2)
        """
        return self.parameterization.denoiser(apply_fn, params, self.process, **cond)

    def per_example(self, apply_fn: ApplyFn, params: PyTree, x0: Array, t: Array, eps: Array,
                    *, cond: Mapping[str, Any] | None = None, key: PRNGKey | None = None
                    ) -> Array:
        """The weighted loss ``[B]`` at given times and noise (no time-sampler correction).

        Args:
          apply_fn: ``apply_fn(params, x, noise, **cond)``.
          params: the network's parameters.
          x0: clean data ``[B, ...]``.
          t: times ``[B]``.
          eps: the noise ``[B, ...]``; ``x_t = alpha(t) x0 + sigma(t) eps``.
          cond: keyword arguments for the network (labels).
          key: PRNG key passed as ``key_arg`` (dropout), when ``key_arg`` is set.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> loss = diffax.losses.DenoisingLoss(process=diffax.VP())
          >>> zero = lambda params, x, t: jnp.zeros_like(x)  # eps_hat = 0
          >>> float(loss.per_example(zero, None, jnp.ones((1, 2)), jnp.array([0.5]),
          ...                        jnp.ones((1, 2)))[0])
          1.0
        """
        process, par = self.process, self.parameterization
        x0 = jnp.asarray(x0)
        t = jnp.asarray(t, _time_dtype(x0.dtype))
        if t.shape != x0.shape[:1]:
            raise ValueError(f"DenoisingLoss: `t` has shape {t.shape}, expected "
                             f"({x0.shape[0]},) for data of shape {x0.shape}.")
        x_t = expand(process.alpha(t), x0) * x0 + expand(process.sigma(t), x0) * eps
        kwargs = dict(cond or {})
        if self.key_arg is not None:
            if key is None:
                raise ValueError(f"DenoisingLoss: `key_arg`={self.key_arg!r} is set, so a "
                                 "`key` is required.")
            kwargs[self.key_arg] = key
        out = par.network_output(apply_fn, params, process, x_t, t, **kwargs)
        if getattr(out, "shape", None) != x0.shape:
            raise ValueError(f"DenoisingLoss: the network returned shape "
                             f"{getattr(out, 'shape', type(out))} for `x` of shape {x0.shape}; "
                             "it must return the shape of `x`.")
        space = par.output_space()
        sd = par.sigma_data_for(process)
        target = _target(space, process, t, x0, eps, sd)
        err = jnp.square(out.astype(target.dtype) - target).reshape(x0.shape[0], -1)
        err = jnp.mean(err, axis=-1) if self.reduce_mean else jnp.sum(err, axis=-1)
        weight = self.weighting.factor(process, t)
        if self.weighting.space != space:
            log_ratio = (_log_gain_sq(self.weighting.space, process, t,
                                      self.weighting._sigma_data(process))
                         - _log_gain_sq(space, process, t, sd))
            weight = weight * jnp.exp(log_ratio)
        return weight * err

    def __call__(self, apply_fn: ApplyFn, params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, dict[str, Array]]:
        """The Monte Carlo loss of a batch: ``(loss, aux)``.

        Args:
          apply_fn: ``apply_fn(params, x, noise, **cond)``.
          params: parameters (the argument differentiated).
          key: PRNG key for the times, the noise and (with ``key_arg``) the network.
          batch: data ``[B, ...]``, or a mapping with ``data_key`` and optional ``cond_keys``.

        Returns:
          ``loss`` (scalar) and ``aux`` with ``"t"`` ``[B]`` and ``"per_example"`` ``[B]``.
        """
        if isinstance(batch, Mapping):
            if self.data_key not in batch:
                raise ValueError(f"DenoisingLoss: the batch has no {self.data_key!r} entry "
                                 f"(`data_key`); it has {sorted(batch)}.")
            x0 = jnp.asarray(batch[self.data_key])
            cond = {k: batch[k] for k in self.cond_keys if k in batch}
        else:
            x0, cond = jnp.asarray(batch), {}
        if not jnp.issubdtype(x0.dtype, jnp.floating):
            raise ValueError(f"DenoisingLoss: the data must be floating point, got {x0.dtype}.")
        _check_batch(x0, cond, key, self.label_key)
        k_t, k_eps, k_net = jax.random.split(key, 3)
        # Its own stream, so that label dropout leaves the times and noise of a key unchanged.
        cond = self.drop_labels(jax.random.fold_in(key, _LABEL_DROP_STREAM), cond)
        t, correction = self.time_sampler.sample(k_t, self.process, x0.shape[0],
                                                 _time_dtype(x0.dtype))
        if self.noise_fn is None:
            eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        else:
            eps = jnp.asarray(self.noise_fn(k_eps, x0.shape)).astype(x0.dtype)
            if eps.shape != x0.shape:
                raise ValueError(f"DenoisingLoss: `noise_fn` returned shape {eps.shape} for "
                                 f"data of shape {x0.shape}; it must return the data's shape.")
        per = correction * self.per_example(apply_fn, params, x0, t, eps, cond=cond,
                                            key=k_net if self.key_arg is not None else None)
        return jnp.mean(per), {"t": t, "per_example": per}

    def bind(self, apply_fn: ApplyFn) -> LossFn:
        """The pure ``loss_fn(params, key, batch) -> (loss, aux)`` for a network.

        Example:
          >>> import jax, jax.numpy as jnp, diffax
          >>> loss_fn = diffax.losses.DenoisingLoss(process=diffax.VP()).bind(
          ...     lambda params, x, t: params * x)
          >>> g = jax.grad(lambda p: loss_fn(p, jax.random.key(0), jnp.ones((4, 2)))[0])(1.0)
          >>> g.shape
          ()
        """

        def loss_fn(params, key, batch):
            return self(apply_fn, params, key, batch)

        return loss_fn
