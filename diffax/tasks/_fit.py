"""Task-side training helpers: :func:`denoising_loss`; :func:`fit` is :func:`diffax.train.fit`.

The in-memory training loop moved to :mod:`diffax.train.in_memory` (public as
``diffax.train.fit`` / ``diffax.train.FitResult``); the names stay importable here.
"""

from __future__ import annotations

from diffax.train.in_memory import FitResult, fit

__all__ = ["FitResult", "fit", "denoising_loss"]


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
