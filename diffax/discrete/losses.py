"""Typed training losses of the categorical processes, used by the same train step as the
Gaussian ones: ``loss.bind(apply_fn)`` is ``loss_fn(params, key, batch) -> (loss, aux)`` and
``loss.denoiser(apply_fn, params)`` the denoiser a sampler takes.

* :class:`MaskedDiffusionLoss`: MDLM's continuous-time NELBO, a cross-entropy on the masked
  tokens weighted by ``-alpha'(t) / (1 - alpha(t)) = 1 / t`` (Sahoo et al. 2024, eq. 10;
  Shi et al. 2024).
* :class:`D3PMHybridLoss`: D3PM's ``L_vb + lambda * L_aux`` (Austin et al. 2021, eq. 5): the
  step-``t`` term of the variational bound plus ``lambda`` times the cross-entropy of the
  network's ``x0`` prediction.

Both report the loss in nats per token (the sum over a sequence divided by its length).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from diffax.discrete.denoiser import as_denoiser
from diffax.discrete.processes import D3PM, Masked, check_tokens

__all__ = ["MaskedDiffusionLoss", "D3PMHybridLoss", "Logits", "masked_nelbo_term", "d3pm_vb_term",
           "d3pm_prior_term"]

_TINY = 1e-30


def masked_nelbo_term(process: Masked, x0: jax.Array, x_t: jax.Array, t: jax.Array,
                      log_x0_probs: jax.Array) -> jax.Array:
    """MDLM's integrand per sequence ``[B]``: ``(1/t) sum_{i masked} -log D(x_t, t)[i, x0_i]``.

    Its expectation over ``t ~ U(0, 1)`` and ``x_t ~ q(x_t | x0)`` is the continuous-time
    NELBO (in nats per sequence).
    """
    ce = -jnp.take_along_axis(log_x0_probs, x0[..., None], axis=-1)[..., 0]
    masked = x_t == process.mask_id
    w = process.alpha_rate(t)[:, None]
    return jnp.sum(jnp.where(masked, w * ce, 0.0), axis=-1)


def _kl(q: jax.Array, p: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(q > 0, q * (jnp.log(jnp.maximum(q, _TINY))
                                         - jnp.log(jnp.maximum(p, _TINY))), 0.0), axis=-1)


def d3pm_vb_term(process: D3PM, x0: jax.Array, x_t: jax.Array, t: jax.Array,
                 x0_probs: jax.Array) -> jax.Array:
    """``KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))`` summed over tokens, ``[B]``; for
    ``t = 1`` this is ``-log p(x0 | x_1)`` (the posterior given ``x0`` is then ``onehot(x0)``).
    """
    q = process.posterior_probs(x_t, jax.nn.one_hot(x0, process.vocab_size,
                                                    dtype=x0_probs.dtype), t)
    p = process.posterior_probs(x_t, x0_probs, t)
    return jnp.sum(_kl(q, p), axis=-1)


def d3pm_prior_term(process: D3PM, x0: jax.Array) -> jax.Array:
    """``KL(q(x_T | x0) || p(x_T))`` summed over tokens, ``[B]``."""
    q = process.marginal_probs(x0, process.num_steps)
    return jnp.sum(_kl(q, process.prior_probs().astype(q.dtype)[None, None, :]), axis=-1)


def _check_batch(process: Any, batch: Any, where: str) -> jax.Array:
    if not isinstance(batch, dict) or "x" not in batch:
        raise ValueError(f"{where}: `batch` must be a dict with tokens under 'x', got "
                         f"{type(batch).__name__}.")
    return check_tokens(batch["x"], name="batch['x']", num_states=process.vocab_size,
                        where=where)


def _net(apply_fn: Callable[..., jax.Array], params: Any, cond: dict[str, Any]):
    return lambda x, t: apply_fn(params, x, t, **cond)


@dataclasses.dataclass(frozen=True)
class Logits:
    """The network -> denoiser map of the discrete losses: logits through
    :func:`~diffax.discrete.as_denoiser` (what ``Experiment.denoiser`` calls)."""

    def denoiser(self, apply_fn: Callable[..., jax.Array], params: Any, process: Any,
                 **cond: Any):
        return as_denoiser(_net(apply_fn, params, cond), process)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskedDiffusionLoss:
    """MDLM's continuous-time weighted cross-entropy for :class:`~diffax.discrete.Masked`.

    ``t`` is drawn per example on ``[t_eps, 1]``, low-discrepancy over the batch
    (``(u + i/B) mod 1``, as MDLM), which lowers the variance without bias on that interval.

    Attributes:
      process: the :class:`~diffax.discrete.Masked` process.
      t_eps: smallest time drawn (the ``1/t`` weight is never evaluated at 0).
      low_discrepancy: stratify ``t`` over the batch.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax import discrete
      >>> loss = discrete.MaskedDiffusionLoss(process=discrete.Masked(vocab_size=3))
      >>> fn = loss.bind(lambda params, x, t: jnp.zeros((*x.shape, 3)))
      >>> value, _ = fn({}, jax.random.key(0), {"x": jnp.zeros((4, 8), jnp.int32)})
      >>> round(float(value), 3) == round(float(jnp.log(3.0)), 3) or float(value) > 0
      True
    """

    process: Masked
    t_eps: float = 1e-3
    low_discrepancy: bool = True
    parameterization: Logits = dataclasses.field(default_factory=Logits)

    def __post_init__(self):
        if not isinstance(self.process, Masked):
            raise TypeError(f"MaskedDiffusionLoss: `process` must be discrete.Masked, got "
                            f"{type(self.process).__name__}.")
        if not 0.0 <= float(self.t_eps) < 1.0:
            raise ValueError(f"MaskedDiffusionLoss: `t_eps` must lie in [0, 1), got "
                             f"{self.t_eps!r}.")

    def loss(self, apply_fn: Callable[..., jax.Array], params: Any, key: jax.Array,
             batch: dict[str, Any], **cond: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(nats per token, aux)`` for one batch ``{"x": [B, L] int tokens}``."""
        x0 = _check_batch(self.process, batch, "MaskedDiffusionLoss")
        b, length = x0.shape
        k_t, k_mask = jax.random.split(key)
        u = jax.random.uniform(k_t, (b,))
        if self.low_discrepancy:
            u = jnp.mod(u[0] + jnp.arange(b) / b, 1.0)
        t = self.t_eps + (1.0 - self.t_eps) * u
        masked = jax.random.uniform(k_mask, x0.shape) < (1.0 - self.process.alpha(t))[:, None]
        x_t = jnp.where(masked, self.process.mask_id, x0)
        logits = apply_fn(params, x_t, self.process.network_time(t), **cond)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        per_seq = masked_nelbo_term(self.process, x0, x_t, t, log_probs)
        value = jnp.mean(per_seq) / length
        return value, {"nelbo_per_token": value}

    def bind(self, apply_fn: Callable[..., jax.Array]):
        """``loss_fn(params, key, batch) -> (loss, aux)`` for the train step."""
        return lambda params, key, batch: self.loss(apply_fn, params, key, batch)

    def denoiser(self, apply_fn: Callable[..., jax.Array], params: Any, **cond: Any):
        """The denoiser ``D(x_t, t)`` of the network with ``params``."""
        return as_denoiser(_net(apply_fn, params, cond), self.process)


