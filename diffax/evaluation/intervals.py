"""Confidence intervals for the task metrics: a percentile bootstrap over test items and
Wilson's score interval for a binomial proportion.

* :func:`bootstrap_interval`: resample the items (images) with replacement, recompute the
  statistic, take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (Efron's percentile
  interval). ``strata`` resamples each stratum separately with its own size (for AUROC: the
  normal and the anomalous inputs, so every resample has both classes).
* :func:`wilson_interval`: the score interval of a proportion ``k / n`` (Wilson 1927), which
  stays inside ``[0, 1]`` and behaves at ``k = 0`` or ``k = n``.

Example:
  >>> wilson_interval(50, 100)
  (0.40383, 0.59617)
  >>> import numpy as np
  >>> lo, hi = bootstrap_interval(np.mean, np.arange(100.0))
  >>> bool(lo < 49.5 < hi)
  True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["bootstrap_interval", "wilson_interval"]


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"`level` must lie in (0, 1), got {level!r}.")
    return float(level)


def wilson_interval(successes: int, n: int, *, level: float = 0.95,
                    digits: int = 5) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``successes / n`` at confidence ``level``.

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the normal
    quantile of ``(1 + level) / 2``; rounded to ``digits`` decimals.

    Example:
      >>> wilson_interval(0, 10)
      (0.0, 0.27753)
    """
    from statistics import NormalDist

    level = _check_level(level)
    successes, n = int(successes), int(n)
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n and n >= 1, got "
                         f"successes={successes}, n={n}.")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return (round(max(0.0, (centre - half) / denom), digits),
            round(min(1.0, (centre + half) / denom), digits))


def bootstrap_interval(statistic: Callable[..., Any], *arrays: Any, strata: Any = None,
                       num_resamples: int = 2000, level: float = 0.95, seed: int = 0,
                       digits: int = 5) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over the items (axis 0).

    Every resample draws item indices with replacement (the same indices for all ``arrays``,
    so paired values stay paired) and evaluates ``statistic`` on the resampled arrays. With
    ``strata`` (one label per item) each stratum is resampled within itself. Fixed ``seed``:
    the interval is reproducible. Rounded to ``digits`` decimals.

    Args:
      statistic: ``statistic(*arrays) -> float``.
      *arrays: arrays with one common first dimension (the items).
      strata: optional ``[N]`` labels; items are resampled within each label.
      num_resamples: bootstrap resamples.
      level: the confidence level.
      seed: the resampling seed.
      digits: decimals of the result.

    Example:
      >>> import numpy as np
      >>> from diffax.evaluation.metrics import auroc
      >>> scores, labels = np.arange(10.0), np.array([0] * 5 + [1] * 5)
      >>> bootstrap_interval(auroc, scores, labels, strata=labels)  # perfect on every resample
      (1.0, 1.0)
    """
    level = _check_level(level)
    if int(num_resamples) < 1:
        raise ValueError(f"bootstrap_interval: `num_resamples` must be >= 1, got "
                         f"{num_resamples!r}.")
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("bootstrap_interval: give at least one array.")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays) or n < 1:
        raise ValueError(f"bootstrap_interval: the arrays must share a non-empty first "
                         f"dimension, got {[a.shape[0] for a in arrays]}.")
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(np.asarray(strata) == s) for s in np.unique(np.asarray(strata))]
    if strata is not None and np.asarray(strata).shape[0] != n:
        raise ValueError(f"bootstrap_interval: `strata` has {np.asarray(strata).shape[0]} "
                         f"labels for {n} items.")
    rng = np.random.default_rng(int(seed))
    values = np.empty(int(num_resamples))
    for r in range(int(num_resamples)):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        values[r] = float(statistic(*(a[idx] for a in arrays)))
    lo, hi = np.quantile(values, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return round(float(lo), digits), round(float(hi), digits)
