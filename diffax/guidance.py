"""Guidance: functions from denoisers to denoisers.

Every transform here takes one or two denoisers ``D(x, t) -> E[x0 | x_t = x]`` and returns a
new denoiser, a pure function that any sampler, :func:`diffax.inpaint` or another transform
accepts, under ``jax.jit`` like any denoiser. They compose by nesting, innermost first::

  Dg = dynamic_threshold(classifier_free(D_cond, D_uncond, scale=3.0), quantile=0.995)

or, for one-denoiser transforms, with :func:`chain` (``optax.chain``'s order: the first
transform is applied first, i.e. innermost).

Guidance acts on the score, and the score and the denoiser are affine in each other
(Tweedie, :func:`diffax.score_from_denoiser`): ``score = (alpha D - x) / sigma^2``. So adding
``w * grad log p(y | x_t)`` to the score is adding ``w * sigma^2 / alpha * grad log p(y | x_t)``
to the denoiser, and mixing scores linearly is mixing denoisers with the same weights.

Example:
  >>> import jax, jax.numpy as jnp, diffax
  >>> D_cond = lambda x, t: jnp.ones_like(x)
  >>> D_uncond = lambda x, t: jnp.zeros_like(x)
  >>> Dg = diffax.guidance.classifier_free(D_cond, D_uncond, scale=3.0)
  >>> Dg = diffax.guidance.clip(Dg, lo=-1.0, hi=1.0)
  >>> Dg(jnp.zeros((2, 3)), 0.5)[0]
  Array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_number
from diffax._pytree import concrete_value
from diffax.parameterization import check_time_shape
from diffax.processes import Process, expand
from diffax.typing import Array, ArrayLike, Denoiser

__all__ = [
    "classifier_free",
    "classifier",
    "clip",
    "dynamic_threshold",
    "chain",
    "LogProbFn",
    "Transform",
]

LogProbFn = Callable[[Array, Array], Array]
"""``log_prob_fn(x, t) -> [B]``: ``log p(y | x_t = x)`` of the wanted labels, per example."""

Transform = Callable[[Denoiser], Denoiser]
"""A one-denoiser transform, e.g. ``functools.partial(dynamic_threshold, quantile=0.99)``."""


def _check_denoiser(name: str, fn: Any) -> None:
    if not callable(fn):
        raise ValueError(f"`{name}` must be a denoiser D(x, t), got {fn!r}.")


def _per_example_std(x: Array) -> Array:
    """The standard deviation over all but the batch axis, broadcast against ``x``."""
    return jnp.std(x.reshape(x.shape[0], -1), axis=-1).reshape((-1,) + (1,) * (x.ndim - 1))


def classifier_free(D_cond: Denoiser, D_uncond: Denoiser, *, scale: ArrayLike,
                    interval: tuple[float, float] | None = None,
                    rescale: ArrayLike = 0.0) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022): ``D_uncond + scale (D_cond - D_uncond)``.

    In score terms this is ``score_uncond + scale * (score_cond - score_uncond)``: the score
    of ``p_t(x) p_t(y | x)^scale`` with the implicit classifier
    ``grad log p_t(y | x) = score_cond - score_uncond``. ``scale = 1`` gives ``D_cond``,
    ``scale = 0`` gives ``D_uncond``.

    Args:
      D_cond: the conditional denoiser (e.g. a network called with the wanted labels).
      D_uncond: the unconditional one (the same network with the null label).
      scale: the guidance weight ``w`` (a number or a traced scalar).
      interval: optional ``(t_lo, t_hi)``: guidance applies only for ``t_lo <= t <= t_hi``
        (per example; Kynkäänniemi et al. 2024 apply it in a middle range of noise levels);
        elsewhere the result is ``D_cond``. Both denoisers are evaluated either way.
      rescale: guidance rescaling ``phi`` in ``[0, 1]`` (Lin et al. 2024, "Common diffusion
        noise schedules and sample steps are flawed", Sec. 3.4). Re-derived in the denoiser
        (x0) frame: the guided estimate ``D_cfg`` is scaled per example so that its standard
        deviation over all non-batch axes matches that of the conditional estimate
        ``D_cond``, ``D_rescaled = D_cfg * std(D_cond) / std(D_cfg)``, and the result is
        ``phi * D_rescaled + (1 - phi) * D_cfg``. The paper (and diffusers'
        ``rescale_noise_cfg``) matches the stds of the network's own output, a v- or
        eps-prediction; since guidance here sees only denoisers, the matched quantity is the
        x0 estimate, whose over-exposure is what the paper's rescaling is meant to fix. The
        two differ for ``phi > 0``.

    Returns:
      The guided denoiser.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> Dc, Du = (lambda x, t: x + 1.0), (lambda x, t: x)
      >>> Dg = diffax.guidance.classifier_free(Dc, Du, scale=3.0, interval=(0.2, 0.8))
      >>> Dg(jnp.zeros((2, 1)), jnp.array([0.5, 0.9]))[:, 0]
      Array([3., 1.], dtype=float32)
    """
    _check_denoiser("D_cond", D_cond)
    _check_denoiser("D_uncond", D_uncond)
    check_number(scale, name="scale", where="classifier_free")
    if interval is not None:
        if len(interval) != 2:
            raise ValueError(f"`interval` must be a pair (t_lo, t_hi), got {interval!r}.")
        lo, hi = (concrete_value(v) for v in interval)
        if lo is not None and hi is not None and not float(lo) <= float(hi):
            raise ValueError(f"`interval` must have t_lo <= t_hi, got {interval!r}.")
    phi = concrete_value(rescale)
    if phi is not None and not (phi.ndim == 0 and 0.0 <= float(phi) <= 1.0):
        raise ValueError(f"`rescale` must be in [0, 1], got {rescale!r}.")
    no_rescale = phi is not None and float(phi) == 0.0

    def denoiser(x: Array, t: Array) -> Array:
        t = check_time_shape(x, t, where="classifier_free")
        d_cond, d_uncond = D_cond(x, t), D_uncond(x, t)
        guided = d_uncond + scale * (d_cond - d_uncond)
        if not no_rescale:
            std_guided = _per_example_std(guided)
            safe = jnp.where(std_guided > 0, std_guided, 1.0)
            ratio = jnp.where(std_guided > 0, _per_example_std(d_cond) / safe, 1.0)
            guided = rescale * (guided * ratio) + (1 - rescale) * guided
        if interval is not None:
            inside = (t >= interval[0]) & (t <= interval[1])
            guided = jnp.where(expand(inside, x), guided, d_cond)
        return guided

    return denoiser


