"""LSGM's KL identity for diffusions, in closed form for Gaussians (the first piece of LSGM).

Vahdat, Kreis & Kautz (2021), "Score-based Generative Modeling in Latent Space", build their
objective on this fact about a linear forward SDE ``dz = f(t) z dt + g(t) dw``: if ``q_t`` and
``p_t`` are the marginals of the *same* SDE started from ``q_0`` and ``p_0``, then

    d/dt KL(q_t || p_t) = -g(t)^2 / 2 * E_{q_t} || grad log q_t - grad log p_t ||^2,

so ``KL(q_0 || p_0) = KL(q_T || p_T) + int_0^T g(t)^2 / 2 E_{q_t} ||grad log q_t - grad log
p_t||^2 dt``. (Derivation: both densities solve the Fokker-Planck equation of the SDE; the
drift terms cancel after integrating by parts, and the diffusion term gives the Fisher
divergence.) With ``p_0`` the latent score model's prior this turns the cross-entropy of the
encoder's ``q(z_0 | x)`` against ``p(z_0)`` into a denoising score matching loss, LSGM's
objective (still to come: issue #18).

For Gaussian ``q_0 = N(m_q, S_q)`` and ``p_0 = N(m_p, S_p)`` every term is closed-form under
``z_t = alpha(t) z_0 + sigma(t) eps``: ``q_t = N(alpha m_q, alpha^2 S_q + sigma^2 I)`` and, with
``x ~ q_t``, ``grad log q_t(x) - grad log p_t(x) = (P_p - P_q)(x - m_q) - P_p (m_q - m_p)``
(``P`` the precisions), whose mean square is ``tr(M S M^T) + |P_p (m_q - m_p)|^2`` with
``M = P_p - P_q``, ``S`` the covariance of ``q_t``. These functions give them for any diffax
process (its ``alpha``, ``sigma`` and ``g2``); the tests integrate the right-hand side
numerically and recover the left.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffax.processes import Process
from diffax.typing import Array

__all__ = ["gaussian_kl", "diffuse_gaussian", "fisher_divergence", "kl_rate"]


def _check(mean: Array, cov: Array, name: str) -> tuple[Array, Array]:
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"`{name}`: the mean must be [D] and the covariance [D, D], got "
                         f"{mean.shape} and {cov.shape}.")
    return mean, cov


def gaussian_kl(mean_q: Array, cov_q: Array, mean_p: Array, cov_p: Array) -> Array:
    """``KL(N(mean_q, cov_q) || N(mean_p, cov_p))`` for full covariances ``[D, D]``.

    ``0.5 (tr(P_p S_q) + (m_p - m_q)^T P_p (m_p - m_q) - D + log det S_p - log det S_q)``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(gaussian_kl(jnp.zeros(2), jnp.eye(2), jnp.ones(2), jnp.eye(2)))
      1.0
    """
    mean_q, cov_q = _check(mean_q, cov_q, "q")
    mean_p, cov_p = _check(mean_p, cov_p, "p")
    d = mean_q.shape[0]
    diff = mean_p - mean_q
    _, logdet_p = jnp.linalg.slogdet(cov_p)
    _, logdet_q = jnp.linalg.slogdet(cov_q)
    return 0.5 * (jnp.trace(jnp.linalg.solve(cov_p, cov_q)) + diff @ jnp.linalg.solve(cov_p, diff)
                  - d + logdet_p - logdet_q)


def diffuse_gaussian(process: Process, mean: Array, cov: Array, t: Array
                     ) -> tuple[Array, Array]:
    """The marginal at time ``t`` of ``N(mean, cov)`` under ``process``:
    ``(alpha mean, alpha^2 cov + sigma^2 I)``."""
    mean, cov = _check(mean, cov, "mean/cov")
    a, s = process.alpha(t), process.sigma(t)
    return a * mean, a**2 * cov + s**2 * jnp.eye(mean.shape[0], dtype=cov.dtype)


def fisher_divergence(mean_q: Array, cov_q: Array, mean_p: Array, cov_p: Array) -> Array:
    """``E_{x ~ q} ||grad log q(x) - grad log p(x)||^2`` for Gaussians ``q``, ``p``
    (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> float(fisher_divergence(jnp.zeros(2), jnp.eye(2), jnp.ones(2), jnp.eye(2)))
      2.0
    """
    mean_q, cov_q = _check(mean_q, cov_q, "q")
    mean_p, cov_p = _check(mean_p, cov_p, "p")
    prec_p = jnp.linalg.inv(cov_p)
    m = prec_p - jnp.linalg.inv(cov_q)
    shift = prec_p @ (mean_q - mean_p)
    return jnp.trace(m @ cov_q @ m.T) + shift @ shift


def kl_rate(process: Process, mean_q: Array, cov_q: Array, mean_p: Array, cov_p: Array,
            t: Array) -> Array:
    """``g(t)^2 / 2 * E_{q_t} ||grad log q_t - grad log p_t||^2``: the rate at which
    ``KL(q_t || p_t)`` falls, for Gaussian ``q_0``, ``p_0`` diffused by ``process``."""
    q = diffuse_gaussian(process, mean_q, cov_q, t)
    p = diffuse_gaussian(process, mean_p, cov_p, t)
    return 0.5 * process.g2(t) * fisher_divergence(*q, *p)
