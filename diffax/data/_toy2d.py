"""Two-dimensional toy distributions and the `toy2d` TFDS builder (no download).

Each distribution is a pure numpy sampler `(num, rng) -> (x [N, 2] float32, label [N] | None)`.
The builder writes fixed-size train/test splits drawn with fixed seeds, so two preparations of
the same config give byte-identical examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._local import LocalBuilder

# --- eight Gaussians on a circle -------------------------------------------------------------

EIGHT_GAUSSIANS_RADIUS = 2.0
EIGHT_GAUSSIANS_STD = 0.25
#: Means `[8, 2]` of the `toy2d/eight_gaussians` mixture: `radius * (cos, sin)(2 pi k / 8)`.
EIGHT_GAUSSIANS_MEANS = EIGHT_GAUSSIANS_RADIUS * np.stack(
    [np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=-1
)


def _eight_gaussians(num: int, rng: np.random.Generator):
    label = rng.integers(0, 8, size=num)
    x = EIGHT_GAUSSIANS_MEANS[label] + EIGHT_GAUSSIANS_STD * rng.standard_normal((num, 2))
    return x, label


def _two_moons(num: int, rng: np.random.Generator):
    # scikit-learn's make_moons geometry, with uniform angles, Gaussian noise of std 0.05,
    # then centred and scaled by 2: outer moon label 0, inner moon label 1.
    label = rng.integers(0, 2, size=num)
    angle = rng.uniform(0.0, np.pi, size=num)
    outer = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    inner = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=-1)
    x = np.where(label[:, None] == 0, outer, inner) + 0.05 * rng.standard_normal((num, 2))
    return 2.0 * (x - np.array([0.5, 0.25])), label


def _checkerboard(num: int, rng: np.random.Generator):
    # 4 x 4 board on [-2, 2]^2; the 8 cells (i, j) with i + j even are filled uniformly.
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    cell = cells[rng.integers(0, len(cells), size=num)]
    x = -2.0 + cell + rng.uniform(0.0, 1.0, size=(num, 2))
    return x, None


def _swiss_roll(num: int, rng: np.random.Generator):
    # scikit-learn's swiss roll projected on its (x, z) plane: t in [1.5 pi, 4.5 pi],
    # x = (t cos t, t sin t) / 5 plus Gaussian noise of std 0.1.
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, size=num))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=-1) / 5.0
    return x + 0.1 * rng.standard_normal((num, 2)), None


def _spirals(num: int, rng: np.random.Generator):
    # Two interleaved spirals (FFJORD's "2spirals"): arm 0 and its point reflection, arm 1.
    label = rng.integers(0, 2, size=num)
    n = np.sqrt(rng.uniform(0.0, 1.0, size=num)) * 3.0 * np.pi
    arm = np.stack(
        [-np.cos(n) * n + 0.5 * rng.uniform(0.0, 1.0, size=num),
         np.sin(n) * n + 0.5 * rng.uniform(0.0, 1.0, size=num)],
        axis=-1,
    )
    x = np.where(label[:, None] == 0, arm, -arm) / 3.0 + 0.1 * rng.standard_normal((num, 2))
    return x, label


@dataclasses.dataclass(frozen=True)
class _Distribution:
    sampler: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray | None]]
    num_classes: int | None
    description: str


TOY2D_DISTRIBUTIONS: dict[str, _Distribution] = {
    "eight_gaussians": _Distribution(
        _eight_gaussians, 8,
        "Mixture of 8 equally weighted isotropic Gaussians (std 0.25) centred on a circle of "
        "radius 2; label = component index (means: EIGHT_GAUSSIANS_MEANS).",
    ),
    "two_moons": _Distribution(
        _two_moons, 2,
        "Two interleaving half circles (noise std 0.05 before scaling by 2); label = moon.",
    ),
    "checkerboard": _Distribution(
        _checkerboard, None,
        "Uniform on the 8 filled cells of a 4x4 checkerboard covering [-2, 2]^2; no labels.",
    ),
    "swiss_roll": _Distribution(
        _swiss_roll, None,
        "2-D swiss roll: (t cos t, t sin t) / 5, t in [1.5 pi, 4.5 pi], noise std 0.1; "
        "no labels.",
    ),
    "spirals": _Distribution(
        _spirals, 2,
        "Two interleaved spirals (noise std 0.1); label = arm.",
    ),
}

TOY2D_NUM_TRAIN = 50_000
TOY2D_NUM_TEST = 10_000
_SPLIT_SEEDS = {"train": 0, "test": 1}


def sample_toy2d(distribution: str, num: int, *, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Draws `num` points from a named 2-D toy distribution (pure numpy, deterministic).

    This is the sampler behind the `toy2d` builder: `toy2d/<distribution>` holds
    `sample_toy2d(distribution, 50_000, seed=0)` as its train split and
    `sample_toy2d(distribution, 10_000, seed=1)` as its test split (in a shuffled order).

    Args:
      distribution: one of `TOY2D_DISTRIBUTIONS`: "eight_gaussians", "two_moons",
        "checkerboard", "swiss_roll", "spirals".
      num: number of points.
      seed: seed of `np.random.default_rng`.

    Returns:
      `(x, label)`: `x` float32 `[num, 2]`; `label` int32 `[num]` (mixture component, moon or
      spiral arm) or None for distributions without classes.

    Example:
      >>> x, label = sample_toy2d("eight_gaussians", 4, seed=0)
      >>> x.shape, x.dtype, label.shape
      ((4, 2), dtype('float32'), (4,))
    """
    if distribution not in TOY2D_DISTRIBUTIONS:
        raise ValueError(
            f"Unknown toy2d distribution {distribution!r} (argument `distribution`); "
            f"choose one of {sorted(TOY2D_DISTRIBUTIONS)}."
        )
    if num < 0:
        raise ValueError(f"num must be non-negative, got {num}.")
    x, label = TOY2D_DISTRIBUTIONS[distribution].sampler(int(num), np.random.default_rng(seed))
    x = np.asarray(x, dtype=np.float32)
    return x, (None if label is None else np.asarray(label, dtype=np.int32))


