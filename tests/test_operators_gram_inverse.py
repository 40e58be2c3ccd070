"""The Radon operator's ridge inverse in its gram form (images whose dense [P, M] inverse is too
large, e.g. 64x64 over 180 angles) against the closed form of ridge regression (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax._operators as operators
from diffax import inverse


def _dense_transform(op):
    """``T`` as a dense ``[M, P]`` matrix from the projector's sparse entries (the projector
    itself is checked against closed forms in tests/test_operators.py)."""
    full = op._full
    t = np.zeros((full.num_angles * full.num_detectors, op.image_shape[0] * op.image_shape[1]))
    np.add.at(t, (full.index, full.pixel), full.weight)
    return t


def test_gram_form_is_the_ridge_least_squares_solution(x64, monkeypatch):
    """With the dense form ruled out (its limit set to 0), ``T^{-1} z`` is the minimiser of
    ``||T x - z||^2 + r m ||x||^2`` (``m`` = mean diagonal of ``T^T T``): the stacked
    least-squares problem ``[T; sqrt(r m) I] x = [z; 0]`` solved by ``lstsq``, to 1e-10; and
    it equals the dense form's result (what smaller images use) to 1e-10."""
    shape, ridge = (8, 8), 1e-3
    dense = inverse.sparse_view_radon(4, image_shape=shape, num_full=16, inverse_ridge=ridge)
    monkeypatch.setattr(operators, "_DENSE_INVERSE_LIMIT", 0)
    gram = inverse.sparse_view_radon(4, image_shape=shape, num_full=16, inverse_ridge=ridge)
    assert dense._pinv is not None and gram._pinv is None and gram._gram_inv is not None
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 16, dense.num_detectors, 2)))
    got = np.asarray(jax.jit(gram.inverse_transform)(z))
    t = _dense_transform(gram)
    m = np.trace(t.T @ t) / t.shape[1]
    stacked = np.concatenate([t, np.sqrt(ridge * m) * np.eye(t.shape[1])])
    for b in range(3):
        for c in range(2):
            rhs = np.concatenate([np.asarray(z[b, ..., c]).ravel(), np.zeros(t.shape[1])])
            want = np.linalg.lstsq(stacked, rhs, rcond=None)[0].reshape(shape)
            np.testing.assert_allclose(got[b, ..., c], want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got, np.asarray(jax.jit(dense.inverse_transform)(z)), rtol=0,
                               atol=1e-10)


def test_gram_form_has_a_size_limit_checked_before_any_compute():
    """64x64 over 180 angles fits the gram form (P * P = 1.7e7 <= 2e7); 72x72 (2.7e7) fits
    neither form: a ValueError naming `inverse_ridge` before the projector is built."""
    assert 64**4 <= operators._GRAM_INVERSE_LIMIT < 72**4
    assert 64 * 64 * 180 * 92 > operators._DENSE_INVERSE_LIMIT  # 64x64 takes the gram form
    with pytest.raises(ValueError, match="`inverse_ridge`: the dense inverse.*None \\(FBP\\)"):
        inverse.sparse_view_radon(4, image_shape=(72, 72), inverse_ridge=1e-2)
