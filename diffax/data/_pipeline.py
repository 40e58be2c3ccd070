"""grain input pipelines: shuffle, shard, repeat, flip, batch, scale; and whole splits in memory."""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from diffax._checks import check_int
from diffax.data._datasets import DataInfo, _resolve
from diffax.data._image_folder import _check_image_size, resize_image

DEFAULT_VALUE_RANGE = (-1.0, 1.0)


def _check_value_range(value_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (low, high), got {value_range!r}."
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must satisfy low < high, got {value_range!r}.")
    return lo, hi


def to_model_range(x, value_range=DEFAULT_VALUE_RANGE) -> np.ndarray:
    """Maps uint8 pixel values 0..255 to float32 in `value_range = (low, high)`.

    `y = low + (high - low) * (x / 255)`, computed in float32; with the default (-1, 1) this is
    `x / 127.5 - 1`. `from_model_range` is its exact inverse on uint8 values.

    Example:
      >>> to_model_range(np.array([0, 255], np.uint8)).tolist()
      [-1.0, 1.0]
    """
    lo, hi = _check_value_range(value_range)
    x = np.asarray(x).astype(np.float32)
    return (np.float32(lo) + np.float32(hi - lo) * (x / np.float32(255.0))).astype(np.float32)


def from_model_range(x, value_range=DEFAULT_VALUE_RANGE) -> np.ndarray:
    """Maps model-range values back to uint8 pixels: the exact inverse of `to_model_range`.

    `u = clip(round((x - low) / (high - low) * 255), 0, 255)` as uint8 (round half to even);
    values outside `value_range`, e.g. from a sampler, are clipped. For every uint8 `u`,
    `from_model_range(to_model_range(u)) == u`. Works on numpy or jax arrays (returns numpy).

    Example:
      >>> u = np.arange(256, dtype=np.uint8)
      >>> bool(np.all(from_model_range(to_model_range(u)) == u))
      True
    """
    lo, hi = _check_value_range(value_range)
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.round((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def _derive_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])


class _Format:
    """Example dict -> `{"x": ..., "label": int32}`; resizes images when asked."""

    def __init__(self, info: DataInfo, image_size, center_crop: bool):
        self._x_key = info.x_key
        self._label_key = info.label_key
        self._size = _check_image_size(image_size) if info.is_image else None
        self._center_crop = center_crop

    def __call__(self, example: dict[str, Any]) -> dict[str, np.ndarray]:
        x = np.asarray(example[self._x_key])
        if self._size is not None:
            x = resize_image(x, self._size, center_crop=self._center_crop)
        out = {"x": x}
        if self._label_key is not None:
            out["label"] = np.asarray(example[self._label_key], dtype=np.int32)
        return out


class _Fetch:
    """Indices `[B]` -> batch `{"x": [B, ...], "label": [B]}` read from the source."""

    def __init__(self, source, fmt: _Format):
        self._source = source
        self._format = fmt

    def __call__(self, indices) -> dict[str, np.ndarray]:
        rows = [self._format(e) for e in self._source._getitems(np.asarray(indices).tolist())]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class _InMemoryFetch:
    """Indices `[B]` -> batch, gathered from arrays holding the whole split."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = arrays

    def __call__(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        return {k: v[indices] for k, v in self._arrays.items()}


def _read_all(source, fmt: _Format, num: int, chunk: int = 1024) -> dict[str, np.ndarray]:
    fetch = _Fetch(source, fmt)
    parts = [fetch(np.arange(s, min(num, s + chunk))) for s in range(0, num, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Shard:
    """Global batch of indices -> this process's contiguous block of it.

    A full global batch of ``batch_size * shard_count`` indices gives each process
    ``batch_size`` rows; a final partial one (kept without ``drop_remainder``) is split as
    evenly as possible. Each element is ``(indices, start, global_size)`` so that per-example
    randomness (flips) can be keyed by the global batch, not by the process.
    """

    def __init__(self, shard_index: int, shard_count: int, batch_size: int):
        self._index, self._count, self._batch = shard_index, shard_count, batch_size

    def __call__(self, indices):
        indices = np.asarray(indices)
        n = len(indices)
        if n == self._batch * self._count:
            start, size = self._index * self._batch, self._batch
        else:
            # As np.array_split: the first n % count processes get one row more.
            q, r = divmod(n, self._count)
            start = self._index * q + min(self._index, r)
            size = q + (self._index < r)
        return indices[start:start + size], start, n


class _Read:
    def __init__(self, fetch):
        self._fetch = fetch

    def __call__(self, element):
        indices, start, n = element
        return self._fetch(indices), start, n


def _flip(element, rng: np.random.Generator):
    batch, start, n = element
    # A coin per row of the global batch, so flips do not depend on the number of processes.
    coins = (rng.random(n) < 0.5)[start:start + len(batch["x"])]
    x = batch["x"].copy()
    x[coins] = x[coins, :, ::-1]
    return dict(batch, x=x), start, n


def _batch_only(element):
    return element[0]


class _Scale:
    def __init__(self, value_range):
        self._value_range = value_range

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(batch, x=to_model_range(batch["x"], self._value_range))


_AUTO_CACHE_BYTES = 256 * 2**20


def make_dataset(
    name: str,
    *,
    batch_size: int,
    split: str = "train",
    seed: int = 0,
    data_dir=None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
    value_range=DEFAULT_VALUE_RANGE,
    random_flip: bool = False,
    image_size: int | tuple[int, int] | None = None,
    center_crop: bool = True,
    folder=None,
    channels: int | None = None,
    labels: bool | None = None,
    cache: bool | None = None,
    num_threads: int = 2,
    prefetch_buffer_size: int = 4,
) -> grain.IterDataset:
    """A grain input pipeline of numpy batches `{"x": float32 [B, ...], "label": int32 [B]}`.

    Order of operations on the split's examples (`N` of them):

    1. shuffle (if `shuffle`): a fresh permutation of all `N` examples each epoch, from
       `seed` (the same on every process);
    2. repeat `num_epochs` times (None: forever);
    3. global batches of `batch_size * shard_count` consecutive examples (they may straddle
       epochs), the last partial one kept unless `drop_remainder`;
    4. shard: process `shard_index` takes rows `[shard_index * batch_size, (shard_index + 1)
       * batch_size)` of each global batch (a final partial batch is split as evenly as
       possible) and reads only those (resizing images to `image_size` if given). So the
       stream of global batches is the same for any number of processes: a run on 2 hosts
       sees exactly the batches of a run on 1, and a data state saved with one process count
       resumes the same stream with another;
    5. optional random horizontal flips of images (`random_flip`): a fair coin per example,
       deterministic given `seed` and the example's row in its global batch;
    6. images: uint8 -> float32 in `value_range` with `to_model_range` (invert with
       `from_model_range`). Non-image data (toy2d) pass unchanged as float32.

    Iterate with `it = iter(ds)`: `it.get_state()` returns a small dict, and a fresh
    iterator given `it.set_state(state)` yields exactly the batches the first would have
    yielded next. Labels are passed through when the dataset has them (no "label" key
    otherwise).

    Args:
      name: dataset name (see `prepare`): "toy2d/<distribution>", "digits", "image_folder",
        or a TFDS dataset prepared under `data_dir` such as "mnist".
      batch_size: examples per batch on this process.
      split: split name, e.g. "train", "test", or a TFDS slice such as "train[:90%]".
      seed: non-negative int seeding shuffling and flips.
      data_dir: data directory; default `default_data_dir()`.
      shuffle: shuffle each epoch (training); False keeps the stored order (evaluation).
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop the last partial batch and equalize shard sizes (training).
      shard_index: index of this process (`jax.process_index()`).
      shard_count: number of processes (`jax.process_count()`).
      value_range: `(low, high)` range of images in the model; default (-1, 1).
      random_flip: random horizontal flips of images.
      image_size: `size` or `(height, width)`: resize images (center crop first if
        `center_crop`). For "image_folder" this happens once, at preparation.
      center_crop: see `image_size`.
      folder: for "image_folder": the folder of images.
      channels: for "image_folder": 3 (default) or 1.
      labels: for "image_folder": None (auto from subfolders), True or False.
      cache: hold the whole split in memory (decoded, resized) and gather batches from it;
        None (default) does so when it takes at most 256 MiB (toy2d, digits, mnist,
        cifar10, ...), else batches are read and decoded from disk as they are needed.
      num_threads: grain reader threads.
      prefetch_buffer_size: batches read ahead.

    Returns:
      A `grain.IterDataset`.

    Raises:
      ValueError: bad argument (the message names it), unknown name or split.
      DatasetNotPreparedError: a TFDS dataset missing from `data_dir`.

    Example:
      >>> ds = make_dataset("toy2d/two_moons", batch_size=4, seed=0)
      >>> it = iter(ds)
      >>> batch = next(it)
      >>> batch["x"].shape, batch["x"].dtype, batch["label"].dtype
      ((4, 2), dtype('float32'), dtype('int32'))
      >>> state = it.get_state()  # e.g. saved with the training checkpoint
    """
    batch_size = check_int(batch_size, name="batch_size", integral=True)
    shard_count = check_int(shard_count, name="shard_count", integral=True)
    if isinstance(shard_index, bool) or int(shard_index) != shard_index or not (
        0 <= shard_index < shard_count
    ):
        raise ValueError(
            f"shard_index must be an integer in [0, shard_count) = [0, {shard_count}), "
            f"got {shard_index!r}."
        )
    shard_index = int(shard_index)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if num_epochs is not None:
        num_epochs = check_int(num_epochs, name="num_epochs", integral=True)
    value_range = _check_value_range(value_range)
    if isinstance(num_threads, bool) or int(num_threads) != num_threads or num_threads < 0:
        raise ValueError(f"num_threads must be a non-negative integer, got {num_threads!r}.")
    check_int(prefetch_buffer_size, name="prefetch_buffer_size", integral=True)

    source, info = _resolve(
        name, split=split, data_dir=data_dir, folder=folder, image_size=image_size,
        channels=channels, center_crop=center_crop, labels=labels,
    )
    if random_flip and not info.is_image:
        raise ValueError(f"random_flip applies to image datasets only, not {name!r}.")
    num = len(source)
    global_batch = batch_size * shard_count
    if (drop_remainder and num < global_batch) or min(num, global_batch) < shard_count:
        raise ValueError(
            f"Shard {shard_index} of {shard_count} (arguments `shard_index`, `shard_count`) of "
            f"{name!r} split {split!r} ({num} examples) would be empty or repeat examples within "
            f"a batch: the global batch is `batch_size` * `shard_count` = {global_batch} "
            "examples (with `drop_remainder`, at most the split's size)."
        )

    if cache is None:
        cache = num * int(np.prod(info.shape)) * np.dtype(info.dtype).itemsize <= _AUTO_CACHE_BYTES
    fmt = _Format(info, image_size, center_crop)
    fetch = _InMemoryFetch(_read_all(source, fmt, num)) if cache else _Fetch(source, fmt)

    ds = grain.MapDataset.range(num)
    if shuffle:
        ds = ds.shuffle(seed=_derive_seed(seed, 0))
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    ds = ds.batch(global_batch, drop_remainder=drop_remainder)
    ds = ds.map(_Shard(shard_index, shard_count, batch_size)).map(_Read(fetch))
    if random_flip:
        ds = ds.random_map(_flip, seed=_derive_seed(seed, 1, 0))
    ds = ds.map(_batch_only)
    if info.is_image:
        ds = ds.map(_Scale(value_range))
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
    )


def make_iterator(name: str, *, batch_size: int, **kwargs: Any) -> grain.DatasetIterator:
    """`iter(make_dataset(name, batch_size=..., **kwargs))`: a checkpointable batch iterator.

    The iterator has `get_state()` / `set_state(state)`; restoring a fresh iterator from a
    saved state resumes with exactly the batches that would have come next.

    Example:
      >>> it = make_iterator("digits", batch_size=8, seed=0, random_flip=True)
      >>> first = next(it)
      >>> state = it.get_state()
      >>> second = next(it)
      >>> resumed = make_iterator("digits", batch_size=8, seed=0, random_flip=True)
      >>> resumed.set_state(state)
      >>> bool((next(resumed)["x"] == second["x"]).all())
      True
    """
    return iter(make_dataset(name, batch_size=batch_size, **kwargs))


def load_split(
    name: str,
    *,
    split: str = "test",
    data_dir=None,
    value_range=DEFAULT_VALUE_RANGE,
    max_examples: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    center_crop: bool = True,
    folder=None,
    channels: int | None = None,
    labels: bool | None = None,
) -> dict[str, np.ndarray]:
    """Loads a whole split (or its first `max_examples`) into memory as numpy arrays.

    For evaluation, e.g. held-out data for sample-quality metrics. Examples come in the
    stored order (fixed). Images are scaled to `value_range` like in `make_dataset`; with
    `value_range=None` they stay uint8 in 0..255.

    Returns:
      `{"x": [N, ...], "label": int32 [N]}` ("label" only for labelled datasets).

    Example:
      >>> data = load_split("digits", split="test", value_range=None)
      >>> data["x"].shape, data["x"].dtype, data["label"].shape
      ((300, 8, 8, 1), dtype('uint8'), (300,))
    """
    if value_range is not None:
        value_range = _check_value_range(value_range)
    source, info = _resolve(
        name, split=split, data_dir=data_dir, folder=folder, image_size=image_size,
        channels=channels, center_crop=center_crop, labels=labels,
    )
    num = len(source)
    if max_examples is not None:
        num = min(num, check_int(max_examples, name="max_examples", integral=True))
    if num == 0:
        raise ValueError(f"Split {split!r} of {name!r} is empty.")
    out = _read_all(source, _Format(info, image_size, center_crop), num)
    if info.is_image and value_range is not None:
        out["x"] = to_model_range(out["x"], value_range)
    return out
