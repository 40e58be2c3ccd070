"""models.Transformer: token and image (DiT) modes, adaLN-Zero start, bidirectional attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import models


@pytest.fixture(scope="module")
def token_model():
    model = models.Transformer.from_variant("tiny", vocab_size=5, num_outputs=4, max_len=6)
    return model, model.init_params(jax.random.key(0))


def test_starts_at_zero_logits_and_every_block_is_the_identity(token_model):
    # adaLN-Zero: zero gates and a zero output layer, so the network starts as the zero map.
    model, params = token_model
    out = model.apply(params, jnp.array([[0, 1, 2, 3, 4, 0]]), jnp.array([0.3]))
    np.testing.assert_array_equal(out, np.zeros((1, 6, 4)))


def test_attention_is_bidirectional_and_time_conditions(token_model):
    model, params = token_model
    # Random non-zero weights everywhere (adaLN and output included).
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, x.shape)
                                       for k, x in zip(keys, leaves, strict=True)])
    x = jnp.array([[0, 1, 2, 3, 4, 0]])
    base = model.apply(params, x, jnp.array([0.3]))
    later = model.apply(params, x.at[0, 5].set(3), jnp.array([0.3]))
    assert float(jnp.abs(later[0, 0] - base[0, 0]).max()) > 1e-4  # token 0 sees token 5
    other_t = model.apply(params, x, jnp.array([0.7]))
    assert float(jnp.abs(other_t - base).max()) > 1e-4


def test_dit_patches_round_trip_shapes_and_errors():
    dit = models.Transformer.from_variant("tiny", image_size=8, num_channels=3, patch_size=4)
    params = dit.init_params(jax.random.key(0))
    assert dit.apply(params, jnp.ones((2, 8, 8, 3)), jnp.ones(2)).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="x must have shape"):
        dit.apply(params, jnp.ones((2, 8, 8, 1)), jnp.ones(2))
    with pytest.raises(ValueError, match="patch_size"):
        models.TransformerConfig(image_size=8, patch_size=3)
    tok = models.Transformer.from_variant("tiny", vocab_size=5, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        tok.apply(tok.init_params(jax.random.key(0)), jnp.zeros((1, 5), jnp.int32), 0.5)


def test_dit_is_a_model_for_the_gaussian_processes():
    # config.model.name = "dit" on 8x8 digits with a VP process: a train step's loss traces.
    from diffax import data
    from diffax.train import build

    info = data.DataInfo(name="digits", shape=(8, 8, 1), dtype="uint8", is_image=True,
                         value_range=(0.0, 255.0), num_classes=10, class_names=None,
                         num_examples={}, x_key="image", label_key="label")
    process = build.build_process({"name": "vp"})
    model, _ = build.build_model({"name": "dit", "variant": "tiny"}, info, process)
    assert model.config.image_size == 8 and model.config.vocab_size is None
    loss = build.build_loss({}, process).bind(models.apply_fn(model))
    params = jax.eval_shape(model.init, jax.random.key(0), *model.example_inputs())
    value, _ = jax.eval_shape(loss, params, jax.random.key(0), {"x": jnp.zeros((4, 8, 8, 1))})
    assert value.shape == ()
    with pytest.raises(ValueError, match="dit"):
        build.build_model({"name": "dit"}, info, build.build_process(
            {"name": "masked", "vocab_size": 3}))
