"""What a network predicts, and how every prediction becomes a denoiser.

For ``x = alpha x0 + sigma eps`` (coefficients at time ``t``) the predictions are:

============  =====================================  ============================================
name          definition                             back to ``x0``
============  =====================================  ============================================
``x0``        ``x0``                                 itself
``eps``       ``eps``                                ``(x - sigma eps) / alpha``
``v``         ``alpha eps - sigma x0`` (Salimans &   ``(alpha x - sigma v) / (alpha^2 + sigma^2)``
              Ho 2022, any process)
``score``     ``grad log p_t(x) = -eps / sigma``     ``(x + sigma^2 score) / alpha``
``velocity``  ``dx/dt = alpha' x0 + sigma' eps``     ``(sigma' x - sigma u) / (alpha sigma' -
              (flow matching; the PF-ODE drift)      sigma alpha')``
============  =====================================  ============================================

Samplers, guidance and likelihood see only denoisers ``D(x, t) = E[x0 | x_t = x]``;
:func:`as_denoiser` is the single place where a network's output is converted.

The contract of a trained network (``apply_fn(params, x, noise, **cond)``) lives here too: what
it sees as its noise level (a :class:`NoiseInput`: :class:`TimeInput`, :class:`LogSNRInput`,
:class:`EDMNoiseInput`, :class:`IndexInput`) and what it predicts (a
:class:`Parameterization`: :class:`Predict`, :class:`EDMPrecond`), which gives the denoiser
samplers use. :mod:`diffax.losses` trains through the same objects (and re-exports them).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.processes import Process, expand
from diffax.typing import ApplyFn, Array, Denoiser, ModelFn, PyTree

__all__ = [
    "PREDICTIONS",
    "Prediction",
    "get_prediction",
    "convert",
    "as_denoiser",
    "EDMCoefficients",
    "edm_coefficients",
    "edm_preconditioned",
    "resolve_sigma_data",
    "eps_from_denoiser",
    "score_from_denoiser",
    "velocity_from_denoiser",
    "probability_flow_drift",
    "reverse_sde_drift",
    "check_time_shape",
    # the network -> denoiser contract of a trained model
    "NoiseInput",
    "TimeInput",
    "LogSNRInput",
    "EDMNoiseInput",
    "IndexInput",
    "Parameterization",
    "Predict",
    "EDMPrecond",
    "EDM_F_SPACE",
]

EDM_F_SPACE = "edm_f"
"""The output space of an EDM-preconditioned network (its raw ``F``)."""


@dataclasses.dataclass(frozen=True)
class _Coefs:
    """Per-example coefficients at ``t``, broadcast against ``x``."""

    alpha: Array
    sigma: Array
    process: Process
    t: Array
    x: Array

    @classmethod
    def at(cls, process: Process, x: Array, t: Array) -> _Coefs:
        return cls(expand(process.alpha(t), x), expand(process.sigma(t), x), process, t, x)

    def derivatives(self) -> tuple[Array, Array]:
        return (expand(self.process.dalpha(self.t), self.x),
                expand(self.process.dsigma(self.t), self.x))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A network target: converts to and from the denoised estimate ``x0``."""

    name: str
    _to_x0: Callable[[Array, Array, _Coefs], Array]
    _from_x0: Callable[[Array, Array, _Coefs], Array]

    def to_x0(self, process: Process, x: Array, t: Array, value: Array) -> Array:
        """``x0`` implied by this prediction ``value`` at ``(x, t)``."""
        return self._to_x0(x, value, _Coefs.at(process, x, t))

    def from_x0(self, process: Process, x: Array, t: Array, x0: Array) -> Array:
        """This prediction implied by the denoised estimate ``x0`` at ``(x, t)``."""
        return self._from_x0(x, x0, _Coefs.at(process, x, t))


def _eps_from_x0(x, x0, c):
    return (x - c.alpha * x0) / c.sigma


def _velocity_to_x0(x, u, c):
    da, ds = c.derivatives()
    return (ds * x - c.sigma * u) / (c.alpha * ds - c.sigma * da)


def _velocity_from_x0(x, x0, c):
    da, ds = c.derivatives()
    # alpha' x0 + sigma' eps with eps = (x - alpha x0)/sigma, arranged to stay finite at alpha=0.
    return (ds / c.sigma) * x + (da - c.alpha * ds / c.sigma) * x0


