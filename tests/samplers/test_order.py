"""Declared order: on a single Gaussian (closed-form probability flow), each deterministic
fixed-step solver's error falls like ``h^order`` for every process."""

import jax
import jax.numpy as jnp
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


SOLVERS = (samplers.Euler(), samplers.Heun())


@jax.jit
def _errors(process, grids, x_init, exact):
    """RMS errors ``[len(SOLVERS), len(NS)]`` and NFEs, every solver in one program."""
    gm = single_gaussian()
    errs, nfes = [], []
    for solver in SOLVERS:
        res = run_on_grids(solver, process, gm.denoiser(process), x_init, grids)
        errs.append(rms(res.x, exact[None]))
        nfes.append(res.nfe)
    return jnp.stack(errs), jnp.stack(nfes)


@pytest.mark.parametrize("pname", list(PROCESSES))
def test_error_falls_with_declared_order(x64, pname):
    p = PROCESSES[pname]()
    gm = single_gaussian()
    x_init = p.prior_sample(jax.random.key(0), (32, 2))
    exact = gm.flow(p, x_init, t=p.t_max, s=p.t_min)
    grids = padded_grids(p, natural_schedule(pname), NS)
    all_errs, all_nfe = _errors(p, grids, x_init, exact)
    for solver, errs, nfe in zip(SOLVERS, np.asarray(all_errs), np.asarray(all_nfe)):
        slope = np.polyfit(np.log(1.0 / np.asarray(NS)), np.log(errs), 1)[0]
        assert abs(slope - solver.order) < 0.3, (pname, solver, errs, slope)
        assert np.all(np.diff(np.log(errs)) < -0.5 * solver.order * np.log(2)), (solver, errs)
        # Padding steps cost evaluations but move nothing: nfe counts every step of the
        # longest grid.
        assert np.all(nfe == solver.nfe_per_step * max(NS)), (solver, nfe)


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
