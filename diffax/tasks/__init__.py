"""Downstream tasks built on diffax's denoisers: one library module per task (its algorithms);
each task's digits example is in :mod:`diffax.tasks.examples`.

* :mod:`~diffax.tasks.classifier`: noise-conditional classifiers for classifier guidance
  (Dhariwal & Nichol 2021): :class:`~diffax.tasks.classifier.NoisyClassifier`,
  :class:`~diffax.tasks.classifier.ClassifierLoss`, :func:`~diffax.tasks.classifier.log_prob_fn`.
* :mod:`~diffax.tasks.super_resolution`: SR3-style conditional denoisers
  (:class:`~diffax.tasks.super_resolution.ConditionalUNet`), PSNR.
* :mod:`~diffax.tasks.purification`: SDEdit / DiffPure against FGSM and Gaussian noise.
* :mod:`~diffax.tasks.anomaly`: AnoDDPM partial-diffusion reconstruction, JAX simplex noise,
  anomaly scores and AUROC.
* :mod:`~diffax.tasks.segmentation`: UNet decoder features (Baranchuk et al. 2022) and a pixel
  classifier.
* :mod:`~diffax.tasks.inverse_problems`: inpainting (replacement, RePaint, DPS), deblurring
  and super-resolution with one unconditional denoiser, measured on digits.
* :mod:`~diffax.tasks.medical`: sparse-view CT and undersampled MRI on procedural phantoms
  (Song et al. 2022's consistency sampler and DPS vs FBP / zero-filling).

:func:`fit` (:func:`diffax.train.fit`) trains any ``loss_fn(params, key, batch)`` on in-memory
arrays with diffax's train step; :func:`denoising_loss` is the examples' eps-prediction loss.
The digits examples are ``diffax.tasks.examples.<task>.run(config, workdir)``; the configs are
in ``configs/tasks/`` and ``diffax task CONFIG --workdir DIR`` (or ``python -m diffax.tasks
CONFIG --workdir DIR``) runs one through :func:`run`.
"""

from diffax.tasks import (
    anomaly,
    classifier,
    inverse_problems,
    medical,
    purification,
    segmentation,
    super_resolution,
)
from diffax.tasks.anomaly import (
    NoiseDenoisingLoss,
    anomaly_scores,
    auroc,
    gaussian_noise,
    octave_simplex,
    reconstruct,
    simplex2d,
    simplex_noise,
)
from diffax.tasks.classifier import ClassifierLoss, NoisyClassifier, log_prob_fn
from diffax.tasks.purification import fgsm
from diffax.tasks.segmentation import (
    PixelClassifier,
    decoder_blocks,
    segmentation_metrics,
    unet_features,
)
from diffax.tasks.super_resolution import ConditionalUNet, psnr
from diffax.train.in_memory import FitResult, fit

__all__ = [
    "TASKS",
    "run",
    # modules
    "anomaly",
    "classifier",
    "inverse_problems",
    "medical",
    "purification",
    "segmentation",
    "super_resolution",
    # training
    "fit",
    "FitResult",
    "denoising_loss",
    # classifier guidance
    "NoisyClassifier",
    "ClassifierLoss",
    "log_prob_fn",
    # super-resolution
    "ConditionalUNet",
    "psnr",
    # purification
    "fgsm",
    # anomaly detection
    "simplex2d",
    "octave_simplex",
    "simplex_noise",
    "gaussian_noise",
    "NoiseDenoisingLoss",
    "reconstruct",
    "anomaly_scores",
    "auroc",
    # segmentation
    "decoder_blocks",
    "unet_features",
    "PixelClassifier",
    "segmentation_metrics",
]

TASKS = ("classifier", "super_resolution", "purification", "anomaly", "segmentation",
         "inverse_problems", "medical")
"""The tasks with an example in :mod:`diffax.tasks.examples`, named by a task config's ``task``
key."""


def denoising_loss(process, *, cond_keys: tuple[str, ...] = ()):
    """The eps-prediction :class:`diffax.losses.DenoisingLoss` the task examples train with.

    Uniform times, eps-MSE, the network sees ``t`` itself (UNets with Fourier embeddings).

    Example:
      >>> import diffax
      >>> denoising_loss(diffax.VP()).parameterization.prediction
      'eps'
    """
    from diffax import losses

    return losses.DenoisingLoss(process=process, weighting=losses.EpsMSE(),
                                parameterization=losses.Predict(prediction="eps"),
                                cond_keys=tuple(cond_keys))


def run(config, workdir: str) -> dict:
    """Runs the example ``config.task`` names (``diffax.tasks.examples.<task>.run(config,
    workdir)``); returns its metrics (also written to ``workdir/metrics.json``).

    The config is checked once (:func:`diffax.train.options.parse_task_config`) and the task
    module receives the checked options.

    Raises:
      ValueError: if ``config.task`` is not one of :data:`TASKS`, or a key is bad (a
        :class:`diffax.train.options.ConfigError` naming it).
    """
    import importlib

    from diffax.train import options

    opts = options.parse_task_config(config)
    return importlib.import_module(f"diffax.tasks.examples.{opts.task}").run(opts, workdir)
