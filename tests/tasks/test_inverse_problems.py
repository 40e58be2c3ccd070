"""diffax.tasks.inverse_problems: masks, PSNR over missing pixels, the nearest-neighbour fill."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffax.tasks import inverse_problems as ip


def test_masks_by_hand():
    c = np.asarray(ip.masks("center", (8, 8)))[..., 0]
    assert c[2:6, 2:6].sum() == 0 and c.sum() == 48
    b = np.asarray(ip.masks("bottom_half", (8, 8)))[..., 0]
    assert b[:4].all() and not b[4:].any()
    r = np.asarray(ip.masks("random_half", (8, 8), seed=3))
    assert r.sum() == 32 and set(np.unique(r)) == {0.0, 1.0}
    np.testing.assert_array_equal(r, ip.masks("random_half", (8, 8), seed=3))
    assert not np.array_equal(r, ip.masks("random_half", (8, 8), seed=4))
    with pytest.raises(ValueError, match="`name`"):
        ip.masks("left", (8, 8))


def test_masked_psnr_counts_only_the_missing_pixels():
    m = ip.masks("bottom_half", (4, 4))
    x = jnp.zeros((2, 4, 4, 1))
    # Errors on the observed half are ignored; 0.1 on the missing half in image 0, 0.2 in 1.
    y = x.at[:, :2].set(5.0).at[0, 2:].set(0.1).at[1, 2:].set(0.2)
    got = np.asarray(ip.masked_psnr(y, x, m))
    np.testing.assert_allclose(got, 10 * np.log10(4.0 / np.array([0.01, 0.04])), rtol=1e-5)
    with pytest.raises(ValueError, match="missing"):
        ip.masked_psnr(y, x, jnp.ones((4, 4, 1)))


def test_nearest_neighbour_fill_uses_only_the_observed_pixels():
    rng = np.random.default_rng(0)
    train = jnp.asarray(rng.normal(size=(30, 4, 4, 1)), jnp.float32)
    m = ip.masks("bottom_half", (4, 4))
    # Test image: training image 7 on the observed half, garbage on the missing half.
    query = train[7:8].at[:, 2:].set(100.0)
    filled = ip.nearest_neighbour_fill(query, m, train)
    np.testing.assert_allclose(filled, train[7:8], rtol=1e-6)
    with pytest.raises(ValueError, match="one mask for the batch"):
        ip.nearest_neighbour_fill(query, jnp.stack([m, m]), train)
