"""Fast high-order solvers (DPM-Solver, DPM-Solver++, UniPC, DEIS, iPNDM, LMS) against the
analytic oracle: convergence order on a single Gaussian, exact identities between methods,
accuracy on Gaussian mixtures against a tight reference, distribution distance for the SDE
variants, and the adaptive DPM-Solver's tolerance and evaluation count."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import samplers, schedules

from ._oracle import (
    PROCESSES,
    mixture_2d,
    mixture_64d,
    padded_grids,
    rms,
    run_on_grids,
    single_gaussian,
    sliced_wasserstein,
)
from .test_mixture import _reference

NS = (16, 32, 64, 128)

# Every order of every solver, each on one process (rotating over the processes, so that each
# process is covered by several families), on the log-SNR-uniform grid.
ORDER_CASES = {
    "VP": [samplers.DPMSolver(order=1), samplers.DPMSolver(order=2, method="singlestep"),
           samplers.UniPC(order=3), samplers.UniPC(order=1),
           samplers.DEIS(order=2), samplers.LMS(order=4)],
    "EDM": [samplers.DPMSolver(order=3, method="singlestep"), samplers.DPMSolverPP(order=1),
            samplers.DPMSolverPP(order=2, method="multistep"), samplers.UniPC(order=2),
            samplers.DEIS(order=3), samplers.LMS(order=2)],
    "RectifiedFlow": [samplers.DPMSolver(order=2, method="multistep"),
                      samplers.DPMSolverPP(order=2, method="singlestep"),
                      samplers.DPMSolverPP(order=3, method="multistep"),
                      samplers.UniPC(order=2, corrector=False),
                      samplers.DEIS(order=1), samplers.LMS(order=3)],
    "VE": [samplers.DPMSolver(order=3, method="multistep"),
           samplers.DPMSolverPP(order=3, method="singlestep"),
           samplers.UniPC(order=2, variant="bh1"), samplers.UniPC(order=3, corrector=False),
           samplers.LMS(order=1)],
}


def _declared(solver):
    return getattr(solver, "convergence_order", solver.order)


@jax.jit
def _order_errors(process, grids, x_init, exact, solvers):
    gm = single_gaussian()
    return jnp.stack([rms(run_on_grids(s, process, gm.denoiser(process), x_init, grids).x,
                          exact[None]) for s in solvers])


@pytest.mark.parametrize("pname", list(ORDER_CASES))
def test_error_falls_with_declared_order(x64, pname):
    p = PROCESSES[pname]()
    gm = single_gaussian()
    x_init = p.prior_sample(jax.random.key(0), (16, 2))
    exact = gm.flow(p, x_init, t=p.t_max, s=p.t_min)
    grids = padded_grids(p, schedules.LogSNRUniform(), NS)
    solvers = ORDER_CASES[pname]
    errs_all = np.asarray(_order_errors(p, grids, x_init, exact, solvers))
    for solver, errs in zip(solvers, errs_all):
        order = _declared(solver)
        slope = np.polyfit(np.log(1.0 / np.asarray(NS[1:])), np.log(errs[1:]), 1)[0]
        rates = -np.diff(np.log2(errs))
        # The slope fitted from 32 to 128 steps is at least the declared order, less a margin
        # for pre-asymptotic behaviour and for the lower-order warm-up steps of multistep methods
        # (their error at high noise is small but of lower order), and so is the rate of the
        # last refinement. Some methods converge faster than declared on a single Gaussian
        # (DPM-Solver++(3M) at rate 4: the flow is linear in x; on the 2-D mixture its rate is
        # 3.15 at 256 steps), hence the wider upper margin.
        # UniPC-3 with its corrector (order 4) starts with a UniPC-1 step whose local error is
        # O(h^3): measured rates 4.4, 2.9, 3.7, so its margin is 0.8.
        margin = 0.8 if order == 4 and isinstance(solver, samplers.UniPC) else 0.6
        assert np.all(rates > 0.5 * order), (pname, solver, errs)
        assert order - margin < slope < order + 1.3, (pname, solver, errs, slope)
        assert rates[-1] > order - margin, (pname, solver, errs, rates)


def test_ipndm_order_on_uniform_steps(x64):
    # iPNDM's fixed Adams-Bashforth coefficients assume steps uniform in sigma/alpha (on other
    # smooth grids it is second order). EDM's process between sigma = 10 and 1, uniform steps,
    # from an exact sample of p_10. LMS integrates the same Lagrange polynomials exactly, so
    # on such a grid the two are the same method.
    p, gm = diffax.EDM(), single_gaussian()
    x_init = gm.sample(jax.random.key(0), p, 10.0, 16)
    exact = gm.flow(p, x_init, t=10.0, s=1.0)
    ns = (16, 32, 64)
    grids = jnp.asarray(np.stack([np.concatenate([np.linspace(10.0, 1.0, n + 1),
                                                  np.ones(max(ns) - n)]) for n in ns]))
    solvers = [samplers.IPNDM(order=k) for k in (1, 2, 3, 4)] + [samplers.LMS(order=4)]
    errs = np.asarray(_order_errors(p, grids, x_init, exact, solvers))
    np.testing.assert_allclose(errs[3], errs[4], rtol=1e-9)
    for k, e in zip((1, 2, 3, 4), errs[:4]):
        slope = np.polyfit(np.log(1.0 / np.asarray(ns)), np.log(e), 1)[0]
        # Measured 0.98, 1.80, 2.58, 3.22 (the first steps' lower-order warm-up shows at
        # these step counts).
        assert k - 0.8 < slope < k + 0.5, (k, e, slope)
    assert np.all(np.diff(errs[:4, -1]) < 0), errs


# --------------------------------------------------------------------------------------------
# Identities.


def _run(solver, p, x_init, grid, key=None):
    gm = single_gaussian()
    return samplers.sample(key, p, gm.denoiser(p), x_init, solver=solver, schedule=grid).x


@pytest.mark.parametrize("pname", ["VP", "RectifiedFlow"])
def test_first_order_identities(x64, pname):
    # DPM-Solver-1 == DPM-Solver++-1 == Euler == DDIM(eta=0) == UniPC-1 without corrector, and
    # (on VP) the first-order DEIS / iPNDM / LMS, on the same grid; DPM-Solver++(1) SDE == DDPM
    # with the same noise. Rectified flow starts at alpha = 0 (infinite log-SNR).
    p = PROCESSES[pname]()
    x_init = p.prior_sample(jax.random.key(1), (8, 2))
    grid = schedules.LogSNRUniform()(p, 7)
    ref = _run(samplers.DDIM(eta=0.0), p, x_init, grid)
    solvers = [samplers.Euler(), samplers.DPMSolver(order=1), samplers.DPMSolverPP(order=1),
               samplers.UniPC(order=1, corrector=False)]
    if pname == "VP":
        solvers += [samplers.DPMSolver(order=1, method="singlestep"), samplers.DEIS(order=1),
                    samplers.IPNDM(order=1), samplers.LMS(order=1)]
    for solver in solvers:
        np.testing.assert_allclose(_run(solver, p, x_init, grid), ref, rtol=1e-12, atol=1e-12,
                                   err_msg=repr(solver))
    key = jax.random.key(2)
    np.testing.assert_allclose(_run(samplers.DPMSolverPP(order=1, sde=True), p, x_init, grid, key),
                               _run(samplers.DDPM(), p, x_init, grid, key), rtol=1e-12,
                               atol=1e-12)


def test_higher_order_identities(x64):
    p = diffax.VP()
    x_init = p.prior_sample(jax.random.key(1), (8, 2))
    grid = schedules.LogSNRUniform()(p, 9)
    # UniP-2 with B(h) = 1 - e^-h is DPM-Solver++(2M) (Zhao et al. 2023, Sec. 3.2).
    np.testing.assert_allclose(
        _run(samplers.UniPC(order=2, variant="bh2", corrector=False), p, x_init, grid),
        _run(samplers.DPMSolverPP(order=2), p, x_init, grid), rtol=1e-12, atol=1e-12)
    # On EDM's process (alpha = 1, t = sigma) with time-uniform steps, DEIS's exponential
    # weight is trivial and its polynomial in t is LMS's polynomial in sigma.
    e = diffax.EDM()
    x_e = e.prior_sample(jax.random.key(1), (8, 2))
    g = schedules.TimeUniform()(e, 9)
    np.testing.assert_allclose(_run(samplers.DEIS(order=3), e, x_e, g),
                               _run(samplers.LMS(order=3), e, x_e, g), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Accuracy on Gaussian mixtures at 10 NFE, each solver on its default grid.

MIXTURE_SOLVERS = {
    "DPM-Solver-3 (singlestep)": samplers.DPMSolver(order=3, method="singlestep"),
    "DPM-Solver++(2M)": samplers.DPMSolverPP(order=2),
    "DPM-Solver++(3M)": samplers.DPMSolverPP(order=3),
    "UniPC-3": samplers.UniPC(order=3),
    "DEIS-3": samplers.DEIS(order=3),
    "iPNDM": samplers.IPNDM(),
    "LMS": samplers.LMS(),
}
# Final-state RMS error against the tight reference at 10 NFE (9 for the singlestep solver),
# divided by the error of a first-order run (DPM-Solver-1 = DDIM) on the same grid with the
# same NFE, as measured when the bound was set. Each test allows 1.25x the measured ratio; every
# such bound is below 1, so a solver that degrades to first order fails.
RATIO_10 = {
    ("2d", "RectifiedFlow"): {
        "DPM-Solver++(2M)": 0.638, "DPM-Solver++(3M)": 0.661, "UniPC-3": 0.484,
        "DEIS-3": 0.519, "iPNDM": 0.235, "LMS": 0.787},
    ("64d", "EDM"): {
        "DPM-Solver++(2M)": 0.402, "DPM-Solver++(3M)": 0.622, "UniPC-3": 0.571,
        "DEIS-3": 0.743, "iPNDM": 0.466, "LMS": 0.580},
}
RATIO_MARGIN = 1.25
# DPM-Solver-3 (singlestep) at this budget (4 steps of orders 3, 3, 2, 1) is less accurate than
# first order at 9 steps (ratios 1.30 and 1.07): its error is held within 10% of the measured
# value both ways (the computation is deterministic; 10% absorbs rounding across XLA builds),
# which a first-order run (0.442, 0.216) is not.
SINGLESTEP_10 = {("2d", "RectifiedFlow"): 0.576, ("64d", "EDM"): 0.231}
# (On rectified flow the first step, from alpha = 0 where the log-SNR is infinite, is first
# order for every solver here, which costs most at so few steps.)
MIXTURES = {"2d": mixture_2d, "64d": mixture_64d}


@jax.jit
def _mixture_runs(process, x_init, mixture):
    denoiser = mixture.denoiser(process)
    ref = _reference(process, x_init, jnp.stack([process.t_max, process.t_min]), mixture)[-1]
    out, first_order = {}, {}
    for name, solver in MIXTURE_SOLVERS.items():
        # The singlestep solver: 4 steps of orders 3, 3, 2, 1 (9 NFE), DPM-Solver-fast's split.
        num_steps = 4 if solver.nfe_per_step == 3 else 10
        res = samplers.sample(None, process, denoiser, x_init, solver=solver,
                              num_steps=num_steps)
        # First order on the solver's own grid with the budget's NFE (one run per grid).
        grid, budget = solver.default_schedule(process), 9 if num_steps == 4 else 10
        if (repr(grid), budget) not in first_order:
            first_order[repr(grid), budget] = rms(samplers.sample(
                None, process, denoiser, x_init, solver=samplers.DPMSolver(order=1),
                schedule=grid, num_steps=budget).x, ref)
        out[name] = (rms(res.x, ref), res.nfe, first_order[repr(grid), budget])
    return out


@pytest.mark.parametrize("mname,pname", list(RATIO_10))
def test_mixture_accuracy_at_10_nfe(x64, mname, pname):
    p, gm = PROCESSES[pname](), MIXTURES[mname]()
    x_init = p.prior_sample(jax.random.key(0), (64, gm.dim))
    out = _mixture_runs(p, x_init, gm)
    measured = {name: (float(err), float(err / first)) for name, (err, _, first) in out.items()}
    for name, (err, nfe, first) in out.items():
        assert int(nfe) <= 10, (name, int(nfe))
        if name == "DPM-Solver-3 (singlestep)":
            assert abs(float(err) / SINGLESTEP_10[mname, pname] - 1.0) < 0.1, measured[name]
        else:
            bound = RATIO_MARGIN * RATIO_10[mname, pname][name]
            assert bound < 1.0 and float(err) < bound * float(first), (name, measured)


# --------------------------------------------------------------------------------------------
# SDE-DPM-Solver++: distribution distance to exact samples of p_{t_min}.


def _zero_noise(key, t, t_next, shape):
    return jnp.zeros(shape)


@jax.jit
def _sde_distances(process, x_init, key, mixture):
    denoiser = mixture.denoiser(process)
    out = {}
    for order in (2, 3):
        out[f"{order}M"] = samplers.sample(key, process, denoiser, x_init,
                                     solver=samplers.DPMSolverPP(order=order, sde=True),
                                     num_steps=50).x
    # Negative control: the same solver without its noise.
    out["no-noise control"] = samplers.sample(
        key, process, denoiser, x_init, solver=samplers.DPMSolverPP(order=2, sde=True),
        num_steps=50, noise_fn=_zero_noise).x
    k_ref, k_exact, k_proj = jax.random.split(jax.random.fold_in(key, 1), 3)
    n = x_init.shape[0]

    def exact(k):
        return mixture.sample(k, process, process.t_min, n)

    ref = exact(k_ref)
    dist = lambda a: sliced_wasserstein(a, ref, k_proj, 64)  # noqa: E731
    floor = jnp.mean(jax.vmap(lambda k: dist(exact(k)))(jax.random.split(k_exact, 4)))
    return floor, {name: dist(x) for name, x in out.items()}


@pytest.mark.parametrize("pname", ["VP"])
def test_sde_dpm_solver_pp_samples_the_marginal(x64, pname):
    p, gm = PROCESSES[pname](), mixture_2d()
    x_init = p.prior_sample(jax.random.key(0), (4000, 2))
    floor, dists = _sde_distances(p, x_init, jax.random.key(1), gm)
    ratios = {name: float(d / floor) for name, d in dists.items()}
    # Measured distance / noise floor at 50 steps, 4000 samples: VP 2M 1.06, 3M 1.18 (and on
    # RectifiedFlow 1.33, 1.34, not run to save test time). The no-noise control is far above.
    assert ratios.pop("no-noise control") > 10.0, ratios
    assert all(r < 2.0 for r in ratios.values()), (pname, ratios)


# --------------------------------------------------------------------------------------------
# Adaptive DPM-Solver (Alg. 4).


@pytest.mark.parametrize("pname", ["VP", pytest.param("RectifiedFlow", marks=pytest.mark.slow)])
def test_adaptive_dpm_solver_meets_tolerance(x64, pname):
    p, gm = PROCESSES[pname](), mixture_2d()
    x_init = p.prior_sample(jax.random.key(0), (64, 2))
    ref = _reference(p, x_init, jnp.stack([p.t_max, p.t_min]), gm)[-1]

    @jax.jit
    def run(x, tol):
        return samplers.sample(None, p, gm.denoiser(p), x, num_steps=10,
                               solver=samplers.DPMSolver(order=3, method="adaptive", rtol=tol,
                                                         atol=tol))

    loose, tight = run(x_init, 1e-2), run(x_init, 1e-4)
    err_loose, err_tight = float(rms(loose.x, ref)), float(rms(tight.x, ref))
    # Measured RMS errors at tol 1e-2 / 1e-4: VP 7.0e-4 / 1.90e-5, RectifiedFlow 9.1e-4 /
    # 2.44e-5 (bounds 1.5x).
    bound = {"VP": 1.5 * 1.90e-5, "RectifiedFlow": 1.5 * 2.44e-5}[pname]
    assert err_tight < 0.2 * err_loose and err_tight < bound, (err_loose, err_tight)
    assert int(tight.nfe) > int(loose.nfe)
    for res in (loose, tight):
        assert res.status.tolist() == [0] * 64
        attempts = int(res.stats["num_steps"][0] + res.stats["num_rejected"][0])
        extra = 1 if pname == "RectifiedFlow" else 0  # the first-order step out of alpha = 0
        assert int(res.nfe) == 3 * attempts + extra


# --------------------------------------------------------------------------------------------
# Bad input and docstrings.


@pytest.mark.parametrize("make,match", [
    (lambda: samplers.DPMSolver(order=4), "`order`"),
    (lambda: samplers.DPMSolver(order=1, method="adaptive"), "`order`"),
    (lambda: samplers.DPMSolver(method="rk4"), "`method`"),
    (lambda: samplers.DPMSolver(rtol=-1.0, method="adaptive", order=2), "`rtol`"),
    (lambda: samplers.DPMSolverPP(method="adaptive"), "`method`"),
    (lambda: samplers.DPMSolverPP(sde=True, method="singlestep"), "`sde=True`"),
    (lambda: samplers.UniPC(order=4), "`order`"),
    (lambda: samplers.UniPC(variant="bh3"), "`variant`"),
    (lambda: samplers.DEIS(order=4), "`order`"),
    (lambda: samplers.IPNDM(order=5), "`order`"),
    (lambda: samplers.LMS(order=0), "`order`"),
])
def test_bad_options_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_sde_needs_a_key():
    p = diffax.VP()
    with pytest.raises(ValueError, match="key"):
        samplers.sample(None, p, lambda x, t: x, jnp.ones((2, 2)),
                        solver=samplers.DPMSolverPP(sde=True), num_steps=4)


@pytest.mark.parametrize("solver", [samplers.DPMSolver, samplers.DPMSolverPP, samplers.UniPC,
                                    samplers.DEIS, samplers.IPNDM, samplers.LMS])
def test_docstring_examples(solver):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    # The examples run with the package's public names (the solvers' modules are private).
    public = {name: getattr(samplers, name) for name in samplers.__all__}
    tests = [t for t in finder.find(solver, solver.__name__, globs=public) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
