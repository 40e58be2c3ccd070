"""diffax.train.fit(unroll=...): checked before compute; an unrolled call trains the same model
(float32 rounding aside) as the plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import train


def _fit(**kwargs):
    loss_fn = lambda p, key, b: (jnp.mean((p["w"] * b["x"] - 2.0 * b["x"]) ** 2), {})
    return train.fit(loss_fn, {"w": jnp.zeros(())}, jax.random.key(0),
                     {"x": jnp.linspace(0.5, 1.5, 10)[:, None]}, num_steps=50, batch_size=4,
                     learning_rate=0.05, ema_decay=0.9, steps_per_call=25, **kwargs)


@pytest.mark.parametrize("unroll", [0, -1, 1.5, True, "2"])
def test_bad_unroll_names_the_argument(unroll):
    with pytest.raises(ValueError, match="unroll"):
        _fit(unroll=unroll)


@pytest.mark.parametrize("unroll", [5, 25])
def test_unrolled_calls_train_the_same_model(unroll):
    plain, unrolled = _fit(), _fit(unroll=unroll)
    # The same updates (same batches, same keys) compiled with the loop unrolled: equal up to
    # float32 rounding while the model moves (loss falls > 20x). The bounds are those of the
    # optimised-compile test (tests/train/test_in_memory_xla.py), whose measured differences
    # were 10x below them.
    assert plain.losses[-1] < 0.05 * plain.losses[0]
    np.testing.assert_allclose(unrolled.losses, plain.losses, rtol=5e-4)
    np.testing.assert_allclose(unrolled.params["w"], plain.params["w"], rtol=1e-5)
