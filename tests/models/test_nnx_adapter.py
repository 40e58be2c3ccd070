"""One pure-function contract, apply_fn(params, x, t, **cond), for linen and NNX networks.

The diffax core only ever sees ``apply_fn(params, x, t, **cond)``. This shows a flax.nnx module
wrapped into it with ``nnx.split`` / ``nnx.merge`` (``diffax.models.from_nnx``), used by the same
generic, jit-compiled loss and optimiser step as a linen model wrapped with
``diffax.models.apply_fn``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from model_test_utils import fast_jit

from diffax.models import MLP, apply_fn, from_nnx
from diffax.models.layers import fourier_embedding


class NNXScoreNet(nnx.Module):
    """A small time-conditioned NNX network with an optional class label."""

    def __init__(self, dim: int, width: int, num_classes: int, *, rngs: nnx.Rngs):
        self.embed_t = nnx.Linear(16, width, rngs=rngs)
        self.embed_label = nnx.Embed(num_classes + 1, width, rngs=rngs)
        self.null_label = num_classes
        self.inp = nnx.Linear(dim, width, rngs=rngs)
        self.hidden = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, dim, rngs=rngs)

    def __call__(self, x, t, *, label=None):
        if label is None:
            label = jnp.full(x.shape[:1], self.null_label, jnp.int32)
        emb = self.embed_t(fourier_embedding(t, 8)) + self.embed_label(label)
        h = nnx.swish(self.inp(x) + emb)
        h = nnx.swish(self.hidden(h))
        return self.out(h)


def denoising_loss(apply, params, key, x0, label):
    """A generic core-style loss: it only calls apply(params, x, t, **cond)."""
    kt, ke = jax.random.split(key)
    t = jax.random.uniform(kt, x0.shape[:1])
    eps = jax.random.normal(ke, x0.shape)
    alpha, sigma = jnp.cos(0.5 * jnp.pi * t)[:, None], jnp.sin(0.5 * jnp.pi * t)[:, None]
    x_t = alpha * x0 + sigma * eps
    return jnp.mean((apply(params, x_t, t, label=label) - eps) ** 2)


def train_a_few_steps(apply, params, num_steps=20):
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    @fast_jit
    def step(params, opt_state, key):
        x0 = jnp.tile(jnp.array([[1.0, -1.0]]), (64, 1))
        label = jnp.zeros(64, jnp.int32)
        loss, grads = jax.value_and_grad(lambda p: denoising_loss(apply, p, key, x0, label))(
            params
        )
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    losses = []
    for i in range(num_steps):
        params, opt_state, loss, grads = step(params, opt_state, jax.random.key(i))
        if i == 0:
            first_grads = grads
        losses.append(float(loss))
    return params, losses, first_grads


def test_nnx_module_as_pure_apply_fn():
    module = NNXScoreNet(2, 32, 3, rngs=nnx.Rngs(0))
    f, params = from_nnx(module)
    assert isinstance(params, nnx.State)
    x, t = jnp.ones((5, 2)), jnp.linspace(0.0, 1.0, 5)
    label = jnp.array([0, 1, 2, 3, 0], jnp.int32)
    # The pure function computes what the module computes, with and without jit.
    np.testing.assert_allclose(f(params, x, t, label=label), module(x, t, label=label),
                               rtol=1e-6)
    np.testing.assert_allclose(jax.jit(f)(params, x, t), module(x, t), rtol=1e-5, atol=1e-6)
    # Other params give other outputs: the output depends on params, not on module state.
    shifted = jax.tree.map(lambda p: p + 0.1, params)
    assert not np.allclose(jax.jit(f)(shifted, x, t), module(x, t))


def test_nnx_and_linen_share_the_training_contract():
    nnx_apply, nnx_params = from_nnx(NNXScoreNet(2, 32, 3, rngs=nnx.Rngs(0)))
    linen_model = MLP.from_variant("tiny", num_classes=3, init_scale=1.0)
    linen_apply = apply_fn(linen_model)
    linen_params = linen_model.init_params(jax.random.key(0, impl="rbg"))
    for apply, params in [(nnx_apply, nnx_params), (linen_apply, linen_params)]:
        new_params, losses, grads = train_a_few_steps(apply, params)
        assert jax.tree.structure(new_params) == jax.tree.structure(params)
        for g in jax.tree.leaves(grads):
            assert np.all(np.isfinite(g))
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
