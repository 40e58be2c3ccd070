"""The NCSN++ / DDPM++ UNet on its tiny variant: shapes, jit, labels, dropout, gradients."""

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

from diffax.models import UNet, apply_fn, count_params

NUM_CLASSES = 10
B = 4


@pytest.fixture(scope="module")
def model():
    return UNet.from_variant("tiny", num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def init_params(model):
    # model.init_params, compiled with FAST_COMPILE; an "rbg" key also compiles faster.
    return fast_jit(lambda key: model.init(key, *model.example_inputs()))(
        jax.random.key(0, impl="rbg")
    )


@pytest.fixture(scope="module")
def params(init_params):
    # Zero-initialised layers would make the output identically zero: perturb them.
    return perturbed(init_params)


@pytest.fixture(scope="module")
def f(model):
    return fast_jit(apply_fn(model), static_argnames="train")


@pytest.fixture(scope="module")
def uncond_shapes():
    """Parameter shapes of the unconditional tiny UNet (jax.eval_shape: nothing compiled)."""
    return jax.eval_shape(UNet.from_variant("tiny").init_params, jax.random.key(0))


@pytest.fixture(scope="module")
def inputs():
    kx, kt = jax.random.split(jax.random.key(42))
    x = jax.random.normal(kx, (B, 8, 8, 3))
    t = jax.random.uniform(kt, (B,))
    label = jnp.arange(B, dtype=jnp.int32) % NUM_CLASSES
    return x, t, label


def test_output_shape_with_and_without_label(model, params, f, inputs):
    x, t, label = inputs
    y_label = f(params, x, t, label=label)
    y_null = f(params, x, t)
    for y in (y_label, y_null):
        assert y.shape == x.shape and y.dtype == x.dtype
        assert np.all(np.isfinite(y))
    # The label changes the output; no label means the "null" label.
    assert not np.allclose(y_label, y_null)
    null = jnp.full((B,), model.config.null_label, jnp.int32)
    np.testing.assert_allclose(f(params, x, t, label=null), y_null, rtol=1e-6, atol=1e-6)


def test_time_conditioning_matters(params, f, inputs):
    x, t, label = inputs
    y0 = f(params, x, t, label=label)
    y1 = f(params, x, t + 0.5, label=label)
    assert not np.allclose(y0, y1)


def test_examples_are_independent(params, f, inputs):
    # GroupNorm, attention and the embeddings act per example: no mixing across the batch.
    x, t, label = inputs
    y = f(params, x, t, label=label)
    x2 = x.at[1:].set(0.0)
    y2 = f(params, x2, t, label=label)
    np.testing.assert_allclose(y2[0], y[0], rtol=1e-5, atol=1e-5)


def test_unconditional_variant_shapes(uncond_shapes):
    model = UNet.from_variant("tiny")
    x, t = model.example_inputs(3)
    shapes = uncond_shapes
    assert "label_emb" not in shapes["params"]
    out = jax.eval_shape(model.apply, shapes, x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    # A scalar t is broadcast over the batch.
    assert jax.eval_shape(model.apply, shapes, x, jnp.float32(0.5)).shape == x.shape
    with pytest.raises(ValueError, match="num_classes=None"):
        jax.eval_shape(lambda p: model.apply(p, x, t, label=jnp.zeros(3, jnp.int32)), shapes)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(resblock_type="ddpm"),
        dict(resblock_type="ddpm", resamp_with_conv=False),
        dict(embedding_type="positional", time_scale=1000.0),
        dict(ch_mult=(1, 2, 2), attn_resolutions=(8, 2), num_heads=4, skip_rescale=False),
        dict(image_size=16, num_channels=1, ch_mult=(1,), attn_resolutions=()),
    ],
)
def test_other_architectures_shapes(overrides):
    model = UNet.from_variant("tiny", **overrides)
    x, t = model.example_inputs(2)
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    out = jax.eval_shape(model.apply, shapes, x, t)
    assert out.shape == x.shape


def test_ddpm_blocks_resample_outside_resblocks(uncond_shapes):
    biggan = leaf_names(uncond_shapes)
    ddpm = leaf_names(
        jax.eval_shape(UNet.from_variant("tiny", resblock_type="ddpm").init_params,
                       jax.random.key(0))
    )
    # BigGAN: the resampling step is a residual block; DDPM: a single (strided) conv.
    assert "params/down_0_resample/conv_1/kernel" in biggan
    assert set(k for k in ddpm if "down_0_resample" in k) == {
        "params/down_0_resample/conv/kernel", "params/down_0_resample/conv/bias"}
    assert count_params(UNet.from_variant("tiny", resblock_type="ddpm")) < count_params(
        UNet.from_variant("tiny"))


