"""The `phantoms` TFDS builder: random-ellipse head phantoms with Shepp-Logan-like intensities.

Procedural (numpy, fixed seeds per split), no download. Each phantom is a sum of ellipse
indicator functions as in Shepp & Logan (1974) in the "modified" contrast of Toft (1996): an
outer ellipse of intensity 1 (skull), an inner one of -0.8 (brain: 0.2), and 3 to 6 small
ellipses inside the brain adding +/-0.1 to 0.4. Intensities are area-averaged over 4x4
sub-pixels (partial-volume edges, as a scanner sees them). Each example also has a label map
(0 background, 1 skull, 2 brain, 3 small structures; at pixel centres) for segmentation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._local import LocalBuilder

PHANTOM_SIZES = (32, 64)
PHANTOM_NUM_TRAIN = 4000
PHANTOM_NUM_TEST = 500
PHANTOM_CLASSES = ("background", "skull", "brain", "structure")
_SPLIT_SEEDS = {"train": 0, "test": 1}
_SUPERSAMPLE = 4


def _inside(x: np.ndarray, y: np.ndarray, centre, axes, angle) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = (x - centre[0]) * c + (y - centre[1]) * s
    v = -(x - centre[0]) * s + (y - centre[1]) * c
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def _ellipses(rng: np.random.Generator) -> list[tuple[tuple, tuple, float, float, int]]:
    """``(centre, axes, angle, intensity, label)`` of one phantom, in ``[-1, 1]^2``."""
    centre = tuple(rng.uniform(-0.04, 0.04, 2))
    axes = (rng.uniform(0.66, 0.80), rng.uniform(0.80, 0.93))
    angle = rng.uniform(-0.3, 0.3)
    shrink = rng.uniform(0.86, 0.92)
    brain = (axes[0] * shrink, axes[1] * shrink)
    out = [(centre, axes, angle, 1.0, 1), (centre, brain, angle, -0.8, 2)]
    for _ in range(int(rng.integers(3, 7))):
        r, phi = 0.6 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        local = (r * brain[0] * np.cos(phi), r * brain[1] * np.sin(phi))
        ca, sa = np.cos(angle), np.sin(angle)
        c = (centre[0] + ca * local[0] - sa * local[1], centre[1] + sa * local[0] + ca * local[1])
        sign = 1.0 if rng.uniform() < 0.6 else -1.0
        out.append((c, (rng.uniform(0.06, 0.28), rng.uniform(0.06, 0.28)),
                    rng.uniform(0, np.pi), sign * rng.uniform(0.1, 0.4), 3))
    return out


def sample_phantoms(num: int, size: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``num`` random phantoms ``size x size``: intensities in ``[0, 1]`` and label maps.

    This is the generator behind the ``phantoms/<size>`` builder: its train split is
    ``sample_phantoms(4000, size, seed=0)``, its test split ``sample_phantoms(500, size,
    seed=1)`` (the phantom of a seed does not depend on ``size``: the same ellipses,
    rasterised at another resolution).

    Returns:
      ``(x, labels)``: float64 ``[num, size, size]`` in ``[0, 1]`` (area-averaged) and int32
      ``[num, size, size]`` in ``0..3`` (:data:`PHANTOM_CLASSES`, at pixel centres; a pixel
      in a small ellipse is ``structure``).

    Example:
      >>> x, labels = sample_phantoms(2, 32, seed=0)
      >>> x.shape, float(x.min()) >= 0.0, float(x.max()) <= 1.0, np.unique(labels).tolist()
      ((2, 32, 32), True, True, [0, 1, 2, 3])
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"sample_phantoms: `size` must be an int >= 4, got {size!r}.")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"sample_phantoms: `num` must be an int >= 0, got {num!r}.")
    rng = np.random.default_rng(seed)
    fine = size * _SUPERSAMPLE
    coords = (np.arange(fine) + 0.5) / fine * 2.0 - 1.0
    fx, fy = np.meshgrid(coords, -coords)
    pc = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    px, py = np.meshgrid(pc, -pc)
    images = np.zeros((num, size, size))
    labels = np.zeros((num, size, size), np.int32)
    for n in range(num):
        img = np.zeros((fine, fine))
        lab = np.zeros((size, size), np.int32)
        for centre, axes, angle, value, label in _ellipses(rng):
            img += value * _inside(fx, fy, centre, axes, angle)
            inside = _inside(px, py, centre, axes, angle)
            lab = np.where(inside & ((label != 3) | (lab == 2)), label, lab)
        images[n] = np.clip(img, 0.0, 1.0).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE
                                                   ).mean(axis=(1, 3))
        labels[n] = lab
    return images, labels


@dataclasses.dataclass
class PhantomsConfig(tfds.core.BuilderConfig):
    """BuilderConfig of :class:`Phantoms`: the image side (config names "32" and "64")."""

    size: int = 32


class Phantoms(LocalBuilder, skip_registration=True):
    """TFDS builder `phantoms`: random-ellipse head phantoms; configs "32" and "64".

    Features: `image` uint8 `[S, S, 1]` (intensity `* 255`, rounded), `segmentation` uint8
    `[S, S, 1]` (labels 0..3: :data:`PHANTOM_CLASSES`). Splits: train 4000 (seed 0), test 500
    (seed 1), from :func:`sample_phantoms`. Needs no download.
    """

    name = "phantoms"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [PhantomsConfig(name=str(s), size=s,
                                      description=f"{s}x{s} random-ellipse phantoms")
                       for s in PHANTOM_SIZES]
    DEFAULT_CONFIG_NAME = "32"

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Random-ellipse head phantoms with Shepp-Logan-like intensities "
                         "(skull 1, brain 0.2, structures +/-0.1..0.4), area-averaged; "
                         "label maps background/skull/brain/structure."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 1)),
                "segmentation": tfds.features.Image(shape=(s, s, 1)),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        sizes = {"train": PHANTOM_NUM_TRAIN, "test": PHANTOM_NUM_TEST}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split: str, num: int):
        from PIL import Image

        x, labels = sample_phantoms(num, self.builder_config.size, seed=_SPLIT_SEEDS[split])
        images = np.round(x * 255.0).astype(np.uint8)
        for i in range(num):
            yield i, {"image": Image.fromarray(images[i]),
                      "segmentation": Image.fromarray(labels[i].astype(np.uint8))}
