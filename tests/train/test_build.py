"""config.sample -> solver and schedule (diffax.train.build): every solver and its options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import samplers, schedules
from diffax.train import build

# (config.sample, the solver the library API builds for it)
CASES = [
    ({"solver": "dpm_solver", "order": 3, "method": "singlestep"},
     samplers.DPMSolver(order=3, method="singlestep")),
    ({"solver": "dpm_solver", "order": 2, "method": "adaptive", "rtol": 0.01},
     samplers.DPMSolver(order=2, method="adaptive", rtol=0.01)),
    ({"solver": "dpm_solver_pp", "order": 2, "sde": True},
     samplers.DPMSolverPP(order=2, sde=True)),
    ({"solver": "dpm_solver_pp", "order": 3, "method": "singlestep", "lower_order_final": False},
     samplers.DPMSolverPP(order=3, method="singlestep", lower_order_final=False)),
    ({"solver": "unipc", "order": 3, "variant": "bh1", "corrector": False},
     samplers.UniPC(order=3, variant="bh1", corrector=False)),
    ({"solver": "deis", "order": 3}, samplers.DEIS(order=3)),
    ({"solver": "ipndm", "order": 4}, samplers.IPNDM(order=4)),
    ({"solver": "lms", "order": 4}, samplers.LMS(order=4)),
    ({"solver": "ddim", "eta": 1.0}, samplers.DDIM(eta=1.0)),
]


def same(a, b):
    """Same class, same static options (the tree structure) and equal numbers (the leaves)."""
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        float(x) == float(y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("cfg,expected", CASES, ids=[c["solver"] + str(i)
                                                     for i, (c, _) in enumerate(CASES)])
def test_every_solver_and_its_options_are_reachable_from_the_config(cfg, expected):
    build._check_sample(dict(cfg, num_steps=7))
    solver, num_steps = build.build_solver(dict(cfg, num_steps=7))
    assert num_steps == 7
    assert same(solver, expected)


@pytest.mark.parametrize("name,expected", [
    ("default", None), ("time_uniform", schedules.TimeUniform()),
    ("quadratic", schedules.Quadratic()), ("log_snr", schedules.LogSNRUniform()),
    ("karras", schedules.Karras(rho=3.0))])
def test_schedules_from_the_config(name, expected):
    got = build.build_schedule({"schedule": name, "rho": 3.0})
    assert got is None if expected is None else same(got, expected)


def test_configured_sampling_is_the_direct_api_call(x64):
    """The experiment's solver and schedule give the very samples the library API gives."""
    mix = diffax.testing.GaussianMixture(means=jnp.array([[-1.0, 0.5], [1.5, -0.5]]),
                                         stds=jnp.array([0.3, 0.5]),
                                         weights=jnp.array([0.4, 0.6]))
    process = diffax.VP()
    D = mix.denoiser(process)
    x = process.prior_sample(jax.random.key(0), (16, 2), dtype=jnp.float64)
    cfg = {"solver": "unipc", "order": 3, "variant": "bh1", "schedule": "karras", "rho": 5.0,
           "num_steps": 6}
    solver, num_steps = build.build_solver(cfg)
    configured = diffax.sample(None, process, D, x, solver=solver, num_steps=num_steps,
                               schedule=build.build_schedule(cfg)).x
    direct = diffax.sample(None, process, D, x, solver=samplers.UniPC(order=3, variant="bh1"),
                           num_steps=6, schedule=schedules.Karras(rho=5.0)).x
    default_grid = diffax.sample(None, process, D, x, solver=samplers.UniPC(order=3,
                                 variant="bh1"), num_steps=6).x
    np.testing.assert_array_equal(np.asarray(configured), np.asarray(direct))
    assert not np.allclose(np.asarray(configured), np.asarray(default_grid))


@pytest.mark.parametrize("cfg,key,words", [
    ({"solver": "deis", "order": 4}, "sample.order", ["4", "[1, 3]"]),
    ({"solver": "ipndm", "order": 5}, "sample.order", ["5", "[1, 4]"]),
    ({"solver": "unipc", "variant": "bh3"}, "sample.variant", ["bh3", "bh1"]),
    ({"solver": "dpm_solver", "method": "twostep"}, "sample.method", ["twostep"]),
    ({"solver": "dpm_solver_pp", "method": "adaptive"}, "sample", ["adaptive", "DPMSolverPP"]),
    ({"solver": "unipc", "corrector": "yes"}, "sample.corrector", ["yes"]),
    ({"solver": "dpm_solver_pp", "sde": 1}, "sample.sde", ["True or False"]),
    ({"schedule": "cosine"}, "sample.schedule", ["cosine", "karras"]),
    ({"schedule": "karras", "rho": 0.0}, "sample.rho", ["0.0"]),
])
def test_bad_sample_options_name_their_key(cfg, key, words):
    with pytest.raises(build.ConfigError) as info:
        build._check_sample(dict(cfg))
    assert info.value.key == key
    for word in words:
        assert word in str(info.value)
