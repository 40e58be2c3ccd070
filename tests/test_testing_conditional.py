"""The oracle's conditionals: GaussianMixture.condition and ClassConditionalMixture."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import testing
from diffax.testing import ClassConditionalMixture, GaussianMixture


def _mixture():
    means = 1.5 * jax.random.normal(jax.random.key(1), (3, 2, 2))
    stds = 0.2 + 0.5 * jax.random.uniform(jax.random.key(2), (3, 2, 2))
    return GaussianMixture(means=means, stds=stds, weights=jnp.array([0.2, 0.5, 0.3]))


def _ccm():
    return ClassConditionalMixture(
        means=jnp.array([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.0]]),
        stds=jnp.array([[0.3, 0.5], [0.4, 0.2], [0.6, 0.3]]),
        class_weights=jnp.array([[0.7, 0.3, 0.0], [0.1, 0.2, 0.7]]),
        class_probs=jnp.array([0.4, 0.6]))


def test_condition_is_bayes_rule(x64):
    """log p(x_obs, x_miss) - log p(x_miss | x_obs) = log p(x_obs) for every x_miss."""
    gm = _mixture()
    mask = np.array([[1, 0], [0, 1]])
    x_known = jnp.array([[0.3, 99.0], [99.0, -0.7]])  # unobserved entries are never read
    cond = gm.condition(x_known, mask)
    assert cond.event_shape == (2,)
    x_miss = 2.0 * jax.random.normal(jax.random.key(0), (64, 2))
    full = jnp.broadcast_to(x_known, (64, 2, 2))
    full = full.at[:, 0, 1].set(x_miss[:, 0]).at[:, 1, 0].set(x_miss[:, 1])
    gap = gm.log_prob_data(full) - cond.log_prob_data(x_miss)
    np.testing.assert_allclose(gap, gap[0], rtol=0, atol=1e-10)
    # ... and the constant is the marginal log p(x_obs) of the observed pair.
    obs = GaussianMixture(means=gm.means.reshape(3, 4)[:, [0, 3]],
                          stds=gm.stds.reshape(3, 4)[:, [0, 3]], weights=gm.weights)
    np.testing.assert_allclose(gap[0], obs.log_prob_data(jnp.array([[0.3, -0.7]]))[0],
                               atol=1e-10)


def test_condition_rejects_bad_masks():
    gm = _mixture()
    with pytest.raises(ValueError, match="`mask`"):
        gm.condition(jnp.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="`mask`"):
        gm.condition(jnp.zeros((2, 2)), np.ones((4,)))
    with pytest.raises(ValueError, match="`mask`"):
        jax.jit(lambda m: gm.condition(jnp.zeros((2, 2)), m))(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="`x_known`"):
        gm.condition(jnp.zeros((4,)), np.array([[1, 0], [0, 0]]))


def test_class_conditionals_are_consistent(x64):
    ccm, p = _ccm(), diffax.VP()
    x = 1.5 * jax.random.normal(jax.random.key(3), (16, 2))
    t = jnp.linspace(0.05, 0.9, 16)
    labels = jnp.arange(16) % 2
    log_post = jnp.stack([ccm.log_prob_label(p, x, t, c) for c in range(2)], -1)
    # p(c | x_t) is normalised, and sum_c p(c | x_t) D_c = D.
    np.testing.assert_allclose(jax.nn.logsumexp(log_post, -1), 0.0, atol=1e-12)
    d_c = jnp.stack([ccm.denoiser(p, c)(x, t) for c in range(2)], -1)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_post)[:, None] * d_c, -1),
                               ccm.marginal().denoiser(p)(x, t), atol=1e-12)
    # Per-example labels select each class's own mixture.
    for c in range(2):
        np.testing.assert_allclose(ccm.denoiser(p, labels)(x, t)[labels == c],
                                   ccm.conditional(c).denoiser(p)(x, t)[labels == c],
                                   atol=1e-12)
    # grad log p(y | x_t) = score(x | y) - score(x): what classifier guidance adds.
    grad = jax.grad(lambda x: jnp.sum(ccm.log_prob_label(p, x, t, labels)))(x)
    gap = jnp.where(labels[:, None] == 0, ccm.conditional(0).score(p, x, t),
                    ccm.conditional(1).score(p, x, t)) - ccm.marginal().score(p, x, t)
    np.testing.assert_allclose(grad, gap, atol=1e-10)


def test_class_conditional_rejects_bad_input():
    ccm = _ccm()
    with pytest.raises(ValueError, match="class_weights"):
        ClassConditionalMixture(means=ccm.means, stds=ccm.stds,
                                class_weights=jnp.array([[0.5, 0.6, 0.0]]),
                                class_probs=jnp.array([1.0]))
    with pytest.raises(ValueError, match="class_probs"):
        ClassConditionalMixture(means=ccm.means, stds=ccm.stds,
                                class_weights=ccm.class_weights, class_probs=jnp.array([1.0]))
    with pytest.raises(ValueError, match="`label`"):
        ccm.denoiser(diffax.VP(), jnp.array([0.0, 1.0]))(jnp.zeros((2, 2)), 0.5)
    with pytest.raises(ValueError, match="`label`"):
        ccm.conditional(2)


def test_docstring_examples():
    result = doctest.testmod(testing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
