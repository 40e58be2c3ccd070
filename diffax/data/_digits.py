"""The `digits` TFDS builder: scikit-learn's bundled 8x8 handwritten digits (no download)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._local import LocalBuilder

DIGITS_NUM_TEST_PER_CLASS = 30
DIGITS_NUM_TRAIN = 1497
DIGITS_NUM_TEST = 300
_SPLIT_SEED = 0


def digits_to_uint8(v) -> np.ndarray:
    """Maps scikit-learn digits values 0..16 to uint8 0..255, exactly as the builder stores them.

    `u = (v * 255 + 8) // 16`, i.e. `v * 255 / 16` rounded half up: 0 -> 0, 8 -> 128,
    16 -> 255. The map is injective; `uint8_to_digits` inverts it.

    Args:
      v: integer array with values in 0..16 (`sklearn.datasets.load_digits().images`).

    Returns:
      uint8 array of the same shape.

    Example:
      >>> digits_to_uint8(np.array([0, 1, 8, 15, 16])).tolist()
      [0, 16, 128, 239, 255]
    """
    v = np.asarray(v)
    if v.size and (v.min() < 0 or v.max() > 16 or not np.all(v == np.round(v))):
        raise ValueError("digits values must be integers in 0..16.")
    return ((v.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)


def uint8_to_digits(u) -> np.ndarray:
    """Inverse of `digits_to_uint8`: `v = round(u * 16 / 255)` as int64 (0..16).

    Example:
      >>> uint8_to_digits(digits_to_uint8(np.arange(17))).tolist() == list(range(17))
      True
    """
    u = np.asarray(u, dtype=np.int64)
    return (u * 16 * 2 + 255) // (2 * 255)


def digits_split_indices() -> dict[str, np.ndarray]:
    """Indices into `sklearn.datasets.load_digits()` of the builder's train and test splits.

    Stratified and fixed: for each class (in the order of the data), a permutation from
    `np.random.default_rng(0)` picks 30 test images; the other images are training images.
    Sizes: train 1497, test 300 (30 per class). Indices are returned sorted.

    Example:
      >>> idx = digits_split_indices()
      >>> len(idx["train"]), len(idx["test"])
      (1497, 300)
    """
    from sklearn.datasets import load_digits

    target = load_digits().target
    rng = np.random.default_rng(_SPLIT_SEED)
    test = []
    for c in range(10):
        members = np.flatnonzero(target == c)
        test.append(members[rng.permutation(len(members))[:DIGITS_NUM_TEST_PER_CLASS]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(target)), test)
    return {"train": train, "test": test}


class Digits(LocalBuilder, skip_registration=True):
    """TFDS builder `digits`: the 1797 8x8 digits shipped inside scikit-learn.

    Features: `image` uint8 `[8, 8, 1]` with `digits_to_uint8` applied to scikit-learn's
    0..16 values (PNG, lossless), `label` (10 classes), `index` (row in
    `sklearn.datasets.load_digits()`). Splits from `digits_split_indices`: train 1497,
    test 300. Needs no download.
    """

    name = "digits"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "scikit-learn's copy of the UCI optical recognition of handwritten digits "
                "test set: 8x8 images, values 0..16 mapped to 0..255 by (v*255 + 8) // 16."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "index": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {
            split: self._generate_examples(indices)
            for split, indices in digits_split_indices().items()
        }

    def _generate_examples(self, indices):
        from PIL import Image
        from sklearn.datasets import load_digits

        data = load_digits()
        images = digits_to_uint8(data.images)
        for i in indices:
            # Encoding a PIL image needs no tensorflow (a numpy array would go through tf).
            yield int(i), {
                "image": Image.fromarray(images[i]),
                "label": int(data.target[i]),
                "index": int(i),
            }
