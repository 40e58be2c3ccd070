"""The `digits_upsampled/<size>` TFDS builder: the 8x8 digits bilinearly upsampled (no download).

Latent diffusion needs images large enough for an f = 2, 4 or 8 autoencoder; scikit-learn's 8x8
digits are too small. This builder stores the very same images (the `digits` builder's split,
labels and `digits_to_uint8` grey levels) at 16x16 or 32x32.

Interpolation (stated once, here): separable *bilinear* interpolation with half-pixel centres
and edge clamping, as `jax.image.resize(..., "linear")` and OpenCV's `INTER_LINEAR` do for
upsampling: output pixel `j` of a size-`S` axis samples the input axis at
`u = (j + 0.5) * 8 / S - 0.5`, clamped to `[0, 7]`, linearly between its two neighbours.
The float result (of the 0..255 grey levels) is rounded half to even to uint8.

The way back to the 8x8 yardstick (FD in PCA features, the digit scores of
`diffax.evaluation`): :func:`downsample_digits` applies the *least-squares inverse* of that
interpolation (`D = (U^T U)^-1 U^T` per axis, `U` the `S x 8` interpolation matrix), so that
`D U = I`: an upsampled real digit comes back to its own 8x8 grey levels up to the uint8
rounding of the stored image (:func:`round_trip_bound` bounds that error by 2.0 (16x16) and
2.17 (32x32) grey levels before the final rounding; measured on every image: at most 1).
Samples are clipped to 0..255 and rounded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._digits import digits_split_indices, digits_to_uint8
from diffax.data._local import LocalBuilder

DIGITS_UPSAMPLED_SIZES = (16, 32)
_BASE = 8


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < _BASE:
        raise ValueError(f"`size` must be an integer >= {_BASE}, got {size!r}.")
    return int(size)


def interpolation_matrix(size: int, base: int = _BASE) -> np.ndarray:
    """The `[size, base]` matrix `U` of 1-D bilinear interpolation (half-pixel centres, edges
    clamped) from `base` to `size` samples; each row sums to 1.

    Example:
      >>> interpolation_matrix(16)[:3, :3].tolist()
      [[1.0, 0.0, 0.0], [0.75, 0.25, 0.0], [0.25, 0.75, 0.0]]
    """
    size = _check_size(size)
    u = np.clip((np.arange(size) + 0.5) * base / size - 0.5, 0.0, base - 1.0)
    lo = np.minimum(np.floor(u).astype(np.int64), base - 2)
    frac = u - lo
    m = np.zeros((size, base))
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] += frac
    return m


def upsample_digits(images, size: int) -> np.ndarray:
    """8x8 uint8 images `[..., 8, 8, C]` (or `[..., 8, 8]`) -> uint8 `[..., size, size, C]` by
    bilinear interpolation (see the module docstring), rounded half to even.

    Example:
      >>> x = np.zeros((8, 8, 1), np.uint8); x[3, 4] = 255
      >>> upsample_digits(x, 16).shape
      (16, 16, 1)
    """
    x = np.asarray(images, np.float64)
    channels = x.ndim >= 3 and x.shape[-3:-1] == (_BASE, _BASE)
    if not channels and x.shape[-2:] != (_BASE, _BASE):
        raise ValueError(f"`images` must be 8x8 ([..., 8, 8] or [..., 8, 8, C]), got shape "
                         f"{x.shape}.")
    u = interpolation_matrix(size)
    if channels:
        y = np.einsum("ia,jb,...abc->...ijc", u, u, x)
    else:
        y = np.einsum("ia,jb,...ab->...ij", u, u, x)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _inverse_matrix(size: int) -> np.ndarray:
    u = interpolation_matrix(size)
    return np.linalg.solve(u.T @ u, u.T)  # [8, size]: D @ U = I


def downsample_digits(images, *, value_range=(0.0, 255.0)) -> np.ndarray:
    """Images `[N, S, S, C]` (S = 16 or 32, values in `value_range`) -> uint8 `[N, 8, 8, C]`:
    the least-squares inverse of :func:`upsample_digits`' interpolation, per axis, then
    clipped and rounded to 0..255. This is how samples on `digits_upsampled/<S>` are scored
    by the 8x8 digits yardsticks.

    Example:
      >>> from diffax import data
      >>> x = data.digits_to_uint8(np.arange(64).reshape(8, 8, 1) % 17)[None]
      >>> back = downsample_digits(upsample_digits(x, 16))
      >>> int(np.abs(back.astype(int) - x).max()) <= 1
      True
    """
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[1] % _BASE:
        raise ValueError(f"`images` must be square [N, S, S, C] with S a multiple of 8, got "
                         f"shape {x.shape}.")
    lo, hi = (float(v) for v in value_range)
    x = (x - lo) / (hi - lo) * 255.0
    d = _inverse_matrix(x.shape[1])
    y = np.einsum("ai,bj,nijc->nabc", d, d, x)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def round_trip_bound(size: int) -> float:
    """A bound on `|downsample(upsample(x)) - x|` before the final rounding, in grey levels:
    the stored image differs from the exact interpolation by at most 0.5 per pixel, and the
    2-D inverse `D (x) D` maps that to at most `0.5 * ||D||_inf^2` (max absolute row sum).

    Example:
      >>> round(round_trip_bound(16), 3), round(round_trip_bound(32), 3)
      (1.998, 2.166)
    """
    d = _inverse_matrix(_check_size(size))
    return 0.5 * float(np.abs(d).sum(axis=1).max()) ** 2


@dataclasses.dataclass
class DigitsUpsampledConfig(tfds.core.BuilderConfig):
    """BuilderConfig of :class:`DigitsUpsampled`: the image side (config names "16", "32")."""

    size: int = 16


class DigitsUpsampled(LocalBuilder, skip_registration=True):
    """TFDS builder `digits_upsampled`: the `digits` images bilinearly upsampled to 16x16 or
    32x32 (configs "16", "32"; see the module docstring for the interpolation).

    Features: `image` uint8 `[S, S, 1]`, `label` (10 classes), `index` (row in
    `sklearn.datasets.load_digits()`). Splits as `digits` (`digits_split_indices`): train 1497,
    test 300. Needs no download.
    """

    name = "digits_upsampled"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [DigitsUpsampledConfig(name=str(s), size=s,
                                             description=f"digits upsampled to {s}x{s}")
                       for s in DIGITS_UPSAMPLED_SIZES]
    DEFAULT_CONFIG_NAME = "16"

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self,
            description=("scikit-learn's 8x8 digits (grey levels (v*255 + 8) // 16) upsampled "
                         f"to {s}x{s} by bilinear interpolation with half-pixel centres and "
                         "clamped edges, rounded to uint8."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {split: self._generate_examples(indices)
                for split, indices in digits_split_indices().items()}

    def _generate_examples(self, indices):
        from PIL import Image
        from sklearn.datasets import load_digits

        data = load_digits()
        images = upsample_digits(digits_to_uint8(data.images), self.builder_config.size)
        for i in indices:
            yield int(i), {"image": Image.fromarray(images[i]),
                           "label": int(data.target[i]), "index": int(i)}
