"""Analytic oracles: exact answers every sampler, guidance transform and likelihood is judged by.

A Gaussian mixture stays a Gaussian mixture under ``x_t = alpha x0 + sigma eps``: component
``k`` with mean ``mu_k`` and diagonal standard deviations ``s_k`` becomes
``N(alpha mu_k, alpha^2 s_k^2 + sigma^2)``. So for any process and any time the exact
log-density, score and denoiser ``E[x0 | x_t]`` are available in closed form, and for a single
Gaussian so is the probability-flow trajectory.

Conditioning stays in closed form too: given observed coordinates, a diagonal mixture is again
a mixture (:meth:`GaussianMixture.condition`), and a :class:`ClassConditionalMixture` (shared
components, per-class weights) gives the exact class-conditional denoiser and the exact noisy
classifier ``log p(y | x_t)``, the truths guidance is judged by.
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

__all__ = ["GaussianMixture", "ClassConditionalMixture", "EnumerableJoint", "log_snr_reference"]


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
        """Exact ``log p_t(x)`` per example, ``[B]`` (for a :class:`diffax.CLD`-like process,
        ``x`` is the state ``(x, v)`` and this is the joint density)."""
        if not process.scalar_coefficients:
            return jax.nn.logsumexp(self._state_parts(process, x, t)[0], axis=-1)
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
        """Exact ``grad_x log p_t(x)``, shaped like ``x`` (for a state process, a tuple
        ``(score_x, score_v)``)."""
        if not process.scalar_coefficients:
            ll, _, _, prec_r, shape = self._state_parts(process, x, t)
            r = jax.nn.softmax(ll, axis=-1)[..., None, None]
            s = -jnp.sum(r * prec_r, axis=1)  # [B, D, k]
            return tuple(s[..., i].reshape(shape) for i in range(s.shape[-1]))
        x, xf, _, _, _, _, w, mean_t, var_t = self._prepare(process, x, t)
        r = jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)[..., None]
        return jnp.sum(r * (mean_t - xf) / var_t, axis=1).reshape(x.shape)

    def posterior_mean(self, process: Process, x: Array, t: ArrayLike) -> Array:
        """Exact ``E[x0 | x_t = x]``, shaped like ``x``.

        Per component, ``E[x0 | x_t, k] = mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2)
        (x - alpha mu_k)``; the mixture weights are the responsibilities. For a state process
        (``u_t | x0 ~ N(m x0, Sigma)`` per coordinate), ``E[x0 | u, k] = mu_k + s_k^2 m^T
        C_k^-1 (u - m mu_k)`` with ``C_k = s_k^2 m m^T + Sigma``.
        """
        if not process.scalar_coefficients:
            ll, m, stds, prec_r, shape = self._state_parts(process, x, t)
            means = self._flat(m.dtype)[0]
            r = jax.nn.softmax(ll, axis=-1)[..., None]
            comp = means[None] + jnp.square(stds)[None] * jnp.sum(m[:, None, None] * prec_r,
                                                                  axis=-1)
            return jnp.sum(r * comp, axis=1).reshape(shape)
        x, xf, a, _, means, stds, w, mean_t, var_t = self._prepare(process, x, t)
        r = jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)[..., None]
        gain = a * jnp.square(stds)[None] / var_t
        comp = means[None] + gain * (xf - mean_t)
        return jnp.sum(r * comp, axis=1).reshape(x.shape)

    def denoiser(self, process: Process) -> Denoiser:
        """The exact denoiser ``D(x, t) = E[x0 | x_t = x]`` as a function."""
        return lambda x, t: self.posterior_mean(process, x, t)

    def posterior_sample(self, process: Process, x: Array, t: ArrayLike, z: Array) -> Array:
        """An exact draw of ``x0 ~ p(x0 | x_t = x)`` driven by standard normal ``z``
        ``[B, 1 + D]``: the posterior is again a mixture, with weights the responsibilities and,
        per component, ``N(mu_k + g_k (x - alpha mu_k), s_k^2 sigma^2 / (alpha^2 s_k^2 +
        sigma^2))`` with ``g_k = alpha s_k^2 / (alpha^2 s_k^2 + sigma^2)``. ``z[:, 0]`` picks the
        component (through the normal CDF, by inverting the cumulative responsibilities),
        ``z[:, 1:]`` is the Gaussian noise. It stands in for a perfect DDGAN generator.

        Example:
          >>> import jax, jax.numpy as jnp, diffax
          >>> gm = diffax.testing.GaussianMixture(means=jnp.array([[-2.0], [2.0]]),
          ...     stds=jnp.array([0.1, 0.1]), weights=jnp.array([0.5, 0.5]))
          >>> x0 = gm.posterior_sample(diffax.VP(), jnp.array([[1.9]]), 0.01,
          ...                          jnp.zeros((1, 2)))   # x_t near +2: that component
          >>> bool(jnp.abs(x0[0, 0] - 2.0) < 0.1)
          True
        """
        x, xf, a, s, means, stds, w, mean_t, var_t = self._prepare(process, x, t)
        z = jnp.asarray(z, x.dtype)
        if z.shape != (x.shape[0], 1 + xf.shape[-1]):
            raise ValueError(f"GaussianMixture.posterior_sample: `z` must be [B, 1 + D] = "
                             f"[{x.shape[0]}, {1 + xf.shape[-1]}], got {tuple(z.shape)}.")
        r = jax.nn.softmax(self._component_logp(xf, mean_t, var_t, w), axis=-1)  # [B, K]
        u = jax.scipy.stats.norm.cdf(z[:, :1])  # [B, 1] uniform
        k = jnp.sum(jnp.cumsum(r, axis=-1)[:, :-1] < u, axis=-1)  # [B]
        gain = a * jnp.square(stds)[None] / var_t  # [B, K, D]
        comp_mean = means[None] + gain * (xf - mean_t)
        comp_std = jnp.sqrt(jnp.square(stds)[None] * jnp.square(s) / var_t)
        pick = lambda v: jnp.take_along_axis(v, k[:, None, None], axis=1)[:, 0]  # noqa: E731
        return (pick(comp_mean) + pick(comp_std) * z[:, 1:]).reshape(x.shape)

    # ---- conditioning ------------------------------------------------------------------------

    def condition(self, x_known: ArrayLike, mask: ArrayLike, *, noise_std: ArrayLike = 0.0
                  ) -> GaussianMixture:
        """The exact conditional ``p(x_missing | x_observed = x_known)`` of the clean data.

        Within a component the coordinates are independent (diagonal stds), so the missing ones
        keep their component means and stds, and only the weights change:
        ``w_k' ∝ w_k N(x_obs; mu_k,obs, diag(s_k,obs^2))`` (Bayes' rule over components).
        With ``noise_std = tau > 0`` the observation is ``y = x_obs + N(0, tau^2)`` and this is
        the marginal posterior of the missing coordinates given ``y = x_known``: the weights
        use ``N(y; mu_k,obs, diag(s_k,obs^2 + tau^2))``.

        Args:
          x_known: ``[*event]`` values; only the observed entries are read.
          mask: ``[*event]`` concrete array, 1 where observed and 0 where missing (the mask
            convention of :func:`diffax.inpaint`).
          noise_std: the observation noise ``tau`` (default 0: exact observations).

        Returns:
          A :class:`GaussianMixture` over the ``M`` missing coordinates, event ``[M]``, in the
          row-major order of ``x[..., mask == 0]``.

        Example:
          >>> import jax.numpy as jnp, diffax
          >>> gm = diffax.testing.GaussianMixture(
          ...     means=jnp.array([[-1.0, -1.0], [1.0, 1.0]]), stds=jnp.array([0.3, 0.3]),
          ...     weights=jnp.array([0.5, 0.5]))
          >>> cond = gm.condition(jnp.array([1.0, 0.0]), jnp.array([1, 0]))
          >>> cond.event_shape, bool(cond.weights[1] > 0.99)
          ((1,), True)
        """
        m = concrete_value(mask)
        if m is None:
            raise ValueError("GaussianMixture.condition: `mask` must be a concrete array (it "
                             "fixes which coordinates are missing).")
        if m.shape != self.event_shape or not np.all((m == 0) | (m == 1)):
            raise ValueError(f"GaussianMixture.condition: `mask` must be 0/1 of shape "
                             f"{self.event_shape}, got shape {m.shape}.")
        observed = m.reshape(-1) == 1
        if observed.all():
            raise ValueError("GaussianMixture.condition: `mask` observes every coordinate; "
                             "nothing is left to condition.")
        x_known = jnp.asarray(x_known)
        if tuple(x_known.shape) != self.event_shape:
            raise ValueError(f"GaussianMixture.condition: `x_known` must have shape "
                             f"{self.event_shape}, got {tuple(x_known.shape)}.")
        dtype = jnp.result_type(x_known.dtype, float)
        means, stds, w = self._flat(dtype)
        obs = np.flatnonzero(observed)
        miss = np.flatnonzero(~observed)
        x_obs = x_known.reshape(-1)[obs].astype(dtype)
        ll = self._component_logp(x_obs[None, None], means[None][..., obs],
                                  jnp.square(stds[None][..., obs]) + jnp.square(noise_std),
                                  w)[0]  # [K]
        return GaussianMixture(means=means[:, miss], stds=stds[:, miss],
                               weights=jax.nn.softmax(ll))

    def _state_parts(self, process: Any, u: Any, t: ArrayLike):
        """For a state process: ``(log w_k + log N(u; m mu_k, C_k)) [B, K]``, ``m [B, k]``, the
        stds ``[K, D]``, ``C_k^-1 (u - m mu_k)`` ``[B, K, D, k]`` and the data shape."""
        parts = process.check_state(u, name="u", where="GaussianMixture")
        x = parts[0]
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"GaussianMixture: the state's parts must be [B, "
                             f"*{self.event_shape}], got {tuple(x.shape)}.")
        t = check_time_shape(x, jnp.asarray(t, x.dtype), where="GaussianMixture")
        means, stds, weights = self._flat(x.dtype)
        m, sigma = process.marginal_coefficients(t)  # [B, k], [B, k, k]
        k = m.shape[-1]
        uf = jnp.stack([p.reshape(x.shape[0], -1) for p in parts], -1)  # [B, D, k]
        mean = m[:, None, None, :] * means[None, :, :, None]  # [B, K, D, k]
        cov = (jnp.square(stds)[None, :, :, None, None] * (m[:, :, None] * m[:, None, :])
               [:, None, None] + sigma[:, None, None])  # [B, K, D, k, k]
        resid = uf[:, None] - mean
        prec_r = jnp.linalg.solve(cov, resid[..., None])[..., 0]
        _, logdet = jnp.linalg.slogdet(cov)
        ll = -0.5 * jnp.sum(jnp.sum(resid * prec_r, -1) + logdet + k * math.log(2 * math.pi),
                            axis=-1)
        return ll + jnp.log(weights)[None], m, stds, prec_r, x.shape

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
        if not process.scalar_coefficients:
            return process.marginal_sample(ke, x0, t)
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


@pytree_dataclass
class ClassConditionalMixture:
    """Class-conditional Gaussian mixtures sharing components: the truth for guidance.

    Class ``c`` has the density ``p(x0 | c) = sum_k W[c, k] N(x0; mu_k, diag(s_k^2))`` and
    prior probability ``pi_c``; the unconditional data is the mixture with weights
    ``pi @ W``. Under the process every class stays a mixture, so the exact conditional and
    unconditional denoisers and the exact noisy classifier
    ``log p(c | x_t) = log pi_c + log p_t(x | c) - log p_t(x)`` are all closed form, and
    ``grad_x log p(c | x_t)`` is exactly the gap between the conditional and the unconditional
    scores (what classifier guidance adds).

    Args:
      means: ``[K, *event]`` component means.
      stds: ``[K]`` or ``[K, *event]`` component standard deviations.
      class_weights: ``[C, K]``, each row non-negative and summing to 1 (zeros allowed).
      class_probs: ``[C]`` class prior ``pi``, summing to 1.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> ccm = diffax.testing.ClassConditionalMixture(
      ...     means=jnp.array([[-1.0, 0.0], [1.0, 0.0]]), stds=jnp.array([0.3, 0.3]),
      ...     class_weights=jnp.array([[0.9, 0.1], [0.2, 0.8]]), class_probs=jnp.array([0.5, 0.5]))
      >>> p, x = diffax.VP(), jnp.zeros((4, 2))
      >>> label = jnp.array([0, 1, 0, 1])
      >>> ccm.denoiser(p, label)(x, 0.5).shape, ccm.log_prob_label(p, x, 0.5, label).shape
      ((4, 2), (4,))
    """

    means: Any
    stds: Any
    class_weights: Any
    class_probs: Any

    def __post_init__(self):
        cw, pi = concrete_value(self.class_weights), concrete_value(self.class_probs)
        k = int(np.shape(self.means)[0])
        if cw is not None:
            if cw.ndim != 2 or cw.shape[1] != k:
                raise ValueError(f"ClassConditionalMixture: `class_weights` must be [C, K] with "
                                 f"K = {k}, got shape {cw.shape}.")
            if np.any(cw < 0) or not np.allclose(cw.sum(1), 1.0, atol=1e-6):
                raise ValueError("ClassConditionalMixture: each row of `class_weights` must be "
                                 "non-negative and sum to 1.")
        if pi is not None:
            if pi.ndim != 1 or (cw is not None and pi.shape[0] != cw.shape[0]):
                raise ValueError(f"ClassConditionalMixture: `class_probs` must be [C] matching "
                                 f"`class_weights`, got shape {pi.shape}.")
            if np.any(pi < 0) or not np.isclose(pi.sum(), 1.0, atol=1e-6):
                raise ValueError("ClassConditionalMixture: `class_probs` must be non-negative "
                                 "and sum to 1.")
        self.marginal()  # validates means and stds

    @property
    def num_classes(self) -> int:
        return int(np.shape(self.class_weights)[0])

    def marginal(self) -> GaussianMixture:
        """The unconditional data distribution, weights ``pi @ W``."""
        w = jnp.asarray(self.class_probs) @ jnp.asarray(self.class_weights)
        return GaussianMixture(means=self.means, stds=self.stds, weights=w)

    def conditional(self, label: int) -> GaussianMixture:
        """The data distribution of one class (a Python int)."""
        if not 0 <= int(label) < self.num_classes:
            raise ValueError(f"ClassConditionalMixture: `label` must be in "
                             f"[0, {self.num_classes}), got {label}.")
        return GaussianMixture(means=self.means, stds=self.stds,
                               weights=jnp.asarray(self.class_weights)[int(label)])

    def _parts(self, process: Process, x: Array, t: ArrayLike):
        gm = self.marginal()
        x, xf, a, _, means, stds, _, mean_t, var_t = gm._prepare(process, x, t)
        ll = gm._component_logp(xf, mean_t, var_t, jnp.ones(means.shape[:1], x.dtype))  # [B, K]
        comp = means[None] + a * jnp.square(stds)[None] / var_t * (xf - mean_t)  # [B, K, D]
        return x, ll, comp

    def _labels(self, x: Array, label: ArrayLike) -> Array:
        label = jnp.asarray(label)
        if not jnp.issubdtype(label.dtype, jnp.integer) or label.shape not in ((), x.shape[:1]):
            raise ValueError(f"ClassConditionalMixture: `label` must be an int scalar or [B] = "
                             f"[{x.shape[0]}] ints, got {label.dtype}{list(label.shape)}.")
        return jnp.broadcast_to(label, x.shape[:1])

    def log_prob_label(self, process: Process, x: Array, t: ArrayLike,
                       label: ArrayLike) -> Array:
        """The exact noisy classifier ``log p(y = label | x_t = x)``, ``[B]``."""
        x, ll, _ = self._parts(process, x, t)
        label = self._labels(x, label)
        log_cw = jnp.log(jnp.asarray(self.class_weights, x.dtype))  # [C, K]
        log_px_c = jax.nn.logsumexp(ll[:, None, :] + log_cw[None], axis=-1)  # [B, C]
        log_joint = log_px_c + jnp.log(jnp.asarray(self.class_probs, x.dtype))[None]
        log_post = log_joint - jax.nn.logsumexp(log_joint, axis=-1, keepdims=True)
        return jnp.take_along_axis(log_post, label[:, None], axis=-1)[:, 0]

    def posterior_mean(self, process: Process, x: Array, t: ArrayLike,
                       label: ArrayLike) -> Array:
        """Exact ``E[x0 | x_t = x, y = label]`` (``label`` a scalar or ``[B]``)."""
        x, ll, comp = self._parts(process, x, t)
        label = self._labels(x, label)
        log_w = jnp.log(jnp.asarray(self.class_weights, x.dtype))[label]  # [B, K]
        r = jax.nn.softmax(ll + log_w, axis=-1)[..., None]
        return jnp.sum(r * comp, axis=1).reshape(x.shape)

    def denoiser(self, process: Process, label: ArrayLike) -> Denoiser:
        """The exact class-conditional denoiser ``D(x, t | label)``."""
        return lambda x, t: self.posterior_mean(process, x, t, label)


class EnumerableJoint:
    """A distribution over all ``K^L`` token sequences, small enough to enumerate: the exact
    denoiser of any discrete process (:mod:`diffax.discrete`) over it.

    ``D(x_t, t)[b, i, j] = sum_{x0: x0_i = j} p(x0) q(x_t | x0) / sum_{x0} p(x0) q(x_t | x0)``
    with ``q(x_t | x0) = prod_i q(x_t_i | x0_i)`` from the process's ``marginal_probs``: the
    posterior mean of ``onehot(x0)`` given the whole noisy sequence.

    Args:
      probs: ``[K] * L`` array of probabilities (summing to one); ``probs[x_1, ..., x_L]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from diffax import discrete
      >>> joint = EnumerableJoint(jnp.array([[0.5, 0.0], [0.0, 0.5]]))   # x1 == x2
      >>> D = joint.denoiser(discrete.Masked(vocab_size=2))
      >>> D(jnp.array([[1, 2]]), jnp.array([0.5])).tolist()   # the mask copies the first
      [[[0.0, 1.0], [0.0, 1.0]]]
    """

    def __init__(self, probs: ArrayLike):
        p = np.asarray(probs, np.float64)
        if p.ndim < 1 or len(set(p.shape)) != 1 or p.size > 4096:
            raise ValueError(f"EnumerableJoint: `probs` must be a [K] * L array with at most "
                             f"4096 entries, got shape {p.shape}.")
        if np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
            raise ValueError("EnumerableJoint: `probs` must be non-negative and sum to one.")
        self.vocab_size, self.length = int(p.shape[0]), int(p.ndim)
        self.probs = p.reshape(-1)
        grids = np.meshgrid(*[np.arange(self.vocab_size)] * self.length, indexing="ij")
        self.sequences = np.stack([g.reshape(-1) for g in grids], axis=-1).astype(np.int32)

    def log_prob(self, x: ArrayLike) -> np.ndarray:
        """``log p(x)`` for tokens ``[B, L]``."""
        x = np.asarray(x)
        idx = np.ravel_multi_index(tuple(x.T), (self.vocab_size,) * self.length)
        with np.errstate(divide="ignore"):
            return np.log(self.probs[idx])

    def entropy(self) -> float:
        """``H = -sum p log p`` in nats."""
        p = self.probs[self.probs > 0]
        return float(-(p * np.log(p)).sum())

    def sample(self, key: PRNGKey, num: int) -> jax.Array:
        """``num`` sequences ``[num, L]``."""
        i = jax.random.choice(key, self.probs.size, (num,), p=jnp.asarray(self.probs))
        return jnp.asarray(self.sequences)[i]

    def denoiser(self, process: Any):
        """The exact ``D(x_t, t) -> [B, L, K]`` for ``process``."""
        if process.vocab_size != self.vocab_size:
            raise ValueError(f"EnumerableJoint.denoiser: the process has vocab_size "
                             f"{process.vocab_size}, the joint {self.vocab_size}.")
        seqs = jnp.asarray(self.sequences)
        onehot = jax.nn.one_hot(seqs, self.vocab_size)              # [N, L, K]

        def one(x_t, t):
            q = process.marginal_probs(seqs, jnp.broadcast_to(t, (seqs.shape[0],)))
            lik = jnp.take_along_axis(q, jnp.broadcast_to(x_t[None, :, None],
                                                          (seqs.shape[0], x_t.shape[0], 1)),
                                      axis=-1)[..., 0]             # [N, L]
            w = jnp.asarray(self.probs, q.dtype) * jnp.prod(lik, axis=-1)
            return jnp.einsum("n,nlk->lk", w, onehot.astype(q.dtype)) / jnp.sum(w)

        def D(x_t, t):
            t = jnp.broadcast_to(jnp.asarray(t), (x_t.shape[0],))
            return jax.vmap(one)(x_t, t)

        return D



def log_snr_reference(process: Process, denoiser: Denoiser, x: Array, *, t_start: Any,
                      t_end: Any, rtol: float = 1e-10, atol: float = 1e-10,
                      lam_cap: float = 20.0, max_steps: int = 16384) -> Array:
    """A tight probability-flow solve for a variance-preserving process, integrated in the
    half log-SNR ``lam = log(alpha / sigma)`` instead of in time.

    For ``alpha^2 + sigma^2 = 1`` the probability-flow ODE in ``lam`` is
    ``dx/dlam = -alpha^2 x + alpha D(x, t(lam))`` with ``alpha^2 = sigmoid(2 lam)``: smooth
    whenever ``D`` depends on ``t`` only through ``(alpha, sigma)`` (as the mixture oracle's
    does), whatever the time parametrization. So on :class:`diffax.DiscreteVP`, whose velocity
    in ``t`` has a kink at each of its ``T`` grid times (an adaptive solve in ``t`` stalls at
    ~1e-4), it converges like on a smooth process. A ``t_end`` with ``sigma = 0`` (clean data,
    ``lam = inf``) is reached by solving to ``lam_cap`` and returning ``D`` there (the
    remaining change is ``O(sigma^2) = O(e^(-2 lam_cap))``).

    Args:
      process: a variance-preserving process (VP, cosine VP, DiscreteVP).
      denoiser: ``D(x, t)``.
      x: the states at ``t_start``, ``[B, ...]``.
      t_start, t_end: times, ``t_end < t_start``.
      rtol, atol: tolerances of the Dopri5 solve (per example).
      lam_cap: the half log-SNR standing in for ``inf``.
      max_steps: the most step attempts per example.

    Returns:
      The states at ``t_end``, ``[B, ...]``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.linear()
      >>> gm = GaussianMixture(means=jnp.array([[1.0]]), stds=jnp.array([0.5]),
      ...                      weights=jnp.array([1.0]))
      >>> x = p.prior_sample(jax.random.key(0), (2, 1))
      >>> log_snr_reference(p, gm.denoiser(p), x, t_start=1.0, t_end=p.t_min).shape
      (2, 1)
    """
    from diffax import _ode
    from diffax.processes import _VPFamily

    if not isinstance(process, _VPFamily):
        raise ValueError(f"log_snr_reference: `process` must be variance-preserving "
                         f"(alpha^2 + sigma^2 = 1), got {type(process).__name__}.")
    x = jnp.asarray(x)
    lam0 = 0.5 * process.log_snr(jnp.asarray(t_start, x.dtype))
    lam1 = 0.5 * process.log_snr(jnp.asarray(t_end, x.dtype))
    clean = ~jnp.isfinite(lam1)
    lam1 = jnp.where(clean, lam_cap, lam1)

    def velocity(lam, y):
        a2 = jax.nn.sigmoid(2.0 * lam)
        t = process.t_from_log_snr(2.0 * lam)
        d = denoiser(y, t)
        return expand(-a2, y) * y + expand(jnp.sqrt(a2), y) * d

    sol = _ode.integrate(velocity, x, t0=lam0, t1=lam1, rtol=rtol, atol=atol,
                         max_steps=max_steps, where="log_snr_reference")
    t_cap = process.t_from_log_snr(2.0 * lam1)
    final = denoiser(sol.y, jnp.broadcast_to(t_cap, x.shape[:1]))
    return jnp.where(clean, final, sol.y)
