"""Negative ELBO of token sequences: an upper bound on ``-log p(x0)`` in nats per sequence.

* D3PM: ``KL(q(x_T|x0) || p(x_T)) + sum_{t=1}^T E_{x_t} KL(q(x_{t-1}|x_t,x0) ||
  p(x_{t-1}|x_t))`` (the ``t = 1`` term is ``-log p(x0|x_1)``), each expectation over one
  draw of ``x_t``; ``steps`` of them can be a stratified subset (an unbiased estimate).
* Masked: ``E_{t ~ U(0,1)} E_{x_t} [(1/t) sum_{i masked} -log D(x_t, t)[i, x0_i]]`` by Monte
  Carlo in ``t`` (stratified over ``num_samples`` draws). With the exact denoiser the
  continuous-time bound is tight: its expectation is ``-log p(x0)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_key
from diffax.discrete.denoiser import DiscreteDenoiser
from diffax.discrete.losses import d3pm_prior_term, d3pm_vb_term, masked_nelbo_term
from diffax.discrete.processes import DiscreteProcess, Masked, check_tokens

__all__ = ["nelbo"]


def _positive(value: Any, name: str, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1 or (
            maximum is not None and value > maximum):
        limit = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"nelbo: `{name}` must be an integer >= 1{limit}, got {value!r}.")
    return int(value)


def nelbo(key: jax.Array, process: DiscreteProcess, D: DiscreteDenoiser, x0: Any, *,
          num_samples: int = 1, steps: int | None = None) -> jax.Array:
    """The negative ELBO of each sequence, nats, ``[B]``.

    Args:
      key: a PRNG key.
      process: :class:`~diffax.discrete.D3PM` or :class:`~diffax.discrete.Masked`.
      D: ``D(x_t, t) -> [B, L, K]`` probabilities.
      x0: int tokens ``[B, L]`` in ``[0, K)``.
      num_samples: Masked: draws of ``(t, x_t)`` per sequence (``t`` stratified over them);
        D3PM: draws of ``x_t`` per step; averaged.
      steps: D3PM only: evaluate this many of the ``T`` step terms (one per stratum of
        ``T/steps`` consecutive steps, at a random offset) and scale by ``T/steps``; default
        every step (the exact sum over steps).

    Returns:
      ``[B]`` nats per sequence; an upper bound on ``-log p(x0)`` in expectation.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax import discrete
      >>> p = discrete.Masked(vocab_size=4)
      >>> D = lambda x, t: jnp.full((*x.shape, 4), 0.25)   # knows nothing: log 4 per token
      >>> nats = discrete.nelbo(jax.random.key(0), p, D, jnp.zeros((1, 3), jnp.int32),
      ...                       num_samples=4096)
      >>> bool(abs(float(nats[0]) - 3 * jnp.log(4.0)) < 0.3)
      True
    """
    check_key(key, where="nelbo", allow_none=False)
    if not isinstance(process, DiscreteProcess):
        raise TypeError(f"nelbo: `process` must be a discrete process (D3PM or Masked), got "
                        f"{type(process).__name__}.")
    if not callable(D):
        raise TypeError(f"nelbo: `D` must be a denoiser D(x_t, t), got {type(D).__name__}.")
    x0 = check_tokens(x0, name="x0", num_states=process.vocab_size, where="nelbo")
    n = _positive(num_samples, "num_samples")
    b = x0.shape[0]
    if isinstance(process, Masked):
        if steps is not None:
            raise ValueError("nelbo: `steps` applies to D3PM only (Masked is continuous in t).")

        def draw(i, key_i):
            k_u, k_m = jax.random.split(key_i)
            u = jax.random.uniform(k_u, (b,))
            t = (i + 1.0 - u) / n  # stratum i of n, t in (0, 1]
            masked = jax.random.uniform(k_m, x0.shape) < (1.0 - process.alpha(t))[:, None]
            x_t = jnp.where(masked, process.mask_id, x0)
            probs = D(x_t, t)
            return masked_nelbo_term(process, x0, x_t, t, jnp.log(probs))

        keys = jax.random.split(key, n)
        terms = jax.lax.map(lambda a: draw(*a), (jnp.arange(n), keys))
        return jnp.mean(terms, axis=0)

    T = process.num_steps
    m = T if steps is None else _positive(steps, "steps", T)
    if T % m:
        raise ValueError(f"nelbo: `steps` must divide T = {T}, got {steps!r}.")
    k_off, k_x = jax.random.split(key)
    offset = jax.random.randint(k_off, (), 0, T // m) if m < T else 0
    step_ids = jnp.arange(m) * (T // m) + 1 + offset

    def term(args):
        t, key_t = args
        def one(key_j):
            probs = process.marginal_probs(x0, t)
            x_t = jax.random.categorical(key_j, jnp.log(probs), axis=-1).astype(jnp.int32)
            return d3pm_vb_term(process, x0, x_t, t, D(x_t, jnp.full((b,), t)))
        return jnp.mean(jax.lax.map(one, jax.random.split(key_t, n)), axis=0)

    terms = jax.lax.map(term, (step_ids, jax.random.split(k_x, m)))
    return d3pm_prior_term(process, x0) + (T / m) * jnp.sum(terms, axis=0)
