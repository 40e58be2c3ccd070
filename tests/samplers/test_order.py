"""Declared order: on a single Gaussian (closed-form probability flow), each deterministic
fixed-step solver's error falls like ``h^order`` for every process."""

import functools

import jax
import numpy as np
import pytest

from diffax import samplers

from ._oracle import (
    PROCESSES,
    natural_schedule,
    padded_grids,
    rms,
    run_on_grids,
    single_gaussian,
)

NS = (8, 16, 32, 64)


@functools.partial(jax.jit, static_argnames="solver_cls")
def _errors(process, grids, x_init, exact, solver_cls):
    gm = single_gaussian()
    res = run_on_grids(solver_cls(), process, gm.denoiser(process), x_init, grids)
    return rms(res.x, exact[None]), res.nfe


@pytest.mark.parametrize("solver_cls", [samplers.Euler, samplers.Heun])
@pytest.mark.parametrize("pname", list(PROCESSES))
def test_error_falls_with_declared_order(x64, pname, solver_cls):
    p = PROCESSES[pname]()
    gm = single_gaussian()
    x_init = p.prior_sample(jax.random.key(0), (32, 2))
    exact = gm.flow(p, x_init, t=p.t_max, s=p.t_min)
    grids = padded_grids(p, natural_schedule(pname), NS)
    errs, nfe = _errors(p, grids, x_init, exact, solver_cls=solver_cls)
    errs = np.asarray(errs)
    slope = np.polyfit(np.log(1.0 / np.asarray(NS)), np.log(errs), 1)[0]
    order = solver_cls().order
    assert abs(slope - order) < 0.3, (pname, errs, slope)
    assert np.all(np.diff(np.log(errs)) < -0.5 * order * np.log(2)), errs
    # Padding steps cost evaluations but move nothing: nfe counts every step of the longest grid.
    assert np.all(np.asarray(nfe) == solver_cls.nfe_per_step * max(NS))


def test_padded_grid_equals_the_plain_run(x64):
    # The padding trick used above: zero-length steps leave the state unchanged (up to the
    # last-bit differences between a vmapped, jitted program and an eager one).
    p = PROCESSES["RectifiedFlow"]()
    gm = single_gaussian()
    x_init = p.prior_sample(jax.random.key(1), (8, 2))
    grids = padded_grids(p, natural_schedule("RectifiedFlow"), (3, 5))
    for solver in (samplers.Euler(), samplers.Heun()):
        padded = jax.jit(lambda g, s=solver: run_on_grids(s, p, gm.denoiser(p), x_init, g).x)(
            grids)
        plain = samplers.sample(None, p, gm.denoiser(p), x_init, solver=solver, num_steps=3,
                                schedule=natural_schedule("RectifiedFlow"))
        np.testing.assert_allclose(padded[0], plain.x, rtol=1e-13, atol=1e-14)
