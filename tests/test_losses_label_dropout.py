"""Label dropout for classifier-free guidance: ``DenoisingLoss(p_uncond=..., null_label=...)``
and the ``loss.p_uncond`` config key."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import diffax
from diffax import losses
from diffax.models import MLP, apply_fn
from diffax.train import build

NULL = 10


def _recording_net(seen):
    """An eps network that records the labels it is given (called eagerly, not jitted)."""

    def net(params, x, t, *, label):
        seen.append(np.asarray(label))
        return params * x

    return net


@pytest.mark.parametrize("p_uncond", [0.0, 0.25, 1.0])
def test_drops_the_right_fraction_and_the_null_label_reaches_the_network(p_uncond):
    loss = losses.DenoisingLoss(process=diffax.VP(), p_uncond=p_uncond, null_label=NULL)
    n = 20_000
    labels = jnp.arange(n) % NULL
    seen = []
    loss(_recording_net(seen), 1.0, jax.random.key(3),
         {"x": jnp.zeros((n, 2)), "label": labels})
    (got,) = seen
    dropped = got == NULL
    # Kept labels are unchanged; dropped ones are exactly the null label.
    np.testing.assert_array_equal(got[~dropped], np.asarray(labels)[~dropped])
    se = np.sqrt(p_uncond * (1 - p_uncond) / n)
    assert abs(dropped.mean() - p_uncond) <= 5 * se + 1e-12
    # Independent of the class (the dropout is per example, not per class).
    if 0 < p_uncond < 1:
        per_class = [dropped[np.asarray(labels) == c].mean() for c in range(NULL)]
        assert max(per_class) - min(per_class) < 0.05


def test_dropout_leaves_times_and_noise_unchanged():
    base = losses.DenoisingLoss(process=diffax.VP())
    cfg = losses.DenoisingLoss(process=diffax.VP(), p_uncond=0.5, null_label=NULL)
    net = lambda params, x, t, label=None: params * x
    batch = {"x": jnp.ones((16, 2)), "label": jnp.arange(16) % NULL}
    _, aux0 = base(net, 0.3, jax.random.key(0), batch)
    _, aux1 = cfg(net, 0.3, jax.random.key(0), batch)
    np.testing.assert_array_equal(aux0["t"], aux1["t"])
    np.testing.assert_array_equal(aux0["per_example"], aux1["per_example"])


def test_null_label_reaches_a_conditional_model_under_jit():
    """p_uncond = 1 gives the loss of the network called with the null label (the model's
    unconditional input), p_uncond = 0 the loss with the true labels."""
    model = MLP.from_variant("tiny", num_classes=3)
    params = model.init_params(jax.random.key(0))
    # Perturb every parameter: a fresh model's zero-initialised output layer ignores labels.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [v + 0.3 * jax.random.normal(k, v.shape, v.dtype) for v, k in zip(leaves, keys)])
    f = apply_fn(model)
    batch = {"x": jax.random.normal(jax.random.key(1), (32, 2)), "label": jnp.arange(32) % 3}
    key = jax.random.key(2)

    @jax.jit
    def value(p_uncond, labels):  # p_uncond is traced: one compilation for every value
        loss = losses.DenoisingLoss(process=diffax.VP(), p_uncond=p_uncond,
                                    null_label=model.config.null_label)
        return loss.bind(f)(params, key, {**batch, "label": labels})[0]

    null = jnp.full((32,), model.config.null_label)
    np.testing.assert_allclose(value(1.0, batch["label"]), value(0.0, null), rtol=1e-6)
    assert not np.isclose(value(1.0, batch["label"]), value(0.0, batch["label"]))


def test_bad_p_uncond_is_rejected():
    with pytest.raises(ValueError, match="p_uncond"):
        losses.DenoisingLoss(process=diffax.VP(), p_uncond=1.5, null_label=NULL)
    with pytest.raises(ValueError, match="null_label"):
        losses.DenoisingLoss(process=diffax.VP(), p_uncond=0.1)


def test_config_key_p_uncond():
    cfg = ml_collections.ConfigDict({"p_uncond": 0.2})
    loss = build.build_loss(cfg, diffax.VP(), conditional=True, null_label=NULL)
    assert float(loss.p_uncond) == 0.2 and loss.null_label == NULL
    assert build.build_loss({}, diffax.VP(), conditional=True, null_label=NULL).null_label is None
    with pytest.raises(ValueError, match="config.loss.p_uncond"):
        build.build_loss(cfg, diffax.VP(), conditional=False)
    with pytest.raises(ValueError, match="config.loss.p_uncond"):
        build.build_loss(ml_collections.ConfigDict({"p_uncond": -0.1}), diffax.VP(),
                         conditional=True, null_label=NULL)
