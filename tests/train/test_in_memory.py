"""diffax.train.fit: bad input is refused before compute; the task modules use this one loop."""

import jax
import jax.numpy as jnp
import pytest

import diffax.tasks
from diffax import train


def test_tasks_reexport_the_public_loop():
    assert train.fit is diffax.tasks.fit
    assert train.FitResult is diffax.tasks.FitResult


@pytest.mark.parametrize("kwargs, name", [
    ({"num_steps": 0, "batch_size": 2}, "num_steps"),
    ({"num_steps": 1, "batch_size": 1.5}, "batch_size"),
    ({"num_steps": 1, "batch_size": 2, "steps_per_call": -1}, "steps_per_call")])
def test_bad_counts_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train.fit(lambda p, k, b: (jnp.sum(p), {}), jnp.zeros(()), jax.random.key(0),
                  {"x": jnp.ones((4,))}, **kwargs)


def test_ragged_data_is_refused():
    with pytest.raises(ValueError, match="leading size"):
        train.fit(lambda p, k, b: (jnp.sum(p), {}), jnp.zeros(()), jax.random.key(0),
                  {"x": jnp.ones((4,)), "y": jnp.ones((3,))}, num_steps=1, batch_size=2)
