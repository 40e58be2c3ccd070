"""The procedural phantoms behind the `phantoms/<size>` builder."""

import numpy as np
import pytest

from diffax import data


def test_phantoms_are_fixed_by_the_seed_and_shared_across_sizes():
    x32, lab32 = data.sample_phantoms(3, 32, seed=5)
    again, _ = data.sample_phantoms(3, 32, seed=5)
    other, _ = data.sample_phantoms(3, 32, seed=6)
    x64, lab64 = data.sample_phantoms(3, 64, seed=5)
    assert np.array_equal(x32, again) and not np.allclose(x32, other)
    # The same ellipses at twice the resolution: 2x2 averages of the 64x64 image are the
    # 32x32 one up to the sub-pixel sampling of the edges (4x4 vs 8x8 points per pixel).
    pooled = x64.reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))
    assert np.mean(np.abs(pooled - x32)) < 0.01 < np.mean(np.abs(other - x32))
    assert x32.min() >= 0.0 and x32.max() <= 1.0 and lab32.dtype == np.int32


def test_intensities_follow_the_labels():
    """Skull pixels (away from edges) are 1, brain pixels 0.2, background 0 (Shepp-Logan's
    modified contrast); structures differ from the brain by 0.1-0.4 each (overlaps add)."""
    x, lab = data.sample_phantoms(20, 64, seed=0)
    interior = lambda k: (lab == k) & (np.roll(lab, 1, 1) == k) & (np.roll(lab, -1, 1) == k) \
        & (np.roll(lab, 1, 2) == k) & (np.roll(lab, -1, 2) == k)
    np.testing.assert_allclose(x[interior(0)], 0.0, atol=1e-12)
    assert np.median(x[interior(1)]) == pytest.approx(1.0)
    assert np.median(x[interior(2)]) == pytest.approx(0.2)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    assert 0.05 < np.mean(lab == 3) < 0.2


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`size`"):
        data.sample_phantoms(1, 2, seed=0)
    with pytest.raises(ValueError, match="phantoms size"):
        data.prepare("phantoms/48", data_dir="/nonexistent")
