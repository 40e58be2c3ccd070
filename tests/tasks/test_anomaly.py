"""diffax.tasks.anomaly: simplex noise, AUROC, scores, and reconstruction against the oracle."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.tasks import anomaly

PERM = jax.random.permutation(jax.random.key(3), 256)


def test_simplex_is_zero_at_lattice_corners_and_bounded():
    i, j = jnp.meshgrid(jnp.arange(-5.0, 6.0), jnp.arange(-5.0, 6.0))
    g2 = (3.0 - np.sqrt(3.0)) / 6.0  # the simplex lattice, unskewed
    corners = anomaly.simplex2d(i - (i + j) * g2, j - (i + j) * g2, PERM)
    assert float(jnp.abs(corners).max()) < 1e-6
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(k1, (50_000,), minval=-300.0, maxval=300.0)
    y = jax.random.uniform(k2, (50_000,), minval=-300.0, maxval=300.0)
    v = anomaly.simplex2d(x, y, PERM)
    assert float(jnp.abs(v).max()) <= 1.0
    assert float(jnp.std(v)) > 0.05  # not degenerate
    assert abs(float(jnp.mean(v))) < 0.01  # gradients symmetric: mean zero
    # Periodic: 256 cells along the lattice's first axis, unskewed, is a period.
    shifted = anomaly.simplex2d(x + 256.0 * (1.0 - g2), y - 256.0 * g2, PERM)
    np.testing.assert_allclose(shifted, v, atol=2e-3)


def test_simplex_is_continuous_and_depends_on_the_table():
    x = jnp.linspace(0.0, 8.0, 4001)
    v = anomaly.simplex2d(x, 0.37 * x, PERM)
    step = float(jnp.abs(jnp.diff(v)).max())
    assert step < 0.01  # a smooth field: 2 mm steps move it by well under 1% of its range
    other = anomaly.simplex2d(x, 0.37 * x, jnp.arange(256))
    assert float(jnp.abs(other - v).max()) > 0.05


def test_octave_simplex_is_the_normalised_sum_of_octaves():
    x, y = jnp.linspace(0.1, 3.0, 7), jnp.linspace(2.0, 0.5, 7)
    off = jnp.array([[0.0, 0.0], [3.5, 1.25]])
    got = anomaly.octave_simplex(x, y, PERM, octaves=2, persistence=0.5, offsets=off)
    want = (anomaly.simplex2d(x, y, PERM)
            + 0.5 * anomaly.simplex2d(2 * x + 3.5, 2 * y + 1.25, PERM)) / 1.5
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="octaves"):
        anomaly.octave_simplex(x, y, PERM, octaves=0)
    with pytest.raises(ValueError, match="persistence"):
        anomaly.octave_simplex(x, y, PERM, persistence=1.5)


def test_simplex_noise_is_deterministic_jittable_standardised_and_correlated():
    shape = (64, 8, 8, 2)
    fn = functools.partial(anomaly.simplex_noise, frequency=1.0, octaves=3)
    a = fn(jax.random.key(0), shape)
    np.testing.assert_array_equal(a, fn(jax.random.key(0), shape))
    np.testing.assert_allclose(jax.jit(fn, static_argnums=1)(jax.random.key(0), shape), a,
                               atol=1e-5)
    assert float(jnp.abs(fn(jax.random.key(1), shape) - a).max()) > 0.5
    np.testing.assert_allclose(a.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=(1, 2, 3)), 1.0, atol=1e-4)
    # Unlike white noise, neighbouring pixels are strongly correlated at a low frequency.
    corr = float(jnp.mean(a[:, 1:] * a[:, :-1]) / jnp.mean(a * a))
    white = jax.random.normal(jax.random.key(0), shape)
    corr_white = float(jnp.mean(white[:, 1:] * white[:, :-1]))
    assert corr > 0.5 and abs(corr_white) < 0.1
    raw = anomaly.simplex_noise(jax.random.key(0), shape, standardize=False)
    assert float(jnp.abs(raw).max()) <= 1.0
    with pytest.raises(ValueError, match="shape"):
        anomaly.simplex_noise(jax.random.key(0), (8, 8))


def test_auroc_against_hand_computed_and_pairwise_counts():
    # Positives 0.35, 0.8 against negatives 0.1, 0.4: 0.35 beats 0.1 only; 0.8 beats both.
    assert anomaly.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert anomaly.auroc([0.5, 0.5, 0.2], [1, 0, 0]) == 0.75  # one tie counts half
    assert anomaly.auroc([3.0, 2.0, 1.0], [1, 1, 0]) == 1.0
    assert anomaly.auroc([3.0, 2.0, 1.0], [0, 0, 1]) == 0.0
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.integers(0, 2, 200)
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    pairwise = np.mean((pos > neg) + 0.5 * (pos == neg))
    assert anomaly.auroc(s, y) == pytest.approx(pairwise, abs=1e-12)
    for bad, match in (([0, 0], "both classes"), ([0, 2], "0 or 1")):
        with pytest.raises(ValueError, match=match):
            anomaly.auroc([1.0, 2.0], bad)


def test_anomaly_scores_by_hand():
    x = jnp.zeros((2, 2, 2, 2))
    rec = x.at[0, 0, 1].set(jnp.array([1.0, 2.0])).at[1].set(0.5)
    pixel, image = anomaly.anomaly_scores(x, rec)
    np.testing.assert_allclose(pixel[0], [[0.0, 5.0], [0.0, 0.0]])
    np.testing.assert_allclose(image, [1.25, 0.5])


def test_noise_denoising_loss_uses_the_given_noise(x64):
    loss = diffax.losses.DenoisingLoss(process=diffax.VP())
    ones = lambda key, shape: jnp.ones(shape)  # eps = 1 everywhere
    half = lambda params, x, t: 0.5 * jnp.ones_like(x)  # eps_hat = 0.5: error 0.25
    value, aux = anomaly.NoiseDenoisingLoss(loss=loss, noise=ones).bind(half)(
        None, jax.random.key(0), {"x": jnp.zeros((3, 4))})
    assert float(value) == pytest.approx(0.25)
    assert aux["t"].shape == (3,)


def test_reconstruct_follows_the_exact_flow_of_a_gaussian(x64):
    """With the exact denoiser the reconstruction is the probability-flow ODE from x_t."""
    gm = diffax.testing.GaussianMixture(means=jnp.array([[0.5, -1.0, 0.2]]),
                                        stds=jnp.array([0.4]), weights=jnp.array([1.0]))
    process = diffax.VP()
    x = jnp.array([[2.0, 1.0, 0.0], [-1.0, 0.5, 0.3]])
    key, t = jax.random.key(0), 0.4
    key_noise, _ = jax.random.split(key)
    tt = jnp.full((2,), t)
    x_t = (process.alpha(tt)[:, None] * x
           + process.sigma(tt)[:, None] * jax.random.normal(key_noise, x.shape, x.dtype))
    exact = gm.flow(process, x_t, t=tt, s=jnp.full((2,), process.t_min))
    errors = []
    for n in (32, 64):
        rec = anomaly.reconstruct(key, process, gm.denoiser(process), x, t=t,
                                  solver=diffax.samplers.Heun(), num_steps=n)
        errors.append(float(jnp.abs(rec - exact).max()))
    assert errors[1] < 1e-3
    assert errors[1] < errors[0] / 3  # Heun: second order (the ratio is about 4)
    with pytest.raises(ValueError, match="`t`"):
        anomaly.reconstruct(key, process, gm.denoiser(process), x, t=2.0,
                            solver=diffax.samplers.Heun(), num_steps=2)


def test_stochastic_reconstruction_draws_every_step_from_the_given_noise(x64):
    """AnoDDPM: DDPM's ancestral steps take their noise from the same noise function."""
    gm = diffax.testing.GaussianMixture(means=jnp.array([[0.5, -1.0, 0.2]]),
                                        stds=jnp.array([0.4]), weights=jnp.array([1.0]))
    process, D = diffax.VP(), gm.denoiser(diffax.VP())
    pattern = jnp.array([[1.0, -1.0, 0.5], [-0.5, 2.0, 0.0]])
    fixed = lambda key, shape: jnp.broadcast_to(pattern, shape)  # the same draw every call
    x, t, n = jnp.array([[2.0, 1.0, 0.0], [-1.0, 0.5, 0.3]]), 0.4, 5
    rec = anomaly.reconstruct(jax.random.key(0), process, D, x, t=t,
                              solver=diffax.samplers.DDPM(), num_steps=n, noise=fixed)
    grid = anomaly.partial_grid(process, t, n)
    tt = jnp.full((2,), grid[0])
    want = process.alpha(tt)[:, None] * x + process.sigma(tt)[:, None] * pattern
    for i in range(n):
        t_i, s_i = jnp.full((2,), grid[i]), jnp.full((2,), grid[i + 1])
        mean, std = process.posterior(want, D(want, t_i), t=t_i, s=s_i)
        want = mean + std * pattern
    np.testing.assert_allclose(rec, want, rtol=1e-10, atol=1e-12)
    # With the default Gaussian noise the same call gives a different (random) answer.
    other = anomaly.reconstruct(jax.random.key(0), process, D, x, t=t,
                                solver=diffax.samplers.DDPM(), num_steps=n)
    assert float(jnp.abs(other - want).max()) > 1e-3


def test_baselines_rank_shifted_inputs_above_training_like_ones():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 4, 4, 1)) * 0.2
    near, far = train[:20] + 0.01 * rng.normal(size=(20, 4, 4, 1)), train[:20] + 1.0
    scores = anomaly.baseline_scores(train, np.concatenate([near, far]), num_neighbors=3,
                                     num_components=4)
    labels = np.repeat([0, 1], 20)
    assert anomaly.auroc(scores["knn"], labels) == 1.0
    assert anomaly.auroc(scores["pca"], labels) > 0.9
