"""The residual MLP: shapes, jit, labels, dropout, gradients, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_test_utils import (
    fast_jit,
    leaf_names,
    perturbed,
    sgd_until_every_gradient_is_nonzero,
)

from diffax.models import MLP, MLP_VARIANTS, apply_fn, count_params

B = 16


@pytest.fixture(scope="module")
def model():
    return MLP.from_variant("tiny", num_classes=3, dropout=0.2)


@pytest.fixture(scope="module")
def init_params(model):
    return model.init_params(jax.random.key(0, impl="rbg"))  # "rbg": faster to compile


@pytest.fixture(scope="module")
def params(init_params):
    return perturbed(init_params)


@pytest.fixture(scope="module")
def f(model):
    return fast_jit(apply_fn(model), static_argnames="train")


@pytest.fixture(scope="module")
def inputs():
    kx, kt = jax.random.split(jax.random.key(1))
    return (
        jax.random.normal(kx, (B, 2)),
        jax.random.uniform(kt, (B,)),
        jnp.arange(B, dtype=jnp.int32) % 3,
    )


@pytest.mark.parametrize("name", sorted(MLP_VARIANTS))
def test_variant_shapes(name):
    model = MLP.from_variant(name)
    x, t = model.example_inputs(5)
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    out = jax.eval_shape(model.apply, shapes, x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert count_params(model) > 0


def test_output_with_and_without_label(model, params, f, inputs):
    x, t, label = inputs
    y_label = f(params, x, t, label=label)
    y_null = f(params, x, t)
    assert y_label.shape == y_null.shape == x.shape
    assert np.all(np.isfinite(y_label)) and np.all(np.isfinite(y_null))
    assert not np.allclose(y_label, y_null)
    null = jnp.full((B,), model.config.null_label, jnp.int32)
    np.testing.assert_allclose(f(params, x, t, label=null), y_null, rtol=1e-6, atol=1e-6)
    assert not np.allclose(f(params, x, t + 0.3, label=label), y_label)


def test_unconditional_runs_under_jit():
    model = MLP.from_variant("tiny", embedding_type="positional", time_scale=1000.0)
    params = perturbed(model.init_params(jax.random.key(0, impl="rbg")))
    x, t = jnp.ones((3, 2)), jnp.array([0.0, 0.5, 1.0])
    y = jax.jit(model.apply)(params, x, t)
    assert y.shape == (3, 2) and np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="num_classes=None"):
        model.apply(params, x, t, label=jnp.zeros(3, jnp.int32))


def test_dropout_only_when_training(params, f, inputs):
    x, t, label = inputs
    k1, k2 = jax.random.split(jax.random.key(7))
    y_eval = f(params, x, t, label=label)
    np.testing.assert_array_equal(f(params, x, t, label=label, key=k1), y_eval)
    y1 = f(params, x, t, label=label, train=True, key=k1)
    np.testing.assert_array_equal(f(params, x, t, label=label, train=True, key=k1), y1)
    assert not np.allclose(y1, y_eval)
    assert not np.allclose(y1, f(params, x, t, label=label, train=True, key=k2))
    with pytest.raises(ValueError, match="dropout"):
        f(params, x, t, label=label, train=True)


def test_zero_init_and_gradients_reach_every_parameter(model, init_params, inputs):
    x, t, label = inputs
    y = fast_jit(model.apply)(init_params, x, t)
    np.testing.assert_array_equal(y, 0.0)  # init_scale=0: the network starts at zero

    def loss(p):
        return jnp.mean((model.apply(p, x, t, label=label) - x) ** 2)

    history = sgd_until_every_gradient_is_nonzero(fast_jit(jax.grad(loss)), init_params)
    names = set(leaf_names(init_params))
    assert history[0] == {"params/dense_out/kernel", "params/dense_out/bias"}
    assert history[-1] == names, sorted(names - history[-1])


def test_bfloat16():
    model = MLP.from_variant("tiny", dtype=jnp.bfloat16)
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype("float32")}
    x, t = model.example_inputs(2)
    assert jax.eval_shape(model.apply, shapes, x, t).dtype == jnp.float32
    assert jax.eval_shape(model.apply, shapes, x.astype(jnp.bfloat16), t).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "x_shape, t_shape, match",
    [((4, 3), (4,), "dim"), ((4,), (4,), "dim"), ((4, 2), (5,), "t must have shape")],
)
def test_bad_inputs(x_shape, t_shape, match):
    model = MLP.from_variant("tiny")
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.apply, shapes, jnp.zeros(x_shape), jnp.zeros(t_shape))
