"""Adapter from a ``flax.nnx`` module to the ``apply_fn(params, x, t, **cond)`` contract.

The diffax core takes any pure function ``apply_fn(params, x, t, **cond)``. A linen model gets
one from :func:`diffax.models.apply_fn`; an NNX module (stateful Python object) gets one here:
:func:`from_nnx` splits the module with ``nnx.split`` into a static graph definition, its
``nnx.Param`` state (the ``params`` pytree to differentiate, optimise and checkpoint) and the
rest of its state, and the returned function rebuilds the module with ``nnx.merge`` on each
call. The rebuilt module is thrown away after the call, so any state the call mutates (batch
statistics, an ``nnx.Rngs`` counter) is not carried over: use it for modules whose forward pass
is a function of params and inputs (pass dropout randomness explicitly if the module takes it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

__all__ = ["from_nnx"]


def from_nnx(module: nnx.Module) -> tuple[Callable[..., jax.Array], nnx.State]:
    """Wraps an NNX module ``module(x, t, **cond)`` as ``(apply_fn, params)``.

    Args:
        module: an ``nnx.Module`` whose ``__call__`` takes ``(x, t, **cond)``.

    Returns:
        ``(apply_fn, params)``: ``apply_fn(params, x, t, **cond)`` is a pure function of its
        arguments (jit-able and differentiable in ``params``, an ``nnx.State`` pytree holding
        the module's ``nnx.Param`` variables).

    Example:
        >>> from flax import nnx
        >>> import jax.numpy as jnp
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.lin = nnx.Linear(3, 2, rngs=rngs)
        ...     def __call__(self, x, t):
        ...         return self.lin(jnp.concatenate([x, t[:, None]], axis=-1))
        >>> f, params = from_nnx(Net(nnx.Rngs(0)))
        >>> jax.jit(f)(params, jnp.ones((4, 2)), jnp.zeros(4)).shape
        (4, 2)
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def apply_fn(params: nnx.State, x: jax.Array, t: jax.Array, **cond: Any) -> jax.Array:
        return nnx.merge(graphdef, params, rest)(x, t, **cond)

    return apply_fn, params
