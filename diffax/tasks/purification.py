"""Adversarial purification with a diffusion model (DiffPure, Nie et al. 2022).

Purification is SDEdit (Meng et al. 2022) applied before a classifier: the (perturbed) input is
noised to a moderate time ``t0`` and denoised with any solver, which washes out small
perturbations while keeping the class. Here:

* :func:`fgsm`: the fast gradient sign attack (Goodfellow et al. 2015) on a differentiable
  classifier, ``x + epsilon * sign(grad_x CE)``, clipped to the data range;
* purification itself is :func:`diffax.inverse.sdedit` (noise to ``t0``, denoise with any
  solver);
* the digits example (:mod:`diffax.tasks.examples.purification`): a classifier's accuracy on
  clean, FGSM-attacked and Gaussian-noised test digits, before and after purification.

The attack here is not adaptive (it does not differentiate through the purifier), the usual
first check in DiffPure's tables; an adaptive attack (BPDA / full gradients) is stronger.

Example:
  >>> import jax, jax.numpy as jnp
  >>> logits_fn = lambda x: jnp.stack([x.sum((1, 2, 3)), -x.sum((1, 2, 3))], -1)
  >>> x_adv = fgsm(logits_fn, jnp.zeros((1, 2, 2, 1)), jnp.array([0]), epsilon=0.25)
  >>> x_adv[0, ..., 0].tolist()  # pushed against class 0
  [[-0.25, -0.25], [-0.25, -0.25]]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffax.typing import Array, PRNGKey

__all__ = ["fgsm", "gaussian_perturbation"]


def fgsm(logits_fn: Callable[[Array], Array], x: Array, labels: Array, *, epsilon: float,
         value_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """Fast gradient sign method: ``clip(x + epsilon * sign(grad_x CE(logits_fn(x), labels)))``.

    Args:
      logits_fn: ``logits_fn(x) -> [B, K]``, differentiable.
      x: inputs ``[B, ...]``.
      labels: ``[B]`` true labels.
      epsilon: the L-infinity budget (in the units of ``x``).
      value_range: the data range the result is clipped to.
    """
    if not float(epsilon) >= 0:
        raise ValueError(f"fgsm: `epsilon` must be >= 0, got {epsilon!r}.")

    def total_ce(x):
        log_p = jax.nn.log_softmax(logits_fn(x), axis=-1)
        return -jnp.sum(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    grad = jax.grad(total_ce)(x)
    return jnp.clip(x + epsilon * jnp.sign(grad), *value_range)


def gaussian_perturbation(key: PRNGKey, x: Array, *, std: float,
                          value_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """``clip(x + std * N(0, I))`` to ``value_range``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> gaussian_perturbation(jax.random.key(0), jnp.zeros((2, 3)), std=0.0).tolist()
      [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return jnp.clip(x + std * jax.random.normal(key, x.shape, x.dtype), *value_range)
