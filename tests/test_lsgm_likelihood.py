"""LSGM's likelihood bound (what ``diffax likelihood`` reports for an LSGM run) against closed
forms, in float64.

The model: a linear-Gaussian encoder ``q(z | x) = N(A x + b, diag s^2)``, a linear-Gaussian
decoder ``p(x | z) = N(W z + c, std^2 I)`` and the mixed score (:func:`diffax.lsgm.mixed_denoiser`)
of either a zero residual (the network predicts ``eps_N``; random mixing logits: the prior
``N(0, I)``, whose VP probability-flow drift is 0) or of a network predicting the exact eps of
``N(m, diag v)`` with mixing weight 1 (a non-trivial ODE). Either way the PF-ODE maps ``z_0``
affinely to ``z_T ~ N(0, prior_std^2)``, so the model's prior ``p(z_0)`` is a closed-form
Gaussian. The bound is computed by the function ``diffax likelihood`` calls for an LSGM run,
:func:`diffax.latent.latent_log_likelihood` of a scale-1 :class:`diffax.Latent` (what
``LSGMTrainer.latent(params)`` builds). Checked:

* per draw ``z ~ q(z | x)``: ``-logp = -log N(x; W z + c, std^2) - log p(z) + log q(z | x)``
  up to the ODE solver's error (``rtol = atol = 1e-9``; allowed ``1e-6``, a thousandfold
  margin over the solver's tolerance for an O(1) latent NLL; measured ~1e-12);
* averaged over 512 draws it is the closed-form negative ELBO ``E_q||x - W z - c||^2 /
  (2 std^2) + D_x log(std sqrt(2 pi)) + KL(q || p)`` within 5 standard errors;
* a broken variant (``-log q`` omitted) misses the per-draw value by more than 1000 times the
  tolerance and the negative ELBO by more than 5 standard errors;
* in the second case the decoder is the discretised one on 8-bit ``data`` (what ``diffax
  likelihood`` uses), its term checked per draw against ``decoder.log_prob(data, W z + c)``
  (this replaces tests/test_latent_likelihood.py's separate ODE solve of a stand-in encoder:
  its ``-log q`` closed form, the sum of the terms and the ``data`` path live here now).

The ``:tiny`` run through ``diffax likelihood`` (the trained fixture of
tests/train/test_lsgm_train.py) is checked there.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import latent, lsgm
from diffax._pytree import pytree_dataclass

DX, DZ, STD = 4, 2, 2.0
N = 512  # posterior draws
Z = 5.0  # standard errors allowed for the Monte Carlo mean
ODE_TOL = 1e-9
ALLOWED = 1e-6  # per draw: 1000 x the solver's tolerance (the latent NLL is O(1))


@pytree_dataclass
class LinearGaussianAutoencoder:
    a: jax.Array
    b: jax.Array
    logvar: jax.Array
    w: jax.Array
    c: jax.Array

    @property
    def data_shape(self):
        return (DX,)

    @property
    def latent_shape(self):
        return (DZ,)

    def posterior(self, x):
        mean = x @ self.a.T + self.b[None]
        return latent.DiagonalGaussian(mean=mean, logvar=jnp.broadcast_to(self.logvar,
                                                                          mean.shape))

    def encode(self, x, *, key=None):
        return self.posterior(x).mean if key is None else self.posterior(x).sample(key)

    def decode(self, z):
        return z @ self.w.T + self.c[None]


def _model():
    rng = np.random.default_rng(11)
    ae = LinearGaussianAutoencoder(
        a=jnp.asarray(rng.standard_normal((DZ, DX))), b=jnp.asarray(rng.standard_normal(DZ)),
        logvar=jnp.log(jnp.asarray([0.3, 0.7]) ** 2),
        w=jnp.asarray(rng.standard_normal((DX, DZ))), c=jnp.asarray(rng.standard_normal(DX)))
    k = jnp.asarray(rng.integers(0, 256, (1, DX)), jnp.float64)  # 8-bit data, and
    x = -1.0 + 2.0 * k[0] / 255.0  # its value in the model's range
    logits = jnp.asarray(rng.standard_normal(DZ))
    return ae, x, k, logits


def _flow_prior(process, m, v):
    """The model's prior on z_0: the PF-ODE of the exact score of N(m, diag v) maps z at
    t_min to z_T affinely per dimension (mean alpha m, variance alpha^2 v + sigma^2 at each
    end), and z_T ~ N(0, prior_std^2): so z_0 ~ N(mu, s2) with these two numbers."""
    lo, hi = process.t_min, process.t_max
    a0, s0, a1, s1 = (float(f(t)) for t in (lo, hi) for f in (process.alpha, process.sigma))
    v0, v1 = a0**2 * v + s0**2, a1**2 * v + s1**2
    ratio = np.sqrt(v0 / v1)
    return a0 * m - ratio * a1 * m, ratio**2 * float(process.prior_std) ** 2


@pytest.mark.parametrize("prior", ["zero_residual", "gaussian"])
def test_lsgm_bound_is_the_closed_form_negative_elbo(prior, x64):
    """zero_residual: the mixed score of a network predicting eps_N, random mixing logits
    (the prior N(0, I); for VP its PF-ODE drift is 0). gaussian: the network predicts the
    exact eps of N(m, diag v) and the mixing weight is 1 (a non-trivial ODE)."""
    ae, x, k, logits = _model()
    process = diffax.VP(t_min=1e-5)
    lat = diffax.Latent(autoencoder=ae, process=process, scale_factor=1.0)
    if prior == "zero_residual":
        m, v = np.zeros(DZ), np.ones(DZ)
        net = lambda z, t: lsgm.normal_eps(process, z, t)
    else:
        m, v, logits = np.array([0.4, -0.7]), np.array([0.5, 1.8]) ** 2, jnp.full(DZ, jnp.inf)

        def net(z, t):  # -sigma * grad log N(alpha m, alpha^2 v + sigma^2)
            a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
            return s * (z - a * m[None]) / (a**2 * v[None] + s**2)
    D = lsgm.mixed_denoiser(process, net, logits)
    mu, s2 = _flow_prior(process, m, v)
    # The discretised decoder (a probability of the 8-bit values `data`, what `diffax
    # likelihood` uses) in the second case: its term is checked per draw, at the same z.
    if prior == "zero_residual":
        decoder, data = latent.GaussianDecoder(std=STD), None
    else:
        decoder, data = latent.DiscretizedGaussianDecoder(std=STD), jnp.broadcast_to(k, (N, DX))
    xb = jnp.broadcast_to(x, (N, DX))
    key = jax.random.key(5)

    @jax.jit
    def run(key):
        r = latent.latent_log_likelihood(key, lat, D, xb, decoder=decoder, data=data,
                                         divergence="exact", rtol=ODE_TOL, atol=ODE_TOL)
        u = ae.posterior(xb).sample(jax.random.split(key)[0])  # the draw it made
        return r, u

    r, u = run(key)
    r, u = jax.tree.map(np.asarray, (r, u))
    q = ae.posterior(xb)
    x = np.asarray(x)
    mean, var = np.asarray(q.mean[0]), np.exp(np.asarray(ae.logvar))
    # Per draw, every term in closed form at the same z.
    w, c = np.asarray(ae.w), np.asarray(ae.c)
    if data is None:
        log_dec = (-np.sum((x - u @ w.T - c) ** 2, -1) / (2 * STD**2)
                   - DX * math.log(STD * math.sqrt(2 * math.pi)))
    else:  # P(k | z): the decoder's own probability of the 8-bit values at the drawn z
        log_dec = np.asarray(decoder.log_prob(data, jnp.asarray(u @ w.T + c)))
    log_prior = -0.5 * np.sum((u - mu) ** 2 / s2 + np.log(2 * math.pi * s2), -1)
    log_q = -0.5 * np.sum((u - mean) ** 2 / var + np.log(2 * math.pi * var), -1)
    want = -(log_dec + log_prior - log_q)
    np.testing.assert_allclose(r.posterior_logq, log_q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(-r.logp, want, rtol=0, atol=ALLOWED)
    np.testing.assert_allclose(r.logp, r.decoder_logp + r.latent_logp - r.posterior_logq,
                               rtol=1e-12)
    # A broken bound (-log q omitted) misses every draw by far...
    broken = -(r.logp + r.posterior_logq)
    assert np.min(np.abs(broken - want)) > 1e3 * ALLOWED
    if data is not None:
        return  # the negative ELBO below is closed-form for the Gaussian decoder
    # Averaged over the draws: the closed-form negative ELBO, E_q[-log p(x|z)] + KL(q || p).
    rec = ((np.sum((x - w @ mean - c) ** 2) + np.trace(w @ np.diag(var) @ w.T)) / (2 * STD**2)
           + DX * math.log(STD * math.sqrt(2 * math.pi)))
    kl = 0.5 * np.sum(np.log(s2 / var) + (var + (mean - mu) ** 2) / s2 - 1.0)
    nelbo = rec + kl
    se = np.std(-r.logp, ddof=1) / math.sqrt(N)
    assert abs(np.mean(-r.logp) - nelbo) < Z * se, (np.mean(-r.logp), nelbo, se)
    # ...and the negative ELBO by more than the allowed standard errors.
    assert abs(np.mean(broken) - nelbo) > Z * se, (np.mean(broken), nelbo, se)


def test_reconstruction_and_decoder_are_one_gaussian_likelihood(x64):
    """lsgm.GaussianReconstruction (the LSGM training term) and latent.GaussianDecoder (the
    likelihood's decoder term) are one implementation, latent.gaussian_nll: bitwise negatives
    of each other, and the closed form on a hand case."""
    x = jax.random.normal(jax.random.key(0), (5, 3, 2))
    m = jax.random.normal(jax.random.key(1), (5, 3, 2))
    for std in (0.05, 1.0, 2.5):
        rec = np.asarray(lsgm.GaussianReconstruction(std=std)(x, m))
        np.testing.assert_array_equal(-np.asarray(latent.GaussianDecoder(std=std).log_prob(x, m)),
                                      rec)
        want = (np.sum((np.asarray(x) - np.asarray(m)) ** 2, axis=(1, 2)) / (2 * std**2)
                + 6 * math.log(std * math.sqrt(2 * math.pi)))
        np.testing.assert_allclose(rec, want, rtol=1e-13)
