"""diffax.tasks.super_resolution: resampling, PSNR and the conditioning channel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax.tasks import super_resolution as sr


def _perturbed(params, seed=0):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape)
                                     for p, k in zip(leaves, keys, strict=True)])


def test_downsample_and_upsample_are_exact():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    np.testing.assert_allclose(sr.downsample(sr.upsample(x, 2), 2), x, rtol=1e-6)
    big = jnp.arange(64.0).reshape(1, 8, 8, 1)
    np.testing.assert_allclose(sr.downsample(big, 4)[0, ..., 0], [[13.5, 17.5], [45.5, 49.5]])
    assert sr.upsample(x, 2, method="bicubic").shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="factor"):
        sr.downsample(big, 3)
    with pytest.raises(ValueError, match="images"):
        sr.upsample(jnp.zeros((4, 4)), 2)


def test_psnr_by_hand():
    x = jnp.zeros((2, 2, 2, 1))
    ref = x.at[0].set(0.1).at[1, 0, 0].set(2.0)
    # MSE 0.01 -> 10 log10(4 / 0.01); MSE 1 -> 10 log10(4).
    np.testing.assert_allclose(sr.psnr(x, ref), [10 * np.log10(400.0), 10 * np.log10(4.0)],
                               rtol=1e-6)


def test_conditional_unet_feeds_the_low_resolution_image_as_channels():
    model = sr.ConditionalUNet.from_variant("tiny", num_channels=1, nf=8, ch_mult=(1,),
                                            attn_resolutions=(), dropout=0.0)
    params = model.init_params(jax.random.key(0))
    kernel = params["params"]["unet"]["conv_in"]["kernel"]
    assert kernel.shape == (3, 3, 2, 8)  # x and low_res, one channel each
    params = _perturbed(params)
    f = jax.jit(sr.apply_fn(model))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    low = sr.upsample(sr.downsample(x, 2), 2)
    out = f(params, x, jnp.ones(2), low_res=low)
    assert out.shape == x.shape
    # The output depends on low_res, and only through the second input channel of conv_in.
    assert float(jnp.abs(f(params, x, jnp.ones(2), low_res=-low) - out).max()) > 1e-3
    cut = jax.tree.map(lambda a: a, params)
    conv_in = cut["params"]["unet"]["conv_in"]
    conv_in["kernel"] = conv_in["kernel"].at[:, :, 1].set(0.0)
    np.testing.assert_allclose(f(cut, x, jnp.ones(2), low_res=low),
                               f(cut, x, jnp.ones(2), low_res=jnp.zeros_like(low)), atol=1e-6)
    with pytest.raises(ValueError, match="low_res"):
        f(params, x, jnp.ones(2), low_res=sr.downsample(x, 2))
