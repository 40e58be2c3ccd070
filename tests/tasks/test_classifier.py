"""diffax.tasks.classifier: the noisy classifier, its loss, and log_prob_fn against the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.tasks import classifier as clf


def _mixture():
    return diffax.testing.ClassConditionalMixture(
        means=jnp.array([[-1.0, 0.5], [1.0, 0.0], [0.0, -1.5]]), stds=jnp.array([0.3, 0.5, 0.4]),
        class_weights=jnp.array([[0.8, 0.2, 0.0], [0.1, 0.3, 0.6]]),
        class_probs=jnp.array([0.4, 0.6]))


def test_log_prob_fn_of_the_exact_classifier_gives_the_exact_conditional_denoiser(x64):
    """log_prob_fn of exact logits, through diffax.guidance.classifier at scale 1, is exactly
    the class-conditional denoiser of the oracle."""
    ccm, process = _mixture(), diffax.VP()
    # A "network" whose logits are the exact log-posteriors of both classes.
    logits = lambda params, x, t: jnp.stack(
        [ccm.log_prob_label(process, x, t, jnp.full(x.shape[:1], c)) for c in range(2)], -1)
    x = jax.random.normal(jax.random.key(0), (6, 2), jnp.float64)
    labels = jnp.array([0, 1, 1, 0, 1, 0])
    t = jnp.full((6,), 0.4)
    log_p = clf.log_prob_fn(logits, None, process, labels)
    np.testing.assert_allclose(log_p(x, t), ccm.log_prob_label(process, x, t, labels),
                               rtol=1e-12)
    guided = diffax.guidance.classifier(process, ccm.marginal().denoiser(process), log_p,
                                        scale=1.0)
    np.testing.assert_allclose(guided(x, t), ccm.denoiser(process, labels)(x, t), rtol=1e-9,
                               atol=1e-12)


def test_classifier_loss_is_the_cross_entropy_at_the_noised_input(x64):
    process = diffax.VP()
    seen = {}

    def apply_fn(params, x, t):
        seen["x"], seen["t"] = x, t
        return jnp.stack([x[:, 0], -x[:, 0], jnp.zeros_like(x[:, 0])], -1)

    loss = clf.ClassifierLoss(process=process)
    batch = {"x": jnp.array([[1.0, 0.0], [-2.0, 1.0]]), "label": jnp.array([0, 2])}
    value, aux = loss(apply_fn, None, jax.random.key(0), batch)
    t = aux["t"]
    # x_t = alpha x0 + sigma eps with the loss's own key split.
    _, key_eps, _ = jax.random.split(jax.random.key(0), 3)
    eps = jax.random.normal(key_eps, (2, 2), jnp.float64)
    x_t = process.alpha(t)[:, None] * batch["x"] + process.sigma(t)[:, None] * eps
    np.testing.assert_allclose(seen["x"], x_t, rtol=1e-12)
    np.testing.assert_allclose(seen["t"], t)
    z = np.stack([x_t[:, 0], -x_t[:, 0], np.zeros(2)], -1)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want = -np.mean([log_p[0, 0], log_p[1, 2]])
    assert float(value) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="'label'"):
        loss(apply_fn, None, jax.random.key(0), {"x": batch["x"]})
    with pytest.raises(ValueError, match="time_sampler"):
        clf.ClassifierLoss(process=process, time_sampler="uniform")


@pytest.mark.slow  # compiles the classifier twice (about 15 s of CPU)
def test_noisy_classifier_shapes_time_dependence_and_validation():
    model = clf.NoisyClassifier.from_variant("tiny", num_classes=4, num_channels=1, nf=8,
                                             ch_mult=(1,), attn_resolutions=())
    params = model.init_params(jax.random.key(0))
    # Zero-initialised residual outputs hide the time input at initialisation: perturb them.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape)
                                       for p, k in zip(leaves, keys, strict=True)])
    f = jax.jit(model.apply)
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
    out0, out1 = f(params, x, jnp.zeros(3)), f(params, x, jnp.ones(3))
    assert out0.shape == (3, 4)
    assert float(jnp.abs(out0 - out1).max()) > 0  # conditioned on t
    assert clf.accuracy(model.apply, params, x, jnp.argmax(out0, -1), 0.0) == 1.0
    with pytest.raises(ValueError, match="num_classes"):
        config = diffax.models.UNetConfig(image_size=8, attn_resolutions=(), num_classes=3)
        clf.NoisyClassifier(config, 4)
    with pytest.raises(ValueError, match="shape"):
        model.apply(params, jnp.zeros((2, 4, 4, 1)), jnp.zeros(2))
