"""LSGM: score-based generative modelling in latent space (Vahdat, Kreis & Kautz, NeurIPS 2021).

An encoder ``q(z_0 | x)`` (a diagonal Gaussian), a decoder ``p(x | z_0)`` and a score-based
prior ``p(z_0)`` on the latents are trained *together* on the negative ELBO

    L(x) = E_q[-log p(x | z_0)] - H(q(z_0 | x)) + CE(q(z_0 | x) || p(z_0)),

whose cross-entropy is estimated by denoising score matching on the latent diffusion. Everything
below is re-derived from the paper, not taken from its code.

**The identity.** For a linear forward SDE ``dz = f(t) z dt + g(t) dw`` and marginals ``q_t``,
``p_t`` of the *same* SDE started from ``q_0``, ``p_0``, both densities solve the same
Fokker-Planck equation; integrating by parts, the drift terms cancel and

    d/dt KL(q_t || p_t) = -g(t)^2 / 2 * E_{q_t} || grad log q_t - grad log p_t ||^2,

so ``KL(q_0 || p_0) = KL(q_T || p_T) + int_0^T g^2/2 E_{q_t} ||grad log q_t - grad log
p_t||^2 dt`` (:func:`gaussian_kl`, :func:`diffuse_gaussian`, :func:`fisher_divergence`,
:func:`kl_rate` give every term in closed form for Gaussians; the tests integrate it).

**The cross-entropy as denoising score matching.** The same Fokker-Planck argument gives
``d/dt H(q_t) = D f + g^2/2 E||grad log q_t||^2``, and for the Gaussian kernel
``q(z_t | z_0) = N(alpha z_0, sigma^2 I)``, ``H = D/2 log(2 pi e sigma^2)``. Expanding the
Fisher divergence around the kernel's score (``E||grad log q_t - s||^2 = E_{z_0, z_t}||grad log
q(z_t | z_0) - s||^2 - E||grad log q(z_t|z_0)||^2 + E||grad log q_t||^2``) and integrating
``d/dt CE(q_t || p_t) = d/dt (KL + H)`` from ``eps = t_min`` to ``T = t_max``:

    CE(q_eps || p_eps) = CE(q_T || p_T) + D/2 log(sigma_eps^2 / sigma_T^2)
                         + int_eps^T g^2 / (2 sigma_t^2) E || eps - eps_hat(z_t, t) ||^2 dt

with ``z_t = alpha z_0 + sigma eps``, ``eps_hat = -sigma s(z_t, t)`` and ``s = grad log p_t`` (the
kernel's score is ``-eps / sigma``). With a learned score this is an upper bound on the model's
cross-entropy (Song et al. 2021, "Maximum likelihood training of score-based diffusion
models"); with the exact score of a prior whose diffusion reaches the process's prior
``pi = N(0, sigma_T^2 I)`` it is an equality. :func:`dsm_cross_entropy` estimates it per
example: one ``t`` and one ``eps`` per example, ``CE(q_T || pi)`` in closed form given ``z_0``.

**Variance reduction** (:class:`NormalImportanceTime`). The integrand carries ``g^2 / sigma^2 =
-d log_snr / dt``, which diverges at ``t -> 0``. If the latents were ``N(0, I)`` the exact
``eps_hat = sigma z_t / (alpha^2 + sigma^2)`` gives ``E||eps - eps_hat||^2 = D alpha^2 /
(alpha^2 + sigma^2)``, so the expected integrand is ``-D/2 d log_snr/dt * sigmoid(log_snr) =
D/2 d/dt H(t)`` with ``H(t) = log(sigma^2 / (alpha^2 + sigma^2)) = log sigmoid(-log_snr)``
(for VP: ``log sigma_t^2``, the paper's choice). Drawing ``t`` from ``r(t) = H'(t) / (H(T) -
H(eps))`` makes that integrand constant in ``t``; the inverse CDF is closed-form
(``H = H(eps) + u (H(T) - H(eps))``, ``log_snr = log(-expm1(H)) - H``, then
``process.t_from_log_snr``), and the importance weight times ``g^2 / (2 sigma^2)`` is
``(H(T) - H(eps)) / (2 sigmoid(log_snr))``. :class:`diffax.losses.UniformTime` (or any
:class:`diffax.losses.TimeSampler`) is the alternative; the tests measure both.

**Mixed score** (:func:`mixed_eps`). The prior's network predicts only a correction to the
score of ``N(0, I)`` diffused by the process, ``eps_N(z, t) = sigma z / (alpha^2 + sigma^2)``:

    eps_hat = (1 - m) * eps_N + m * eps_theta,   m = sigmoid(mixing_logits)   (per latent dim)

so a zero residual ``eps_theta - eps_N`` (or ``m = 0``) is exactly the Normal prior; the logits
are learned with the score network.

**Separate objectives** (the paper's section 3.3). Likelihood-weighted, importance-sampled
training is what the encoder needs (it is the ELBO), but it trains the score model mostly at
small ``t``; the paper trains the score model on its own reweighted objective instead.
``LSGMObjective(score_weighting=UnweightedScore())`` (``w_un = 1``: the eps-MSE) or
``ReweightedScore()`` (``w_re = g^2``), both with their own uniform ``t`` draw: the encoder's
cross-entropy sees the score network with its parameters under ``stop_gradient``, the score
term (:func:`score_matching_loss`) sees ``stop_gradient(z_0)``, and the sum of the two is one
loss whose gradient trains each group on its own term.

Pieces: :class:`LSGMObjective` (the whole per-example negative ELBO, typed options),
:func:`dsm_cross_entropy`, :class:`NormalImportanceTime`, :func:`normal_eps`,
:func:`mixed_eps`, :func:`mixed_denoiser`, :func:`gaussian_entropy`,
:class:`GaussianReconstruction`, :class:`UnweightedScore`, :class:`ReweightedScore`,
:func:`score_matching_loss`. The likelihood bound of a trained model is
:func:`diffax.latent.latent_log_likelihood` of a scale-1 :class:`diffax.Latent`
(``diffax likelihood``: :func:`diffax.train.lsgm.lsgm_likelihood`). Joint training by
``diffax train`` (the encoder, decoder and score network with their own optimisers) is
:mod:`diffax.train.lsgm`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass
from diffax.losses import TimeSampler, UniformTime
from diffax.processes import Process
from diffax.typing import Array, PRNGKey

__all__ = [
    "GaussianReconstruction",
    "LSGMObjective",
    "NormalImportanceTime",
    "ReweightedScore",
    "UnweightedScore",
    "diffuse_gaussian",
    "dsm_cross_entropy",
    "fisher_divergence",
    "gaussian_entropy",
    "gaussian_kl",
    "kl_rate",
    "mixed_denoiser",
    "mixed_eps",
    "normal_eps",
    "score_matching_loss",
]


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


# --------------------------------------------------------------------------------------------
# The LSGM objective


def _per_example(process: Process, t: Array, z: Array) -> tuple[Array, Array]:
    """``alpha(t)``, ``sigma(t)`` shaped ``[B, 1, ..., 1]`` to broadcast against ``z``."""
    t = jnp.broadcast_to(jnp.asarray(t, z.dtype), z.shape[:1])
    shape = (z.shape[0],) + (1,) * (z.ndim - 1)
    return (process.alpha(t).astype(z.dtype).reshape(shape),
            process.sigma(t).astype(z.dtype).reshape(shape))


def _check_gaussian(process: Any, owner: str) -> None:
    if not isinstance(process, Process) or not getattr(process, "scalar_coefficients", True):
        raise TypeError(f"{owner}: `process` must be a Gaussian diffax process (VP, VE, SubVP, "
                        f"EDM, ...), got {process!r}.")


def _sum(a: Array) -> Array:
    return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def normal_eps(process: Process, z: Array, t: Array) -> Array:
    """The exact eps-prediction of the prior ``N(0, I)`` diffused by ``process``:
    ``eps_N = -sigma * score = sigma z / (alpha^2 + sigma^2)``.

    Args:
      process: a Gaussian diffax process.
      z: ``[B, ...]`` latents at time ``t``.
      t: ``[B]`` (or a scalar) times.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VE(sigma_min=0.01, sigma_max=1.0)
      >>> float(normal_eps(p, jnp.ones((1, 1)), 1.0)[0, 0])  # sigma / (1 + sigma^2)
      0.5
    """
    _check_gaussian(process, "normal_eps")
    z = jnp.asarray(z)
    a, s = _per_example(process, t, z)
    return s * z / (jnp.square(a) + jnp.square(s))


def mixed_eps(process: Process, z: Array, t: Array, network_eps: Array,
              mixing_logits: Array) -> Array:
    """LSGM's mixed score in eps form: ``(1 - m) eps_N + m eps_theta`` with ``m =
    sigmoid(mixing_logits)`` per latent dimension (see the module docstring).

    Args:
      process: a Gaussian diffax process.
      z: ``[B, ...]`` latents at time ``t``.
      t: ``[B]`` (or a scalar) times.
      network_eps: ``[B, ...]`` the score network's eps-prediction ``eps_theta``.
      mixing_logits: ``[...]`` (a latent's shape; broadcast over the batch) or ``[B, ...]``.

    Returns:
      ``eps_hat`` ``[B, ...]``; the score is ``-eps_hat / sigma``.

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> z, p = jnp.ones((2, 3)), diffax.VP()
      >>> e = mixed_eps(p, z, 0.5, jnp.zeros((2, 3)), jnp.full((3,), -jnp.inf))  # m = 0
      >>> bool(jnp.all(e == normal_eps(p, z, 0.5)))
      True
    """
    z, network_eps = jnp.asarray(z), jnp.asarray(network_eps)
    logits = jnp.asarray(mixing_logits)
    if network_eps.shape != z.shape:
        raise ValueError(f"mixed_eps: `network_eps` must have the shape of `z` {z.shape}, got "
                         f"{network_eps.shape}.")
    if logits.shape == z.shape[1:]:
        logits = logits[None]
    elif logits.shape != z.shape:
        raise ValueError(f"mixed_eps: `mixing_logits` must have shape {z.shape[1:]} (one per "
                         f"latent dimension) or {z.shape}, got {logits.shape}.")
    m = jax.nn.sigmoid(logits).astype(z.dtype)
    return (1.0 - m) * normal_eps(process, z, t) + m * network_eps


def mixed_denoiser(process: Process, eps_fn: Callable[[Array, Array], Array],
                   mixing_logits: Array) -> Callable[[Array, Array], Array]:
    """The denoiser ``D(z, t) = (z - sigma eps_hat) / alpha`` of the mixed score, for any
    diffax solver (``eps_fn(z, t)``: the network's eps-prediction ``eps_theta``).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = mixed_denoiser(diffax.VP(), lambda z, t: jnp.zeros_like(z), jnp.zeros((2,)))
      >>> jax.jit(D)(jnp.ones((4, 2)), jnp.full((4,), 0.5)).shape  # then diffax.sample(...)
      (4, 2)
    """
    from diffax.parameterization import as_denoiser

    _check_gaussian(process, "mixed_denoiser")
    return as_denoiser(lambda z, t: mixed_eps(process, z, t, eps_fn(z, t), mixing_logits),
                       process, prediction="eps")


def gaussian_entropy(posterior: Any) -> Array:
    """``H(q) = sum(1/2 log(2 pi e) + log std)`` per example ``[B]`` of a
    :class:`diffax.latent.DiagonalGaussian` (its clipped ``logvar``, as it samples).

    Example:
      >>> import jax.numpy as jnp
      >>> from diffax.latent import DiagonalGaussian
      >>> q = DiagonalGaussian(mean=jnp.zeros((1, 2)), logvar=jnp.zeros((1, 2)))
      >>> round(float(gaussian_entropy(q)[0]), 6)  # log(2 pi e)
      2.837877
    """
    log_std = jnp.log(posterior.std)
    return _sum(0.5 * math.log(2 * math.pi * math.e) + log_std)


@pytree_dataclass
class NormalImportanceTime(TimeSampler):
    """LSGM's variance-reduced time sampling for the likelihood-weighted cross-entropy:
    ``r(t) ∝ d/dt log(sigma^2 / (alpha^2 + sigma^2))`` on ``[t_min, t_max]`` (for VP,
    ``∝ d/dt log sigma_t^2``), the density that makes the expected integrand constant when
    the latents are ``N(0, I)`` (derivation in the module docstring).

    ``correction`` is ``q(t) / r(t)`` with ``q`` uniform on ``[t_min, t_max]``, so any
    estimator keeps the uniform-time expectation.

    Example:
      >>> import jax, diffax
      >>> draw = jax.jit(lambda k: NormalImportanceTime().sample(k, diffax.VP(), 4))
      >>> t, c = draw(jax.random.key(0))
      >>> t.shape, c.shape, bool((t >= 1e-5).all() & (t <= 1.0).all())
      ((4,), (4,), True)
    """

    @staticmethod
    def log_ratio(process: Process, t: Array) -> Array:
        """``H(t) = log(sigma^2 / (alpha^2 + sigma^2)) = log sigmoid(-log_snr(t))``."""
        return jax.nn.log_sigmoid(-process.log_snr(t))

    def from_uniform(self, process, u):
        lo = jnp.asarray(process.t_min, u.dtype)
        hi = jnp.asarray(process.t_max, u.dtype)
        h_lo, h_hi = self.log_ratio(process, lo), self.log_ratio(process, hi)
        h = h_lo + u * (h_hi - h_lo)
        lam = jnp.log(-jnp.expm1(h)) - h
        t = jnp.clip(process.t_from_log_snr(lam), lo, hi)
        _, dh = jax.jvp(lambda s: self.log_ratio(process, s), (t,), (jnp.ones_like(t),))
        return t, (h_hi - h_lo) / ((hi - lo) * dh)


def dsm_cross_entropy(key: PRNGKey, process: Process, eps_fn: Callable[[Array, Array], Array],
                      z0: Array, *, time_sampler: TimeSampler | None = None
                      ) -> tuple[Array, dict[str, Array]]:
    """One-sample estimate of ``CE(q_{t_min} || p_{t_min})`` per example, by denoising score
    matching on ``process`` (the formula of the module docstring):

        CE(q_T || pi) + D/2 log(sigma_{t_min}^2 / sigma_{t_max}^2)
          + w(t) * (t_max - t_min) * g(t)^2 / (2 sigma^2) * ||eps - eps_fn(z_t, t)||^2

    with ``t`` and its importance weight ``w`` from ``time_sampler``, ``z_t = alpha z0 +
    sigma eps``, and ``CE(q_T || pi) = E[-process.prior_logp(alpha_T z0 + sigma_T eps')]`` in
    closed form given ``z0``. Averaged over ``z0 ~ q(z_0 | x)`` it is the cross-entropy of
    ``q`` against the prior whose score ``eps_fn`` gives (an upper bound for a learned score).

    Args:
      key: PRNG key (``t`` and ``eps``).
      process: a Gaussian diffax process on the latents.
      eps_fn: ``eps_fn(z_t, t) -> eps_hat`` ``[B, ...]`` (e.g. :func:`mixed_eps` of a network).
      z0: ``[B, ...]`` draws of ``q(z_0 | x)`` (reparameterised, for gradients).
      time_sampler: :class:`NormalImportanceTime` (default) or any
        :class:`diffax.losses.TimeSampler` (``UniformTime()``: plain uniform ``t``).

    Returns:
      ``(ce [B], aux)``: nats per example; ``aux`` holds ``t``, ``diffusion`` (the weighted
      score-matching term), ``prior`` (``CE(q_T || pi)``) and ``constant``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> ce, aux = jax.jit(lambda k, z0: dsm_cross_entropy(
      ...     k, p, lambda z, t: normal_eps(p, z, t), z0))(jax.random.key(0), jnp.zeros((3, 2)))
      >>> ce.shape, sorted(aux)
      ((3,), ['constant', 'diffusion', 'prior', 't'])
    """
    _check_gaussian(process, "dsm_cross_entropy")
    time_sampler = NormalImportanceTime() if time_sampler is None else time_sampler
    if not isinstance(time_sampler, TimeSampler):
        raise TypeError(f"dsm_cross_entropy: `time_sampler` must be a diffax.losses."
                        f"TimeSampler (NormalImportanceTime(), UniformTime()), got "
                        f"{time_sampler!r}.")
    z0 = jnp.asarray(z0)
    if z0.ndim < 2:
        raise ValueError(f"dsm_cross_entropy: `z0` must be [B, ...] with at least one latent "
                         f"axis, got shape {z0.shape}.")
    b, dim = z0.shape[0], math.prod(z0.shape[1:])
    k_t, k_eps = jax.random.split(key)
    t, weight = time_sampler.sample(k_t, process, b, dtype=z0.dtype)
    eps = jax.random.normal(k_eps, z0.shape, z0.dtype)
    a, s = _per_example(process, t, z0)
    eps_hat = eps_fn(a * z0 + s * eps, t)
    lo = jnp.asarray(process.t_min, z0.dtype)
    hi = jnp.asarray(process.t_max, z0.dtype)
    rate = process.g2(t).astype(z0.dtype) / (2.0 * jnp.square(process.sigma(t).astype(z0.dtype)))
    diffusion = weight * (hi - lo) * rate * _sum(jnp.square(eps - eps_hat))
    a_t, s_t = process.alpha(hi), process.sigma(hi)
    v = jnp.square(process.prior_std.astype(z0.dtype))
    prior = (0.5 * dim * jnp.log(2 * jnp.pi * v)
             + (jnp.square(a_t) * _sum(jnp.square(z0)) + dim * jnp.square(s_t)) / (2 * v))
    constant = 0.5 * dim * (2 * jnp.log(process.sigma(lo)) - 2 * jnp.log(s_t))
    constant = jnp.broadcast_to(constant.astype(z0.dtype), (b,))
    ce = prior + constant + diffusion
    return ce, {"t": t, "diffusion": diffusion, "prior": prior, "constant": constant}


@pytree_dataclass
class UnweightedScore:
    """LSGM's ``w_un`` for the score model's own objective: ``||eps - eps_hat(z_t, t)||^2``
    with ``t`` uniform on ``[t_min, t_max]`` (the plain eps-MSE of DDPM, summed over the
    latent dimensions), the weighting the paper trains its score model with for sample quality.

    Example:
      >>> import jax, diffax
      >>> float(UnweightedScore().weight(diffax.VP(), jax.numpy.ones(2))[0])
      1.0
    """

    time_sampler: TimeSampler = dataclasses.field(default_factory=UniformTime)

    def weight(self, process: Process, t: Array) -> Array:
        """``w(t) = 1`` per example."""
        del process
        return jnp.ones_like(t)


@pytree_dataclass
class ReweightedScore:
    """LSGM's ``w_re`` for the score model's own objective: ``g(t)^2 ||eps - eps_hat||^2``
    (the likelihood weighting ``g^2 / sigma^2`` times ``sigma^2``: less weight near ``t = 0``),
    with ``t`` uniform on ``[t_min, t_max]`` by default (any :class:`diffax.losses.TimeSampler`;
    its importance correction multiplies the weight, so the expectation stays the
    uniform-``t`` one).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> bool(ReweightedScore().weight(p, jnp.ones(1))[0] == p.g2(jnp.ones(1))[0])
      True
    """

    time_sampler: TimeSampler = dataclasses.field(default_factory=UniformTime)

    def weight(self, process: Process, t: Array) -> Array:
        """``w(t) = g(t)^2`` per example."""
        return process.g2(t)


_SCORE_WEIGHTINGS = (UnweightedScore, ReweightedScore)


def score_matching_loss(key: PRNGKey, process: Process,
                        eps_fn: Callable[[Array, Array], Array], z0: Array, *,
                        weighting: UnweightedScore | ReweightedScore) -> tuple[Array, Array]:
    """The score model's own objective in LSGM's separate training, per example ``[B]``:
    ``correction(t) * w(t) * ||eps - eps_fn(alpha z0 + sigma eps, t)||^2`` with ``t`` (and its
    importance correction) from ``weighting.time_sampler`` and ``w`` from ``weighting``
    (:class:`UnweightedScore`, :class:`ReweightedScore`). ``z0`` enters as data: the caller
    stops its gradient (:class:`LSGMObjective` does).

    Args:
      key: PRNG key (``t`` and ``eps``: a second draw, independent of the cross-entropy's).
      process: a Gaussian diffax process on the latents.
      eps_fn: ``eps_fn(z_t, t) -> eps_hat`` (the mixed score of the network).
      z0: ``[B, ...]`` latents.
      weighting: :class:`UnweightedScore` or :class:`ReweightedScore`.

    Returns:
      ``(loss [B], t [B])``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> loss, t = jax.jit(lambda k, z0: score_matching_loss(
      ...     k, p, lambda z, t: jnp.zeros_like(z), z0, weighting=UnweightedScore()))(
      ...     jax.random.key(0), jnp.zeros((3, 2)))
      >>> loss.shape, t.shape
      ((3,), (3,))
    """
    _check_gaussian(process, "score_matching_loss")
    if not isinstance(weighting, _SCORE_WEIGHTINGS):
        raise TypeError(f"score_matching_loss: `weighting` must be UnweightedScore() or "
                        f"ReweightedScore(), got {weighting!r}.")
    z0 = jnp.asarray(z0)
    k_t, k_eps = jax.random.split(key)
    t, correction = weighting.time_sampler.sample(k_t, process, z0.shape[0], dtype=z0.dtype)
    eps = jax.random.normal(k_eps, z0.shape, z0.dtype)
    a, s = _per_example(process, t, z0)
    eps_hat = eps_fn(a * z0 + s * eps, t)
    w = correction * weighting.weight(process, t).astype(z0.dtype)
    return w * _sum(jnp.square(eps - eps_hat)), t


@pytree_dataclass
class GaussianReconstruction:
    """The decoder's ``-log p(x | z_0) = -log N(x; decode(z_0), std^2 I)`` per example, summed
    over the data's axes: ``||x - x_hat||^2 / (2 std^2) + D (log std + log(2 pi) / 2)``
    (:func:`diffax.latent.gaussian_nll`, also behind
    :meth:`diffax.latent.GaussianDecoder.log_prob`).

    Args:
      std: the decoder's noise level in the data's units (a leaf; the model range is
        ``[-1, 1]`` for images, so 0.1 is 5% of it).

    Example:
      >>> import jax.numpy as jnp
      >>> nll = GaussianReconstruction(std=1.0)(jnp.zeros((1, 2)), jnp.ones((1, 2)))
      >>> round(float(nll[0]), 6)  # 2 * (1/2 + log(2 pi)/2)
      2.837877
    """

    std: Any = 0.1

    def __post_init__(self):
        v = concrete_value(self.std)
        if v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) <= 0):
            raise ValueError(f"GaussianReconstruction: `std` must be a positive number, got "
                             f"{self.std!r}.")

    def __call__(self, x: Array, x_hat: Array) -> Array:
        from diffax.latent import gaussian_nll

        return gaussian_nll(x, x_hat, self.std)


@pytree_dataclass
class LSGMObjective:
    """LSGM's training objective per example, in nats (an upper bound on ``-log p(x)`` of the
    model ``p(z_0) p(x | z_0)``, up to the ``t_min`` cut-off of the diffusion):

        reconstruction(x, decode(z_0)) + kl_weight * (CE(q(z_0|x) || p(z_0)) - H(q(z_0|x)))

    with ``z_0`` one reparameterised draw of the encoder's posterior, the entropy in closed form
    (:func:`gaussian_entropy`) and the cross-entropy by :func:`dsm_cross_entropy`.

    Args:
      process: the latent diffusion (any Gaussian diffax process; the paper uses VP).
      time_sampler: :class:`NormalImportanceTime` (the paper's variance reduction, default) or
        :class:`diffax.losses.UniformTime`.
      reconstruction: the decoder's negative log-likelihood (:class:`GaussianReconstruction`).
      kl_weight: weight of ``CE - H`` (1 is the ELBO; below 1 a KL warm-up, a leaf).
      score_weighting: ``None`` (default): every parameter group trains on the negative
        ELBO above. :class:`UnweightedScore` or :class:`ReweightedScore`: the paper's
        separate objectives (section 3.3): the encoder and decoder train on the negative
        ELBO, whose cross-entropy sees the score network through ``encoder_eps_fn`` (its
        parameters under ``stop_gradient``), and the score network (and mixing logits) on
        :func:`score_matching_loss` of ``stop_gradient(z_0)`` with its own ``t`` draw; the
        returned loss is the sum of the two, so one gradient trains each group on its own
        term.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> from diffax.latent import DiagonalGaussian
      >>> obj = LSGMObjective(process=diffax.VP())
      >>> x = jnp.zeros((2, 3))
      >>> q = DiagonalGaussian(mean=jnp.zeros((2, 2)), logvar=jnp.zeros((2, 2)))
      >>> nelbo, aux = jax.jit(lambda key, x, q: obj(
      ...     key, x, posterior=q, decode=lambda z: jnp.zeros((2, 3)),
      ...     eps_fn=lambda z, t: normal_eps(obj.process, z, t)))(jax.random.key(0), x, q)
      >>> nelbo.shape, sorted(aux)[:3]
      ((2,), ['cross_entropy', 'diffusion', 'entropy'])
    """

    process: Process
    time_sampler: TimeSampler = dataclasses.field(default_factory=NormalImportanceTime)
    reconstruction: GaussianReconstruction = dataclasses.field(
        default_factory=GaussianReconstruction)
    kl_weight: Any = 1.0
    score_weighting: UnweightedScore | ReweightedScore | None = None

    def __post_init__(self):
        _check_gaussian(self.process, "LSGMObjective")
        if self.score_weighting is not None and not isinstance(self.score_weighting,
                                                               _SCORE_WEIGHTINGS):
            raise TypeError(f"LSGMObjective: `score_weighting` must be None, UnweightedScore() "
                            f"or ReweightedScore(), got {self.score_weighting!r}.")
        if not isinstance(self.time_sampler, TimeSampler):
            raise TypeError(f"LSGMObjective: `time_sampler` must be a diffax.losses.TimeSampler "
                            f"(NormalImportanceTime(), UniformTime()), got "
                            f"{self.time_sampler!r}.")
        if not isinstance(self.reconstruction, GaussianReconstruction):
            raise TypeError(f"LSGMObjective: `reconstruction` must be a GaussianReconstruction, "
                            f"got {self.reconstruction!r}.")
        v = concrete_value(self.kl_weight)
        if v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) < 0):
            raise ValueError(f"LSGMObjective: `kl_weight` must be a finite number >= 0, got "
                             f"{self.kl_weight!r}.")

    def __call__(self, key: PRNGKey, x: Array, *, posterior: Any,
                 decode: Callable[[Array], Array], eps_fn: Callable[[Array, Array], Array],
                 encoder_eps_fn: Callable[[Array, Array], Array] | None = None
                 ) -> tuple[Array, dict[str, Array]]:
        """``(loss [B], aux)`` for data ``x`` ``[B, ...]``: the negative ELBO, or with a
        ``score_weighting`` the negative ELBO plus the score model's own term.

        Args:
          key: PRNG key (the posterior draw, ``t`` and the diffusion noise; with a
            ``score_weighting`` also the score term's ``t`` and noise, from
            ``fold_in(k_ce, 1)`` where ``k_z, k_ce = split(key)``).
          x: the data.
          posterior: the encoder's ``q(z_0 | x)``, a :class:`diffax.latent.DiagonalGaussian`.
          decode: ``z_0 -> x_hat`` (the decoder's mean).
          eps_fn: the prior's eps-prediction ``eps_hat(z_t, t)`` (:func:`mixed_eps`).
          encoder_eps_fn: with a ``score_weighting`` (required then): ``eps_fn`` with the
            score network's parameters under ``jax.lax.stop_gradient``, for the encoder's
            cross-entropy.

        Returns:
          The loss per example and ``aux``: ``reconstruction``, ``entropy``,
          ``cross_entropy``, ``kl`` (``CE - H``), ``diffusion``, ``t``, ``z0``; with a
          ``score_weighting`` also ``nelbo``, ``score_loss`` and ``t_score``.
        """
        k_z, k_ce = jax.random.split(key)
        z0 = posterior.sample(k_z)
        rec = self.reconstruction(x, decode(z0))
        ent = gaussian_entropy(posterior)
        if self.score_weighting is not None:
            if encoder_eps_fn is None:
                raise ValueError("LSGMObjective: a `score_weighting` needs `encoder_eps_fn` "
                                 "(eps_fn with the score parameters under stop_gradient).")
            ce_eps_fn = encoder_eps_fn
        else:
            ce_eps_fn = eps_fn
        ce, ce_aux = dsm_cross_entropy(k_ce, self.process, ce_eps_fn, z0,
                                       time_sampler=self.time_sampler)
        kl = ce - ent
        nelbo = rec + jnp.asarray(self.kl_weight, rec.dtype) * kl
        aux = {"reconstruction": rec, "entropy": ent, "cross_entropy": ce, "kl": kl,
               "diffusion": ce_aux["diffusion"], "t": ce_aux["t"], "z0": z0}
        if self.score_weighting is None:
            return nelbo, aux
        score, t_score = score_matching_loss(jax.random.fold_in(k_ce, 1), self.process, eps_fn,
                                             jax.lax.stop_gradient(z0),
                                             weighting=self.score_weighting)
        return nelbo + score, dict(aux, nelbo=nelbo, score_loss=score, t_score=t_score)

