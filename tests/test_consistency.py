"""Song et al. (2022)'s consistency sampler against the exact posterior of a Gaussian prior that
is diagonal in the Fourier basis (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import inverse

N_PIX = 8
N_SAMPLES = 2000


def _fourier_gaussian():
    """A stationary Gaussian prior on 8x8 images: Fourier coefficient f has variance
    d(f) = 1 / (1 + |f|^2 / 4) (centred layout; d(f) = d(-f), so the images are real), and
    its exact denoiser E[x0 | x_t] = F^-1[alpha d / (alpha^2 d + sigma^2) F x_t]."""
    f = np.arange(N_PIX) - N_PIX // 2
    d = 1.0 / (1.0 + (f[:, None] ** 2 + f[None, :] ** 2) / 4.0)
    full = inverse.fourier_undersampling(np.ones((N_PIX, N_PIX)))
    dj = jnp.asarray(d)[None, :, :, None, None]
    p = diffax.VP()

    def prior_sample(key, b):
        e = jax.random.normal(key, (b, N_PIX, N_PIX, 1), jnp.float64)
        return full.inverse_transform(jnp.sqrt(dj) * full.transform(e))

    def denoiser(x, t):
        a, s = (v[:, None, None, None, None] for v in (p.alpha(t), p.sigma(t)))
        return full.inverse_transform(a * dj / (a * a * dj + s * s) * full.transform(x))

    return d, full, p, prior_sample, denoiser


def _power_ratios(full, d, x, where):
    """E|F x|^2 / d per coefficient (mean over samples) at the coefficients ``where``."""
    z = np.asarray(full.transform(x))[..., 0, :]
    return ((z ** 2).sum(-1) / d).mean(0)[where]


def test_lambda_one_samples_the_exact_posterior_of_a_fourier_diagonal_gaussian(x64):
    """Noise-free Cartesian measurement (4x, conjugate-symmetric rows), lam = 1, 200
    Euler-Maruyama steps, 2000 samples.

    Exact posterior: the measured coefficients are y; the unmeasured ones are independent of
    them (the prior is diagonal in this basis) with the prior variance d(f), mean 0.
    Measured: measured coefficients equal y to 5e-16; E|Z_f|^2 / d(f) pooled over the
    unmeasured coefficients 1.001-1.008 over three seeds, per coefficient 0.946-1.047, while
    2000 exact prior draws give 0.984-1.004 pooled and 0.958-1.050 per coefficient (the noise
    floor; the sampler's discretisation adds ~0.002 at 200 steps). Asserted: pooled within
    0.035 of 1, each coefficient within 0.1 (2x the floor's extreme), and means within 4
    standard errors of 0.
    """
    d, full, p, prior_sample, denoiser = _fourier_gaussian()
    mask = inverse.cartesian_mask((N_PIX, N_PIX), acceleration=4, seed=0)
    op = inverse.fourier_undersampling(mask)
    x_true = prior_sample(jax.random.key(0), 1)
    y = jnp.broadcast_to(op(x_true), (N_SAMPLES, *op(x_true).shape[1:]))
    x_init = p.prior_sample(jax.random.key(1), (N_SAMPLES, N_PIX, N_PIX, 1), jnp.float64)
    x = jax.jit(lambda k: inverse.consistency_sample(
        k, p, denoiser, x_init, y, op, num_steps=200,
        solver=diffax.samplers.EulerMaruyama()).x)(jax.random.key(2))

    np.testing.assert_allclose(op(x), y, atol=1e-12)
    unmeasured = mask == 0
    ratios = _power_ratios(full, d, x, unmeasured)
    assert abs(ratios.mean() - 1.0) < 0.035, ratios.mean()
    assert np.all(np.abs(ratios - 1.0) < 0.1), ratios
    z = np.asarray(full.transform(x))[..., 0, :][:, unmeasured]  # [N, K, 2]
    se = np.sqrt(d[unmeasured][None, :, None] / 2 / N_SAMPLES)
    assert np.all(np.abs(z.mean(0)) < 4 * se + 1e-12)


def test_lambda_zero_ignores_the_measurement(x64):
    """lam = 0 and no final step: the same draws as without any measurement would give
    (the T^-1 T round trip of Fourier is exact), whatever y is."""
    _, _, p, _, denoiser = _fourier_gaussian()
    op = inverse.fourier_undersampling(inverse.random_mask((N_PIX, N_PIX), acceleration=2))
    x_init = p.prior_sample(jax.random.key(1), (4, N_PIX, N_PIX, 1), jnp.float64)
    run = lambda y: inverse.consistency_sample(
        jax.random.key(3), p, denoiser, x_init, y, op, num_steps=10, lam=0.0,
        solver=diffax.samplers.DDPM(), final_consistency=False).x
    y = op(x_init)
    np.testing.assert_allclose(run(y), run(7.0 * y), atol=1e-12)


def test_bad_input_names_the_argument():
    p, D = diffax.VP(), lambda x, t: 0.5 * x
    op = inverse.fourier_undersampling(np.ones((4, 4)))
    x = jnp.zeros((2, 4, 4, 1))
    y = op(x)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`operator` must be a diffax.inverse.Subsampled"):
        inverse.consistency_sample(key, p, D, x, y, inverse.masking(1.0), num_steps=2)
    with pytest.raises(ValueError, match="`y` has shape .*measurement/operator mismatch"):
        inverse.consistency_sample(key, p, D, x, y[:, :2], op, num_steps=2)
    with pytest.raises(ValueError, match="`x_init` does not fit `operator`"):
        inverse.consistency_sample(key, p, D, jnp.zeros((2, 5, 5, 1)), y, op, num_steps=2)
    with pytest.raises(ValueError, match="`lam` must be a scalar in"):
        inverse.consistency_sample(key, p, D, x, y, op, num_steps=2, lam=1.5)
    with pytest.raises(ValueError, match="`key`"):
        inverse.consistency_sample(None, p, D, x, y, op, num_steps=2,
                                   solver=diffax.samplers.DDPM())
    with pytest.raises(ValueError, match="one-step solver"):
        inverse.consistency_sample(key, p, D, x, y, op, num_steps=2,
                                   solver=diffax.samplers.DPMSolver(order=2))
