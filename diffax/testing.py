"""Analytic oracles: exact answers every sampler, guidance transform and likelihood is judged by.

A Gaussian mixture stays a Gaussian mixture under ``x_t = alpha x0 + sigma eps``: component
``k`` with mean ``mu_k`` and diagonal standard deviations ``s_k`` becomes
``N(alpha mu_k, alpha^2 s_k^2 + sigma^2)``. So for any process and any time the exact
log-density, score and denoiser ``E[x0 | x_t]`` are available in closed form, and for a single
Gaussian so is the probability-flow trajectory.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass
from diffax.parameterization import check_time_shape
from diffax.processes import Process, expand
from diffax.typing import Array, ArrayLike, Denoiser, PRNGKey

__all__ = ["GaussianMixture"]


@pytree_dataclass
class GaussianMixture:
    """A mixture of diagonal Gaussians over events of any shape, with exact diffused quantities.

    Args:
      means: ``[K, *event]`` component means.
      stds: ``[K]`` (isotropic) or ``[K, *event]`` (diagonal) component standard deviations,
        positive.
      weights: ``[K]`` mixture weights, non-negative, summing to 1.

    Every method taking ``(process, x, t)`` expects ``x`` ``[B, *event]`` and ``t`` a scalar or
    ``[B]``; densities are per example (``[B]``).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> gm = diffax.testing.GaussianMixture(
      ...     means=jnp.array([[-1.0, 0.0], [1.0, 0.0]]), stds=jnp.array([0.3, 0.3]),
      ...     weights=jnp.array([0.5, 0.5]))
      >>> p = diffax.VP()
      >>> x = gm.sample(jax.random.key(0), p, 0.5, 16)
      >>> gm.log_prob(p, x, 0.5).shape, gm.denoiser(p)(x, 0.5).shape
      ((16,), (16, 2))
    """

    means: Any
    stds: Any
    weights: Any

    def __post_init__(self):
        m, s, w = (concrete_value(v) for v in (self.means, self.stds, self.weights))
        if m is not None and m.ndim < 2:
            raise ValueError(f"GaussianMixture: `means` must be [K, *event], got shape {m.shape}.")
        if w is not None:
            if w.ndim != 1 or (m is not None and w.shape[0] != m.shape[0]):
                raise ValueError(f"GaussianMixture: `weights` must be [K] matching `means`, got "
                                 f"shape {w.shape}.")
            if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError("GaussianMixture: `weights` must be non-negative and sum to 1.")
        if s is not None:
            if np.any(s <= 0):
                raise ValueError("GaussianMixture: `stds` must be positive.")
            if m is not None and s.shape not in ((m.shape[0],), m.shape):
                raise ValueError(f"GaussianMixture: `stds` must be [K] or [K, *event] = "
                                 f"{m.shape}, got {s.shape}.")

    # ---- shapes -------------------------------------------------------------------------

    @property
    def num_components(self) -> int:
        return int(np.shape(self.means)[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.means)[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def _flat(self, dtype: Any) -> tuple[Array, Array, Array]:
        k = self.num_components
        means = jnp.asarray(self.means, dtype).reshape(k, -1)
        stds = jnp.asarray(self.stds, dtype)
        stds = jnp.broadcast_to(stds.reshape(k, -1), means.shape)
        return means, stds, jnp.asarray(self.weights, dtype)

    def _prepare(self, process: Process, x: Array, t: ArrayLike):
        x = jnp.asarray(x)
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"GaussianMixture: `x` must be [B, *{self.event_shape}], got "
                             f"{tuple(x.shape)}.")
        t = check_time_shape(x, jnp.asarray(t, x.dtype), where="GaussianMixture")
        means, stds, weights = self._flat(x.dtype)
        xf = x.reshape(x.shape[0], 1, -1)  # [B, 1, D]
        a = process.alpha(t).reshape(-1, 1, 1)  # [B, 1, 1]
        s = process.sigma(t).reshape(-1, 1, 1)
        mean_t = a * means[None]  # [B, K, D]
        var_t = jnp.square(a * stds[None]) + jnp.square(s)  # [B, K, D]
        return x, xf, a, s, means, stds, weights, mean_t, var_t

    def _component_logp(self, xf, mean_t, var_t, weights):
        ll = -0.5 * jnp.sum(jnp.square(xf - mean_t) / var_t + jnp.log(2 * jnp.pi * var_t), -1)
        return ll + jnp.log(weights)[None]  # [B, K]

    # ---- exact quantities ------------------------------------------------------------------

    def log_prob(self, process: Process, x: Array, t: ArrayLike) -> Array:
        """Exact ``log p_t(x)`` per example, ``[B]``."""
        _, xf, _, _, _, _, w, mean_t, var_t = self._prepare(process, x, t)
        return jax.nn.logsumexp(self._component_logp(xf, mean_t, var_t, w), axis=-1)

    def log_prob_data(self, x0: Array) -> Array:
        """Exact log-density of the clean data distribution, ``[B]``."""
        x0 = jnp.asarray(x0)
        means, stds, w = self._flat(x0.dtype)
        xf = x0.reshape(x0.shape[0], 1, -1)
        var = jnp.square(stds)[None]
        return jax.nn.logsumexp(self._component_logp(xf, means[None], var, w), axis=-1)

    def responsibilities(self, process: Process, x: Array, t: ArrayLike) -> Array:
        """Posterior component probabilities ``p(k | x_t = x)``, ``[B, K]``."""
        _, xf, _, _, _, _, w, mean_t, var_t = self._prepare(process, x, t)
        return jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)

    def score(self, process: Process, x: Array, t: ArrayLike) -> Array:
        """Exact ``grad_x log p_t(x)``, shaped like ``x``."""
        x, xf, _, _, _, _, w, mean_t, var_t = self._prepare(process, x, t)
        r = jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)[..., None]
        return jnp.sum(r * (mean_t - xf) / var_t, axis=1).reshape(x.shape)

    def posterior_mean(self, process: Process, x: Array, t: ArrayLike) -> Array:
        """Exact ``E[x0 | x_t = x]``, shaped like ``x``.

        Per component, ``E[x0 | x_t, k] = mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2)
        (x - alpha mu_k)``; the mixture weights are the responsibilities.
        """
        x, xf, a, _, means, stds, w, mean_t, var_t = self._prepare(process, x, t)
        r = jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)[..., None]
        gain = a * jnp.square(stds)[None] / var_t
        comp = means[None] + gain * (xf - mean_t)
        return jnp.sum(r * comp, axis=1).reshape(x.shape)

    def denoiser(self, process: Process) -> Denoiser:
        """The exact denoiser ``D(x, t) = E[x0 | x_t = x]`` as a function."""
        return lambda x, t: self.posterior_mean(process, x, t)

    # ---- sampling ----------------------------------------------------------------------------

    def sample_data(self, key: PRNGKey, num: int, dtype: Any = None) -> Array:
        """Exact samples of the clean data distribution, ``[num, *event]``."""
        dtype = dtype or jnp.result_type(float)
        means, stds, w = self._flat(dtype)
        kc, kn = jax.random.split(key)
        comp = jax.random.choice(kc, self.num_components, (num,), p=w)
        z = jax.random.normal(kn, (num, means.shape[1]), dtype)
        return (means[comp] + stds[comp] * z).reshape((num, *self.event_shape))

    def sample(self, key: PRNGKey, process: Process, t: ArrayLike, num: int,
               dtype: Any = None) -> Array:
        """Exact samples of ``p_t``, ``[num, *event]``."""
        dtype = dtype or jnp.result_type(float)
        k0, ke = jax.random.split(key)
        x0 = self.sample_data(k0, num, dtype)
        t = jnp.broadcast_to(jnp.asarray(t, dtype), (num,))
        eps = jax.random.normal(ke, x0.shape, dtype)
        return expand(process.alpha(t), x0) * x0 + expand(process.sigma(t), x0) * eps

    def mean_and_var(self, process: Process, t: ArrayLike, dtype: Any = None
                     ) -> tuple[Array, Array]:
        """Exact mean and per-dimension variance of ``p_t`` at a scalar ``t``, each ``[*event]``."""
        dtype = dtype or jnp.result_type(float)
        means, stds, w = self._flat(dtype)
        t = jnp.asarray(t, dtype)
        a, s = process.alpha(t), process.sigma(t)
        mean = jnp.sum(w[:, None] * means, 0)
        second = jnp.sum(w[:, None] * (jnp.square(means) + jnp.square(stds)), 0)
        var = jnp.square(a) * (second - jnp.square(mean)) + jnp.square(s)
        return (a * mean).reshape(self.event_shape), var.reshape(self.event_shape)

    # ---- closed-form probability flow ------------------------------------------------------

    def flow(self, process: Process, x: Array, *, t: ArrayLike, s: ArrayLike) -> Array:
        """Exact probability-flow ODE solution from time ``t`` to time ``s`` (single Gaussian).

        For one component ``N(mu, diag(s0^2))`` the flow is affine: with
        ``std_t = sqrt(alpha_t^2 s0^2 + sigma_t^2)``,
        ``x_s = alpha_s mu + (std_s / std_t) (x_t - alpha_t mu)``.

        Raises:
          ValueError: if the mixture has more than one component (no closed form).
        """
        if self.num_components != 1:
            raise ValueError("GaussianMixture.flow: the closed-form probability-flow trajectory "
                             f"exists for a single Gaussian, this mixture has "
                             f"{self.num_components} components.")
        x = jnp.asarray(x)
        means, stds, _ = self._flat(x.dtype)
        xf = x.reshape(x.shape[0], -1)
        t = check_time_shape(x, jnp.asarray(t, x.dtype), where="GaussianMixture.flow")
        s = check_time_shape(x, jnp.asarray(s, x.dtype), where="GaussianMixture.flow")
        a_t, a_s = process.alpha(t)[:, None], process.alpha(s)[:, None]
        std_t = jnp.sqrt(jnp.square(a_t * stds) + jnp.square(process.sigma(t)[:, None]))
        std_s = jnp.sqrt(jnp.square(a_s * stds) + jnp.square(process.sigma(s)[:, None]))
        out = a_s * means + (std_s / std_t) * (xf - a_t * means)
        return out.reshape(x.shape)