_PREDICTIONS: dict[str, Prediction] = {
    p.name: p
    for p in (
        Prediction("x0", lambda x, v, c: v, lambda x, x0, c: x0),
        Prediction("eps", lambda x, v, c: (x - c.sigma * v) / c.alpha, _eps_from_x0),
        Prediction(
            "v",
            lambda x, v, c: (c.alpha * x - c.sigma * v) / (c.alpha**2 + c.sigma**2),
            lambda x, x0, c: c.alpha * _eps_from_x0(x, x0, c) - c.sigma * x0,
        ),
        Prediction(
            "score",
            lambda x, v, c: (x + c.sigma**2 * v) / c.alpha,
            lambda x, x0, c: (c.alpha * x0 - x) / c.sigma**2,
        ),
        Prediction("velocity", _velocity_to_x0, _velocity_from_x0),
    )
}

PREDICTIONS: tuple[str, ...] = tuple(_PREDICTIONS)
"""The prediction names :func:`as_denoiser` accepts."""


def get_prediction(prediction: str | Prediction) -> Prediction:
    """Looks up a :class:`Prediction` by name; raises a ValueError listing the valid names."""
    if isinstance(prediction, Prediction):
        return prediction
    try:
        return _PREDICTIONS[prediction]
    except (KeyError, TypeError):
        raise ValueError(
            f"`prediction` must be one of {', '.join(map(repr, PREDICTIONS))}; "
            f"got {prediction!r}."
        ) from None


def check_time_shape(x: Array, t: Array, *, where: str = "denoiser") -> Array:
    """Returns ``t`` as ``[B]`` for ``x`` ``[B, ...]``; raises a clear error on a mismatch."""
    x = jnp.asarray(x)
    t = jnp.asarray(t)
    if x.ndim < 1:
        raise ValueError(f"{where}: `x` must have a batch axis [B, ...], got shape {x.shape}.")
    if t.ndim == 0:
        return jnp.broadcast_to(t, x.shape[:1])
    if t.shape != x.shape[:1]:
        raise ValueError(
            f"{where}: `t` has shape {tuple(t.shape)} but `x` has shape {tuple(x.shape)}; "
            f"`t` must be a scalar or have shape ({x.shape[0]},)."
        )
    return t


def convert(value: Array, *, process: Process, x: Array, t: Array,
            source: str | Prediction, target: str | Prediction) -> Array:
    """Converts a prediction at ``(x, t)`` from one parameterization to another.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p, x, t = diffax.VP(), jnp.ones((2, 3)), jnp.full((2,), 0.5)
      >>> eps = jnp.zeros((2, 3))
      >>> v = diffax.parameterization.convert(eps, process=p, x=x, t=t,
      ...                                     source="eps", target="v")
      >>> v.shape
      (2, 3)
    """
    src, dst = get_prediction(source), get_prediction(target)
    t = check_time_shape(x, t, where="convert")
    if src is dst:
        return value
    return dst.from_x0(process, x, t, src.to_x0(process, x, t, value))


def as_denoiser(fn: ModelFn, process: Process, *, prediction: str | Prediction = "eps"
                ) -> Denoiser:
    """Turns a network ``fn(x, t)`` predicting ``prediction`` into a denoiser ``D(x, t)``.

    Args:
      fn: ``fn(x, t)`` with ``x`` ``[B, ...]`` and ``t`` ``[B]`` (always given per example),
        returning an array shaped like ``x``.
      process: the forward process the network was trained with.
      prediction: ``"x0"``, ``"eps"``, ``"v"``, ``"score"`` or ``"velocity"``.

    Returns:
      ``D(x, t) -> E[x0 | x_t = x]`` accepting ``t`` as a scalar or ``[B]``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> D = diffax.as_denoiser(lambda x, t: jnp.zeros_like(x), p, prediction="eps")
      >>> x0 = D(jnp.ones((4, 2)), 0.5)  # eps = 0, so x0 = x / alpha
      >>> bool(jnp.allclose(x0, 1 / p.alpha(0.5)))
      True
    """
    pred = get_prediction(prediction)

    def denoiser(x: Array, t: Array) -> Array:
        t = check_time_shape(x, t)
        out = fn(x, t)
        if getattr(out, "shape", None) != x.shape:
            raise ValueError(
                f"as_denoiser: the network returned shape {getattr(out, 'shape', type(out))} "
                f"for `x` of shape {x.shape}; a {pred.name!r} prediction must have the shape "
                f"of `x`."
            )
        return pred.to_x0(process, x, t, out)

    return denoiser


# --------------------------------------------------------------------------------------------
# EDM preconditioning (Karras et al. 2022, Table 1), written in the process's own frame.


