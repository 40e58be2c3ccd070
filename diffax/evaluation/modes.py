"""Mode coverage and the digit classifier's scores of generated digits (numpy, no weights).

* :func:`fit_digit_classifier`: the project's digit classifier, the judge of the
  classifier-guidance example (:mod:`diffax.tasks.examples.classifier`): scikit-learn's
  logistic regression (``max_iter=2000``) on flattened digits, fitted on the training split.
* :func:`digit_score`: the Inception score's formula with that classifier's probabilities,
  ``exp(E_x KL(p(y | x) || p(y)))`` with ``p(y)`` the mean over the samples: between 1 and
  the number of classes; high when each sample is confidently one digit and the digits are
  balanced.
* :func:`stacked_modes`: the mode ``100 d0 + 10 d1 + d2`` of stacked digits ``[N, 8, 8, 3]``
  (``diffax.data``'s ``digits_stacked``), classifying each channel separately.
* :func:`mode_coverage`: the histogram of mode labels, the number of modes covered and the KL
  divergence of the histogram from the uniform distribution over the modes (the "reverse KL"
  of stacked-MNIST tables, ``sum_k p_k log(p_k K)``; 0 when every mode is equally frequent,
  ``log K`` when one mode has everything).

Example:
  >>> import numpy as np
  >>> cov = mode_coverage(np.array([0, 0, 1, 3]), num_modes=4)
  >>> cov["covered"], round(cov["kl_to_uniform"], 4)
  (3, 0.3466)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_digit_classifier", "digit_probabilities", "digit_score", "stacked_modes",
           "mode_coverage"]


def _flat(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"`{name}` must be an array [N, ...] with N >= 1, got shape "
                         f"{x.shape}.")
    return x.reshape(x.shape[0], -1)


def fit_digit_classifier(x: Any, labels: Any) -> Any:
    """The digit classifier: logistic regression (scikit-learn, ``max_iter=2000``) fitted on
    ``x`` ``[N, ...]`` (flattened; e.g. the digits' training split ``[N, 8, 8, 1]``) and
    ``labels`` ``[N]``. Score images in the same units they were fitted in.

    Returns:
      The fitted ``sklearn.linear_model.LogisticRegression`` (``predict``,
      ``predict_proba``).

    Example:
      >>> from sklearn.datasets import load_digits
      >>> d = load_digits()
      >>> clf = fit_digit_classifier(d.images[:500] / 16, d.target[:500])
      >>> float(np.mean(clf.predict(d.images[500:700].reshape(200, -1) / 16)
      ...              == d.target[500:700])) > 0.85
      True
    """
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels)
    x = _flat(x, "x")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"`labels` must have shape [{x.shape[0]}] (one per image of `x`), "
                         f"got {labels.shape}.")
    return LogisticRegression(max_iter=2000).fit(x, labels)


def digit_probabilities(classifier: Any, x: Any) -> np.ndarray:
    """``p(y | x)`` ``[N, 10]`` of images ``x`` ``[N, ...]`` under a fitted classifier."""
    return np.asarray(classifier.predict_proba(_flat(x, "x")), np.float64)


def digit_score(probs: Any) -> float:
    """``exp(mean_i KL(p(y | x_i) || p(y)))`` of class probabilities ``probs`` ``[N, K]``
    (rows summing to 1), ``p(y)`` their mean: the Inception score's formula.

    Example:
      >>> round(digit_score(np.eye(4)), 6), round(digit_score(np.full((3, 4), 0.25)), 6)
      (4.0, 1.0)
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"`probs` must be [N, K] with N >= 1, got shape {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("`probs` rows must be probability vectors (>= 0, summing to 1).")
    marginal = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def stacked_modes(classifier: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(modes [N], digits [N, 3])`` of stacked digits ``x`` ``[N, H, W, 3]``: each channel
    classified alone by ``classifier`` (fitted on single-channel images ``[M, H, W, 1]`` or
    ``[M, H, W]``, in the units of ``x``), mode ``100 d0 + 10 d1 + d2``.

    Example:
      >>> class Argmax:  # a stand-in classifier: the brightest pixel's index
      ...     def predict(self, x): return x.argmax(axis=1)
      >>> x = np.zeros((1, 1, 10, 3)); x[0, 0, [4, 0, 7], [0, 1, 2]] = 1.0
      >>> stacked_modes(Argmax(), x)[0].tolist()
      [407]
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"`x` must be stacked digits [N, H, W, 3], got shape {x.shape}.")
    n = x.shape[0]
    channels = np.moveaxis(x, -1, 1).reshape(n * 3, -1)  # [N * 3, H * W], channel-major rows
    digits = np.asarray(classifier.predict(channels)).astype(np.int64).reshape(n, 3)
    return 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2], digits


def mode_coverage(modes: Any, *, num_modes: int, min_count: int = 1) -> dict[str, Any]:
    """The histogram of integer ``modes`` ``[N]`` (values in ``0..num_modes-1``), the number
    of modes with at least ``min_count`` samples, and the KL divergence (nats) of the
    histogram's frequencies ``p`` from the uniform distribution, ``sum_k p_k log(p_k K)``.

    Returns:
      ``{"covered": int, "kl_to_uniform": float, "counts": int64 [num_modes], "num": N}``.

    Example:
      >>> mode_coverage(np.arange(10), num_modes=10)["kl_to_uniform"]
      0.0
    """
    if isinstance(num_modes, bool) or not isinstance(num_modes, int | np.integer) \
            or num_modes < 1:
        raise ValueError(f"`num_modes` must be a positive integer, got {num_modes!r}.")
    if isinstance(min_count, bool) or not isinstance(min_count, int | np.integer) \
            or min_count < 1:
        raise ValueError(f"`min_count` must be a positive integer, got {min_count!r}.")
    m = np.asarray(modes)
    if m.ndim != 1 or m.size < 1 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"`modes` must be a non-empty integer array [N], got shape {m.shape} "
                         f"and dtype {m.dtype}.")
    if m.min() < 0 or m.max() >= num_modes:
        raise ValueError(f"`modes` must lie in 0..{num_modes - 1}, got values in "
                         f"{m.min()}..{m.max()}.")
    counts = np.bincount(m, minlength=num_modes).astype(np.int64)
    p = counts[counts > 0] / m.size
    kl = float(np.sum(p * np.log(p * num_modes)))
    return {"covered": int(np.sum(counts >= min_count)), "kl_to_uniform": max(kl, 0.0),
            "counts": counts, "num": int(m.size)}
