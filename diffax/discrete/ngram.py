"""Smoothed character n-gram baselines for held-out bits per character.

:func:`ngram_bits_per_char` fits an order-``n`` model on training sequences and scores held-out
sequences, each sequence on its own (the first characters of a sequence use the shorter
contexts available, as a diffusion model sees only its own sequence). Two smoothings:

* ``"add_one"``: Laplace, ``(c(h, x) + 1) / (c(h) + V)``; the first ``k < n - 1``
  characters of a sequence use the order-``k + 1`` model;
* ``"kneser_ney"``: interpolated Kneser-Ney with absolute discount ``0.75`` and
  continuation counts for the lower orders (Chen & Goodman 1999), down to a uniform floor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ngram_bits_per_char", "SMOOTHINGS"]

SMOOTHINGS = ("add_one", "kneser_ney")


def _codes(seqs: np.ndarray, order: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """``(context code, next token)`` of every window of ``order`` tokens in each row."""
    n, length = seqs.shape
    if order > length:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ctx = np.zeros((n, length - order + 1), np.int64)
    for j in range(order - 1):
        ctx = ctx * vocab + seqs[:, j:length - order + 1 + j]
    return ctx.ravel(), seqs[:, order - 1:].ravel().astype(np.int64)


class _Counts:
    def __init__(self, keys: np.ndarray):
        self.keys, self.counts = np.unique(keys, return_counts=True)

    def get(self, q: np.ndarray) -> np.ndarray:
        if self.keys.size == 0:
            return np.zeros(q.shape, np.float64)
        i = np.clip(np.searchsorted(self.keys, q), 0, self.keys.size - 1)
        return np.where(self.keys[i] == q, self.counts[i], 0).astype(np.float64)


def _add_one_logp(train, test, order, vocab):
    total, count = 0.0, 0
    for k in range(1, order + 1):  # order-k model for positions with k - 1 context tokens
        c_tr, x_tr = _codes(train, k, vocab)
        joint, ctx = _Counts(c_tr * vocab + x_tr), _Counts(c_tr)
        c_te, x_te = _codes(test if k == order else test[:, :k], k, vocab)
        p = (joint.get(c_te * vocab + x_te) + 1.0) / (ctx.get(c_te) + vocab)
        total += np.log(p).sum()
        count += p.size
    return total, count


def _kn_logp(train, test, order, vocab, discount=0.75):
    # Highest order uses counts; lower orders use continuation counts N1+(. h x).
    models = []
    for k in range(1, order + 1):
        c_tr, x_tr = _codes(train, k, vocab)
        if k < order:  # continuation: distinct left extensions of (h, x)
            c_up, x_up = _codes(train, k + 1, vocab)
            full = np.unique(c_up * vocab + x_up)
            suffix = full % (vocab ** k)  # drop the first token of the (k+1)-gram
            grams = suffix
        else:
            grams = c_tr * vocab + x_tr
        joint = _Counts(grams)
        ctx_of = joint.keys // vocab
        ctx_tot = _Counts(np.repeat(ctx_of, joint.counts))  # sum over x of counts
        ctx_types = _Counts(ctx_of)  # N1+(h .)
        models.append((joint, ctx_tot, ctx_types))

    def prob(seq_ctx: list[np.ndarray], x: np.ndarray, top: int) -> np.ndarray:
        p = np.full(x.shape, 1.0 / vocab)
        for k in range(1, top + 1):
            joint, ctx_tot, ctx_types = models[k - 1]
            h = seq_ctx[k - 1]
            c_h = ctx_tot.get(h)
            c_hx = joint.get(h * vocab + x)
            lam = discount * ctx_types.get(h) / np.maximum(c_h, 1.0)
            p = np.where(c_h > 0, np.maximum(c_hx - discount, 0.0) / np.maximum(c_h, 1.0)
                         + lam * p, p)
        return p

    total, count = 0.0, 0
    n, length = test.shape
    for pos in range(length):
        top = min(order, pos + 1)
        ctxs = []
        for k in range(1, top + 1):
            h = np.zeros(n, np.int64)
            for j in range(pos - k + 1, pos):
                h = h * vocab + test[:, j]
            ctxs.append(h)
        p = prob(ctxs, test[:, pos].astype(np.int64), top)
        total += np.log(p).sum()
        count += n
    return total, count


def ngram_bits_per_char(train: np.ndarray, test: np.ndarray, *, order: int, vocab_size: int,
                        smoothing: str = "add_one") -> float:
    """Held-out bits per character of a smoothed order-``order`` character model.

    Args:
      train: int tokens ``[N, L]`` (training sequences).
      test: int tokens ``[M, L']`` (held-out sequences, scored one by one).
      order: ``n`` (1 = unigram).
      vocab_size: ``V``.
      smoothing: ``"add_one"`` or ``"kneser_ney"``.

    Returns:
      ``-mean log2 p(x_i | context)`` over every held-out character.

    Example:
      >>> import numpy as np
      >>> x = np.tile(np.array([[0, 1, 2, 3]]), (50, 4))
      >>> ngram_bits_per_char(x, x[:2], order=1, vocab_size=4)  # uniform unigram
      2.0
      >>> ngram_bits_per_char(x, x[:2], order=2, vocab_size=4, smoothing="kneser_ney") < 0.2
      True
    """
    train, test = np.asarray(train), np.asarray(test)
    if train.ndim != 2 or test.ndim != 2:
        raise ValueError(f"ngram_bits_per_char: `train` and `test` must be [N, L] tokens, got "
                         f"shapes {train.shape} and {test.shape}.")
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"ngram_bits_per_char: `order` must be an integer >= 1, got {order!r}.")
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"ngram_bits_per_char: `smoothing`={smoothing!r} is not one of "
                         f"{', '.join(map(repr, SMOOTHINGS))}.")
    for name, a in (("train", train), ("test", test)):
        if a.size and (a.min() < 0 or a.max() >= vocab_size):
            raise ValueError(f"ngram_bits_per_char: `{name}` has tokens outside "
                             f"[0, {vocab_size}).")
    fn = _add_one_logp if smoothing == "add_one" else _kn_logp
    total, count = fn(train.astype(np.int64), test.astype(np.int64), order, vocab_size)
    return float(-total / count / np.log(2.0))
