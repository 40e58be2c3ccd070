"""The weak order of the CLD samplers (SSCS and Euler-Maruyama on the reverse SDE), measured
on the exact 1-D mixture denoiser in float64.

The chain starts from the exact marginal at ``t_max`` (data drawn from the mixture, then
``u ~ q(u_t | x0)``), so the only error is the discretisation's. The statistic is the error in
the second moments ``E[u u^T]`` of ``u = (x, v)`` at ``t_min`` (Frobenius norm of the 2x2
difference), whose exact value is ``m m^T E[x0^2] + Sigma(t_min)``. All step counts run in one
compiled program (grids padded with zero-length steps, which leave the state unchanged).

The order derived for SSCS is 1 (Strang splitting of the exact linear flow around an Euler
step of the score part: that step's O(h^2) local error), as for Euler-Maruyama; the measured
orders are in experiments/cld/bench_cld.md (tools/bench_cld.py --order).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import samplers
from diffax.testing import GaussianMixture

from ._oracle import padded_grids, run_on_grids

M = 20_000
NS = (8, 16, 32)


@pytest.fixture(scope="module")
def problem():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        p = diffax.CLD()
        gm = GaussianMixture(means=jnp.array([[-1.0], [1.5]]), stds=jnp.array([0.4, 0.6]),
                             weights=jnp.array([0.4, 0.6]))
        m, cov = p.marginal_coefficients(jnp.float64(p.t_min))
        second_x0 = float(jnp.sum(gm.weights * (jnp.square(gm.means[:, 0])
                                                + jnp.square(gm.stds))))
        exact = np.asarray(jnp.outer(m, m) * second_x0 + cov)
        u0 = gm.sample(jax.random.key(1), p, p.t_max, M)  # the exact marginal at t_max
        grids = padded_grids(p, diffax.schedules.TimeUniform(), NS)
        yield p, gm, u0, grids, exact
    finally:
        jax.config.update("jax_enable_x64", previous)


def _weak_errors(problem, solver):
    """``(errors [len(NS)], standard errors [len(NS)])`` of the second moments at ``t_min``."""
    p, gm, u0, grids, exact = problem
    res = jax.jit(lambda g: run_on_grids(solver, p, gm.denoiser(p), u0, g,
                                         key=jax.random.key(3)))(grids)
    x, v = (np.asarray(a[..., 0]) for a in res.x)  # [len(NS), M]
    prods = np.stack([x * x, x * v, x * v, v * v], -1)  # [len(NS), M, 4]
    diff = prods.mean(1) - exact.reshape(-1)
    err = np.sqrt(np.sum(np.square(diff), -1))
    # Delta method: the standard error of the norm along the direction of the difference.
    unit = diff / err[:, None]
    se = np.sqrt(np.var(np.einsum("nmk,nk->nm", prods, unit), axis=1) / M)
    return err, se


def _slope(ns, err):
    return -np.polyfit(np.log(ns), np.log(err), 1)[0]


# Measured with tools/bench_cld.py --order 50000 (steps 8/16/32/64/128): SSCS errors
# 0.698/0.321/0.154/0.064/0.023 (per doubling 1.12/1.06/1.27/1.46; standard errors 0.004-0.008);
# Euler-Maruyama 4.49/0.882/0.295/0.140/... (per doubling 2.35/1.58/1.08: its first doublings
# are pre-asymptotic, the stiff coarse-step regime, so its slope is not tested here). Here
# (M = 20,000) the standard error is at most 6% of each error, so the slope fitted over 8-32
# steps carries about +-0.1 of noise.
@pytest.fixture(scope="module")
def errors(problem):
    return {"SSCS": _weak_errors(problem, samplers.SSCS()),
            "EM": _weak_errors(problem, samplers.EulerMaruyama())}


def test_sampling_noise_is_below_the_errors(errors):
    for err, se in errors.values():
        assert np.all(5 * se < err), (err, se)


def test_weak_order_of_sscs(errors):
    # Derived order 1 (the Euler step of the score part); measured 1.09-1.10 over 8-32 steps
    # (M = 20,000 and 50,000). Margin 0.3: 3x the slope's noise.
    err = errors["SSCS"][0]
    assert abs(_slope(NS, err) - 1.0) < 0.3, (err, _slope(NS, err))


def test_errors_fall_and_sscs_is_below_euler_maruyama_at_equal_nfe(errors):
    sscs, em = errors["SSCS"][0], errors["EM"][0]
    assert np.all(np.diff(sscs) < 0) and np.all(np.diff(em) < 0)
    # Measured EM / SSCS at 8/16/32 NFE: 6.5, 2.75, 2.0 (M = 20,000); each error is > 5
    # standard errors from zero, so a ratio above 1 is not noise.
    assert np.all(sscs < em), (sscs, em)
