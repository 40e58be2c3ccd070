"""Dataset names -> prepared TFDS builders and random-access sources; metadata; errors.

diffax's own builders (`toy2d`, `digits`, `image_folder`) need no download and are prepared
into `data_dir` on first use, in the array_record format. Any other name is a TFDS dataset that
must already be prepared (in array_record) under `data_dir`: diffax never downloads.
Everything here is read back through TFDS's random-access data sources, without tensorflow.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._digits import Digits
from diffax.data._digits_stacked import DigitsStacked
from diffax.data._digits_upsampled import DIGITS_UPSAMPLED_SIZES, DigitsUpsampled
from diffax.data._image_folder import ImageFolder, ImageFolderConfig, _check_image_size
from diffax.data._phantoms import PHANTOM_SIZES, Phantoms
from diffax.data._text import DigitsTokens, PydocText
from diffax.data._toy2d import TOY2D_DISTRIBUTIONS, Toy2D

#: diffax's own builders, by name. Not registered in TFDS's global registry.
BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "toy2d": Toy2D,
    "digits": Digits,
    "image_folder": ImageFolder,
    "phantoms": Phantoms,
    "pydoc_text": PydocText,
    "digits_tokens": DigitsTokens,
    "digits_upsampled": DigitsUpsampled,
    "digits_stacked": DigitsStacked,
}

_FILE_FORMAT = "array_record"


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not prepared (in a random-access format) under `data_dir`."""


