"""Deterministic solvers on Gaussian mixtures (2-D and 64-D) converge to a reference
probability-flow trajectory from the same ``x_init``, solved tightly with diffrax
(Tsit5, rtol = atol = 1e-9), independently of diffax's own integrator."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import samplers
from diffax.parameterization import velocity_from_denoiser

from ._oracle import PROCESSES, mixture_2d, mixture_64d, natural_schedule, padded_grids, rms

NS = (10, 20, 40)
MIXTURES = {"2d": mixture_2d, "64d": mixture_64d}
# (mixture, process) pairs: both dimensions, the alpha(t_max) = 0 case and EDM's own setting.
# (Every process is covered for Euler and Heun by test_order.py, on a single Gaussian.)
CASES = [("2d", "RectifiedFlow"), ("64d", "EDM")]

# Final-state RMS error against the reference at 40 steps, and Adaptive's (rtol = atol = 1e-6).
# Each bound is 1.5x the value measured when the test was written (the number written out), so
# that a regression fails.
BOUND_40 = {
    ("2d", "RectifiedFlow"): {"Euler": 1.5 * 3.52e-2, "Heun": 1.5 * 2.71e-3},
    ("64d", "EDM"): {"Euler": 1.5 * 5.00e-2, "Heun": 1.5 * 6.39e-3},
}
BOUND_ADAPTIVE = {
    ("2d", "RectifiedFlow"): 1.5 * 6.07e-6,
    ("64d", "EDM"): 1.5 * 1.12e-6,
}


def _reference(process, x_init, times, mixture):
    """The probability-flow ODE solved tightly, saved at ``times``: ``[len(times), B, ...]``."""
    velocity = velocity_from_denoiser(process, mixture.denoiser(process))
    term = diffrax.ODETerm(lambda t, y, args: velocity(y, t))
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), times[0], times[-1], None, x_init,
                              stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9),
                              saveat=diffrax.SaveAt(ts=times), max_steps=100_000)
    return sol.ys


@jax.jit
def _solve_all(process, x_init, grids, mixture):
    """Reference, Euler and Heun on every grid, and Adaptive, in one compiled program."""
    denoiser = mixture.denoiser(process)

    def trajectories(solver):
        def one(ts):
            return samplers.sample(None, process, denoiser, x_init, solver=solver, schedule=ts,
                                   return_trajectory=True).trajectory
        return jax.vmap(one)(grids)  # [len(NS), T, B, D]

    adaptive = samplers.sample(None, process, denoiser, x_init,
                               solver=samplers.Adaptive(rtol=1e-6, atol=1e-6), num_steps=20)
    return (_reference(process, x_init, grids[-1], mixture),
            {"Euler": trajectories(samplers.Euler()), "Heun": trajectories(samplers.Heun())},
            adaptive)


@pytest.mark.parametrize("mname,pname", CASES)
def test_deterministic_solvers_converge_to_reference(x64, mname, pname):
    p, gm = PROCESSES[pname](), MIXTURES[mname]()
    x_init = p.prior_sample(jax.random.key(0), (64, gm.dim))
    grids = padded_grids(p, natural_schedule(pname), NS)
    ref, trajs, adaptive = _solve_all(p, x_init, grids, gm)  # ref on the finest grid
    assert bool(jnp.all(jnp.isfinite(ref)))
    for name, traj in trajs.items():
        order = getattr(samplers, name).order
        errs = np.asarray(rms(traj[:, -1], ref[-1][None]))
        # Converges: the error falls at every refinement, and by at least ~2^(order - 0.5) per
        # halving of the step over the range (the mixture's mode switches make single
        # refinements irregular at 10-20 steps).
        assert np.all(np.diff(errs) < 0), (name, errs)
        assert errs[-1] / errs[0] < 0.25 ** (order - 0.5), (name, errs)
        assert errs[-1] < BOUND_40[(mname, pname)][name], (name, errs)
        # The whole trajectory on the finest grid, not only its end, follows the reference.
        along = np.asarray(rms(traj[-1], ref))
        assert along.max() < 1.5 * BOUND_40[(mname, pname)][name], (name, along)

    err = float(rms(adaptive.x, ref[-1]))
    assert adaptive.status.tolist() == [0] * x_init.shape[0]
    assert err < BOUND_ADAPTIVE[(mname, pname)], err
    assert int(adaptive.nfe) == int(adaptive.stats["nfe"].max())
