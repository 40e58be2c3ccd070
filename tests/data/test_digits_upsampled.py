"""The `digits_upsampled/<size>` builder: bilinear upsampling and its least-squares inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import data
from diffax.data._digits_upsampled import interpolation_matrix, round_trip_bound


@pytest.mark.parametrize("size", [16, 32])
def test_interpolation_is_jax_image_resize_linear(size, x64):
    """The stated interpolation is jax.image.resize's "linear" (half-pixel centres) upsampling,
    an independent implementation, to float64 round-off."""
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 1))
    u = interpolation_matrix(size)
    ours = np.einsum("ia,jb,nabc->nijc", u, u, x)
    ref = np.asarray(jax.image.resize(jnp.asarray(x), (3, size, size, 1), "linear"))
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    np.testing.assert_allclose(u.sum(axis=1), 1.0, atol=1e-15)


@pytest.mark.parametrize("size", [16, 32])
def test_builder_stores_upsampled_digits_and_round_trip_recovers_them(size, data_dir):
    name = f"digits_upsampled/{size}"
    info = data.dataset_info(name, data_dir=data_dir)
    assert info.shape == (size, size, 1) and info.num_examples == {"train": 1497, "test": 300}
    for split in ("train", "test"):
        up = data.load_split(name, split=split, value_range=None, data_dir=data_dir)
        ref = data.load_split("digits", split=split, value_range=None, data_dir=data_dir)
        # Same examples (TFDS's stored order is by key, the sklearn index, in both).
        np.testing.assert_array_equal(up["label"], ref["label"])
        np.testing.assert_array_equal(up["x"], data.upsample_digits(ref["x"], size))
        back = data.downsample_digits(up["x"])
        # uint8 storage moves each pixel by <= 0.5; the inverse maps that to <= the bound
        # (about 2), so after rounding at most floor(bound + 0.5) = 2 grey levels.
        err = np.abs(back.astype(int) - ref["x"])
        assert err.max() <= np.floor(round_trip_bound(size) + 0.5) == 2
        assert np.mean(err) < 0.1  # nearly all exact
        # Model-range samples ([-1, 1]) go through the same map.
        model = data.to_model_range(up["x"][:5])
        np.testing.assert_array_equal(
            data.downsample_digits(model, value_range=(-1.0, 1.0)), back[:5])


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="digits_upsampled size"):
        data.prepare("digits_upsampled/24", data_dir="/nonexistent")
    with pytest.raises(ValueError, match="`images`"):
        data.downsample_digits(np.zeros((2, 12, 12, 1)))
    with pytest.raises(ValueError, match="`images`"):
        data.upsample_digits(np.zeros((2, 7, 7)), 16)
    with pytest.raises(ValueError, match="`size`"):
        data.upsample_digits(np.zeros((8, 8)), 4)


def test_docstring_examples(data_dir, monkeypatch):
    import doctest

    from diffax.data import _digits_upsampled

    monkeypatch.setenv("DIFFAX_DATA_DIR", str(data_dir))
    result = doctest.testmod(_digits_upsampled, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
