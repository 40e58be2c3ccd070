"""``digits_tokens`` samples are scored against the ``digits`` models' own held-out pixels:
the token split decoded by ``digits_to_uint8`` equals the ``digits`` image split exactly."""

import numpy as np

from diffax import data


def test_digit_tokens_decode_to_the_digits_image_split(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAX_DATA_DIR", str(tmp_path))
    tokens = data.load_split("digits_tokens", split="test", value_range=None)["x"]
    images = data.load_split("digits", split="test", value_range=None)["x"]
    decoded = data.digits_to_uint8(np.asarray(tokens).reshape(-1, 8, 8, 1))
    assert decoded.shape == images.shape and len(decoded) > 100
    np.testing.assert_array_equal(decoded, np.asarray(images))
