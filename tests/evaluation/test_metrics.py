"""Metrics: Fréchet distance, whitened PCA, sliced Wasserstein, nearest neighbours."""

import numpy as np
import pytest
import scipy.linalg

from diffax.evaluation import metrics


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_matches_the_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    for d in (1, 3, 10):
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        c1, c2 = _spd(rng, d), _spd(rng, d)
        cross = scipy.linalg.sqrtm(c1 @ c2).real
        expected = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * cross)
        assert metrics.frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_closed_forms_and_symmetry():
    rng = np.random.default_rng(1)
    m, c = rng.normal(size=4), _spd(rng, 4)
    assert metrics.frechet_distance(m, c, m, c) == pytest.approx(0.0, abs=1e-9)
    # Diagonal covariances: |m1 - m2|^2 + sum (s1 - s2)^2.
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    m1, m2 = np.zeros(3), np.array([1.0, -2.0, 0.0])
    fd = metrics.frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2))
    assert fd == pytest.approx(5.0 + 4.0 + 1.0)
    c2 = _spd(rng, 4)
    assert metrics.frechet_distance(m, c, 0 * m, c2) == pytest.approx(
        metrics.frechet_distance(0 * m, c2, m, c), rel=1e-9)
    # A singular covariance (a point mass) is fine.
    assert metrics.frechet_distance(m, np.zeros((4, 4)), m, np.eye(4)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="shapes"):
        metrics.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(3))


def test_pca_is_the_covariance_eigenbasis_and_whitens_the_training_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 5)) @ rng.normal(size=(5, 5)) + rng.normal(size=5)
    pca = metrics.fit_pca(x, num_components=3)
    w, v = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(w)[::-1][:3]
    np.testing.assert_allclose(np.abs(pca.components @ v[:, order]), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(pca.scale**2, w[order], rtol=1e-6)
    np.testing.assert_allclose(pca.explained_variance_ratio, w[order] / w.sum(), rtol=1e-6)
    f = metrics.pca_features(pca, x)
    np.testing.assert_allclose(f.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.cov(f, rowvar=False), np.eye(3), atol=1e-6)
    # Images are flattened; more components than dimensions are capped.
    img = rng.normal(size=(50, 2, 2, 1))
    assert metrics.fit_pca(img, num_components=100).components.shape == (4, 4)
    assert metrics.pca_features(metrics.fit_pca(img), img).shape == (50, 4)
    with pytest.raises(ValueError, match="fitted on 4"):
        metrics.pca_features(metrics.fit_pca(img), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.fit_pca(np.full((3, 2), np.nan))


def test_fd_in_pca_features_separates_a_shift_from_resampling():
    rng = np.random.default_rng(3)
    train, test, same = (rng.normal(size=(2000, 16)) for _ in range(3))
    pca = metrics.fit_pca(train, num_components=8)
    stats = lambda x: metrics.gaussian_statistics(metrics.pca_features(pca, x))
    fd_same = metrics.frechet_distance(*stats(same), *stats(test))
    fd_shift = metrics.frechet_distance(*stats(same + 0.5), *stats(test))
    # Resampling: the finite-sample bias is about 8 * 8 / 2000 per set; a 0.5 shift in 16
    # dimensions moves the 8 leading whitened components by sum_k (0.5 u_k . 1)^2 ~ 2.
    assert fd_same < 0.1
    assert fd_shift > 10 * fd_same


def test_sliced_wasserstein_exact_cases():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3))
    assert metrics.sliced_wasserstein(x, x) == 0.0
    assert metrics.sliced_wasserstein(x, x[::-1]) == 0.0  # order does not matter
    # 1-D: every direction is +-1, so it is the exact W2 between sorted samples.
    a, b = rng.normal(size=(400, 1)), 2.0 + 3.0 * rng.normal(size=(400, 1))
    w2 = np.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    assert metrics.sliced_wasserstein(a, b, num_projections=3) == pytest.approx(w2, rel=1e-12)
    # A translation by v: SW^2 = mean over directions of (u . v)^2 -> |v|^2 / d.
    v = np.array([3.0, 0.0, 4.0])
    sw = metrics.sliced_wasserstein(x, x + v, num_projections=20_000)
    assert sw**2 == pytest.approx(25.0 / 3.0, rel=0.03)
    # Symmetric, deterministic for a seed, and handles different sizes.
    y = rng.normal(size=(300, 3)) + 1.0
    assert metrics.sliced_wasserstein(x, y) == pytest.approx(metrics.sliced_wasserstein(y, x))
    assert metrics.sliced_wasserstein(x, y, seed=1) == metrics.sliced_wasserstein(x, y, seed=1)
    with pytest.raises(ValueError, match="values per example"):
        metrics.sliced_wasserstein(x, np.zeros((3, 2)))


def test_sliced_wasserstein_sees_beyond_two_moments():
    # A two-component mixture against the Gaussian with the same mean and covariance: the
    # Fréchet distance is blind to the difference, the sliced Wasserstein distance is not.
    rng = np.random.default_rng(5)
    n = 4000
    mix = np.concatenate([rng.normal(-2, 0.3, size=(n // 2, 2)),
                          rng.normal(2, 0.3, size=(n // 2, 2))])
    gauss = rng.multivariate_normal(mix.mean(0), np.cov(mix, rowvar=False), size=n)
    mix2 = np.concatenate([rng.normal(-2, 0.3, size=(n // 2, 2)),
                           rng.normal(2, 0.3, size=(n // 2, 2))])
    stats = metrics.gaussian_statistics
    assert metrics.frechet_distance(*stats(gauss), *stats(mix)) < 0.05
    assert metrics.sliced_wasserstein(gauss, mix) > 5 * metrics.sliced_wasserstein(mix2, mix)


def test_nearest_neighbor_distances_match_brute_force():
    rng = np.random.default_rng(6)
    x, ref = rng.normal(size=(37, 4)), rng.normal(size=(101, 4))
    brute = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(metrics.nearest_neighbor_distances(x, ref, chunk=5), brute,
                               atol=1e-9)
    np.testing.assert_allclose(metrics.nearest_neighbor_distances(ref[:5], ref), 0.0,
                               atol=1e-6)
