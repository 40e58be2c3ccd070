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

__all__ = ["check_key", "check_finite_examples", "check_denoiser_accepts", "check_positive",
           "check_number", "check_int"]


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
    an array shaped like ``x``.

    ``x`` may be a pytree state (a tuple ``(x, v)`` for CLD, batch axis leading on every
    leaf): the denoiser then returns ``E[x0 | u_t]``, shaped like the first leaf (the data).
    """
    if hasattr(x, "shape"):
        x_spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
        lead = x
    else:
        x_spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)
        lead = jax.tree_util.tree_leaves(x)[0]
    t_spec = jax.ShapeDtypeStruct(lead.shape[:1], lead.dtype)
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), x)
    try:
        out = jax.eval_shape(denoiser, x_spec, t_spec)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            f"{_prefix(where)}the denoiser rejected `{name}` of shape {shapes} (dtype "
            f"{lead.dtype}; called as denoiser(x, t) with t of shape {tuple(lead.shape[:1])}): "
            f"{type(e).__name__}: {e}") from e
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(lead.shape):
        got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        what = "input x" if lead is x else "data (the first part of the state)"
        raise ValueError(f"{_prefix(where)}the denoiser returned {got} for `{name}` of shape "
                         f"{shapes}; a denoiser must return an array shaped like its "
                         f"{what}.")


def check_number(value: Any, *, name: str, where: str = "", nonnegative: bool = False) -> None:
    """Raises a TypeError naming ``name`` unless ``value`` is a real number or a real array
    (or a tracer: traced values are checked by type only), and a ValueError if a concrete
    ``value`` has a NaN or infinite entry, or (``nonnegative``) a negative entry."""
    if isinstance(value, jax.core.Tracer):
        if not jnp.issubdtype(value.dtype, jnp.number) or jnp.iscomplexobj(value):
            raise TypeError(f"{_prefix(where)}`{name}` must be a real number, got a traced "
                            f"{value.dtype} value.")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number, np.ndarray,
                                                         jax.Array)) \
            or not np.issubdtype(np.asarray(value).dtype, np.number) \
            or np.iscomplexobj(value):
        raise TypeError(f"{_prefix(where)}`{name}` must be a real number, got "
                        f"{type(value).__name__} {value!r}.")
    v = np.asarray(value)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{_prefix(where)}`{name}` must be finite, got {value!r}.")
    if nonnegative and not np.all(v >= 0):
        raise ValueError(f"{_prefix(where)}`{name}` must be >= 0, got {value!r}.")


def check_positive(name: str, value: Any, where: str) -> None:
    """Raises a ValueError naming ``name`` unless ``value`` (where concrete) is finite and
    positive everywhere (tolerances, step sizes)."""
    v = concrete_value(value)
    if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError(f"{where}: `{name}` must be a positive number, got {value!r}.")


def check_int(value: Any, *, name: str, where: str = "", minimum: int = 1,
              allow_none: bool = False, integral: bool = False) -> int | None:
    """Returns ``int(value)`` (``None`` for ``None`` when ``allow_none``); raises a ValueError
    naming ``name`` (and ``where``) unless ``value`` is an integer ``>= minimum``.

    An integer is a Python or NumPy integer, never a bool; with ``integral`` any number equal
    to an integer (``2.0``, a 0-d array) is accepted too.

    Example:
      >>> check_int(3, name="num_steps", where="fit")
      3
      >>> check_int(0, name="num_steps", where="fit")
      Traceback (most recent call last):
      ...
      ValueError: fit: `num_steps` must be a positive integer, got 0.
      >>> check_int(None, name="chunk_size", allow_none=True) is None
      True
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        ok = False
    elif integral:
        try:
            ok = int(value) == value and value >= minimum
        except (TypeError, ValueError):
            ok = False
    else:
        ok = isinstance(value, int | np.integer) and value >= minimum
    if not ok:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ValueError(f"{_prefix(where)}`{name}` must be {what}"
                         f"{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)
