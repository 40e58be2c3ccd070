"""The likelihood of latent diffusion (diffax.latent.latent_log_likelihood) against closed forms,
float64: an identity autoencoder at scale 1 with a Gaussian decoder gives the pixel likelihood
plus the decoder's closed-form term; a scale factor s moves the latent NLL by exactly D log s
(for the model pushed forward by the scaling), which the log-det term gives back."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import latent


def _mixture(scale=1.0):
    return diffax.testing.GaussianMixture(
        means=scale * jnp.array([[[-1.0, 0.5], [0.3, 0.0]], [[1.0, -0.5], [0.0, 0.8]]]),
        stds=scale * jnp.array([0.3, 0.5]), weights=jnp.array([0.4, 0.6]))


def test_identity_autoencoder_is_pixel_likelihood_plus_decoder_term_and_scale_is_d_log_s(x64):
    # VE: scaling the data by s and sigma(t) by s maps the probability-flow ODE onto itself, so
    # the model on the latents s x is exactly the pixel model pushed forward by the scaling.
    p, s = diffax.VE(sigma_min=0.01, sigma_max=2000.0), 2.5
    p_s = diffax.VE(sigma_min=s * 0.01, sigma_max=s * 2000.0)
    x = _mixture().sample_data(jax.random.key(0), 6)
    ident = latent.IdentityAutoencoder(shape=(2, 2))
    std, dims = 0.1, 4
    kw = {"divergence": "exact", "rtol": 1e-8, "atol": 1e-8}
    dec = latent.GaussianDecoder(std=std)

    @jax.jit
    def run(x):
        pixel = diffax.log_likelihood(None, p, _mixture().denoiser(p), x, **kw).logp
        one = latent.latent_log_likelihood(
            None, diffax.Latent(autoencoder=ident, process=p, scale_factor=1.0),
            _mixture().denoiser(p), x, decoder=dec, **kw)
        # Scale s: the latents s x follow the mixture scaled by s, whose exact denoiser is used.
        scaled = latent.latent_log_likelihood(
            None, diffax.Latent(autoencoder=ident, process=p_s, scale_factor=s),
            _mixture(s).denoiser(p_s), x, decoder=dec, **kw)
        return pixel, one, scaled

    pixel, one, scaled = run(x)
    closed = -0.5 * dims * math.log(2 * math.pi * std**2)  # log N(x; x, std^2 I)
    np.testing.assert_allclose(np.asarray(one.decoder_logp), closed, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(one.latent_logp), np.asarray(pixel), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(one.logp), np.asarray(pixel) + closed, atol=1e-12)
    assert float(jnp.max(jnp.abs(one.log_det_scale))) == 0.0
    assert float(jnp.max(jnp.abs(one.posterior_logq))) == 0.0
    # Against the exact density at t_min: what remains is the prior's mismatch at t_max,
    # N(0, sigma_max^2) for the diffused mixture, O(|x_T| |mean| / sigma_max^2) ~ 1e-3 here.
    exact = _mixture().log_prob(p, x, p.t_min)
    np.testing.assert_allclose(np.asarray(one.latent_logp), np.asarray(exact), atol=5e-3)
    # Scale s: the latent NLL grows by exactly D log s; the log-det term gives it back.
    np.testing.assert_allclose(np.asarray(scaled.latent_logp),
                               np.asarray(one.latent_logp) - dims * math.log(s), atol=1e-6)
    np.testing.assert_allclose(np.asarray(scaled.log_det_scale), dims * math.log(s), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(scaled.logp), np.asarray(one.logp), atol=1e-6)


@diffax.pytree_dataclass
class _NoisyIdentity:
    """A stand-in KL encoder: q(u | x) = N(x, 0.2^2 I); decode = identity."""

    data_shape: tuple = diffax.static_field(default=(3,))
    latent_shape: tuple = diffax.static_field(default=(3,))

    def posterior(self, x):
        return latent.DiagonalGaussian(mean=x, logvar=jnp.full_like(x, 2 * math.log(0.2)))

    def encode(self, x, *, key=None):
        return x if key is None else self.posterior(x).sample(key)

    def decode(self, u):
        return u


def test_discretized_decoder_is_a_probability_and_bad_input_names_the_argument(x64):
    """The discretised decoder's probabilities of the 256 values of a pixel sum to 1 for any
    mean and std. (The posterior draw's -log q(u | x) in closed form, the sum of the terms and
    the discretised decoder's `data` path through latent_log_likelihood: per draw in
    tests/test_lsgm_likelihood.py, which solves the same kind of ODE once for both.)"""
    p = diffax.VP()
    lat = diffax.Latent(autoencoder=_NoisyIdentity(), process=p, scale_factor=1.0)
    mix = diffax.testing.GaussianMixture(means=jnp.zeros((1, 3)), stds=jnp.ones(1),
                                         weights=jnp.ones(1))
    k = jnp.array([[0.0, 128.0, 255.0], [17.0, 200.0, 3.0]])
    x = -1.0 + 2.0 * k / 255.0
    dec = latent.DiscretizedGaussianDecoder(std=0.05)
    key = jax.random.key(3)
    values = jnp.tile(jnp.arange(256.0)[:, None], (1, 3))
    means = jnp.array([0.3, -1.2, 0.999])
    sums = jax.jit(lambda std: jnp.stack([jnp.sum(jnp.exp(latent.DiscretizedGaussianDecoder(
        std=std).log_prob(values[:, i:i + 1], jnp.full((256, 1), means[i])))) for i in range(3)]))
    for std in (0.05, 0.5, 1e-3):  # pixels' probabilities multiply: each sums to 1
        np.testing.assert_allclose(np.asarray(sums(jnp.asarray(std))), 1.0, atol=1e-10)
    with pytest.raises(ValueError, match="`data`"):
        latent.latent_log_likelihood(key, lat, mix.denoiser(p), x, decoder=dec)
    with pytest.raises(ValueError, match="`std`"):
        latent.GaussianDecoder(std=0.0)
    with pytest.raises(TypeError, match="`decoder`"):
        latent.latent_log_likelihood(key, lat, mix.denoiser(p), x, decoder=None)
