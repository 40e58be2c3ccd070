"""The shared adaptive integrator: accuracy, direction, per-example control, honest NFE, status."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax._ode import STATUS_MAX_STEPS, STATUS_OK, integrate


def _rates(batch):
    return jnp.linspace(0.5, 8.0, batch)


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
@pytest.mark.parametrize("per_example", [True, False])
def test_linear_ode_matches_closed_form(x64, method, per_example):
    rates = _rates(4)
    fn = lambda t, y, r: -r[:, None] * y  # noqa: E731
    sol = jax.jit(lambda y: integrate(fn, y, t0=0.0, t1=1.0, rtol=1e-9, atol=1e-9, args=rates,
                                      method=method, per_example=per_example))(jnp.ones((4, 3)))
    exact = jnp.exp(-rates)[:, None] * jnp.ones((4, 3))
    # Global error stays within a small multiple of the local tolerance atol + rtol |y|.
    np.testing.assert_allclose(sol.y, exact, rtol=1e-7, atol=1e-8)
    assert sol.status.tolist() == [STATUS_OK] * 4


def test_backwards_in_time(x64):
    sol = integrate(lambda t, y: -y, jnp.ones((2, 2)), t0=1.0, t1=0.0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sol.y, np.e * np.ones((2, 2)), rtol=1e-7)


def test_per_example_step_sizes_follow_each_examples_own_difficulty(x64):
    rates = _rates(4)

    def fn(t, y, r):
        return -r[:, None] * jnp.sin(10 * r[:, None] * t[:, None]) * y

    sol = integrate(fn, jnp.ones((4, 1)), t0=0.0, t1=1.0, rtol=1e-6, atol=1e-6, args=rates)
    steps = np.asarray(sol.num_steps)
    assert np.all(np.diff(steps) > 0), steps  # harder (faster) examples take more steps
    shared = integrate(fn, jnp.ones((4, 1)), t0=0.0, t1=1.0, rtol=1e-6, atol=1e-6,
                       args=rates, per_example=False)
    assert len(set(np.asarray(shared.num_steps).tolist())) == 1


def test_a_batch_of_one_is_solved_like_one_example_of_a_batch(x64):
    # A batch of one skips the vmap (a vmapped while loop selects its whole state every step).
    rates = _rates(3)

    def fn(t, y, r):
        return -r[:, None] * jnp.sin(10 * r[:, None] * t[:, None]) * y

    y0 = jnp.arange(1.0, 7.0).reshape(3, 2)
    whole = integrate(fn, y0, t0=0.0, t1=1.0, rtol=1e-6, atol=1e-6, args=rates)
    for i in range(3):
        one = integrate(fn, y0[i:i + 1], t0=0.0, t1=1.0, rtol=1e-6, atol=1e-6,
                        args=rates[i:i + 1])
        assert one.y.shape == (1, 2) and one.nfe.shape == one.status.shape == (1,)
        np.testing.assert_allclose(one.y[0], whole.y[i], rtol=1e-12)
        assert int(one.nfe[0]) == int(whole.nfe[i])


@pytest.mark.parametrize("dt0", [None, 0.05])
@pytest.mark.parametrize("per_example", [True, False])
def test_reported_nfe_equals_evaluations_counted(x64, dt0, per_example):
    calls = []

    def fn(t, y):
        jax.debug.callback(lambda: calls.append(1))
        return -y

    sol = integrate(fn, jnp.ones((1, 2)), t0=0.0, t1=2.0, rtol=1e-7, atol=1e-7, dt0=dt0,
                    per_example=per_example)
    jax.block_until_ready(sol.y)
    assert int(sol.nfe[0]) == len(calls)


def test_max_steps_is_reported_not_hidden(x64):
    sol = integrate(lambda t, y: -y, jnp.ones((2, 2)), t0=0.0, t1=1.0, rtol=1e-12, atol=1e-12,
                    max_steps=3)
    assert sol.status.tolist() == [STATUS_MAX_STEPS] * 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(rtol=0.0), "rtol"), (dict(atol=-1.0), "atol"), (dict(method="rk4"), "method"),
    (dict(max_steps=0), "max_steps"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = dict(t0=0.0, t1=1.0, rtol=1e-5, atol=1e-5) | kwargs
    with pytest.raises(ValueError, match=match):
        integrate(lambda t, y: -y, jnp.ones((2, 2)), **args)


def test_custom_error_norm_is_used(x64):
    # Two components, one 100x smaller: the RMS norm lets its relative error grow, a norm that
    # weighs it alone (here: its error only, scaled) controls it and takes more steps.
    fn = lambda t, y: (-y[0] * jnp.cos(5 * t)[:, None], -y[1] * jnp.cos(7 * t))  # noqa: E731
    y0 = (jnp.ones((1, 8)), 0.01 * jnp.ones(1))
    kw = dict(t0=0.0, t1=3.0, rtol=1e-6, atol=1e-12)
    rms = integrate(fn, y0, **kw)
    strict = integrate(fn, y0, norm=lambda e: jnp.maximum(jnp.sqrt(jnp.mean(e[0] ** 2)),
                                                          jnp.abs(e[1])), **kw)
    exact = 0.01 * np.exp(-np.sin(21.0) / 7)
    assert int(strict.num_steps[0]) > int(rms.num_steps[0])
    assert abs(float(strict.y[1][0]) - exact) <= abs(float(rms.y[1][0]) - exact)
