"""Datasets and input pipelines: TFDS builders that need no download, grain pipelines.

Datasets are named by strings:

- `"toy2d/<distribution>"`: 2-D toy data (eight_gaussians, two_moons, checkerboard,
  swiss_roll, spirals), train 50,000 / test 10,000 points with fixed seeds;
- `"digits"`: scikit-learn's 8x8 digits as uint8 `[8, 8, 1]` images, train 1497 / test 300;
- `"digits_upsampled/16"`, `"digits_upsampled/32"`: the same digits bilinearly upsampled
  (`downsample_digits` takes samples back to 8x8 for the digits yardsticks);
- `"digits_stacked"`: three digits on the channels of `[8, 8, 3]` images (1000 modes, label
  `100 d0 + 10 d1 + d2`), train 20,000 / test 3,000 with fixed seeds;
- `"phantoms/32"`, `"phantoms/64"`: random-ellipse head phantoms (Shepp-Logan-like
  intensities) with segmentation maps, train 4000 / test 500 with fixed seeds;
- `"image_folder"` with `folder=...`: any local folder of images (class subfolders optional);
- any other TFDS name ("mnist", "cifar10", "celeb_a", ...) already prepared in array_record
  format under `data_dir` (diffax never downloads; a missing one raises
  `DatasetNotPreparedError` saying how to prepare it).

diffax's own builders are prepared into `data_dir` (default `default_data_dir()`) on first
use. Everything is read with TFDS's random-access data sources; tensorflow is not needed.

Example:
  >>> from diffax import data
  >>> it = data.make_iterator("digits", batch_size=32, seed=0)  # prepared on first use
  >>> batch = next(it)
  >>> batch["x"].shape, batch["x"].dtype, batch["label"].shape
  ((32, 8, 8, 1), dtype('float32'), (32,))
  >>> images = data.from_model_range(batch["x"])  # back to uint8 in 0..255
"""

from diffax.data._datasets import (
    BUILDERS,
    DataInfo,
    DatasetNotPreparedError,
    data_source,
    dataset_info,
    default_data_dir,
    prepare,
)
from diffax.data._digits import (
    DIGITS_NUM_TEST,
    DIGITS_NUM_TRAIN,
    Digits,
    digits_split_indices,
    digits_to_uint8,
    uint8_to_digits,
)
from diffax.data._digits_stacked import (
    STACKED_NUM_MODES,
    STACKED_NUM_TEST,
    STACKED_NUM_TRAIN,
    DigitsStacked,
    stack_digits,
    stacked_label,
)
from diffax.data._digits_upsampled import (
    DIGITS_UPSAMPLED_SIZES,
    DigitsUpsampled,
    downsample_digits,
    upsample_digits,
)
from diffax.data._image_folder import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    ImageFolder,
    ImageFolderConfig,
    resize_image,
    scan_image_folder,
)
from diffax.data._phantoms import (
    PHANTOM_CLASSES,
    PHANTOM_SIZES,
    Phantoms,
    PhantomsConfig,
    sample_phantoms,
)
from diffax.data._pipeline import (
    DEFAULT_VALUE_RANGE,
    from_model_range,
    load_split,
    make_dataset,
    make_iterator,
    to_model_range,
)
from diffax.data._text import (
    TEXT_ALPHABET,
    TEXT_SEQ_LEN,
    DigitsTokens,
    PydocText,
    corpus_splits,
    decode_text,
    encode_text,
    normalize_text,
    pydoc_corpus,
)
from diffax.data._toy2d import (
    EIGHT_GAUSSIANS_MEANS,
    EIGHT_GAUSSIANS_STD,
    TOY2D_DISTRIBUTIONS,
    TOY2D_NUM_TEST,
    TOY2D_NUM_TRAIN,
    Toy2D,
    Toy2DConfig,
    sample_toy2d,
)

__all__ = [
    "BUILDERS",
    "DEFAULT_VALUE_RANGE",
    "DIGITS_NUM_TEST",
    "DIGITS_NUM_TRAIN",
    "DIGITS_UPSAMPLED_SIZES",
    "DigitsUpsampled",
    "DigitsStacked",
    "STACKED_NUM_MODES",
    "STACKED_NUM_TEST",
    "STACKED_NUM_TRAIN",
    "stack_digits",
    "stacked_label",
    "downsample_digits",
    "upsample_digits",
    "DataInfo",
    "DatasetNotPreparedError",
    "Digits",
    "DigitsTokens",
    "PydocText",
    "TEXT_ALPHABET",
    "TEXT_SEQ_LEN",
    "corpus_splits",
    "decode_text",
    "encode_text",
    "normalize_text",
    "pydoc_corpus",
    "EIGHT_GAUSSIANS_MEANS",
    "EIGHT_GAUSSIANS_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageDecodeError",
    "ImageFolderConfig",
    "TOY2D_DISTRIBUTIONS",
    "TOY2D_NUM_TEST",
    "TOY2D_NUM_TRAIN",
    "PHANTOM_CLASSES",
    "PHANTOM_SIZES",
    "Phantoms",
    "PhantomsConfig",
    "Toy2D",
    "Toy2DConfig",
    "data_source",
    "dataset_info",
    "default_data_dir",
    "digits_split_indices",
    "digits_to_uint8",
    "from_model_range",
    "load_split",
    "make_dataset",
    "make_iterator",
    "prepare",
    "resize_image",
    "sample_phantoms",
    "sample_toy2d",
    "scan_image_folder",
    "to_model_range",
    "uint8_to_digits",
]
