"""diffax.tasks.purification: FGSM and the Gaussian perturbation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax.tasks import purification as pur


def test_fgsm_moves_against_the_true_class_by_epsilon():
    w = jnp.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 1.0]])  # logits = x @ w, x in R^3
    logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
    x = jnp.array([[0.2, -0.1, 0.0], [0.9, 0.0, -0.95]])
    labels = jnp.array([0, 1])
    out = pur.fgsm(logits_fn, x, labels, epsilon=0.1)
    # d CE / dx = w (softmax - onehot): its sign, computed by hand.
    p = jax.nn.softmax(logits_fn(x))
    grad = (p - jax.nn.one_hot(labels, 2)) @ w.T
    np.testing.assert_allclose(out, jnp.clip(x + 0.1 * jnp.sign(grad), -1, 1), atol=1e-7)
    assert float(out[1, 0]) <= 1.0 and float(out[1, 2]) >= -1.0  # clipped to the range
    ce = lambda v: -jnp.sum(jax.nn.log_softmax(logits_fn(v))[jnp.arange(2), labels])
    assert float(ce(out)) > float(ce(x))
    with pytest.raises(ValueError, match="epsilon"):
        pur.fgsm(logits_fn, x, labels, epsilon=-1.0)


def test_gaussian_perturbation_is_clipped_noise():
    x = jnp.zeros((1000,))
    out = pur.gaussian_perturbation(jax.random.key(0), x, std=0.5)
    assert float(jnp.abs(out).max()) <= 1.0
    assert 0.4 < float(jnp.std(out)) < 0.5  # clipping shrinks a 0.5 std a little
