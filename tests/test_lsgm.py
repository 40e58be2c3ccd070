"""LSGM's identity KL(q0 || p0) = KL(qT || pT) + int g^2/2 E_q ||grad log q_t - grad log p_t||^2
for Gaussian q0, p0, in closed form, with the integral done numerically (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import diffax
from diffax import lsgm


@pytest.mark.parametrize("process", [diffax.VP(), diffax.VE(sigma_min=0.01, sigma_max=5.0),
                                     diffax.SubVP(), diffax.VP.cosine()],
                         ids=["vp", "ve", "subvp", "cosine"])
def test_kl_identity_on_gaussians(process, x64):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    mq, sq = jnp.asarray(rng.standard_normal(3)), jnp.asarray(a @ a.T + 0.1 * np.eye(3))
    mp, sp = jnp.asarray(rng.standard_normal(3)), jnp.asarray(b @ b.T + 0.1 * np.eye(3))
    t0, t1 = float(process.t_min), float(process.t_max)
    kl = lambda t: float(lsgm.gaussian_kl(*lsgm.diffuse_gaussian(process, mq, sq, t),
                                          *lsgm.diffuse_gaussian(process, mp, sp, t)))
    rate = jax.jit(lambda t: lsgm.kl_rate(process, mq, sq, mp, sp, t))
    integral, err = integrate.quad(lambda t: float(rate(t)), t0, t1, epsabs=1e-11,
                                   epsrel=1e-11, limit=400, points=[t0 + 1e-3, 0.01, 0.1])
    lhs, rhs = kl(t0), kl(t1) + integral
    # Both sides are float64 closed forms / an adaptive quadrature (error estimate err).
    assert abs(lhs - rhs) <= 1e-7 * lhs + 10 * err, (lhs, rhs, err)
    assert kl(t1) < 0.1 * lhs  # the integral carries most of it: the test is not vacuous


def test_fisher_divergence_matches_monte_carlo(x64):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 2))
    mq, sq = jnp.array([0.3, -0.2]), jnp.asarray(a @ a.T + 0.2 * np.eye(2))
    mp, sp = jnp.array([-0.5, 0.4]), jnp.array([[1.5, 0.3], [0.3, 0.8]])
    x = jax.random.multivariate_normal(jax.random.key(0), mq, sq, (200_000,))
    score = lambda m, s: -jnp.linalg.solve(s, (x - m[None]).T).T
    sq_gap = np.asarray(jnp.sum(jnp.square(score(mq, sq) - score(mp, sp)), axis=1))
    est, se = sq_gap.mean(), sq_gap.std() / np.sqrt(len(sq_gap))
    assert abs(est - float(lsgm.fisher_divergence(mq, sq, mp, sp))) < 5 * se


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="`q`"):
        lsgm.gaussian_kl(jnp.zeros(2), jnp.eye(3), jnp.zeros(2), jnp.eye(2))