@dataclasses.dataclass(frozen=True, kw_only=True)
class D3PMHybridLoss:
    """D3PM's hybrid loss ``L_vb + hybrid_coeff * L_aux`` (Austin et al. 2021).

    ``t ~ U{1..T}``; ``L_vb`` is the step-``t`` term (:func:`d3pm_vb_term`), ``L_aux`` the
    cross-entropy ``-log p_theta(x0 | x_t)`` of the network's ``x0`` prediction. The reported
    loss is per token; ``T * E_t[L_vb] + prior`` is the NELBO.

    Attributes:
      process: a :class:`~diffax.discrete.D3PM`.
      hybrid_coeff: ``lambda`` (the paper: 0.001 for images, 0.01 for text8).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax import discrete
      >>> p = discrete.D3PM.uniform(vocab_size=3, num_steps=10)
      >>> loss = discrete.D3PMHybridLoss(process=p)
      >>> fn = loss.bind(lambda params, x, t: jnp.zeros((*x.shape, 3)))
      >>> value, aux = fn({}, jax.random.key(0), {"x": jnp.zeros((4, 8), jnp.int32)})
      >>> sorted(aux)
      ['cross_entropy', 'vb']
    """

    process: D3PM
    hybrid_coeff: float = 0.01
    parameterization: Logits = dataclasses.field(default_factory=Logits)

    def __post_init__(self):
        if not isinstance(self.process, D3PM):
            raise TypeError(f"D3PMHybridLoss: `process` must be a discrete.D3PM, got "
                            f"{type(self.process).__name__}.")
        if not float(self.hybrid_coeff) >= 0.0:
            raise ValueError(f"D3PMHybridLoss: `hybrid_coeff` must be >= 0, got "
                             f"{self.hybrid_coeff!r}.")

    def loss(self, apply_fn: Callable[..., jax.Array], params: Any, key: jax.Array,
             batch: dict[str, Any], **cond: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(per-token loss, {"vb", "cross_entropy"})`` for one batch."""
        p = self.process
        x0 = _check_batch(p, batch, "D3PMHybridLoss")
        b, length = x0.shape
        k_t, k_x = jax.random.split(key)
        t = jax.random.randint(k_t, (b,), 1, p.num_steps + 1)
        probs_t = p.marginal_probs(x0, t)
        x_t = jax.random.categorical(k_x, jnp.log(probs_t), axis=-1).astype(jnp.int32)
        D = as_denoiser(_net(apply_fn, params, cond), p)
        x0_probs = D(x_t, t)
        vb = d3pm_vb_term(p, x0, x_t, t, x0_probs)
        ce = -jnp.sum(jnp.log(jnp.maximum(
            jnp.take_along_axis(x0_probs, x0[..., None], axis=-1)[..., 0], _TINY)), axis=-1)
        vb, ce = jnp.mean(vb) / length, jnp.mean(ce) / length
        return vb + self.hybrid_coeff * ce, {"vb": vb, "cross_entropy": ce}

    def bind(self, apply_fn: Callable[..., jax.Array]):
        """``loss_fn(params, key, batch) -> (loss, aux)`` for the train step."""
        return lambda params, key, batch: self.loss(apply_fn, params, key, batch)

    def denoiser(self, apply_fn: Callable[..., jax.Array], params: Any, **cond: Any):
        """The denoiser ``D(x_t, t)`` of the network with ``params``."""
        return as_denoiser(_net(apply_fn, params, cond), self.process)
