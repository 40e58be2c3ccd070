"""Pytree dataclasses: numbers are leaves (no recompilation when they change), options static."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Makes ``cls`` a frozen, keyword-only dataclass registered as a JAX pytree.

    Fields created with :func:`static_field` go into the tree structure (changing them
    recompiles); every other field is a leaf (changing it does not).

    ``__init__`` (and so ``__post_init__`` validation) runs only when user code constructs an
    object: JAX rebuilds objects from leaves without calling it, because those leaves may be
    tracers, cotangents (the gradient of a process is a process-shaped tree of gradients) or
    placeholders that no validation should see.
    """
    cls = dataclasses.dataclass(frozen=True, eq=False, kw_only=True)(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    data = tuple(f.name for f in fields if not f.metadata.get("static", False))
    meta = tuple(f.name for f in fields if f.metadata.get("static", False))
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in data)

    def flatten_with_keys(obj):
        return (tuple(zip(keys, (getattr(obj, n) for n in data), strict=True)),
                tuple(getattr(obj, n) for n in meta))

    def flatten(obj):
        return tuple(getattr(obj, n) for n in data), tuple(getattr(obj, n) for n in meta)

    def unflatten(meta_values, leaves):
        obj = object.__new__(cls)
        for name, value in zip(data, leaves, strict=True):
            object.__setattr__(obj, name, value)
        for name, value in zip(meta, meta_values, strict=True):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the pytree structure rather than a leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for pytree dataclasses."""
    return dataclasses.replace(obj, **changes)


def concrete_value(value: Any) -> np.ndarray | None:
    """Returns ``value`` as a numpy array if it is a concrete number or array, else ``None``.

    ``None`` is returned for tracers (inside ``jit``/``grad``/``vmap``), for placeholder objects
    that JAX puts in trees, and for anything non-numeric, so that checks written with this
    helper run only on values a user actually passed.
    """
    if isinstance(value, jax.core.Tracer) or value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.number, np.ndarray, jax.Array)):
        try:
            return np.asarray(value)
        except Exception:  # noqa: BLE001 - e.g. a deleted or non-addressable array
            return None
    return None
