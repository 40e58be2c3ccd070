"""Building blocks: embeddings, initialisers, group counts, label dropout, blocks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_test_utils import fast_jit

from diffax.models import layers


def test_sinusoidal_embedding_formula():
    t = jnp.array([0.0, 1.0, 250.0])
    emb = layers.sinusoidal_embedding(t, 8)
    assert emb.shape == (3, 8) and emb.dtype == jnp.float32
    freqs = np.exp(-math.log(10000.0) * np.arange(4) / 3)
    expected = np.concatenate([np.sin(np.outer(t, freqs)), np.cos(np.outer(t, freqs))], axis=1)
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)
    odd = layers.sinusoidal_embedding(t, 9)
    assert odd.shape == (3, 9)
    np.testing.assert_array_equal(odd[:, -1], 0.0)


def test_fourier_embedding_is_fixed_and_on_the_circle():
    t = jnp.linspace(0.0, 1.0, 5)
    e1 = layers.fourier_embedding(t, 6, scale=16.0)
    e2 = layers.fourier_embedding(t, 6, scale=16.0)
    assert e1.shape == (5, 12)
    np.testing.assert_array_equal(e1, e2)  # constant frequencies, not parameters
    np.testing.assert_allclose(e1[:, :6] ** 2 + e1[:, 6:] ** 2, 1.0, rtol=1e-5)
    w = layers.fourier_frequencies(10_000, 16.0)
    assert abs(w.std() - 16.0) < 0.5


@pytest.mark.parametrize("channels", [1, 3, 4, 16, 18, 48, 96, 128, 256, 384, 640])
def test_num_groups_divides_channels(channels):
    g = layers.num_groups(channels)
    assert channels % g == 0 and 1 <= g <= 32
    if channels % 4 == 0 and channels <= 128:
        assert g == channels // 4


def test_default_init():
    np.testing.assert_array_equal(layers.default_init(0.0)(jax.random.key(0), (3, 4)), 0.0)
    w = layers.default_init(1.0)(jax.random.key(0), (200, 300))
    np.testing.assert_allclose(w.var(), 2.0 / (200 + 300), rtol=0.05)
    with pytest.raises(ValueError):
        layers.default_init(-1.0)


def test_drop_labels():
    label = jnp.arange(1000, dtype=jnp.int32) % 10
    kept = layers.drop_labels(jax.random.key(0), label, null_label=10, rate=0.0)
    np.testing.assert_array_equal(kept, label)
    dropped = layers.drop_labels(jax.random.key(0), label, null_label=10, rate=0.2)
    assert dropped.dtype == label.dtype
    is_null = np.asarray(dropped == 10)
    assert 0.15 < is_null.mean() < 0.25
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(label)[~is_null])


@pytest.mark.parametrize(
    "resample, out_hw", [(layers.Resample.NONE, 8), (layers.Resample.UP, 16),
                         (layers.Resample.DOWN, 4)]
)
def test_resnet_block_shapes(resample, out_hw):
    block = layers.ResnetBlock(out_channels=12, resample=resample)
    x, temb = jnp.zeros((2, 8, 8, 8)), jnp.zeros((2, 32))
    shapes = jax.eval_shape(block.init, jax.random.key(0), x, temb)
    assert jax.eval_shape(block.apply, shapes, x, temb).shape == (2, out_hw, out_hw, 12)
    assert "skip" in shapes["params"]
    same = layers.ResnetBlock()
    shapes = jax.eval_shape(same.init, jax.random.key(0), x, None)
    assert "skip" not in shapes["params"] and "temb_proj" not in shapes["params"]


def test_attention_is_permutation_equivariant():
    """Attention (with GroupNorm and 1x1 projections) commutes with permuting the pixels."""
    attn = layers.AttentionBlock(num_heads=2, init_scale=1.0)
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    params = fast_jit(attn.init)(jax.random.key(1, impl="rbg"), x)
    perm = np.random.default_rng(0).permutation(16)
    shuffle = lambda a: a.reshape(2, 16, 8)[:, perm].reshape(2, 4, 4, 8)
    apply = fast_jit(attn.apply)
    y = apply(params, x)
    np.testing.assert_allclose(apply(params, shuffle(x)), shuffle(y), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x / np.sqrt(2.0))
