"""The `digits_stacked` TFDS builder: three 8x8 digits stacked on channels (no download).

Stacked MNIST's mode-coverage yardstick (Metz et al. 2017; used by DDGAN, Xiao et al. 2022)
on scikit-learn's digits: each example is an `[8, 8, 3]` image whose channel `c` is one digit
of the `digits` builder, so there are `10 ** 3 = 1000` modes, labelled
`100 * d0 + 10 * d1 + d2` by the digits `(d0, d1, d2)` in channels 0, 1, 2. A generated
sample's mode is read by classifying each channel separately with a digit classifier.

Procedural with fixed seeds per split: the train split stacks digits of the `digits` train
split only (seed 0, 20000 examples), the test split digits of its test split only (seed 1, 3000
examples), each channel an independent uniform draw of an image of that split
(:func:`stack_digits`). The grey levels are the `digits` builder's (`digits_to_uint8`).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._digits import digits_split_indices, digits_to_uint8
from diffax.data._local import LocalBuilder

STACKED_NUM_TRAIN = 20_000
STACKED_NUM_TEST = 3_000
STACKED_NUM_MODES = 1000
_SPLIT_SEEDS = {"train": 0, "test": 1}
_SPLIT_SIZES = {"train": STACKED_NUM_TRAIN, "test": STACKED_NUM_TEST}


def stacked_label(digits) -> np.ndarray:
    """The mode label `100 * d0 + 10 * d1 + d2` of digit triples `[..., 3]` (ints 0..9).

    Example:
      >>> stacked_label(np.array([[1, 2, 3], [0, 0, 9]])).tolist()
      [123, 9]
    """
    d = np.asarray(digits)
    if d.ndim < 1 or d.shape[-1] != 3:
        raise ValueError(f"`digits` must have a last axis of 3, got shape {d.shape}.")
    if not np.issubdtype(d.dtype, np.integer) or (d.size and (d.min() < 0 or d.max() > 9)):
        raise ValueError("`digits` must be integers in 0..9.")
    d = d.astype(np.int64)
    return 100 * d[..., 0] + 10 * d[..., 1] + d[..., 2]


def stack_digits(split: str, num: int | None = None) -> dict[str, np.ndarray]:
    """The examples of split `split` ("train" or "test") of `digits_stacked`, as arrays.

    Channel `c` of example `i` is the `digits` image `indices[i, c]` (a row of
    `sklearn.datasets.load_digits()`), drawn uniformly from that split's images by
    `np.random.default_rng(seed)` (seed 0 for train, 1 for test) as one `[num, 3]` integer
    draw. `num` (default: the split's size) takes the first `num` examples of that draw.

    Returns:
      `image` uint8 `[N, 8, 8, 3]`, `digits` int64 `[N, 3]` (each channel's label),
      `label` int64 `[N]` (:func:`stacked_label`), `indices` int64 `[N, 3]`.

    Example:
      >>> ex = stack_digits("test", 4)
      >>> ex["image"].shape, ex["label"].shape
      ((4, 8, 8, 3), (4,))
    """
    from sklearn.datasets import load_digits

    if split not in _SPLIT_SEEDS:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    size = _SPLIT_SIZES[split]
    if num is None:
        num = size
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or not 0 < num <= size:
        raise ValueError(f"`num` must be an integer in 1..{size} for split {split!r}, got "
                         f"{num!r}.")
    pool = digits_split_indices()[split]
    rng = np.random.default_rng(_SPLIT_SEEDS[split])
    indices = pool[rng.integers(0, len(pool), size=(size, 3))][:num]
    data = load_digits()
    images = digits_to_uint8(data.images)  # [1797, 8, 8]
    image = np.moveaxis(images[indices], 1, -1)  # [N, 3, 8, 8] -> [N, 8, 8, 3]
    digits = data.target[indices].astype(np.int64)
    return {"image": np.ascontiguousarray(image), "digits": digits,
            "label": stacked_label(digits), "indices": indices.astype(np.int64)}


class DigitsStacked(LocalBuilder, skip_registration=True):
    """TFDS builder `digits_stacked`: three digits on the channels of one `[8, 8, 3]` image.

    Features: `image` uint8 `[8, 8, 3]`, `label` (1000 classes: `100 d0 + 10 d1 + d2`),
    `digits` int64 `[3]` (each channel's digit), `indices` int64 `[3]` (rows of
    `sklearn.datasets.load_digits()`). Splits: train 20000 (seed 0, train digits only), test
    3000 (seed 1, test digits only), from :func:`stack_digits`. Needs no download.
    """

    name = "digits_stacked"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Three scikit-learn 8x8 digits stacked on the channels of one image "
                         "(1000 modes), each an independent uniform draw of the digits split "
                         "of the same name, fixed seeds per split."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(num_classes=STACKED_NUM_MODES),
                "digits": tfds.features.Tensor(shape=(3,), dtype=np.int64),
                "indices": tfds.features.Tensor(shape=(3,), dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {split: self._generate_examples(split) for split in _SPLIT_SEEDS}

    def _generate_examples(self, split: str):
        from PIL import Image

        ex = stack_digits(split)
        for i in range(len(ex["label"])):
            yield i, {"image": Image.fromarray(ex["image"][i]), "label": int(ex["label"][i]),
                      "digits": ex["digits"][i], "indices": ex["indices"][i]}