@dataclasses.dataclass(frozen=True)
class EDMCoefficients:
    """``D(x, t) = c_skip x + c_out F(c_in x, c_noise)``, each ``[B]``-shaped or broadcast."""

    c_skip: Array
    c_out: Array
    c_in: Array
    c_noise: Array


def resolve_sigma_data(process: Process, sigma_data: Any = None, *,
                       where: str = "edm_preconditioned") -> Any:
    """``sigma_data`` if given, else the process's own (only :class:`diffax.EDM` has one).

    Raises:
      ValueError: naming ``sigma_data`` when neither is available.
    """
    if sigma_data is None:
        sigma_data = getattr(process, "sigma_data", None)
    if sigma_data is None:
        raise ValueError(
            f"{where}: `sigma_data` is required for {type(process).__name__} "
            "(only diffax.EDM carries its own); pass e.g. sigma_data=0.5."
        )
    return sigma_data


def edm_coefficients(process: Process, t: Array, *, sigma_data: Any = None) -> EDMCoefficients:
    """EDM's preconditioning coefficients at ``t`` for any process.

    EDM defines them for ``x = x0 + sigma eps``. For a process with ``alpha != 1`` they are
    applied to the scaled state ``x / alpha`` at noise level ``sigma / alpha``; the division
    by ``alpha`` is folded into the coefficients so they stay finite where ``alpha = 0``:
    ``c_skip = alpha sd^2 / (sigma^2 + alpha^2 sd^2)``,
    ``c_out = sigma sd / sqrt(sigma^2 + alpha^2 sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + alpha^2 sd^2)`` (multiplying ``x`` itself) and
    ``c_noise = log(sigma / alpha) / 4 = -log_snr / 8``.
    """
    sd = resolve_sigma_data(process, sigma_data)
    a, s = process.alpha(t), process.sigma(t)
    denom = jnp.square(s) + jnp.square(a) * sd**2
    return EDMCoefficients(
        c_skip=a * sd**2 / denom,
        c_out=s * sd / jnp.sqrt(denom),
        c_in=1.0 / jnp.sqrt(denom),
        c_noise=-0.125 * process.log_snr(t),
    )


def edm_preconditioned(raw_fn: ModelFn, process: Process, *, sigma_data: Any = None,
                       noise_conditioning: Callable[[Array], Array] | None = None) -> Denoiser:
    """Wraps a raw network ``F(x_in, c_noise)`` into EDM's preconditioned denoiser.

    Args:
      raw_fn: ``F(x_in, c_noise)`` with ``x_in`` ``[B, ...]`` and ``c_noise`` ``[B]``.
      process: any process (EDM's own frame when it is :class:`diffax.EDM`).
      sigma_data: the data's standard deviation; defaults to ``process.sigma_data``.
      noise_conditioning: maps ``t`` ``[B]`` to the network's conditioning input; defaults to
        EDM's ``c_noise = log(sigma/alpha)/4``, which is infinite where ``alpha = 0`` (e.g.
        rectified flow at ``t = 1``) — pass ``lambda t: t`` for such processes.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.EDM()
      >>> D = diffax.edm_preconditioned(lambda x, c: jnp.zeros_like(x), p)
      >>> D(jnp.ones((2, 3)), 1.0).shape
      (2, 3)
    """

    def denoiser(x: Array, t: Array) -> Array:
        t = check_time_shape(x, t, where="edm_preconditioned")
        c = edm_coefficients(process, t, sigma_data=sigma_data)
        c_noise = c.c_noise if noise_conditioning is None else noise_conditioning(t)
        out = raw_fn(expand(c.c_in, x) * x, c_noise)
        if getattr(out, "shape", None) != x.shape:
            raise ValueError(f"edm_preconditioned: the network returned shape "
                             f"{getattr(out, 'shape', type(out))} for `x` of shape {x.shape}.")
        return expand(c.c_skip, x) * x + expand(c.c_out, x) * out

    return denoiser


# --------------------------------------------------------------------------------------------
# Quantities derived from a denoiser.


def eps_from_denoiser(process: Process, denoiser: Denoiser) -> Callable[[Array, Array], Array]:
    """``eps_hat(x, t) = (x - alpha D(x, t)) / sigma``."""

    def eps(x, t):
        t = check_time_shape(x, t)
        return _PREDICTIONS["eps"].from_x0(process, x, t, denoiser(x, t))

    return eps


def score_from_denoiser(process: Process, denoiser: Denoiser) -> Callable[[Array, Array], Array]:
    """``grad log p_t(x) = (alpha D(x, t) - x) / sigma^2`` (Tweedie's formula)."""

    def score(x, t):
        t = check_time_shape(x, t)
        return _PREDICTIONS["score"].from_x0(process, x, t, denoiser(x, t))

    return score


