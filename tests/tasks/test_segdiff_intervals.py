"""The SegDiff example's pooled Dice / IoU from per-image counts, and their intervals."""

import numpy as np

from diffax.evaluation.metrics import segmentation_metrics
from diffax.tasks import segdiff as sd
from diffax.tasks.examples import segdiff as example


def test_pooled_counts_equal_the_pixel_pooled_metrics():
    # 3 classes, class 2 absent from one half of the images: pooling per-image counts must give
    # exactly the Dice / IoU over all pixels (the same classes left out).
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (10, 6, 6))
    pred = np.where(rng.random((10, 6, 6)) < 0.7, target, rng.integers(0, 3, (10, 6, 6)))
    for p, t in ((pred, target), (np.minimum(pred, 1), np.minimum(target, 1))):
        dice, iou = example._pooled(example._counts(p, t, 3))
        assert np.isclose(dice, sd.dice(p, t, 3)["mean_foreground_dice"], rtol=1e-12)
        assert np.isclose(iou, segmentation_metrics(p, t, 3)["mean_iou"], rtol=1e-12)


def test_scores_intervals_bracket_and_paired_gain():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, (30, 8, 8))
    good = np.where(rng.random(target.shape) < 0.9, target, 1 - target)
    bad = np.where(rng.random(target.shape) < 0.6, target, 1 - target)
    s = example.scores(good, target, 2, versus=bad)
    lo, hi = s["mean_foreground_dice_interval"]
    assert lo < s["mean_foreground_dice"] < hi
    lo, hi = s["mean_iou_interval"]
    assert lo < s["mean_iou"] < hi
    # Dice of a 10% vs a 40% pixel flip of balanced labels: about 0.9 vs 0.6, so the paired
    # gain lies well inside (0.2, 0.4) on 30 x 64 pixels
    lo, hi = s["dice_gain_interval"]
    assert 0.2 < lo < hi < 0.4
