"""The discrete denoiser contract: ``D(x_t, t) -> [B, L, K]`` probabilities of ``x0``.

For categorical processes the denoiser is the posterior mean of ``onehot(x0)``, i.e. the
probabilities ``p(x0_i = j | x_t)`` of each token. A network returns logits;
:func:`as_denoiser` turns them into such probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from diffax.discrete.processes import DiscreteProcess

__all__ = ["as_denoiser", "DiscreteDenoiser"]

DiscreteDenoiser = Callable[[jax.Array, jax.Array], jax.Array]
"""``D(x_t [B, L] int32, t [B]) -> [B, L, K]`` probabilities of the data tokens."""


def as_denoiser(fn: Callable[..., jax.Array], process: DiscreteProcess) -> DiscreteDenoiser:
    """A denoiser from a network ``fn(x_t, t_net) -> logits [B, L, K]``.

    ``fn`` receives the process's network time (:meth:`network_time`: ``t / T`` for D3PM,
    ``t`` for :class:`~diffax.discrete.Masked`), and its logits become probabilities by a
    softmax. With a mask state (absorbing D3PM, Masked) a token that is not masked in ``x_t``
    is its own ``x0`` (masking never changes a token), so those positions return
    ``onehot(x_t)`` (MDLM's "carry-over" parameterization).

    Args:
      fn: ``fn(x_t, t_net)`` with ``x_t`` int32 ``[B, L]`` and ``t_net`` ``[B]``.
      process: a :class:`~diffax.discrete.D3PM` or :class:`~diffax.discrete.Masked`.

    Returns:
      ``D(x_t, t) -> [B, L, K]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from diffax import discrete
      >>> p = discrete.Masked(vocab_size=3)
      >>> D = discrete.as_denoiser(lambda x, t: jnp.zeros((*x.shape, 3)), p)
      >>> probs = D(jnp.array([[3, 1]]), jnp.array([0.5]))
      >>> (3 * probs).round(4).tolist()
      [[[1.0, 1.0, 1.0], [0.0, 3.0, 0.0]]]
    """
    if not isinstance(process, DiscreteProcess):
        raise TypeError(f"as_denoiser: `process` must be a discrete process (D3PM or Masked), "
                        f"got {type(process).__name__}.")
    if not callable(fn):
        raise TypeError(f"as_denoiser: `fn` must be callable, got {type(fn).__name__}.")
    k = process.vocab_size
    mask = process.mask_id

    def D(x_t: jax.Array, t: Any) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(t), (x_t.shape[0],))
        logits = fn(x_t, process.network_time(t))
        if logits.shape != (*x_t.shape, k):
            raise ValueError(f"as_denoiser: the network must return logits of shape "
                             f"[B, L, K] = {[*x_t.shape, k]}, got {list(logits.shape)}.")
        probs = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)),
                               axis=-1)
        if mask is None:
            return probs
        keep = (x_t != mask)[..., None]
        return jnp.where(keep, jax.nn.one_hot(jnp.minimum(x_t, k - 1), k, dtype=probs.dtype),
                         probs)

    return D
