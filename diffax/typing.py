"""Public type aliases used in diffax signatures and docstrings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

Array: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.typing.ArrayLike
PRNGKey: TypeAlias = jax.Array
PyTree: TypeAlias = Any

Denoiser: TypeAlias = Callable[[Array, Array], Array]
"""``D(x, t) -> E[x0 | x_t = x]``: ``x`` ``[B, ...]``, ``t`` ``[B]``, output shaped like ``x``."""

ModelFn: TypeAlias = Callable[[Array, Array], Array]
"""A network's forward pass ``fn(x, t)`` predicting x0, eps, v, the score or a velocity."""

ApplyFn: TypeAlias = Callable[..., Array]
"""``apply_fn(params, x, t, **cond)``: a model as a pure function of its parameters."""

__all__ = ["Array", "ArrayLike", "PRNGKey", "PyTree", "Denoiser", "ModelFn", "ApplyFn"]
