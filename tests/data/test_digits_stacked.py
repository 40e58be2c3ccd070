"""The `digits_stacked` builder: three digits on the channels, fixed seeds per split."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from diffax import data


def test_stack_digits_is_deterministic_per_split_and_a_prefix_of_the_full_draw():
    full = data.stack_digits("test")
    again = data.stack_digits("test")
    for key in full:
        np.testing.assert_array_equal(full[key], again[key])
    head = data.stack_digits("test", 50)
    for key in full:
        np.testing.assert_array_equal(head[key], full[key][:50])
    train = data.stack_digits("train", 3000)
    assert not np.array_equal(train["indices"], full["indices"])  # another seed and pool
    assert len(data.stack_digits("train")["label"]) == data.STACKED_NUM_TRAIN


def test_builder_stores_the_draw_with_right_labels_from_the_right_split(data_dir):
    info = data.dataset_info("digits_stacked", data_dir=data_dir)
    assert info.shape == (8, 8, 3) and info.num_classes == data.STACKED_NUM_MODES
    assert info.num_examples == {"train": data.STACKED_NUM_TRAIN, "test": data.STACKED_NUM_TEST}
    raw = load_digits()
    grey = data.digits_to_uint8(raw.images)
    pools = data.digits_split_indices()
    for split in ("train", "test"):
        source = data.data_source("digits_stacked", split=split, data_dir=data_dir)
        stored = [source[i] for i in range(len(source))]
        idx = np.stack([ex["indices"] for ex in stored])
        image = np.stack([ex["image"] for ex in stored])
        label = np.array([ex["label"] for ex in stored])
        digits = np.stack([ex["digits"] for ex in stored])
        # Labels from scikit-learn's own targets of the stored indices (not from the builder).
        want_digits = raw.target[idx]
        np.testing.assert_array_equal(digits, want_digits)
        np.testing.assert_array_equal(
            label, 100 * want_digits[:, 0] + 10 * want_digits[:, 1] + want_digits[:, 2])
        for c in range(3):
            np.testing.assert_array_equal(image[..., c], grey[idx[:, c]])
        assert np.isin(idx, pools[split]).all()  # no digit of the other split
        # The stored examples are the seeded draw (TFDS stores them in its own key order).
        draw = data.stack_digits(split)["indices"]
        order = lambda a: a[np.lexsort(a.T[::-1])]
        np.testing.assert_array_equal(order(idx), order(draw))
    assert len(np.unique(data.stack_digits("train")["label"])) == 1000  # every mode occurs


def test_stacked_label_and_bad_arguments():
    assert data.stacked_label(np.array([9, 9, 9])) == 999
    with pytest.raises(ValueError, match="split"):
        data.stack_digits("validation")
    with pytest.raises(ValueError, match="num"):
        data.stack_digits("test", data.STACKED_NUM_TEST + 1)
    with pytest.raises(ValueError, match="digits"):
        data.stacked_label(np.array([1, 10, 2]))
    with pytest.raises(ValueError, match="last axis"):
        data.stacked_label(np.array([1, 2]))
    with pytest.raises(ValueError, match="no configs"):
        data.prepare("digits_stacked/x")