def velocity_from_denoiser(process: Process, denoiser: Denoiser
                           ) -> Callable[[Array, Array], Array]:
    """The probability-flow ODE drift ``dx/dt = alpha' D + sigma' eps_hat``.

    Equal to ``f x - g^2 score / 2``, but written so it stays finite where ``alpha = 0``.
    """

    def velocity(x, t):
        t = check_time_shape(x, t)
        return _velocity_from_x0(x, denoiser(x, t), _Coefs.at(process, x, t))

    return velocity


probability_flow_drift = velocity_from_denoiser


def reverse_sde_drift(process: Process, denoiser: Denoiser) -> Callable[[Array, Array], Array]:
    """Drift of the reverse-time SDE, ``f x - g^2 grad log p_t(x)`` (Anderson 1982).

    Integrated backwards in time (``dt < 0``) together with ``g dW``.
    """
    score = score_from_denoiser(process, denoiser)

    def drift(x, t):
        t = check_time_shape(x, t)
        return expand(process.f(t), x) * x - expand(process.g2(t), x) * score(x, t)

    return drift


# --------------------------------------------------------------------------------------------
# What the network sees as its noise level.


class NoiseInput(abc.ABC):
    """The scalar a network receives as its noise conditioning, as a function of ``t``."""

    @abc.abstractmethod
    def __call__(self, process: Process, t: Array) -> Array:
        """Maps times ``[B]`` to the network's noise input ``[B]``."""


@pytree_dataclass
class TimeInput(NoiseInput):
    """The network sees ``scale * t`` (score_sde's VP models use ``t * 999``).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.TimeInput(scale=999.0)(diffax.VP(), jnp.array([0.5]))
      Array([499.5], dtype=float32)
    """

    scale: Any = 1.0

    def __call__(self, process: Process, t: Array) -> Array:
        return t * jnp.asarray(self.scale, t.dtype)


@pytree_dataclass
class LogSNRInput(NoiseInput):
    """The network sees the log signal-to-noise ratio ``log_snr(t)`` (VDM, Kingma et al. 2021).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> diffax.losses.LogSNRInput()(diffax.EDM(), jnp.array([0.5])).round(3)
      Array([1.386], dtype=float32)
    """

    def __call__(self, process: Process, t: Array) -> Array:
        return process.log_snr(t)


@pytree_dataclass
class EDMNoiseInput(NoiseInput):
    """The network sees EDM's ``c_noise = log(sigma / alpha) / 4 = -log_snr / 8``.

    This is what :class:`EDMPrecond` feeds its network by default (and what
    :func:`diffax.edm_preconditioned` passes by default at sampling time).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> c = diffax.losses.EDMNoiseInput()(diffax.EDM(), jnp.array([2.0]))
      >>> bool(jnp.allclose(c, jnp.log(2.0) / 4))
      True
    """

    def __call__(self, process: Process, t: Array) -> Array:
        return -0.125 * process.log_snr(t)


@pytree_dataclass
class IndexInput(NoiseInput):
    """The network sees DDPM's integer timestep ``0..T-1`` (``process.index(t)``, int32).

    Only for processes with an ``index`` method (:class:`diffax.DiscreteVP`); pair it with
    :class:`DiscreteTime` so that training times lie on the grid.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.linear(num_steps=10)
      >>> diffax.losses.IndexInput()(p, jnp.array([0.1, 1.0]))
      Array([0, 9], dtype=int32)
    """

    def __call__(self, process: Process, t: Array) -> Array:
        index = getattr(process, "index", None)
        if index is None:
            raise ValueError(f"IndexInput: the process {type(process).__name__} has no integer "
                             "timesteps (`index`); use it with diffax.DiscreteVP or choose "
                             "another `noise_input` (TimeInput, LogSNRInput, EDMNoiseInput).")
        return index(t)


# --------------------------------------------------------------------------------------------
# What the network predicts, and the denoiser it becomes.


class Parameterization(abc.ABC):
    """How a network ``apply_fn(params, x, noise, **cond)`` is turned into a denoiser."""

    @abc.abstractmethod
    def output_space(self) -> str:
        """The prediction the network's raw output is regressed in."""

    @abc.abstractmethod
    def denoiser(self, apply_fn: ApplyFn, params: PyTree, process: Process, **cond: Any
                 ) -> Denoiser:
        """The denoiser ``D(x, t) = E[x0 | x_t = x]`` samplers use."""

    @abc.abstractmethod
    def network_output(self, apply_fn: ApplyFn, params: PyTree, process: Process, x: Array,
                       t: Array, **kwargs: Any) -> Array:
        """The network's raw output at ``(x, t)`` (``[B, ...]``), in :meth:`output_space`."""

    def sigma_data_for(self, process: Process) -> Any:
        """The data's standard deviation this parameterization uses with ``process`` (or
        ``None`` if it uses none)."""
        return None


