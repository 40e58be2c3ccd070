"""models.Transformer's ``conv_kernel``: the depthwise sequence convolution after the embedding
equals XLA's grouped convolution (float64), is off by default, and rejects bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import models
from diffax.models import transformer as tf


def test_depthwise_conv_equals_grouped_lax_conv_in_float64(x64):
    cfg = models.TransformerConfig(vocab_size=5, width=6, num_heads=2, conv_kernel=5,
                                   dtype=jnp.float64)
    conv = tf._DepthwiseConv(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 7, 6), jnp.float64)
    params = conv.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)          # a non-zero bias too
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    # Oracle: a grouped (depthwise) cross-correlation with SAME zero padding.
    want = jax.lax.conv_general_dilated(
        x, kernel[:, None, :], window_strides=(1,), padding="SAME",
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=6) + bias[None, None, :]
    got = conv.apply(params, x)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)


def test_conv_kernel_is_off_by_default_and_validated():
    assert models.TransformerConfig().conv_kernel == 0
    # Shapes only (jax.eval_shape traces without compiling).
    shapes = lambda m: jax.eval_shape(m.init, jax.random.key(0), *m.example_inputs(2))
    plain = models.Transformer.from_variant("tiny", vocab_size=5, max_len=6)
    assert "conv" not in shapes(plain)["params"]
    for bad in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match="conv_kernel"):
            models.TransformerConfig(vocab_size=5, conv_kernel=bad)
    with pytest.raises(ValueError, match="conv_kernel"):
        models.TransformerConfig(image_size=8, conv_kernel=3)
    with_conv = models.Transformer.from_variant("tiny", vocab_size=5, max_len=6, conv_kernel=3)
    params = shapes(with_conv)
    assert params["params"]["conv"]["kernel"].shape == (3, 32)
    out = jax.eval_shape(with_conv.apply, params, *with_conv.example_inputs(2))
    assert out.shape == (2, 6, 5)
