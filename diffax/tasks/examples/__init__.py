"""The digits (and phantom) examples of :mod:`diffax.tasks`: one module per task, each with
``run(config, workdir) -> metrics``.

They are programs, not library code: each reads its config (``configs/tasks/*.py``) once through
:func:`diffax.train.options.parse_task_config`, trains with :func:`diffax.train.fit`, and calls
the algorithms of the library module of the same name (:mod:`diffax.tasks.anomaly`, ...).
``diffax task CONFIG --workdir DIR`` runs one through :func:`diffax.tasks.run`, which imports
``diffax.tasks.examples.<config.task>``; the shared steps (digits arrays, the validation split,
the denoiser's training, PNGs, ``metrics.json``) are in ``_pipeline``; :func:`validation_split`
(the examples' fixed-seed hold-out) is public, for scripts that must hold out the same items.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["validation_split"]


def validation_split(data: Mapping[str, np.ndarray], num_validation: int, *, seed: int = 0
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(fit, validation)``: ``num_validation`` items of ``data`` held out by a fixed-seed
    permutation (``np.random.default_rng(seed)``), the rest kept in their order.

    The task examples choose their hyperparameters on the validation part of the digits'
    train split and report the test split only for the chosen setting.

    Example:
      >>> fit, val = validation_split({"x": np.arange(10)}, 3)
      >>> len(fit["x"]), len(val["x"]), sorted(set(fit["x"]) | set(val["x"])) == list(range(10))
      (7, 3, True)
    """
    n = len(next(iter(data.values())))
    num_validation = int(num_validation)
    if not 0 < num_validation < n:
        raise ValueError(f"validation_split: `num_validation` must lie in (0, {n}), got "
                         f"{num_validation}.")
    held = np.zeros(n, bool)
    held[np.random.default_rng(int(seed)).permutation(n)[:num_validation]] = True
    return ({k: v[~held] for k, v in data.items()}, {k: v[held] for k, v in data.items()})
