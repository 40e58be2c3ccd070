"""tools/bench_train.py times diffax's step against a bare one only after
``check_same_update`` has seen both compute the same update (issue #22, "Also"): the check
passes for two writings of one computation and refuses a bare step that differs (another
learning rate, another loss), naming what differs. Toy steps on a linear model: the check's
logic, not the UNet (the benchmark itself runs it on the UNets)."""

import importlib.util
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import pytest

PATH = pathlib.Path(__file__).resolve().parents[2] / "tools" / "bench_train.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_train", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class State(NamedTuple):
    params: Any
    opt_state: Any


def _steps(lr_diffax: float, lr_bare: float, target_bare: float = 1.0):
    def make(lr, target):
        opt = optax.adam(lr)

        def step(params, opt_state, x):
            loss_fn = lambda p: jnp.mean(jnp.square(p["w"] * x - target))
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, optax.tree.norm(grads)

        return opt, step

    opt_d, step_d = make(lr_diffax, 1.0)
    opt_b, step_b = make(lr_bare, target_bare)
    params = {"w": jnp.array([0.3, -0.2, 0.5])}

    def d_step(state, x):
        p, o, loss, g = step_d(state.params, state.opt_state, x)
        return State(p, o), {"loss": loss, "grad_norm": g}

    def b_step(state, x):
        p, o, loss, g = step_b(state[0], state[1], x)
        return (p, o), (loss, g)

    x = jnp.array([1.0, 2.0, -1.0])
    return (d_step, State(params, opt_d.init(params)), b_step, (params, opt_b.init(params)), x,
            lambda x: x, lambda x: x)


def test_the_same_update_passes_and_reports_its_differences():
    out = _bench().check_same_update(*_steps(1e-2, 1e-2))
    assert set(out) == {"loss", "grad_norm", "optimizer_state", "update"}
    assert max(out.values()) == 0.0  # one computation written twice: bit for bit here


@pytest.mark.parametrize("case", ["learning rate", "loss"])
def test_a_different_bare_step_is_refused(case):
    args = _steps(1e-2, 2e-2) if case == "learning rate" else _steps(1e-2, 1e-2, 1.5)
    with pytest.raises(ValueError, match="different updates"):
        _bench().check_same_update(*args)