@pytree_dataclass
class Predict(Parameterization):
    """The network predicts ``prediction`` directly from ``(x_t, noise_input(t))``.

    Args:
      prediction: ``"eps"`` (DDPM), ``"x0"``, ``"v"`` (Salimans & Ho 2022), ``"score"`` or
        ``"velocity"`` (flow matching) — the names :func:`diffax.as_denoiser` takes.
      noise_input: what the network sees as its noise level (default: ``t`` itself).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> par = diffax.losses.Predict(prediction="v", noise_input=diffax.losses.LogSNRInput())
      >>> D = par.denoiser(lambda params, x, t: jnp.zeros_like(x), None, diffax.VP())
      >>> D(jnp.ones((2, 3)), 0.5).shape
      (2, 3)
    """

    prediction: str = static_field(default="eps")
    noise_input: NoiseInput = dataclasses.field(default_factory=TimeInput)

    def __post_init__(self):
        name = getattr(self.prediction, "name", self.prediction)
        get_prediction(name)  # raises a ValueError naming `prediction`
        object.__setattr__(self, "prediction", name)
        if not isinstance(self.noise_input, NoiseInput):
            raise ValueError(f"Predict: `noise_input` must be a diffax.losses.NoiseInput "
                             f"(TimeInput(), LogSNRInput(), ...), got {self.noise_input!r}.")

    def output_space(self) -> str:
        return self.prediction

    def network_output(self, apply_fn, params, process, x, t, **kwargs):
        return apply_fn(params, x, self.noise_input(process, t), **kwargs)

    def denoiser(self, apply_fn, params, process, **cond):
        fn = lambda x, t: apply_fn(params, x, self.noise_input(process, t), **cond)
        return as_denoiser(fn, process, prediction=self.prediction)


@pytree_dataclass
class EDMPrecond(Parameterization):
    """EDM's preconditioning (Karras et al. 2022): ``D = c_skip x + c_out F(c_in x, c_noise)``.

    The network ``F`` sees ``c_in x`` and, by default, ``c_noise = -log_snr / 8``
    (:class:`EDMNoiseInput`); the coefficients are :func:`diffax.edm_coefficients`, valid for
    any process.

    Args:
      sigma_data: the data's standard deviation; ``None`` takes ``process.sigma_data``.
      noise_input: what ``F`` sees as its noise level. EDM's ``c_noise`` is infinite where
        ``alpha = 0`` (rectified flow at ``t = 1``): use ``TimeInput()`` for such processes.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> par = diffax.losses.EDMPrecond()
      >>> D = par.denoiser(lambda params, x, c: jnp.zeros_like(x), None, diffax.EDM())
      >>> D(jnp.ones((2, 3)), 1.0).shape
      (2, 3)
    """

    sigma_data: Any = None
    noise_input: NoiseInput = dataclasses.field(default_factory=EDMNoiseInput)

    def __post_init__(self):
        v = concrete_value(self.sigma_data)
        if v is not None and not bool((v > 0).all()):
            raise ValueError(f"EDMPrecond: `sigma_data` must be positive, got {self.sigma_data}.")
        if not isinstance(self.noise_input, NoiseInput):
            raise ValueError(f"EDMPrecond: `noise_input` must be a diffax.losses.NoiseInput "
                             f"(EDMNoiseInput(), TimeInput(), ...), got {self.noise_input!r}.")

    def output_space(self) -> str:
        return EDM_F_SPACE

    def sigma_data_for(self, process):
        return resolve_sigma_data(process, self.sigma_data, where="EDMPrecond")

    def network_output(self, apply_fn, params, process, x, t, **kwargs):
        c = edm_coefficients(process, t, sigma_data=self.sigma_data_for(process))
        return apply_fn(params, expand(c.c_in, x) * x, self.noise_input(process, t), **kwargs)

    def denoiser(self, apply_fn, params, process, **cond):
        raw = lambda x_in, noise: apply_fn(params, x_in, noise, **cond)
        return edm_preconditioned(raw, process, sigma_data=self.sigma_data_for(process),
                                  noise_conditioning=lambda t: self.noise_input(process, t))
