"""Prediction conversions, as_denoiser, EDM preconditioning and denoiser-derived drifts."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.parameterization import (
    PREDICTIONS,
    convert,
    edm_coefficients,
    eps_from_denoiser,
    velocity_from_denoiser,
)
from diffax.testing import GaussianMixture

from .test_processes import PROCESSES, process_names


def _mixture(dim=3):
    means = jnp.array([[-1.0] * dim, [1.5] * dim, [0.0] * dim])
    return GaussianMixture(means=means, stds=jnp.array([0.3, 0.5, 0.2]),
                           weights=jnp.array([0.3, 0.5, 0.2]))


def _point(p, batch=5, dim=3, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    lo, hi = float(p.t_min), float(p.t_max)
    t = lo + (hi - lo) * jax.random.uniform(k1, (batch,), minval=0.02, maxval=0.98)
    return jax.random.normal(k2, (batch, dim)), t


@process_names
def test_every_pair_of_predictions_round_trips(x64, name):
    p = PROCESSES[name]()
    x, t = _point(p)
    value = jax.random.normal(jax.random.key(9), x.shape)
    for a, b in itertools.product(PREDICTIONS, PREDICTIONS):
        there = convert(value, process=p, x=x, t=t, source=a, target=b)
        back = convert(there, process=p, x=x, t=t, source=b, target=a)
        np.testing.assert_allclose(back, value, rtol=1e-9, atol=1e-9, err_msg=f"{a}->{b}")


@process_names
def test_conversions_agree_with_definitions(x64, name):
    """From a known (x0, eps) pair, every prediction equals its textbook definition."""
    p = PROCESSES[name]()
    _, t = _point(p)
    x0, eps = jax.random.normal(jax.random.key(1), (2, 5, 3))
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    da, ds = p.dalpha(t)[:, None], p.dsigma(t)[:, None]
    x = a * x0 + s * eps
    expected = {"x0": x0, "eps": eps, "v": a * eps - s * x0, "score": -eps / s,
                "velocity": da * x0 + ds * eps}
    for name_, value in expected.items():
        np.testing.assert_allclose(
            convert(x0, process=p, x=x, t=t, source="x0", target=name_), value,
            rtol=1e-8, atol=1e-8, err_msg=name_)


@process_names
def test_denoiser_from_oracle_score_equals_oracle_denoiser(x64, name):
    p, gm = PROCESSES[name](), _mixture()
    x, t = _point(p)
    x = gm.sample(jax.random.key(2), p, t, 5)  # typical points of p_t
    D_score = diffax.as_denoiser(lambda x, t: gm.score(p, x, t), p, prediction="score")
    np.testing.assert_allclose(D_score(x, t), gm.denoiser(p)(x, t), rtol=1e-8, atol=1e-8)
    # and through every other parameterization of the same exact model
    for pred in PREDICTIONS:
        fn = lambda x, t, pred=pred: convert(gm.denoiser(p)(x, t), process=p, x=x, t=t,  # noqa: E731
                                             source="x0", target=pred)
        np.testing.assert_allclose(diffax.as_denoiser(fn, p, prediction=pred)(x, t),
                                   gm.denoiser(p)(x, t), rtol=1e-7, atol=1e-8, err_msg=pred)


def test_velocity_is_finite_where_alpha_is_zero(x64):
    p, gm = diffax.RectifiedFlow(), _mixture()
    x = jax.random.normal(jax.random.key(0), (4, 3))
    v = velocity_from_denoiser(p, gm.denoiser(p))(x, 1.0)
    assert bool(jnp.all(jnp.isfinite(v)))
    # At t = 1 the exact velocity is x - E[x0]: eps = x, E[x0 | x_1] = E[x0].
    mean = jnp.sum(gm.weights[:, None] * gm.means, 0)
    np.testing.assert_allclose(v, x - mean[None], rtol=1e-10)


@process_names
def test_probability_flow_drift_equals_sde_form(x64, name):
    """alpha' D + sigma' eps_hat == f x - g^2 score / 2, the score_sde form of the PF-ODE."""
    p, gm = PROCESSES[name](), _mixture()
    x, t = _point(p)
    D = gm.denoiser(p)
    sde_form = p.f(t)[:, None] * x - 0.5 * p.g2(t)[:, None] * gm.score(p, x, t)
    np.testing.assert_allclose(velocity_from_denoiser(p, D)(x, t), sde_form, rtol=1e-8,
                               atol=1e-8)
    rev = diffax.reverse_sde_drift(p, D)(x, t)
    np.testing.assert_allclose(rev, p.f(t)[:, None] * x - p.g2(t)[:, None] * gm.score(p, x, t),
                               rtol=1e-8, atol=1e-8)


def test_edm_preconditioning_matches_karras_table_1(x64):
    p = diffax.EDM(sigma_data=0.5)
    sigma = jnp.array([0.01, 0.5, 3.0, 80.0])
    c = edm_coefficients(p, sigma)
    sd = 0.5
    np.testing.assert_allclose(c.c_skip, sd**2 / (sigma**2 + sd**2), rtol=1e-12)
    np.testing.assert_allclose(c.c_out, sigma * sd / jnp.sqrt(sigma**2 + sd**2), rtol=1e-12)
    np.testing.assert_allclose(c.c_in, 1 / jnp.sqrt(sigma**2 + sd**2), rtol=1e-12)
    np.testing.assert_allclose(c.c_noise, 0.25 * jnp.log(sigma), rtol=1e-12)


def test_edm_preconditioning_in_a_vp_frame_is_edm_on_the_scaled_state(x64):
    p = diffax.VP()
    x, t = _point(p)
    F = lambda z, c: jnp.sin(z) * c[:, None]  # noqa: E731
    D = diffax.edm_preconditioned(F, p, sigma_data=0.5)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    st, sd = s / a, 0.5  # EDM's sigma for the scaled state x / alpha
    ref = (sd**2 / (st**2 + sd**2)) * (x / a) + st * sd / jnp.sqrt(st**2 + sd**2) * F(
        x / a / jnp.sqrt(st**2 + sd**2), 0.25 * jnp.log(st[:, 0]))
    np.testing.assert_allclose(D(x, t), ref, rtol=1e-10)
    # Where alpha = 0 the coefficients stay finite; EDM's c_noise does not, so flows condition
    # the network on t instead.
    rf = diffax.RectifiedFlow()
    c = edm_coefficients(rf, jnp.ones(5), sigma_data=0.5)
    assert bool(jnp.all(jnp.isfinite(jnp.stack([c.c_skip, c.c_out, c.c_in]))))
    assert bool(jnp.all(jnp.isinf(c.c_noise)))
    out = diffax.edm_preconditioned(F, rf, sigma_data=0.5, noise_conditioning=lambda t: t)(x, 1.0)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_eps_from_denoiser_recovers_the_noise_for_a_perfect_denoiser(x64):
    p = diffax.VE()
    x0, eps = jax.random.normal(jax.random.key(4), (2, 3, 4))
    t = jnp.full((3,), 0.4)
    x = x0 + p.sigma(t)[:, None] * eps
    np.testing.assert_allclose(eps_from_denoiser(p, lambda x_, t_: x0)(x, t), eps, rtol=1e-10)


def test_as_denoiser_accepts_scalar_time_and_works_under_jit(x64):
    p = diffax.VP()
    D = diffax.as_denoiser(lambda x, t: x * t[:, None], p, prediction="v")
    x = jnp.ones((3, 2))
    np.testing.assert_allclose(jax.jit(D)(x, 0.3), D(x, jnp.full((3,), 0.3)))


@pytest.mark.parametrize("call, match", [
    (lambda: diffax.as_denoiser(lambda x, t: x, diffax.VP(), prediction="epsilon"),
     "prediction"),
    (lambda: diffax.as_denoiser(lambda x, t: x, diffax.VP())(jnp.ones((3, 2)), jnp.ones(4) / 2),
     "`t` has shape"),
    (lambda: diffax.as_denoiser(lambda x, t: x[:, :1], diffax.VP())(jnp.ones((3, 2)), 0.5),
     "shape of `x`"),
    (lambda: diffax.edm_preconditioned(lambda x, c: x, diffax.VP())(jnp.ones((2, 2)), 0.5),
     "sigma_data"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