def classifier(process: Process, denoiser: Denoiser, log_prob_fn: LogProbFn, *,
               scale: ArrayLike) -> Denoiser:
    """Classifier guidance (Dhariwal & Nichol 2021) through the score-denoiser relation.

    With ``score = (alpha D - x) / sigma^2`` (Tweedie), the guided score
    ``score + scale * grad_x log p(y | x_t)`` is the score of the denoiser

        ``D_guided(x, t) = D(x, t) + scale * sigma(t)^2 / alpha(t) * grad_x log p(y | x_t = x)``.

    With ``scale = 1`` and the exact noisy classifier this is exactly the class-conditional
    denoiser (``p(x | y) ∝ p(x) p(y | x)``). Where ``alpha(t) = 0`` (rectified flow at
    ``t = 1``) ``x_t`` carries no information about ``x0`` or ``y``, and the correction is 0.

    Args:
      process: the process the denoiser belongs to.
      denoiser: the unconditional denoiser.
      log_prob_fn: ``log_prob_fn(x, t) -> [B]``, the classifier's ``log p(y | x_t = x, t)`` of
        the wanted labels (e.g. a noise-conditional classifier's log-softmax at those labels).
        Examples are independent, so the gradient of the batch sum is each example's own.
      scale: the guidance scale (``s`` in Dhariwal & Nichol).

    Returns:
      The guided denoiser (one classifier forward and backward pass per call).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VE()
      >>> log_prob = lambda x, t: -0.5 * jnp.sum(jnp.square(x - 1.0), axis=-1)
      >>> Dg = diffax.guidance.classifier(p, lambda x, t: jnp.zeros_like(x), log_prob, scale=1.0)
      >>> Dg(jnp.zeros((1, 2)), 0.0)  # sigma(0)^2 / alpha(0) = 1e-4, gradient 1
      Array([[0.0001, 0.0001]], dtype=float32)
    """
    if not isinstance(process, Process):
        raise ValueError(f"`process` must be a diffax.Process, got {type(process).__name__}.")
    _check_denoiser("denoiser", denoiser)
    check_number(scale, name="scale", where="classifier")
    if not callable(log_prob_fn):
        raise ValueError(f"`log_prob_fn` must be a function log_prob_fn(x, t) -> [B], got "
                         f"{log_prob_fn!r}.")

    def guided(x: Array, t: Array) -> Array:
        t = check_time_shape(x, t, where="classifier")

        def total(x_):
            lp = log_prob_fn(x_, t)
            if getattr(lp, "shape", None) != x.shape[:1]:
                raise ValueError(f"classifier: `log_prob_fn` must return [B] = "
                                 f"[{x.shape[0]}] log-probabilities, got shape "
                                 f"{getattr(lp, 'shape', type(lp))}.")
            return jnp.sum(lp)

        grad = jax.grad(total)(x)
        a, s = process.alpha(t), process.sigma(t)
        coef = jnp.where(a > 0, jnp.square(s) / jnp.where(a > 0, a, 1.0), 0.0)
        return denoiser(x, t) + expand(scale * coef, x).astype(x.dtype) * grad

    return guided


