"""diffax.tasks.synthesis: the null mask of classifier-free training, and guidance on a mask
against the exact class-conditional mixture."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.tasks import segdiff as sd
from diffax.tasks import synthesis as syn


def test_drop_condition_replaces_whole_examples_at_the_rate():
    cond = jnp.ones((4000, 2, 2, 3))
    np.testing.assert_array_equal(syn.drop_condition(jax.random.key(0), cond, rate=0.0), cond)
    assert float(jnp.abs(syn.drop_condition(jax.random.key(0), cond, rate=1.0)).max()) == 0.0
    out = np.asarray(syn.drop_condition(jax.random.key(1), cond, rate=0.3))
    per_example = out.reshape(len(out), -1)
    assert np.all((per_example == 0).all(1) | (per_example == 1).all(1))  # all or nothing
    dropped = (per_example == 0).all(1).mean()
    assert abs(dropped - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(out)), dropped


def test_condition_dropout_feeds_the_loss_the_dropped_batch():
    seen = {}

    def loss_fn(params, key, batch):
        seen.update(batch)
        return jnp.sum(batch["cond"]), {}

    batch = {"x": jnp.ones((64, 3)), "cond": jnp.ones((64, 3))}
    value, _ = syn.condition_dropout(loss_fn, rate=0.5)(None, jax.random.key(0), batch)
    kept = np.asarray(seen["cond"]).all(1)
    assert 0 < kept.sum() < 64 and float(value) == 3 * kept.sum()
    np.testing.assert_array_equal(seen["x"], batch["x"])


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`rate` must be a probability"):
        syn.drop_condition(jax.random.key(0), jnp.ones((2, 1)), rate=1.5)
    with pytest.raises(TypeError, match="`rate`"):
        syn.condition_dropout(lambda p, k, b: 0.0, rate="half")
    with pytest.raises(ValueError, match="`loss_fn`"):
        syn.condition_dropout(None, rate=0.1)
    wrapped = syn.condition_dropout(lambda p, k, b: 0.0, rate=0.1, cond_key="mask")
    with pytest.raises(ValueError, match="'mask' entry"):
        wrapped(None, jax.random.key(0), {"x": jnp.ones((2, 1))})
    with pytest.raises(ValueError, match="`fn`"):
        syn.guided_denoiser(None, jnp.ones((2, 1)), scale=1.0)


def test_guidance_on_a_mask_is_the_exact_guided_score(x64):
    """Images of two masks (class 0: the all-background mask, class 1: all-foreground) from a
    class-conditional mixture; a 'network' that is the exact conditional denoiser for a real
    mask and the exact unconditional one for the null mask. The guided denoiser's score must
    be ``score(x_t) + w grad log p(mask | x_t)`` exactly (Ho & Salimans)."""
    ccm = diffax.testing.ClassConditionalMixture(
        means=jnp.array([[-1.0, 0.5], [1.0, 0.0], [0.2, -1.0]]),
        stds=jnp.array([0.3, 0.4, 0.5]),
        class_weights=jnp.array([[0.7, 0.1, 0.2], [0.1, 0.6, 0.3]]),
        class_probs=jnp.array([0.4, 0.6]))
    process = diffax.VP()

    def fn(x, t, cond):
        label = (cond.reshape(len(cond), -1)[:, 0] > 0).astype(jnp.int32)
        null = jnp.all(cond.reshape(len(cond), -1) == 0, axis=1)[:, None]
        return jnp.where(null, ccm.marginal().denoiser(process)(x, t),
                         ccm.denoiser(process, label)(x, t))

    labels = jnp.array([0, 1, 1, 0, 1])
    cond = sd.mask_to_channels(jnp.broadcast_to(labels[:, None, None], (5, 2, 2)), 2)
    x = jax.random.normal(jax.random.key(0), (5, 2), jnp.float64)
    t = jnp.full((5,), 0.4)
    a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
    score_u = ccm.marginal().score(process, x, t)
    grad_cls = jax.grad(lambda x: jnp.sum(ccm.log_prob_label(process, x, t, labels)))(x)
    for w in (0.0, 1.0, 3.0):
        D = syn.guided_denoiser(fn, cond, scale=w)(x, t)
        np.testing.assert_allclose((a * D - x) / s**2, score_u + w * grad_cls, rtol=1e-9,
                                   atol=1e-9)


def test_docstring_examples():
    import doctest

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(syn, module=syn, globs=vars(syn).copy())
    assert sum(runner.run(t).attempted for t in tests) > 0
    assert runner.failures == 0