@dataclasses.dataclass
class Toy2DConfig(tfds.core.BuilderConfig):
    """BuilderConfig of `Toy2D`: one per entry of `TOY2D_DISTRIBUTIONS` (the config name)."""

    num_classes: int | None = None


class Toy2D(LocalBuilder, skip_registration=True):
    """TFDS builder `toy2d`: 2-D toy distributions; configs = `TOY2D_DISTRIBUTIONS`.

    Splits: `train` (50,000 points, seed 0) and `test` (10,000 points, seed 1).
    Features: `x` float32 `[2]`; `label` (ClassLabel) for eight_gaussians (8), two_moons (2)
    and spirals (2). Needs no download; not registered in TFDS's global registry (use
    `diffax.data` functions with `name="toy2d/<distribution>"`).
    """

    name = "toy2d"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        Toy2DConfig(name=key, description=dist.description, num_classes=dist.num_classes)
        for key, dist in TOY2D_DISTRIBUTIONS.items()
    ]
    DEFAULT_CONFIG_NAME = "eight_gaussians"

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"x": tfds.features.Tensor(shape=(2,), dtype=np.float32)}
        if self.builder_config.num_classes is not None:
            features["label"] = tfds.features.ClassLabel(
                num_classes=self.builder_config.num_classes
            )
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("x", "label") if "label" in features else None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        sizes = {"train": TOY2D_NUM_TRAIN, "test": TOY2D_NUM_TEST}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split: str, num: int):
        x, label = sample_toy2d(self.builder_config.name, num, seed=_SPLIT_SEEDS[split])
        for i in range(num):
            example = {"x": x[i]}
            if label is not None:
                example["label"] = int(label[i])
            yield i, example
