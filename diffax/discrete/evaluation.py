"""Evaluating a discrete diffusion model: held-out NELBO in bits per token next to smoothed
n-gram baselines fitted on the same training split, sample text, and throughput.

Used by ``diffax eval`` for configs with a discrete process; the functions take plain arrays
and a denoiser factory, so they also run on their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.discrete.likelihood import nelbo
from diffax.discrete.ngram import ngram_bits_per_char
from diffax.discrete.processes import DiscreteProcess

__all__ = ["held_out_nelbo", "ngram_baselines", "format_table", "BASELINE_ORDERS"]

BASELINE_ORDERS = (1, 2, 3, 5)
_NAMES = {1: "unigram", 2: "bigram", 3: "trigram", 5: "5-gram"}


def held_out_nelbo(key: jax.Array, process: DiscreteProcess,
                   denoiser: Callable[[Any], Any], params: Any, x: np.ndarray, *,
                   batch_size: int, num_samples: int = 1, steps: int | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """NELBO of every held-out sequence, in nats per sequence and bits per token.

    Args:
      key: PRNG key.
      process: the discrete process.
      denoiser: ``denoiser(params) -> D``.
      params: network parameters.
      x: int tokens ``[N, L]``.
      batch_size: sequences per compiled call (the last batch is padded).
      num_samples: NELBO draws per sequence (see :func:`diffax.discrete.nelbo`).
      steps: D3PM step terms evaluated (``None``: all).
      progress: called with the number of sequences done.

    Returns:
      ``{"bits_per_token", "stderr", "nats_per_sequence", "num_sequences", "seconds",
      "tokens_per_second"}``; ``stderr`` is over sequences.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from diffax import discrete
      >>> p = discrete.Masked(vocab_size=4)
      >>> D = lambda params: (lambda x, t: jnp.full((*x.shape, 4), 0.25))
      >>> out = held_out_nelbo(jax.random.key(0), p, D, None, np.zeros((3, 8), np.int32),
      ...                      batch_size=2, num_samples=2048)
      >>> bool(abs(out["bits_per_token"] - 2.0) < 0.15)
      True
    """
    x = np.asarray(x)
    n, length = x.shape
    batch = max(1, min(int(batch_size), n))

    @jax.jit
    def run(params, key, xb):
        return nelbo(key, process, denoiser(params), xb, num_samples=num_samples, steps=steps)

    out, start = [], time.perf_counter()
    for i, s in enumerate(range(0, n, batch)):
        xb = x[s:s + batch]
        m = len(xb)
        if m < batch:
            xb = np.concatenate([xb, np.repeat(xb[:1], batch - m, axis=0)])
        out.append(np.asarray(run(params, jax.random.fold_in(key, i), jnp.asarray(xb)))[:m])
        if progress is not None:
            progress(s + m)
    seconds = time.perf_counter() - start
    nats = np.concatenate(out).astype(np.float64)
    bits = nats / (length * math.log(2.0))
    return {"bits_per_token": float(bits.mean()),
            "stderr": float(bits.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "nats_per_sequence": float(nats.mean()), "num_sequences": int(n),
            "seconds": seconds, "tokens_per_second": n * length / max(seconds, 1e-9)}


def ngram_baselines(train: np.ndarray, test: np.ndarray, *, vocab_size: int,
                    orders: tuple[int, ...] = BASELINE_ORDERS) -> dict[str, dict[str, float]]:
    """Held-out bits per token of add-one and Kneser-Ney n-gram models, by name.

    Example:
      >>> x = np.tile(np.array([[0, 1, 2, 3]]), (20, 4))
      >>> sorted(ngram_baselines(x, x[:2], vocab_size=4, orders=(1, 2)))
      ['bigram', 'unigram']
    """
    return {_NAMES.get(o, f"{o}-gram"): {
        s: ngram_bits_per_char(train, test, order=o, vocab_size=vocab_size, smoothing=s)
        for s in ("add_one", "kneser_ney")} for o in orders}


def format_table(model: dict[str, Any], baselines: dict[str, dict[str, float]], *,
                 unit: str = "bits/char") -> str:
    """The model's NELBO and the baselines side by side, one line each.

    Example:
      >>> print(format_table({"bits_per_token": 2.5, "stderr": 0.01},
      ...                    {"unigram": {"add_one": 4.1, "kneser_ney": 4.1}}))
      model                          bits/char
      -----------------------------  ---------------
      diffusion NELBO (upper bound)  2.500 ± 0.010
      unigram, add-one               4.100
      unigram, Kneser-Ney            4.100
    """
    rows = [("model", unit), ("diffusion NELBO (upper bound)",
                              f"{model['bits_per_token']:.3f} ± {model['stderr']:.3f}")]
    for name, vals in baselines.items():
        rows.append((f"{name}, add-one", f"{vals['add_one']:.3f}"))
        rows.append((f"{name}, Kneser-Ney", f"{vals['kneser_ney']:.3f}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(15, max(len(r[1]) for r in rows))
    lines = [f"{r[0].ljust(w0)}  {r[1]}".rstrip() for r in rows]
    lines.insert(1, f"{'-' * w0}  {'-' * w1}")
    return "\n".join(lines)
