"""Sampling categorical processes backwards: ancestral steps and tau-leaping.

:func:`sample` starts from the process's prior (all masks, or uniform tokens) and runs
``num_steps`` reverse steps in one ``lax.scan``. The ancestral step draws every token from
``posterior_probs(x_t, D(x_t, t), t, s)``, the exact per-token reverse marginal when ``D`` is
the exact denoiser (Austin et al. 2021; Sahoo et al. 2024). Tau-leaping (Campbell et al. 2022)
freezes the continuous-time reverse rates over a step: a masked token jumps with probability
``1 - exp(-(t - s) rate(t))``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_key
from diffax.discrete.denoiser import DiscreteDenoiser
from diffax.discrete.processes import D3PM, DiscreteProcess, Masked

__all__ = ["sample", "SampleResult", "METHODS"]

METHODS = ("ancestral", "tau_leaping")


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """``x``: int32 tokens ``[B, L]`` (data tokens only); ``nfe``: denoiser calls."""

    x: jax.Array
    nfe: int


def _check_shape(shape: Any) -> tuple[int, int]:
    ok = isinstance(shape, tuple | list) and len(shape) == 2 and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1 for s in shape)
    if not ok:
        raise ValueError(f"sample: `shape` must be (B, L) with positive integers, got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _grid(process: DiscreteProcess, num_steps: int | None) -> tuple[jax.Array, int]:
    """Decreasing times ``t_0 = t_max > ... > t_N = 0`` and ``N``."""
    if isinstance(process, D3PM):
        T = process.num_steps
        n = T if num_steps is None else num_steps
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1 or T % n:
            raise ValueError(f"sample: `num_steps` must be a positive divisor of the process's "
                             f"T = {T} (D3PM skips steps in equal strides), got {num_steps!r}.")
        return jnp.asarray(np.arange(T, -1, -(T // n)), jnp.int32), int(n)
    n = num_steps
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"sample: `num_steps` must be a positive integer for Masked, got "
                         f"{num_steps!r}.")
    return jnp.linspace(1.0, 0.0, int(n) + 1), int(n)


def sample(key: jax.Array, process: DiscreteProcess, D: DiscreteDenoiser, *,
           shape: tuple[int, int], num_steps: int | None = None,
           method: str = "ancestral") -> SampleResult:
    """Draws token sequences ``[B, L]`` by running the reverse process with denoiser ``D``.

    Args:
      key: a PRNG key.
      process: :class:`~diffax.discrete.D3PM` or :class:`~diffax.discrete.Masked`.
      D: ``D(x_t, t) -> [B, L, K]`` probabilities (e.g. from :func:`as_denoiser`).
      shape: ``(B, L)``.
      num_steps: reverse steps; for D3PM a divisor of ``T`` (default ``T``: every step),
        for Masked required (an even grid from 1 to 0).
      method: ``"ancestral"`` (exact reverse marginals per token) or ``"tau_leaping"``
        (Masked only; the last step to ``t = 0`` unmasks what is left, as ancestral).

    Returns:
      :class:`SampleResult` with int32 tokens in ``[0, K)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax import discrete
      >>> p = discrete.Masked(vocab_size=4)
      >>> D = lambda x, t: jnp.full((*x.shape, 4), 0.25)
      >>> res = discrete.sample(jax.random.key(0), p, D, shape=(2, 5), num_steps=8)
      >>> res.x.shape, res.x.dtype.name, int(res.x.max()) < 4, res.nfe
      ((2, 5), 'int32', True, 8)
    """
    check_key(key, where="sample", allow_none=False)
    if not isinstance(process, DiscreteProcess):
        raise TypeError(f"sample: `process` must be a discrete process (D3PM or Masked), got "
                        f"{type(process).__name__}.")
    if not callable(D):
        raise TypeError(f"sample: `D` must be a denoiser D(x_t, t), got {type(D).__name__}.")
    if method not in METHODS:
        raise ValueError(f"sample: `method`={method!r} is not one of "
                         f"{', '.join(map(repr, METHODS))}.")
    if method == "tau_leaping" and not isinstance(process, Masked):
        raise ValueError("sample: `method`='tau_leaping' needs a continuous-time process "
                         "(Masked); D3PM is sampled with 'ancestral'.")
    batch, length = _check_shape(shape)
    times, n = _grid(process, num_steps)
    k_init, k_steps = jax.random.split(key)
    x = process.prior_sample(k_init, (batch, length))
    k = process.vocab_size

    def step(x, inputs):
        i, t, s = inputs
        t_b = jnp.full((batch,), t)
        s_b = jnp.full((batch,), s)
        x0_probs = D(x, t_b)
        if x0_probs.shape != (batch, length, k):
            raise ValueError(f"sample: the denoiser returned shape {list(x0_probs.shape)}, "
                             f"expected [B, L, K] = {[batch, length, k]}.")
        key_i = jax.random.fold_in(k_steps, i)
        if method == "tau_leaping":
            jump = 1.0 - jnp.exp(-(t - s) * process.alpha_rate(t))
            jump = jnp.where(s <= 0, 1.0, jump)
            k_jump, k_tok = jax.random.split(key_i)
            new = jax.random.categorical(k_tok, jnp.log(x0_probs), axis=-1).astype(jnp.int32)
            go = (x == process.mask_id) & (jax.random.uniform(k_jump, x.shape) < jump)
            return jnp.where(go, new, x), None
        probs = process.posterior_probs(x, x0_probs, t_b, s_b)
        return jax.random.categorical(key_i, jnp.log(probs), axis=-1).astype(jnp.int32), None

    x, _ = jax.lax.scan(step, x, (jnp.arange(n), times[:-1], times[1:]))
    return SampleResult(x=x, nfe=n)