def test_attention_where_configured(uncond_shapes):
    names = leaf_names(uncond_shapes)
    modules = {n.split("/")[1] for n in names}
    # tiny: resolutions (8, 4), attention at 4 and always in the middle.
    assert {m for m in modules if "attn" in m} == {"down_1_attn_0", "mid_attn", "up_1_attn"}


def test_dropout_only_when_training(params, f, inputs):
    x, t, label = inputs
    # Any key implementation works; "rbg" compiles faster than threefry on CPU.
    k1, k2 = jax.random.split(jax.random.key(7, impl="rbg"))
    y_eval = f(params, x, t, label=label)
    np.testing.assert_array_equal(f(params, x, t, label=label, train=False, key=k1), y_eval)
    y1 = f(params, x, t, label=label, train=True, key=k1)
    y1_again = f(params, x, t, label=label, train=True, key=k1)
    y2 = f(params, x, t, label=label, train=True, key=k2)
    np.testing.assert_array_equal(y1, y1_again)
    assert not np.allclose(y1, y_eval)
    assert not np.allclose(y1, y2)
    with pytest.raises(ValueError, match="dropout"):
        f(params, x, t, label=label, train=True)


def test_zero_init_and_gradients_reach_every_parameter(model, init_params, inputs):
    """With init_scale=0 the output conv and the last layer of every residual branch start at
    zero, so the initial network is exactly zero and only the output conv gets a gradient.
    Training must still reach every parameter: a few SGD steps later, all have gradients."""
    x, t, label = inputs
    target = jax.random.normal(jax.random.key(3), x.shape)
    names = leaf_names(init_params)
    zero = {n for n, p in names.items() if not np.any(np.asarray(p))}
    # Zero-initialised: last conv of residual branches, attention output projections, output
    # conv (and all biases).
    last_layers = ("conv_1/kernel", "/out/kernel", "conv_out/kernel")
    assert {n for n in zero if n.endswith("kernel")} == {
        n for n in names if n.endswith(last_layers)}

    def loss(p):
        return jnp.mean((model.apply(p, x, t, label=label) - target) ** 2)

    grad_fn = fast_jit(jax.grad(loss))
    history = sgd_until_every_gradient_is_nonzero(grad_fn, init_params)
    assert history[0] == {"params/conv_out/kernel", "params/conv_out/bias"}
    assert history[-1] == set(names), sorted(set(names) - history[-1])
    assert len(history) == 3


def test_bfloat16_computation_float32_params():
    model = UNet.from_variant("tiny", dtype="bfloat16", num_classes=3)
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype("float32")}
    x, t = model.example_inputs(2)
    assert jax.eval_shape(model.apply, shapes, x, t).dtype == jnp.float32
    assert jax.eval_shape(model.apply, shapes, x.astype(jnp.bfloat16), t).dtype == jnp.bfloat16
    jaxpr = jax.make_jaxpr(model.apply)(shapes, x, t)
    conv_dtypes = {
        eqn.outvars[0].aval.dtype for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name == "conv_general_dilated"
    }
    assert conv_dtypes == {jnp.dtype("bfloat16")}


@pytest.mark.parametrize(
    "x_shape, t_shape, match",
    [
        ((2, 16, 16, 3), (2,), "image_size"),
        ((2, 8, 8, 1), (2,), "num_channels"),
        ((2, 8, 8), (2,), r"\[B, 8, 8, 3\]"),
        ((2, 8, 8, 3), (3,), "t must have shape"),
        ((2, 8, 8, 3), (2, 1), "t must have shape"),
    ],
)
def test_bad_inputs(uncond_shapes, x_shape, t_shape, match):
    model = UNet.from_variant("tiny")
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.apply, uncond_shapes, jnp.zeros(x_shape), jnp.zeros(t_shape))


def test_bad_label():
    model = UNet.from_variant("tiny", num_classes=3)
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    x, t = model.example_inputs(2)
    with pytest.raises(ValueError, match="label"):
        jax.eval_shape(lambda p: model.apply(p, x, t, label=jnp.zeros(2)), shapes)
    with pytest.raises(ValueError, match="label"):
        jax.eval_shape(lambda p: model.apply(p, x, t, label=jnp.zeros(3, jnp.int32)), shapes)
