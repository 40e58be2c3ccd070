"""DiVAE (diffax.divae) against an exact oracle: a Gaussian data model whose conditional
p(x | z_q) is known in closed form, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import divae, latent, losses, samplers

CODEBOOK = np.array([[-1.0], [0.0], [1.5]])
A, B, S = 0.8, 0.1, 0.3  # x | z ~ N(A * embed(z) + B, S^2 I)


@diffax.pytree_dataclass
class PoolCodes:
    """A stand-in VQ encoder: 2x2 average pooling of [B, 4, 4, 1], then the nearest of three
    scalar codewords ([B, 2, 2, 1] codes)."""

    codebook: jax.Array
    data_shape: tuple = diffax.static_field(default=(4, 4, 1))
    latent_shape: tuple = diffax.static_field(default=(2, 2, 1))

    def encode(self, x, *, key=None):
        pooled = x.reshape(x.shape[0], 2, 2, 2, 2, 1).mean(axis=(2, 4))
        return latent.quantize(pooled, self.codebook)[0]


def _oracle(process, scale):
    """The exact conditional denoiser of x0 | cond ~ N(m, S^2 I), m = A cond / scale + B:
    E[x0 | x_t] = m + alpha S^2 / (alpha^2 S^2 + sigma^2) (x_t - alpha m)."""

    def D(x, t, cond):
        m = A * cond / scale + B
        a = process.alpha(t)[:, None, None, None]
        s2 = jnp.square(process.sigma(t))[:, None, None, None]
        return m + a * S**2 / (a**2 * S**2 + s2) * (x - a * m)

    return D


def _frechet_to_standard(r):
    """Frechet distance between N(mean(r), cov(r)) and N(0, I) for rows r [n, d]."""
    mu = r.mean(0)
    cov = np.cov(r, rowvar=False)
    w = np.linalg.eigvalsh(cov)
    return float(mu @ mu + np.sum(w + 1.0 - 2.0 * np.sqrt(np.clip(w, 0, None))))


def test_exact_conditional_denoiser_makes_the_sampler_reproduce_p_x_given_code(x64):
    """Codes of random inputs through DiVAE's own path (encode, scale, embed); Heun on the
    probability-flow ODE with the exact conditional denoiser; the residuals (x - m(z)) / S
    must be N(0, I): their Frechet distance to N(0, I) is within 3x that of as many exact
    draws (the Monte Carlo floor), and far below the distance under a wrong code."""
    p = diffax.VP()
    scale = 2.0
    dv = divae.DiVAE(autoencoder=PoolCodes(codebook=jnp.asarray(CODEBOOK)), process=p,
                     scale_factor=scale)
    n = 4000
    x_in = jax.random.uniform(jax.random.key(0), (n, 4, 4, 1), jnp.float64, -2.0, 2.5)
    cond = dv.condition(x_in)
    assert cond.shape == (n, 4, 4, 1)
    codes = np.asarray(dv.codes(x_in)) / scale
    assert set(np.unique(codes)) <= set(CODEBOOK[:, 0]) and len(np.unique(codes)) == 3
    np.testing.assert_array_equal(np.asarray(cond)[:, ::2, ::2], codes * scale)

    run = jax.jit(lambda key, c: dv.decode(key, _oracle(p, scale), c, solver=samplers.Heun(),
                                           num_steps=60).x)
    x = np.asarray(run(jax.random.key(1), cond))
    m = A * np.asarray(cond) / scale + B
    r = ((x - m) / S).reshape(n, -1)
    floor = _frechet_to_standard(np.random.default_rng(0).standard_normal(r.shape))
    dist = _frechet_to_standard(r)
    assert dist < 3.0 * floor, (dist, floor)
    # The same samples judged against the wrong codes (shuffled): far from the noise floor.
    wrong = ((x - m[np.random.default_rng(1).permutation(n)]) / S).reshape(n, -1)
    assert _frechet_to_standard(wrong) > 100 * floor


def test_divae_loss_is_the_inner_loss_with_the_condition_bitwise():
    p = diffax.VP()
    dv = divae.DiVAE(autoencoder=PoolCodes(codebook=jnp.asarray(CODEBOOK, jnp.float32)),
                     process=p, scale_factor=0.5)
    inner = losses.DenoisingLoss(process=p, cond_keys=("cond",))
    f = lambda w, x, t, cond: jnp.tanh(w * x + cond) + t[:, None, None, None]
    x = jax.random.normal(jax.random.key(0), (8, 4, 4, 1))
    a = jax.jit(dv.loss(inner).bind(f))(0.7, jax.random.key(5), {"x": x})[0]
    b = jax.jit(inner.bind(f))(0.7, jax.random.key(5), {"x": x, "cond": dv.condition(x)})[0]
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # The condition matters: another scale changes the loss.
    c = dv.loss(inner).bind(f)(0.7, jax.random.key(5), x)[0]  # a bare array batch works too
    assert float(c) == float(a)
    dv2 = divae.DiVAE(autoencoder=dv.autoencoder, process=p, scale_factor=1.0)
    assert float(dv2.loss(inner).bind(f)(0.7, jax.random.key(5), x)[0]) != float(a)


def test_bad_input_names_the_argument():
    p = diffax.VP()
    ae = PoolCodes(codebook=jnp.asarray(CODEBOOK))
    with pytest.raises(ValueError, match="`scale_factor`"):
        divae.DiVAE(autoencoder=ae, process=p, scale_factor=0.0)
    with pytest.raises(TypeError, match="`autoencoder`"):
        divae.DiVAE(autoencoder=object(), process=p)
    with pytest.raises(ValueError, match="`autoencoder` must map images"):
        divae.DiVAE(autoencoder=latent.IdentityAutoencoder(shape=(3,)), process=p)
    dv = divae.DiVAE(autoencoder=ae, process=p)
    with pytest.raises(ValueError, match=r"`cond` must have shape \[B, 4, 4, 1\]"):
        dv.decode(jax.random.key(0), lambda x, t, c: x, jnp.zeros((2, 2, 2, 1)),
                  solver=samplers.DDIM(), num_steps=2)
    with pytest.raises(ValueError, match=r"`x` must have shape"):
        dv.condition(jnp.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="cond_keys"):
        dv.loss(losses.DenoisingLoss(process=p))
