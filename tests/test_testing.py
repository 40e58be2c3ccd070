"""The analytic oracle is itself checked: Monte Carlo, finite differences, transport by its flow."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.parameterization import velocity_from_denoiser
from diffax.testing import GaussianMixture

from .test_processes import PROCESSES, process_names


def _var_standard_error(x):
    """Standard error of the per-dimension sample variance: sqrt((m4 - var^2) / n).

    A mixture is not Gaussian, so the Gaussian formula var * sqrt(2/n) would understate it.
    """
    centred = x - x.mean(0, keepdims=True)
    m4 = jnp.mean(centred**4, 0)
    return jnp.sqrt((m4 - jnp.square(jnp.mean(centred**2, 0))) / x.shape[0])


def _mixture(dim=2):
    key = jax.random.key(11)
    means = 2.0 * jax.random.normal(key, (3, dim))
    stds = jnp.abs(jax.random.normal(jax.random.key(12), (3, dim))) * 0.3 + 0.1
    return GaussianMixture(means=means, stds=stds, weights=jnp.array([0.2, 0.5, 0.3]))


def _mid(p, u=0.3):
    return float(p.t_min) + u * (float(p.t_max) - float(p.t_min))


@process_names
def test_denoiser_is_the_monte_carlo_posterior_mean(x64, name):
    """E[x0 | x_t = x] by self-normalised importance sampling over exact data samples."""
    p, gm = PROCESSES[name](), _mixture()
    t = _mid(p, 0.25)
    x = gm.sample(jax.random.key(0), p, t, 4)
    x0 = gm.sample_data(jax.random.key(1), 400_000)
    a, s = p.alpha(t), p.sigma(t)
    logw = -0.5 * jnp.sum(jnp.square(x[:, None] - a * x0[None]), -1) / s**2  # [4, N]
    w = jax.nn.softmax(logw, axis=-1)
    mc = w @ x0
    ess = 1.0 / jnp.sum(w**2, -1)
    assert float(ess.min()) > 200, "importance sampling too degenerate for this check"
    spread = jnp.sqrt(w @ jnp.square(x0) - jnp.square(mc))  # posterior std per coordinate
    err = jnp.abs(mc - gm.denoiser(p)(x, t))
    assert bool(jnp.all(err < 6 * spread / jnp.sqrt(ess)[:, None])), (err, spread, ess)


@process_names
def test_score_is_the_gradient_of_log_prob(x64, name):
    p, gm = PROCESSES[name](), _mixture(3)
    t = _mid(p)
    x = gm.sample(jax.random.key(3), p, t, 6)
    grad = jax.vmap(jax.grad(lambda xi: gm.log_prob(p, xi[None], t)[0]))(x)
    np.testing.assert_allclose(gm.score(p, x, t), grad, rtol=1e-9, atol=1e-10)
    # central finite differences, independent of autodiff
    h = 1e-5
    e = jnp.eye(3)
    fd = jnp.stack([(gm.log_prob(p, x + h * e[i][None], t)
                     - gm.log_prob(p, x - h * e[i][None], t)) / (2 * h)
                    for i in range(3)], -1)
    np.testing.assert_allclose(gm.score(p, x, t), fd, rtol=1e-6, atol=1e-6)
    # Tweedie: D = (x + sigma^2 score) / alpha
    tw = (x + p.sigma(t) ** 2 * gm.score(p, x, t)) / p.alpha(t)
    np.testing.assert_allclose(gm.denoiser(p)(x, t), tw, rtol=1e-9, atol=1e-9)


def test_log_prob_is_normalised_and_matches_samples(x64):
    p, gm = diffax.VP(), _mixture(2)
    t = 0.2
    g = jnp.linspace(-9.0, 9.0, 601)
    xx, yy = jnp.meshgrid(g, g)
    pts = jnp.stack([xx.ravel(), yy.ravel()], -1)
    dens = jnp.exp(gm.log_prob(p, pts, t)).reshape(xx.shape)
    mass = np.trapezoid(np.trapezoid(np.asarray(dens), np.asarray(g), axis=1), np.asarray(g))
    assert abs(float(mass) - 1.0) < 1e-6
    # Exact samples: sample moments match the exact ones.
    n = 200_000
    x = gm.sample(jax.random.key(5), p, t, n)
    mean, var = gm.mean_and_var(p, t)
    np.testing.assert_array_less(jnp.abs(x.mean(0) - mean), 5 * jnp.sqrt(var / n))
    np.testing.assert_array_less(jnp.abs(x.var(0) - var), 5 * _var_standard_error(x))


def test_log_prob_data_is_the_limit_of_log_prob(x64):
    gm = _mixture(2)
    x = gm.sample_data(jax.random.key(0), 5)
    # VE at t=0 still has sigma_min noise; the data density is the sigma -> 0 limit.
    near = diffax.VE(sigma_min=1e-9, sigma_max=50.0, t_min=0.0)
    np.testing.assert_allclose(gm.log_prob(near, x, 0.0), gm.log_prob_data(x), rtol=1e-9)


@process_names
def test_closed_form_flow_solves_the_probability_flow_ode(x64, name):
    p = PROCESSES[name]()
    gm = GaussianMixture(means=jnp.array([[0.4, -1.0]]), stds=jnp.array([[0.5, 1.3]]),
                         weights=jnp.array([1.0]))
    t = _mid(p, 0.6)
    x = gm.sample(jax.random.key(0), p, t, 5)
    # d/ds x_s at s = t equals the PF-ODE drift computed from the exact denoiser
    ds = jax.jvp(lambda s: gm.flow(p, x, t=t, s=s), (jnp.asarray(t),), (jnp.asarray(1.0),))[1]
    np.testing.assert_allclose(ds, velocity_from_denoiser(p, gm.denoiser(p))(x, t), rtol=1e-8,
                               atol=1e-10)
    # the flow is a group: t -> s -> u equals t -> u; and it maps p_t samples to p_s moments
    s, u = _mid(p, 0.3), _mid(p, 0.05)
    np.testing.assert_allclose(gm.flow(p, gm.flow(p, x, t=t, s=s), t=s, s=u),
                               gm.flow(p, x, t=t, s=u), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="single Gaussian"):
        _mixture().flow(p, x, t=t, s=s)


def _rk4(fn, x, t0, t1, n):
    h = (t1 - t0) / n

    def body(i, x):
        t = t0 + i * h
        tb = jnp.full((x.shape[0],), t)
        k1 = fn(x, tb)
        k2 = fn(x + 0.5 * h * k1, tb + 0.5 * h)
        k3 = fn(x + 0.5 * h * k2, tb + 0.5 * h)
        k4 = fn(x + h * k3, tb + h)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    return jax.lax.fori_loop(0, n, body, x)


@pytest.mark.parametrize("name", ["VP", "SubVP", "VE", "EDM", "RectifiedFlow"])
def test_exact_drift_transports_p_t(x64, name):
    """Integrating exact p_t samples with the exact PF drift gives exact p_{t-dt} statistics."""
    p, gm = PROCESSES[name](), _mixture(2)
    t, s = _mid(p, 0.5), _mid(p, 0.35)
    n = 20_000
    x = gm.sample(jax.random.key(7), p, t, n)
    y = jax.jit(lambda x: _rk4(velocity_from_denoiser(p, gm.denoiser(p)), x, t, s, 40))(x)
    mean, var = gm.mean_and_var(p, s)
    se_mean = jnp.sqrt(var / n)
    np.testing.assert_array_less(jnp.abs(y.mean(0) - mean), 5 * se_mean)
    np.testing.assert_array_less(jnp.abs(y.var(0) - var), 5 * _var_standard_error(y))
    # Stronger: the average exact log-density of the transported points equals that of fresh
    # exact samples of p_s (a wrong drift moves mass to lower density).
    fresh = gm.sample(jax.random.key(8), p, s, n)
    lp_y, lp_f = gm.log_prob(p, y, s), gm.log_prob(p, fresh, s)
    se = jnp.sqrt(lp_f.var() / n + lp_y.var() / n)
    assert abs(float(lp_y.mean() - lp_f.mean())) < 5 * float(se)


def test_bad_mixtures_are_rejected():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(means=jnp.zeros((2, 2)), stds=jnp.ones(2), weights=jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture(means=jnp.zeros((2, 2)), stds=-jnp.ones(2), weights=jnp.ones(2) / 2)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(means=jnp.zeros(2), stds=jnp.ones(2), weights=jnp.ones(2) / 2)
    gm = GaussianMixture(means=jnp.zeros((2, 3)), stds=jnp.ones(2), weights=jnp.ones(2) / 2)
    with pytest.raises(ValueError, match="x"):
        gm.log_prob(diffax.VP(), jnp.ones((4, 2)), 0.5)
