"""The no-download builders (toy2d, digits, image_folder), TFDS by name, and their errors."""

import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from diffax import data


def _stored_files(builder):
    path = builder.data_path
    return {f.name: f.read_bytes() for f in path.iterdir() if "array_record" in f.name}


# --- digits -------------------------------------------------------------------------------------


def test_digits_mapping_is_exact_and_invertible():
    v = np.arange(17)
    u = data.digits_to_uint8(v)
    assert u.dtype == np.uint8
    assert u[0] == 0 and u[8] == 128 and u[16] == 255
    np.testing.assert_array_equal(u, (v * 255 + 8) // 16)
    assert np.all(np.diff(u.astype(int)) > 0)
    np.testing.assert_array_equal(data.uint8_to_digits(u), v)
    with pytest.raises(ValueError):
        data.digits_to_uint8(np.array([17]))


def test_digits_builder_shapes_counts_and_exact_values(data_dir):
    info = data.dataset_info("digits", data_dir=data_dir)
    assert info.shape == (8, 8, 1) and info.dtype == "uint8" and info.is_image
    assert info.num_classes == 10 and info.value_range == (0.0, 255.0)
    assert info.num_examples == {"train": data.DIGITS_NUM_TRAIN, "test": data.DIGITS_NUM_TEST}
    assert (data.DIGITS_NUM_TRAIN, data.DIGITS_NUM_TEST) == (1497, 300)

    sk = load_digits()
    seen = []
    for split in ("train", "test"):
        source = data.data_source("digits", split=split, data_dir=data_dir)
        examples = source._getitems(range(len(source)))
        index = np.array([e["index"] for e in examples])
        images = np.stack([e["image"] for e in examples])
        labels = np.array([e["label"] for e in examples])
        assert images.shape == (len(source), 8, 8, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[..., 0], data.digits_to_uint8(sk.images[index]))
        np.testing.assert_array_equal(labels, sk.target[index])
        np.testing.assert_array_equal(np.sort(index), data.digits_split_indices()[split])
        seen.append(index)
    # Splits partition the 1797 images; the test split has 30 images of each class.
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(1797))
    np.testing.assert_array_equal(np.bincount(sk.target[seen[1]]), np.full(10, 30))


def test_digits_load_split_uint8(data_dir):
    out = data.load_split("digits", split="test", data_dir=data_dir, value_range=None)
    assert out["x"].shape == (300, 8, 8, 1) and out["x"].dtype == np.uint8
    assert out["label"].dtype == np.int32 and set(out["label"]) == set(range(10))
    scaled = data.load_split("digits", split="test", data_dir=data_dir, max_examples=7)
    assert scaled["x"].dtype == np.float32 and scaled["x"].shape == (7, 8, 8, 1)
    np.testing.assert_array_equal(data.from_model_range(scaled["x"]), out["x"][:7])


# --- toy2d --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(data.TOY2D_DISTRIBUTIONS))
def test_toy2d_samplers(name):
    x, label = data.sample_toy2d(name, 1000, seed=3)
    assert x.shape == (1000, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
    num_classes = data.TOY2D_DISTRIBUTIONS[name].num_classes
    if num_classes is None:
        assert label is None
    else:
        assert label.dtype == np.int32 and set(label.tolist()) == set(range(num_classes))
    x2, _ = data.sample_toy2d(name, 1000, seed=3)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, data.sample_toy2d(name, 1000, seed=4)[0])
    assert np.abs(x).max() < 6.0


def test_toy2d_eight_gaussians_match_their_parameters():
    x, label = data.sample_toy2d("eight_gaussians", 40_000, seed=0)
    for k in range(8):
        members = x[label == k]
        np.testing.assert_allclose(members.mean(0), data.EIGHT_GAUSSIANS_MEANS[k], atol=0.02)
        np.testing.assert_allclose(members.std(0), data.EIGHT_GAUSSIANS_STD, rtol=0.05)


def test_toy2d_builder_is_deterministic_across_preparations(data_dir, tmp_path):
    first = data.prepare("toy2d/two_moons", data_dir=data_dir)
    second = data.prepare("toy2d/two_moons", data_dir=tmp_path)
    assert first.data_path != second.data_path
    files = _stored_files(first)
    assert len(files) == 2 and files == _stored_files(second)

    info = data.dataset_info("toy2d/two_moons", data_dir=tmp_path)
    assert info.shape == (2,) and info.dtype == "float32" and not info.is_image
    assert info.num_classes == 2 and info.value_range is None
    assert info.num_examples == {"train": data.TOY2D_NUM_TRAIN, "test": data.TOY2D_NUM_TEST}

    # The test split holds exactly sample_toy2d(..., seed=1), in a (fixed) shuffled order.
    out = data.load_split("toy2d/two_moons", split="test", data_dir=tmp_path)
    x, label = data.sample_toy2d("two_moons", data.TOY2D_NUM_TEST, seed=1)
    order = np.lexsort(out["x"].T)
    ref = np.lexsort(x.T)
    np.testing.assert_array_equal(out["x"][order], x[ref])
    np.testing.assert_array_equal(out["label"][order], label[ref])


def test_toy2d_unknown_distribution(tmp_path):
    with pytest.raises(ValueError, match="name"):
        data.prepare("toy2d/three_moons", data_dir=tmp_path)


# --- image_folder -------------------------------------------------------------------------------


def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def labelled_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    arrays = {}
    for cls, size in (("cat", (10, 12)), ("dog", (16, 16))):
        for i in range(3):
            a = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            _write_png(str(root / cls / f"{i}.png"), a)
            arrays[f"{cls}/{i}.png"] = a
    return root, arrays


