"""grain pipelines: determinism, sharding, resume from state, flips, scaling, errors."""

import json

import numpy as np
import pytest

from diffax import data


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_batches_shapes_dtypes_and_range(data_dir):
    batch = next(data.make_iterator("digits", batch_size=16, seed=0, data_dir=data_dir))
    assert set(batch) == {"x", "label"}
    assert batch["x"].shape == (16, 8, 8, 1) and batch["x"].dtype == np.float32
    assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
    assert batch["x"].min() >= -1.0 and batch["x"].max() <= 1.0
    batch = next(data.make_iterator("toy2d/two_moons", split="test", batch_size=5, seed=0,
                                    data_dir=data_dir))
    assert batch["x"].shape == (5, 2) and batch["x"].dtype == np.float32


def test_same_seed_same_batches_different_seed_different(data_dir):
    kw = dict(batch_size=32, data_dir=data_dir, random_flip=True)
    a = _take(data.make_iterator("digits", seed=1, **kw), 5)
    b = _take(data.make_iterator("digits", seed=1, **kw), 5)
    c = _take(data.make_iterator("digits", seed=2, **kw), 5)
    _assert_same_batches(a, b)
    assert not np.array_equal(a[0]["x"], c[0]["x"])


def test_cached_and_streaming_pipelines_agree(data_dir):
    kw = dict(batch_size=64, seed=5, data_dir=data_dir, random_flip=True)
    a = _take(data.make_iterator("digits", cache=True, **kw), 3)
    b = _take(data.make_iterator("digits", cache=False, num_threads=0, **kw), 3)
    _assert_same_batches(a, b)


def test_one_epoch_in_order_covers_the_split(data_dir):
    ref = data.load_split("digits", split="train", data_dir=data_dir)
    batches = list(data.make_dataset("digits", batch_size=100, shuffle=False, num_epochs=1,
                                     drop_remainder=False, data_dir=data_dir))
    assert [len(b["x"]) for b in batches] == [100] * 14 + [97]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), ref["x"])
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), ref["label"])
    dropped = list(data.make_dataset("digits", batch_size=100, num_epochs=1, seed=0,
                                     data_dir=data_dir))
    assert len(dropped) == 14


def _rows(batches):
    return np.concatenate([b["x"] for b in batches])


def _as_set(x):
    return {tuple(r) for r in x.tolist()}


