"""Input checks shared by the public entry points (``sample``, ``log_likelihood``, ...).

Each raises a ValueError that names the argument (and, with ``where``, the function), before
anything is traced or compiled; checks that need values run only where the input is concrete.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value

__all__ = ["check_key", "check_finite_examples", "check_denoiser_accepts", "check_positive"]


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def check_key(key: Any, *, where: str = "", allow_none: bool = True) -> None:
    """Raises a ValueError naming ``key`` unless it is a single PRNG key (typed
    ``jax.random.key(seed)`` or a raw ``uint32[2]``), or ``None`` when ``allow_none``."""
    if key is None and allow_none:
        return
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and tuple(getattr(key, "shape", ())) == (2,)
    if not (typed and len(key.shape) == 0) and not raw:
        raise ValueError(f"{_prefix(where)}`key` must be a single PRNG key "
                         f"(jax.random.key(seed)){' or None' if allow_none else ''}, got "
                         f"{key!r}.")


def check_finite_examples(x: Any, *, name: str, where: str = "") -> None:
    """Raises a ValueError naming ``name`` if concrete ``x`` ``[B, ...]`` has a NaN or an
    infinity (how many examples, and the first one)."""
    v = concrete_value(x)
    if v is None:
        return
    bad = ~np.all(np.isfinite(v).reshape(v.shape[0], -1), axis=-1)
    if bad.any():
        raise ValueError(f"{_prefix(where)}`{name}` has NaN or infinite entries in "
                         f"{int(bad.sum())} of {bad.size} examples (first: index "
                         f"{int(np.argmax(bad))}).")


def check_denoiser_accepts(denoiser: Any, x: Any, *, name: str, where: str = "") -> None:
    """Evaluates ``denoiser(x, t)`` abstractly (``jax.eval_shape``: no compilation, no FLOPs)
    with ``t`` ``[B]`` and raises a ValueError naming ``name`` if it fails or does not return
    an array shaped like ``x``."""
    x_spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    t_spec = jax.ShapeDtypeStruct(x.shape[:1], x.dtype)
    try:
        out = jax.eval_shape(denoiser, x_spec, t_spec)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            f"{_prefix(where)}the denoiser rejected `{name}` of shape {tuple(x.shape)} (dtype "
            f"{x.dtype}; called as denoiser(x, t) with t of shape {tuple(x.shape[:1])}): "
            f"{type(e).__name__}: {e}") from e
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(x.shape):
        got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"{_prefix(where)}the denoiser returned {got} for `{name}` of shape "
                         f"{tuple(x.shape)}; a denoiser must return an array shaped like its "
                         f"input x.")


def check_positive(name: str, value: Any, where: str) -> None:
    """Raises a ValueError naming ``name`` unless ``value`` (where concrete) is finite and
    positive everywhere (tolerances, step sizes)."""
    v = concrete_value(value)
    if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError(f"{where}: `{name}` must be a positive number, got {value!r}.")