def test_image_folder_labelled(labelled_folder, tmp_path):
    root, arrays = labelled_folder
    info = data.dataset_info("image_folder", folder=root, image_size=8, data_dir=tmp_path)
    assert info.shape == (8, 8, 3) and info.dtype == "uint8"
    assert info.class_names == ("cat", "dog") and info.num_examples == {"train": 6}
    source = data.data_source("image_folder", split="train", folder=root, image_size=8,
                              data_dir=tmp_path)
    assert len(source) == 6
    for i in range(6):
        e = source[i]
        name = e["filename"].decode() if isinstance(e["filename"], bytes) else e["filename"]
        assert e["label"] == ("cat", "dog").index(name.split("/")[0])
        expected = data.resize_image(arrays[name], (8, 8), center_crop=True)
        np.testing.assert_array_equal(e["image"], expected)
    batch = next(data.make_iterator("image_folder", folder=root, image_size=8, batch_size=4,
                                    data_dir=tmp_path, seed=0))
    assert batch["x"].shape == (4, 8, 8, 3) and batch["label"].shape == (4,)


def test_image_folder_unlabelled_grayscale_and_changes(tmp_path):
    root = tmp_path / "faces"
    for i in range(5):
        _write_png(str(root / f"{i}.png"), np.full((6, 6, 3), 40 * i, np.uint8))
    out = data.load_split("image_folder", split="train", folder=root, channels=1,
                          value_range=None, data_dir=tmp_path / "d")
    assert set(out) == {"x"} and out["x"].shape == (5, 6, 6, 1)
    assert sorted(out["x"][:, 0, 0, 0].tolist()) == [0, 40, 80, 120, 160]
    # A new file changes the fingerprint: the folder is prepared again, never read stale.
    _write_png(str(root / "new.png"), np.zeros((6, 6, 3), np.uint8))
    info = data.dataset_info("image_folder", folder=root, channels=1, data_dir=tmp_path / "d")
    assert info.num_examples == {"train": 6} and info.num_classes is None


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder"):
        data.prepare("image_folder", folder=tmp_path / "missing", data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="folder.*no image"):
        data.prepare("image_folder", folder=tmp_path / "empty", data_dir=tmp_path)
    with pytest.raises(ValueError, match="folder"):
        data.prepare("image_folder", data_dir=tmp_path)
    mixed = tmp_path / "mixed"
    _write_png(str(mixed / "a.png"), np.zeros((4, 4, 3), np.uint8))
    _write_png(str(mixed / "cls" / "b.png"), np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="mixes"):
        data.prepare("image_folder", folder=mixed, data_dir=tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        data.prepare("image_folder", folder=mixed, labels=False, data_dir=tmp_path)
    with pytest.raises(ValueError, match="folder"):
        data.prepare("digits", folder=mixed, data_dir=tmp_path)


def _png_bytes(array):
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["header-corrupt", "truncated", "zero-byte"])
@pytest.mark.parametrize("image_size", [8, None])
def test_image_folder_corrupt_file_is_named(tmp_path, kind, image_size):
    # A corrupt file fails the preparation with one error naming the file and the folder (it
    # used to be PIL's own error, deep inside TFDS, without the file name). With image_size
    # None the sizes are read first, where the header-corrupt and empty files already fail.
    root = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    _write_png(str(root / "good.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    good = _png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    bad = {"header-corrupt": b"\x89PNG\r\n\x1a\n" + bytes(40) + good[48:],
           "truncated": good[:len(good) // 2], "zero-byte": b""}[kind]
    (root / "bad.png").write_bytes(bad)
    with pytest.raises(ValueError, match=r"Image folder .*imgs.*cannot read image file "
                                         r"'bad\.png'") as excinfo:
        data.prepare("image_folder", folder=root, image_size=image_size,
                     data_dir=tmp_path / "d")
    assert isinstance(excinfo.value, data.ImageDecodeError)


# --- TFDS datasets by name ----------------------------------------------------------------------


def test_named_tfds_dataset_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=20):
        info = data.dataset_info("mnist", data_dir=tmp_path)
        assert info.shape == (28, 28, 1) and info.num_classes == 10 and info.is_image
        out = data.load_split("mnist", split="train", data_dir=tmp_path)
        assert out["x"].shape == (20, 28, 28, 1) and out["x"].dtype == np.float32
        assert -1.0 <= out["x"].min() and out["x"].max() <= 1.0
        assert out["label"].dtype == np.int32 and out["label"].max() < 10
        it = data.make_iterator("mnist", split="train", batch_size=8, seed=1, random_flip=True,
                                image_size=14, data_dir=tmp_path)
        batches = [next(it) for _ in range(4)]  # 2.5 epochs of 20 examples
        assert all(b["x"].shape == (8, 14, 14, 1) for b in batches)


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as excinfo:
        data.data_source("mnist", split="train", data_dir=tmp_path)
    message = str(excinfo.value)
    assert "tfds build mnist" in message and "--file_format=array_record" in message
    assert str(tmp_path) in message and "never downloads" in message
    with pytest.raises(data.DatasetNotPreparedError):
        data.make_iterator("cifar10", batch_size=2, data_dir=tmp_path)
    assert not any(p.name.startswith("downloads") for p in tmp_path.rglob("*") if p.is_file())


def test_unknown_names_and_splits(data_dir):
    with pytest.raises(ValueError, match="name"):
        data.prepare("no_such_dataset_xyz", data_dir=data_dir)
    with pytest.raises(ValueError, match="name"):
        data.prepare("Not A Name!", data_dir=data_dir)
    with pytest.raises(ValueError, match="split"):
        data.data_source("digits", split="validation", data_dir=data_dir)


def test_no_tensorflow_imported(data_dir):
    data.load_split("digits", split="test", data_dir=data_dir, max_examples=3)
    assert "tensorflow" not in sys.modules
