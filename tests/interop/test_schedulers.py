"""diffax.interop.load_scheduler against diffusers' own scheduler loops.

Oracle: trajectories of diffusers 0.42.1's DDIM / DPM-Solver++(2M) / UniPC schedulers on an
exact 3-component Gaussian mixture (eps / v / x0 computed in NumPy, independently of
diffax.testing), from the same initial noise, stored by tools/make_diffusers_scheduler_fixtures.py.
diffusers keeps its sigmas in float32, so the two sides agree to ~1e-6 relative (measured
<= 8.6e-7); the tolerance is the issue's 1e-4.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.interop import load_scheduler, timestep_denoiser
from diffax.testing import GaussianMixture

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "diffusers_schedulers.npz")


@pytest.fixture(scope="module")
def fixture():
    data = np.load(FIXTURE)
    return {k: data[k] for k in data.files}


def _cases():
    data = np.load(FIXTURE)
    return sorted({k.rsplit("__", 1)[0] for k in data.files if k.endswith("__config")})


@pytest.fixture(scope="module")
def run():
    """One compiled program per solver (and grid length), shared by the cases."""
    cache = {}

    def go(process, x, grid, means, stds, weights, solver):
        if repr(solver) not in cache:
            @jax.jit
            def fn(process, x, grid, means, stds, weights):
                gm = GaussianMixture(means=means, stds=stds, weights=weights)
                return diffax.sample(None, process, gm.denoiser(process), x, solver=solver,
                                     schedule=grid, return_trajectory=True)
            cache[repr(solver)] = fn
        return cache[repr(solver)](process, x, grid, means, stds, weights)
    return go


@pytest.mark.parametrize("case", _cases())
def test_matches_diffusers_trajectory(x64, fixture, run, case):
    cfg = json.loads(str(fixture[f"{case}__config"]))
    n = int(case.rsplit("__", 1)[1])
    sched = load_scheduler(cfg)
    np.testing.assert_array_equal(sched.timesteps(n), fixture[f"{case}__timesteps"])
    grid = sched.grid(n)
    assert grid.shape == (n + 1,)
    ref = fixture[f"{case}__trajectory"]
    res = run(sched.process, jnp.asarray(fixture["x_init"]), jnp.asarray(grid),
              jnp.asarray(fixture["means"]), jnp.asarray(fixture["stds"]),
              jnp.asarray(fixture["weights"]), sched.solver)
    assert int(res.nfe) == n
    err = np.max(np.abs(np.asarray(res.trajectory) - ref)) / np.max(np.abs(ref))
    assert err < 1e-4, err


def test_unipc_needs_diffusers_rule(x64, fixture, run):
    """The old rule (lower orders only below 15 steps) does not reproduce diffusers' UniPC at
    25 steps ending at t_min (its last step is order 2 instead of 1): the parity test above
    can fail."""
    case = "unipc2_bh1_trailing_sigmamin_eps__25"
    sched = load_scheduler(json.loads(str(fixture[f"{case}__config"])))
    old = diffax.samplers.UniPC(order=2, variant="bh1", lower_order_final=True)
    ref = fixture[f"{case}__trajectory"]
    res = run(sched.process, jnp.asarray(fixture["x_init"]), jnp.asarray(sched.grid(25)),
              jnp.asarray(fixture["means"]), jnp.asarray(fixture["stds"]),
              jnp.asarray(fixture["weights"]), old)
    err = np.max(np.abs(np.asarray(res.trajectory) - ref)) / np.max(np.abs(ref))
    assert err > 1e-3, err


def test_config_mapping(x64, tmp_path):
    cfg = {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
           "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction",
           "steps_offset": 1, "set_alpha_to_one": False, "clip_sample": False}
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    for src in (tmp_path, tmp_path / "scheduler", tmp_path / "scheduler" /
                "scheduler_config.json", cfg):
        s = load_scheduler(src)
        assert s.prediction == "v"
        betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
        np.testing.assert_allclose(np.asarray(s.process.betas), betas, rtol=1e-12)
        # leading, steps_offset=1: timesteps 901, 801, .., 1 at t = (k + 1) / T, then t_min.
        np.testing.assert_allclose(s.grid(10), np.append(np.arange(902, 1, -100) / 1000, 0.001))
        assert isinstance(s.solver, diffax.samplers.DDIM)
    cos = load_scheduler({"beta_schedule": "squaredcos_cap_v2"}).process
    np.testing.assert_allclose(np.asarray(cos.betas), np.asarray(
        diffax.DiscreteVP.cosine().betas), rtol=1e-12)
    dpm = load_scheduler({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3})
    assert repr(dpm.solver) == repr(diffax.samplers.DPMSolverPP(
        order=3, lower_order_final=diffax.samplers.StepCount(below=15, count_denoise_final=True)))
    assert dpm.grid(10)[-1] == 0.0


def test_timestep_denoiser_calls_integer_steps():
    p = diffax.DiscreteVP.linear()
    seen = []

    def net(x, k):
        seen.append(np.asarray(k))
        return jnp.zeros_like(x)

    d = timestep_denoiser(net, p, prediction="eps")
    d(jnp.ones((2, 3)), jnp.array([(499 + 1) / 1000, 1.0]))
    assert seen[0].tolist() == [499, 999]
    with pytest.raises(ValueError, match="process"):
        timestep_denoiser(net, diffax.VP())


@pytest.mark.parametrize("cfg,key", [
    ({"_class_name": "EulerDiscreteScheduler"}, "_class_name"),
    ({"beta_schedule": "sigmoid"}, "beta_schedule"),
    ({"prediction_type": "flow"}, "prediction_type"),
    ({"timestep_spacing": "karras"}, "timestep_spacing"),
    ({"thresholding": True}, "thresholding"),
    ({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True},
     "use_karras_sigmas"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"},
     "algorithm_type"),
    ({"rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
    ({"num_train_timesteps": 0}, "num_train_timesteps"),
])
def test_bad_config_names_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        load_scheduler(cfg)


def test_ddim_inconsistent_spacing_refused(tmp_path):
    s = load_scheduler({"timestep_spacing": "linspace"})
    with pytest.raises(ValueError, match="not a sampler on one grid"):
        s.grid(10)
    with pytest.raises(FileNotFoundError):
        load_scheduler(tmp_path)