def default_data_dir() -> str:
    """The data directory used when `data_dir=None`.

    `$DIFFAX_DATA_DIR` if set, else `$TFDS_DATA_DIR` if set, else `~/tensorflow_datasets`
    (TFDS's own default, where `tfds build` writes).

    Example:
      >>> isinstance(default_data_dir(), str)
      True
    """
    for var in ("DIFFAX_DATA_DIR", "TFDS_DATA_DIR"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    return os.path.expanduser(os.path.join("~", "tensorflow_datasets"))


def _own_names() -> str:
    toy = ", ".join(f"toy2d/{k}" for k in TOY2D_DISTRIBUTIONS)
    return (f"{toy}, digits, image_folder, phantoms/32, phantoms/64, pydoc_text, "
            "digits_tokens, digits_upsampled/16, digits_upsampled/32, digits_stacked")


def _parse_name(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty dataset name string, got {name!r}.")
    base, _, config = name.partition("/")
    return base, (config or None)


def _check_image_folder_args(base: str, folder, channels, labels) -> None:
    if base == "image_folder":
        if folder is None:
            raise ValueError("name='image_folder' needs the argument `folder` (a path).")
        return
    for arg, value in (("folder", folder), ("channels", channels), ("labels", labels)):
        if value is not None:
            raise ValueError(
                f"The argument `{arg}` only applies to name='image_folder', not {base!r}."
            )


def _make_builder(
    name: str,
    *,
    data_dir,
    folder=None,
    image_size=None,
    channels=None,
    center_crop: bool = True,
    labels=None,
) -> tfds.core.DatasetBuilder:
    base, config = _parse_name(name)
    _check_image_folder_args(base, folder, channels, labels)
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    if base == "toy2d":
        config = config or Toy2D.DEFAULT_CONFIG_NAME
        if config not in TOY2D_DISTRIBUTIONS:
            raise ValueError(
                f"Unknown toy2d distribution in name {name!r} (argument `name`); choose one of "
                f"{', '.join('toy2d/' + k for k in TOY2D_DISTRIBUTIONS)}."
            )
        return Toy2D(config=config, data_dir=data_dir, file_format=_FILE_FORMAT)
    if base == "phantoms":
        config = config or Phantoms.DEFAULT_CONFIG_NAME
        if config not in {str(s) for s in PHANTOM_SIZES}:
            raise ValueError(f"Unknown phantoms size in name {name!r} (argument `name`); choose "
                             f"one of {', '.join(f'phantoms/{s}' for s in PHANTOM_SIZES)}.")
        return Phantoms(config=config, data_dir=data_dir, file_format=_FILE_FORMAT)
    if base == "digits_upsampled":
        config = config or DigitsUpsampled.DEFAULT_CONFIG_NAME
        if config not in {str(s) for s in DIGITS_UPSAMPLED_SIZES}:
            sizes = ", ".join(f"digits_upsampled/{s}" for s in DIGITS_UPSAMPLED_SIZES)
            raise ValueError(f"Unknown digits_upsampled size in name {name!r} (argument "
                             f"`name`); choose one of {sizes}.")
        return DigitsUpsampled(config=config, data_dir=data_dir, file_format=_FILE_FORMAT)
    if base in ("digits", "image_folder", "pydoc_text", "digits_tokens",
                "digits_stacked") and config is not None:
        raise ValueError(f"Dataset {base!r} has no configs; got name {name!r}.")
    if base == "digits":
        return Digits(data_dir=data_dir, file_format=_FILE_FORMAT)
    if base in ("pydoc_text", "digits_tokens", "digits_stacked"):
        return BUILDERS[base](data_dir=data_dir, file_format=_FILE_FORMAT)
    if base == "image_folder":
        builder_config = ImageFolderConfig.create(
            folder,
            image_size=image_size,
            channels=3 if channels is None else channels,
            center_crop=center_crop,
            labels=labels,
        )
        return ImageFolder(config=builder_config, data_dir=data_dir, file_format=_FILE_FORMAT)
    if not re.fullmatch(r"[a-z0-9_]+(/[\w.-]+)?(:[\d.*]+)?", name):
        raise ValueError(
            f"Unknown dataset name {name!r} (argument `name`): diffax's own datasets are "
            f"{_own_names()}; other names must be TFDS dataset names like 'mnist', "
            "'cifar10' or 'celeb_a' (optionally 'name/config:version')."
        )
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        raise ValueError(
            f"Unknown dataset name {name!r} (argument `name`): not one of diffax's own datasets "
            f"({_own_names()}) nor a TFDS dataset (e.g. 'mnist', 'cifar10', 'celeb_a')."
        ) from e


def _not_prepared_message(builder, name: str) -> str:
    data_dir = os.fspath(builder.data_dir_root)
    return (
        f"TFDS dataset {name!r} is not prepared in data_dir {data_dir!r} (argument `data_dir`; "
        "default $DIFFAX_DATA_DIR, $TFDS_DATA_DIR or ~/tensorflow_datasets), and diffax never "
        "downloads. On a machine with network access and tensorflow + tensorflow-datasets "
        f"installed, run\n    tfds build {name} --data_dir=DIR --file_format=array_record\n"
        f"then copy DIR/{name.split('/')[0].split(':')[0]} into {data_dir!r}."
    )


def _tfrecord_message(builder, name: str) -> str:
    return (
        f"TFDS dataset {name!r} is prepared at {os.fspath(builder.data_path)!r} in the "
        f"{builder.info.file_format.value} format, which has no random access. Convert it on a "
        "machine with tensorflow installed:\n    tfds convert_format "
        f"--dataset_version_dir={os.fspath(builder.data_path)} --out_file_format=array_record\n"
        f"or rebuild it with `tfds build {name} --file_format=array_record`."
    )


def _prepare_own(builder: tfds.core.DatasetBuilder) -> None:
    if builder.is_prepared():
        return
    download_config = tfds.download.DownloadConfig(
        try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
    try:
        builder.download_and_prepare(download_config=download_config)
    except OSError:
        # Another process may have prepared the same folder at the same time.
        fresh = type(builder)(
            config=builder.builder_config, data_dir=builder.data_dir_root,
            file_format=_FILE_FORMAT,
        )
        if not fresh.is_prepared():
            raise


def prepare(
    name: str,
    *,
    data_dir=None,
    folder=None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    center_crop: bool = True,
    labels: bool | None = None,
) -> tfds.core.DatasetBuilder:
    """Returns the TFDS builder of `name`, prepared into `data_dir` if it is one of diffax's own.

    diffax's own datasets (`toy2d/<distribution>`, `digits`, `image_folder`) are generated
    locally and written as array_record the first time; later calls reuse the files. Other
    names are TFDS datasets and are returned as they are (prepared or not: reading a missing
    one raises `DatasetNotPreparedError`).

    Args:
      name: "toy2d/<distribution>" (see `TOY2D_DISTRIBUTIONS`; "toy2d" alone is
        eight_gaussians), "digits", "image_folder", or a TFDS name such as "mnist".
      data_dir: where datasets live; default `default_data_dir()`.
      folder: for "image_folder" only: the folder of images (one subfolder per class
        optional).
      image_size: for "image_folder": `size` or `(height, width)` to resize to at preparation.
      channels: for "image_folder": 3 (RGB, default) or 1.
      center_crop: for "image_folder": crop to the target aspect ratio before resizing.
      labels: for "image_folder": None (auto), True or False; see `scan_image_folder`.

    Returns:
      The `tfds.core.DatasetBuilder`.

    Example:
      >>> builder = prepare("toy2d/two_moons")
      >>> builder.info.splits["train"].num_examples
      50000
    """
    builder = _make_builder(
        name, data_dir=data_dir, folder=folder, image_size=image_size, channels=channels,
        center_crop=center_crop, labels=labels,
    )
    if _parse_name(name)[0] in BUILDERS:
        _prepare_own(builder)
    return builder


class _Source:
    """Random-access source (`len`, `[i]`, batched `_getitems`) over a TFDS data source."""

    def __init__(self, source):
        self._source = source
        self._batched = hasattr(source, "__getitems__")

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int):
        return self._source[index]

    def _getitems(self, indices):
        indices = [int(i) for i in indices]
        if self._batched:
            try:
                return list(self._source.__getitems__(indices))
            except TypeError:  # tfds.testing.mock_data's source lacks batched reads.
                self._batched = False
        return [self._source[i] for i in indices]

    def __repr__(self) -> str:
        return f"diffax.data source over {self._source!r}"


def _check_split(builder, split: str) -> None:
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a split name like 'train', got {split!r}.")
    if builder.is_prepared():
        base = split.split("[", 1)[0]
        if base not in builder.info.splits:
            raise ValueError(
                f"Unknown split {split!r} (argument `split`) for dataset {builder.name!r}; "
                f"available: {sorted(builder.info.splits)}."
            )


def _source_from_builder(builder, name: str, split: str) -> _Source:
    _check_split(builder, split)
    try:
        source = builder.as_data_source(split=split)
    except Exception as e:
        if not builder.is_prepared():
            raise DatasetNotPreparedError(_not_prepared_message(builder, name)) from e
        if builder.info.file_format not in (
            tfds.core.FileFormat.ARRAY_RECORD, tfds.core.FileFormat.PARQUET
        ):
            raise DatasetNotPreparedError(_tfrecord_message(builder, name)) from e
        raise
    return _Source(source)


def data_source(
    name: str,
    *,
    split: str,
    data_dir=None,
    folder=None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    center_crop: bool = True,
    labels: bool | None = None,
):
    """Random-access source of one split: `len(source)`, `source[i]` -> dict of numpy values.

    Examples are the dataset's own feature dicts (e.g. `{"image": uint8 [H, W, C], "label":
    int}` or `{"x": float32 [2], "label": int}`), in the order stored on disk (TFDS's fixed,
    shuffled order). No tensorflow, no tf.data. Arguments as in `prepare`.

    Raises:
      ValueError: unknown `name` or `split`.
      DatasetNotPreparedError: a TFDS dataset that is missing from `data_dir`, with the
        command that prepares it.

    Example:
      >>> source = data_source("digits", split="test")
      >>> len(source), source[0]["image"].shape
      (300, (8, 8, 1))
    """
    builder = prepare(
        name, data_dir=data_dir, folder=folder, image_size=image_size, channels=channels,
        center_crop=center_crop, labels=labels,
    )
    return _source_from_builder(builder, name, split)


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset.

    Attributes:
      name: the dataset name as given.
      shape: shape of one example's `x` (after `image_size`), e.g. `(8, 8, 1)` or `(2,)`.
      dtype: stored dtype of `x`: "uint8" for images, "float32" for vectors.
      is_image: whether `x` is a uint8 image `[H, W, C]`.
      value_range: range of the stored values: `(0, 255)` for images, None for real vectors.
      num_classes: number of label classes, or None for unlabelled data.
      class_names: names of the classes, or None.
      num_examples: examples per prepared split, e.g. `{"train": 1497, "test": 300}`
        (empty when the dataset is not prepared).
      x_key: feature holding `x` ("image" or "x").
      label_key: feature holding the label ("label"), or None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    is_image: bool
    value_range: tuple[float, float] | None
    num_classes: int | None
    class_names: tuple[str, ...] | None
    num_examples: dict[str, int]
    x_key: str
    label_key: str | None


def _info_from_builder(builder, name: str, image_size=None) -> DataInfo:
    features = builder.info.features
    label_key = None
    num_classes = class_names = None
    if "label" in features and isinstance(features["label"], tfds.features.ClassLabel):
        label_key = "label"
        num_classes = features["label"].num_classes
        class_names = tuple(features["label"].names)
    if "image" in features and isinstance(features["image"], tfds.features.Image):
        shape = tuple(features["image"].shape)
        size = _check_image_size(image_size)
        if size is not None:
            shape = (*size, shape[-1])
        if None in shape:
            raise ValueError(
                f"Images of {name!r} have no fixed size {shape}: pass image_size to resize them."
            )
        if np.dtype(features["image"].np_dtype) != np.uint8:
            raise ValueError(f"Images of {name!r} are not uint8.")
        x_key, dtype, is_image, value_range = "image", "uint8", True, (0.0, 255.0)
    elif "x" in features:
        if image_size is not None:
            raise ValueError(f"image_size applies to image datasets only, not {name!r}.")
        x_key, shape = "x", tuple(features["x"].shape)
        dtype, is_image, value_range = np.dtype(features["x"].np_dtype).name, False, None
    else:
        raise ValueError(
            f"Dataset {name!r} has neither an 'image' (Image) nor an 'x' feature; its features "
            f"are {sorted(features.keys())}."
        )
    num_examples = {}
    if builder.is_prepared():
        num_examples = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    return DataInfo(
        name=name, shape=shape, dtype=dtype, is_image=is_image, value_range=value_range,
        num_classes=num_classes, class_names=class_names, num_examples=num_examples,
        x_key=x_key, label_key=label_key,
    )


def dataset_info(
    name: str,
    *,
    data_dir=None,
    folder=None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    center_crop: bool = True,
    labels: bool | None = None,
) -> DataInfo:
    """Metadata of a dataset: shape, dtype, value range, classes, examples per split.

    diffax's own datasets are prepared first if needed (arguments as in `prepare`).
    `image_size` gives the shape after resizing (for "image_folder" the resizing happens at
    preparation, for other image datasets in the input pipeline).

    Example:
      >>> info = dataset_info("digits")
      >>> info.shape, info.num_classes, info.num_examples
      ((8, 8, 1), 10, {'train': 1497, 'test': 300})
    """
    builder = prepare(
        name, data_dir=data_dir, folder=folder, image_size=image_size, channels=channels,
        center_crop=center_crop, labels=labels,
    )
    return _info_from_builder(builder, name, image_size)


def _resolve(name: str, *, split: str, **kwargs: Any) -> tuple[_Source, DataInfo]:
    builder = prepare(name, **kwargs)
    info = _info_from_builder(builder, name, kwargs.get("image_size"))
    return _source_from_builder(builder, name, split), info