def test_two_shards_partition_each_epoch(data_dir):
    n = data.TOY2D_NUM_TEST  # 10,000 distinct points
    kw = dict(split="test", batch_size=1000, seed=3, shard_count=2, num_epochs=2,
              data_dir=data_dir)
    shards = [_rows(list(data.make_dataset("toy2d/two_moons", shard_index=i, **kw)))
              for i in range(2)]
    everything = _as_set(data.load_split("toy2d/two_moons", split="test", data_dir=data_dir)["x"])
    assert len(everything) == n
    for epoch in range(2):
        parts = [_as_set(s[epoch * n // 2:(epoch + 1) * n // 2]) for s in shards]
        assert len(parts[0]) == len(parts[1]) == n // 2
        assert not parts[0] & parts[1] and parts[0] | parts[1] == everything
    # Each epoch is shuffled afresh.
    assert not np.array_equal(shards[0][: n // 2], shards[0][n // 2:])


@pytest.mark.parametrize("name, flip", [("toy2d/two_moons", False), ("digits", True)])
def test_global_batches_do_not_depend_on_the_number_of_processes(data_dir, name, flip):
    # Process i reads rows [i b, (i + 1) b) of each global batch of 3 b: concatenated, the
    # three shards give exactly the batches of one process reading 3 b at a time (flips too).
    kw = dict(seed=5, data_dir=data_dir, random_flip=flip, num_threads=0)
    one = data.make_iterator(name, batch_size=96, **kw)
    shards = [data.make_iterator(name, batch_size=32, shard_index=i, shard_count=3, **kw)
              for i in range(3)]
    for _ in range(20):  # past an epoch boundary of digits (1497 // 96 = 15)
        whole = next(one)
        parts = [next(it) for it in shards]
        for k in whole:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])


def test_uneven_shards_are_equalized_when_dropping_remainder(data_dir):
    # digits train has 1497 examples: 499 global batches of 3, one row each; no partial batch.
    counts = []
    for i in range(3):
        batches = list(data.make_dataset("digits", batch_size=1, seed=0, num_epochs=1,
                                         shard_index=i, shard_count=3, data_dir=data_dir))
        counts.append(len(batches))
    assert counts == [499, 499, 499]
    kept = [len(_rows(list(data.make_dataset("digits", batch_size=1000, num_epochs=1, seed=0,
                                            drop_remainder=False, shard_index=i, shard_count=2,
                                            data_dir=data_dir)))) for i in range(2)]
    assert kept == [749, 748]


@pytest.mark.parametrize("cache", [True, False])
def test_resume_from_state_is_exact(data_dir, cache):
    kw = dict(batch_size=64, seed=7, random_flip=True, data_dir=data_dir, cache=cache)
    it = data.make_iterator("digits", **kw)
    _take(it, 20)  # 1497 // 64 = 23 batches per epoch: the next ones straddle an epoch.
    state = it.get_state()
    expected = _take(it, 6)
    state = json.loads(json.dumps(state))  # The state is a small JSON-able dict.
    fresh = data.make_iterator("digits", **kw)
    fresh.set_state(state)
    _assert_same_batches(_take(fresh, 6), expected)


def test_random_flips_are_horizontal_mirrors(data_dir):
    kw = dict(batch_size=256, seed=11, data_dir=data_dir)
    plain = next(data.make_iterator("digits", **kw))["x"]
    flipped = next(data.make_iterator("digits", random_flip=True, **kw))["x"]
    same = np.all(plain == flipped, axis=(1, 2, 3))
    mirrored = np.all(plain[:, :, ::-1] == flipped, axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 60 < np.sum(~same) < 196


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0), (-0.5, 2.0), (-3.0, 7.0)])
def test_scaling_round_trip_is_exact(value_range):
    u = np.arange(256, dtype=np.uint8)
    x = data.to_model_range(u, value_range)
    assert x.dtype == np.float32
    assert x[0] == value_range[0] and x[-1] == value_range[1]
    np.testing.assert_array_equal(data.from_model_range(x, value_range), u)
    lo, hi = value_range
    np.testing.assert_array_equal(
        data.from_model_range(np.array([lo - 5, hi + 5]), value_range), [0, 255]
    )


def test_default_scaling_formula():
    u = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(data.to_model_range(u), u / 127.5 - 1.0, atol=1e-7)


def test_pipeline_value_range_inverts_to_stored_images(data_dir):
    ref = data.load_split("digits", split="test", data_dir=data_dir, value_range=None)
    batch = next(data.make_iterator("digits", split="test", batch_size=300, shuffle=False,
                                    value_range=(0.0, 1.0), data_dir=data_dir))
    assert batch["x"].min() == 0.0 and batch["x"].max() == 1.0
    np.testing.assert_array_equal(data.from_model_range(batch["x"], (0.0, 1.0)), ref["x"])


def test_image_size_resizes_on_the_fly(data_dir):
    batch = next(data.make_iterator("digits", batch_size=4, image_size=(4, 6), seed=0,
                                    data_dir=data_dir))
    assert batch["x"].shape == (4, 4, 6, 1)
    assert data.dataset_info("digits", image_size=4, data_dir=data_dir).shape == (4, 4, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(shard_index=2, shard_count=2), "shard_index"),
        (dict(shard_index=-1, shard_count=2), "shard_index"),
        (dict(shard_count=0), "shard_count"),
        (dict(seed=-1), "seed"),
        (dict(num_epochs=0), "num_epochs"),
        (dict(value_range=(1.0, 1.0)), "value_range"),
        (dict(value_range=3), "value_range"),
        (dict(channels=1), "channels"),
        (dict(name="toy2d/two_moons", random_flip=True), "random_flip"),
        (dict(name="toy2d/two_moons", image_size=4), "image_size"),
        (dict(name="nope_nope"), "name"),
        (dict(split="nope"), "split"),
        (dict(shard_index=1, shard_count=4000), "empty"),
        (dict(batch_size=1500), "global batch"),
    ],
)
def test_argument_errors_name_the_argument(data_dir, kwargs, match):
    kwargs = dict(dict(name="digits", batch_size=8), **kwargs)
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        data.make_dataset(name, data_dir=data_dir, **kwargs)
