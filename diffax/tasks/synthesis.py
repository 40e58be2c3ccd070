"""Semantic image synthesis: a diffusion model of the image given a segmentation mask.

The mask -> image direction of :mod:`diffax.tasks.segdiff` (as in SDM, Wang et al. 2022, with
the mask given as input channels rather than SPADE layers): a
:class:`diffax.tasks.segdiff.SegDiffUNet` whose state is the image and whose ``cond`` is
:func:`diffax.tasks.segdiff.mask_to_channels` of the mask. Classifier-free guidance on the
mask (Ho & Salimans 2022): during training the mask is replaced, per example with probability
``rate``, by the **null mask** (all channels zero; a real mask is ``+-1`` everywhere, so zero
is never one), so one network learns ``D(x | mask)`` and ``D(x)``; at sampling
:func:`guided_denoiser` forms ``D(x) + w (D(x | mask) - D(x))``
(:func:`diffax.guidance.classifier_free`). The generated images are judged by re-segmenting
them and comparing with the mask they were asked for (:func:`diffax.tasks.segdiff.dice`).

* :func:`drop_condition`: the per-example replacement by the null mask;
* :func:`condition_dropout`: a ``loss_fn(params, key, batch)`` wrapped to drop ``batch[cond]``;
* :func:`guided_denoiser`: the guided denoiser of a network ``fn(x, t, cond)``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> cond = jnp.ones((4, 2, 2, 3))
  >>> dropped = drop_condition(jax.random.key(0), cond, rate=1.0)
  >>> float(jnp.abs(dropped).max())
  0.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diffax._checks import check_number
from diffax.typing import Array, Denoiser, PRNGKey

__all__ = ["drop_condition", "condition_dropout", "guided_denoiser"]


def _rate(rate: Any, where: str) -> None:
    check_number(rate, name="rate", where=where)
    if isinstance(rate, jax.core.Tracer):
        return  # traced: checked where concrete
    if jnp.ndim(rate) != 0 or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"{where}: `rate` must be a probability in [0, 1] (a scalar), "
                         f"got {rate!r}.")


def drop_condition(key: PRNGKey, cond: Array, *, rate: Any) -> Array:
    """``cond`` ``[B, ...]`` with each example replaced by zeros (the null mask) with
    probability ``rate`` (independently per example, ``jax.random.bernoulli``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> drop_condition(jax.random.key(0), jnp.ones((3, 1)), rate=0.0)[:, 0]
      Array([1., 1., 1.], dtype=float32)
    """
    _rate(rate, "drop_condition")
    cond = jnp.asarray(cond)
    if cond.ndim < 1:
        raise ValueError(f"drop_condition: `cond` must have a batch axis [B, ...], got shape "
                         f"{tuple(cond.shape)}.")
    keep = jax.random.bernoulli(key, 1.0 - jnp.asarray(rate, jnp.float32), (cond.shape[0],))
    return jnp.where(keep.reshape((-1,) + (1,) * (cond.ndim - 1)), cond, jnp.zeros_like(cond))


def condition_dropout(loss_fn: Callable[..., Any], *, rate: Any, cond_key: str = "cond"
                      ) -> Callable[..., Any]:
    """``loss_fn(params, key, batch)`` with ``batch[cond_key]`` passed through
    :func:`drop_condition` first (its own key, split off ``key``): the classifier-free
    training of a mask-conditional denoiser.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> seen = lambda params, key, batch: (jnp.sum(batch["cond"]), {})
      >>> value, _ = condition_dropout(seen, rate=1.0)(None, jax.random.key(0),
      ...                                               {"cond": jnp.ones((2, 3))})
      >>> float(value)
      0.0
    """
    _rate(rate, "condition_dropout")
    if not callable(loss_fn):
        raise ValueError(f"condition_dropout: `loss_fn` must be a function (params, key, "
                         f"batch), got {loss_fn!r}.")

    def wrapped(params, key, batch):
        if not isinstance(batch, Mapping) or cond_key not in batch:
            raise ValueError(f"condition_dropout: the batch must be a mapping with a "
                             f"{cond_key!r} entry (`cond_key`).")
        key_drop, key_loss = jax.random.split(key)
        batch = {**batch, cond_key: drop_condition(key_drop, batch[cond_key], rate=rate)}
        return loss_fn(params, key_loss, batch)

    return wrapped


def guided_denoiser(fn: Callable[[Array, Array, Array], Array], cond: Array, *, scale: Any
                    ) -> Denoiser:
    """Classifier-free guidance on a mask: ``D(x) + scale (D(x | cond) - D(x))``.

    Args:
      fn: ``fn(x, t, cond) -> E[x0 | x_t, cond]`` (e.g. ``lambda x, t, c:
        loss.denoiser(apply_fn, params, cond=c)(x, t)``); the null mask ``zeros_like(cond)``
        gives the unconditional denoiser.
      cond: the mask channels ``[B, ...]``.
      scale: the guidance weight (0: unconditional, 1: conditional).

    Example:
      >>> import jax.numpy as jnp
      >>> fn = lambda x, t, c: x + c  # the "conditional mean" shifts by the condition
      >>> D = guided_denoiser(fn, jnp.ones((2, 1)), scale=3.0)
      >>> D(jnp.zeros((2, 1)), jnp.ones(2))[:, 0]
      Array([3., 3.], dtype=float32)
    """
    from diffax.guidance import classifier_free

    if not callable(fn):
        raise ValueError(f"guided_denoiser: `fn` must be a function (x, t, cond), got {fn!r}.")
    cond = jnp.asarray(cond)
    null = jnp.zeros_like(cond)
    return classifier_free(lambda x, t: fn(x, t, cond), lambda x, t: fn(x, t, null),
                           scale=scale)
