"""Evaluation: sample-quality metrics that need no downloaded weights, sample grids and plots.

* :mod:`~diffax.evaluation.metrics`: a whitened PCA feature space fitted on the training split
  (:func:`fit_pca`, :func:`pca_features`), the Fréchet distance between Gaussian fits of two
  feature sets (:func:`gaussian_statistics`, :func:`frechet_distance`), the sliced Wasserstein
  distance (:func:`sliced_wasserstein`) and nearest-neighbour distances
  (:func:`nearest_neighbor_distances`); the task metrics :func:`psnr`, :func:`auroc` and
  :func:`segmentation_metrics`;
* :mod:`~diffax.evaluation.modes`: the digit classifier (:func:`fit_digit_classifier`), its
  Inception-score-like :func:`digit_score`, and mode coverage of stacked digits
  (:func:`stacked_modes`, :func:`mode_coverage`);
* :mod:`~diffax.evaluation.intervals`: 95% intervals of the task metrics (percentile
  bootstrap over test items, Wilson for proportions);
* :mod:`~diffax.evaluation.plots`: image grids (:func:`image_grid`, :func:`write_png`) and
  scatter plots of 2-D samples over the data density (:func:`scatter_png`).

``diffax eval`` (:mod:`diffax.cli`) combines them with the NFE of the sampler and the NLL of
:func:`diffax.log_likelihood`.

Example:
  >>> import numpy as np
  >>> from diffax import evaluation
  >>> rng = np.random.default_rng(0)
  >>> train, test, samples = (rng.normal(size=(500, 8)) for _ in range(3))
  >>> pca = evaluation.fit_pca(train, num_components=4)
  >>> stats = [evaluation.gaussian_statistics(evaluation.pca_features(pca, x))
  ...          for x in (samples, test)]
  >>> fd = evaluation.frechet_distance(*stats[0], *stats[1])
  >>> bool(0 <= fd < 0.2)
  True
"""

from diffax.evaluation import metrics, modes, plots
from diffax.evaluation.metrics import (
    PCA,
    auroc,
    fit_pca,
    frechet_distance,
    gaussian_statistics,
    nearest_neighbor_distances,
    pca_features,
    psnr,
    segmentation_metrics,
    sliced_wasserstein,
    ssim,
)
from diffax.evaluation.modes import (
    digit_probabilities,
    digit_score,
    fit_digit_classifier,
    mode_coverage,
    stacked_modes,
)
from diffax.evaluation.plots import image_grid, scatter_png, write_png

__all__ = [
    "metrics",
    "modes",
    "plots",
    "fit_digit_classifier",
    "digit_probabilities",
    "digit_score",
    "stacked_modes",
    "mode_coverage",
    "PCA",
    "psnr",
    "auroc",
    "segmentation_metrics",
    "fit_pca",
    "pca_features",
    "gaussian_statistics",
    "frechet_distance",
    "sliced_wasserstein",
    "nearest_neighbor_distances",
    "ssim",
    "image_grid",
    "write_png",
    "scatter_png",
]
