"""Helpers shared by the model tests (imported as a plain module: no fixtures here)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

# XLA options that make CPU compilation of the test models about a third faster (the compiled
# code runs slower, which does not matter for tiny models). Same semantics as plain jax.jit.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def perturbed(params, scale=0.05, seed=1):
    """``params`` plus Gaussian noise, so that zero-initialised layers are active too.

    The noise is drawn with NumPy: no XLA compilation for each parameter shape.
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(np.asarray(p) + scale * rng.standard_normal(p.shape), p.dtype),
        params,
    )


def leaf_names(tree):
    """``{"a/b/kernel": leaf}`` for a nested dict of arrays."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in flat}


def nonzero_leaves(grads):
    """Names of the leaves of ``grads`` with at least one nonzero entry."""
    return {name for name, g in leaf_names(grads).items() if np.any(np.asarray(g) != 0)}


def sgd_until_every_gradient_is_nonzero(grad_fn, params, *, lr=0.1, max_steps=5):
    """Runs SGD steps from ``params`` until every parameter leaf gets a nonzero gradient.

    Returns the list, per step, of the names of the leaves whose gradient was nonzero. The
    bookkeeping is done in NumPy, so that only ``grad_fn`` is compiled.
    """
    history = []
    everything = set(leaf_names(params))
    params = jax.device_get(params)
    for _ in range(max_steps):
        grads = jax.device_get(grad_fn(params))
        for name, g in leaf_names(grads).items():
            assert np.all(np.isfinite(g)), name
        history.append(nonzero_leaves(grads))
        if history[-1] == everything:
            break
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return history