def clip(denoiser: Denoiser, *, lo: ArrayLike = -1.0, hi: ArrayLike = 1.0) -> Denoiser:
    """Static thresholding: the denoised estimate clipped to ``[lo, hi]`` (the data range).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = diffax.guidance.clip(lambda x, t: 2 * x)
      >>> D(jnp.array([[-1.0, 0.25, 3.0]]), 0.5)
      Array([[-1. ,  0.5,  1. ]], dtype=float32)
    """
    _check_denoiser("denoiser", denoiser)
    lo_v, hi_v = concrete_value(lo), concrete_value(hi)
    if lo_v is not None and hi_v is not None and not np.all(lo_v < hi_v):
        raise ValueError(f"clip: `lo` must be below `hi`, got lo={lo!r}, hi={hi!r}.")
    return lambda x, t: jnp.clip(denoiser(x, t), lo, hi)


def dynamic_threshold(denoiser: Denoiser, *, quantile: ArrayLike = 0.995) -> Denoiser:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3).

    Per example, ``s`` is the ``quantile`` of ``|x0|`` over all its entries (linear
    interpolation between order statistics, as ``numpy.quantile``), floored at 1:
    ``s = max(1, quantile(|x0|))``; then ``x0 <- clip(x0, -s, s) / s``. When ``s = 1`` this is
    static clipping to ``[-1, 1]``; otherwise saturated entries are pushed inwards. Data is
    assumed to live in ``[-1, 1]``.

    Args:
      denoiser: the denoiser whose estimate is thresholded.
      quantile: in ``(0, 1]``; Imagen uses a high percentile such as 0.995 (``1.0`` takes the
        maximum, i.e. pure rescaling).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> D = diffax.guidance.dynamic_threshold(lambda x, t: x, quantile=0.5)
      >>> D(jnp.array([[-4.0, 1.0, 2.0, 3.0]]), 0.5)  # s = 2.5: clip to [-2.5, 2.5], / 2.5
      Array([[-1. ,  0.4,  0.8,  1. ]], dtype=float32)
    """
    _check_denoiser("denoiser", denoiser)
    q = concrete_value(quantile)
    if q is not None and not (q.ndim == 0 and 0.0 < float(q) <= 1.0):
        raise ValueError(f"dynamic_threshold: `quantile` must be in (0, 1], got {quantile!r}.")

    def thresholded(x: Array, t: Array) -> Array:
        x0 = denoiser(x, t)
        flat = jnp.abs(x0.reshape(x0.shape[0], -1))
        s = jnp.maximum(jnp.quantile(flat, quantile, axis=-1), 1.0)
        s = s.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
        return jnp.clip(x0, -s, s) / s

    return thresholded


def chain(*transforms: Transform) -> Transform:
    """Composes one-denoiser transforms, the first applied first (innermost).

    ``chain(f, g)(D) == g(f(D))``, the order of ``optax.chain``.

    Example:
      >>> import functools, jax.numpy as jnp, diffax
      >>> t = diffax.guidance.chain(functools.partial(diffax.guidance.clip, hi=0.5),
      ...                           lambda D: (lambda x, t: 2 * D(x, t)))
      >>> t(lambda x, t: x)(jnp.ones((1, 1)), 0.5)  # clipped to 0.5 first, then doubled
      Array([[1.]], dtype=float32)
    """
    for i, f in enumerate(transforms):
        if not callable(f):
            raise ValueError(f"chain: transform {i} must be a function denoiser -> denoiser, "
                             f"got {f!r}.")

    def apply(denoiser: Denoiser) -> Denoiser:
        for f in transforms:
            denoiser = f(denoiser)
        return denoiser

    return apply
