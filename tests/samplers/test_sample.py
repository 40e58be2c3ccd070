"""diffax.sample and the solvers against their papers' formulas, NFE accounting, the loop's
compile-time and sharding properties, and eager input validation."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import diffax
from diffax import samplers, schedules
from diffax.samplers import StepContext

from ._oracle import PROCESSES, mixture_2d


def _zero_denoiser(x, t):
    return jnp.zeros_like(x)


def _table_noise(table, num_steps_of_process):
    """A noise_fn returning ``table[n]`` for the step starting at grid index ``n = round(t T)``."""
    def noise_fn(key, t, t_next, shape):
        return table[jnp.round(t * num_steps_of_process).astype(jnp.int32)]
    return noise_fn


# --------------------------------------------------------------------------------------------
# The first-order step: one update, many names.


@pytest.mark.parametrize("pname", list(PROCESSES))
def test_euler_is_ddim0_dpm_solver1_and_scaled_euler(x64, pname):
    p = PROCESSES[pname]()
    gm = mixture_2d()
    D = gm.denoiser(p)
    x = gm.sample(jax.random.key(0), p, 0.5 * (p.t_min + p.t_max), 16)
    t, s = (0.7, 0.4) if pname not in ("EDM",) else (20.0, 5.0)
    ctx = StepContext(index=jnp.int32(0), t=jnp.asarray(t), t_next=jnp.asarray(s), times=None,
                      key=None, num_steps=1, requested_steps=1, noise_fn=samplers.default_noise)
    euler = samplers.Euler().step(p, D, x, (), ctx)[0]
    ddim0 = samplers.DDIM(eta=0.0).step(p, D, x, (), ctx)[0]
    np.testing.assert_array_equal(euler, ddim0)

    a_t, s_t, a_s, s_s = (float(f(v)) for f, v in ((p.alpha, t), (p.sigma, t), (p.alpha, s),
                                                     (p.sigma, s)))
    d = D(x, t)
    eps = (x - a_t * d) / s_t
    # DDIM (Song et al. 2021, eq. 12 with sigma = 0).
    np.testing.assert_allclose(euler, a_s * (x - s_t * eps) / a_t + s_s * eps, rtol=1e-12,
                               atol=1e-12)
    # DPM-Solver-1 (Lu et al. 2022, eq. 3.7 with k = 1): h = lambda_s - lambda_t, lambda = log(a/s).
    h = np.log(a_s / s_s) - np.log(a_t / s_t)
    np.testing.assert_allclose(euler, a_s / a_t * x - s_s * np.expm1(h) * eps, rtol=1e-12,
                               atol=1e-12)
    # Euler on the probability-flow ODE in EDM's frame y = x/alpha, sigma_hat = sigma/alpha.
    y, lvl_t, lvl_s = x / a_t, s_t / a_t, s_s / a_s
    np.testing.assert_allclose(euler, a_s * (y + (lvl_s - lvl_t) * (y - d) / lvl_t), rtol=1e-12,
                               atol=1e-12)


def test_euler_is_flow_matching_euler_from_alpha_zero(x64):
    # Rectified flow from t = 1 (alpha = 0): x_s = x_t + (s - t) v with v = (x - D)/t.
    p = diffax.RectifiedFlow()
    gm = mixture_2d()
    x = p.prior_sample(jax.random.key(0), (16, 2))
    ts = np.array([1.0, 0.75, 0.5, 0.25, 0.001])
    res = samplers.sample(None, p, gm.denoiser(p), x, solver=samplers.Euler(), schedule=ts,
                          return_trajectory=True)
    y = x
    for t, s in zip(ts[:-1], ts[1:]):
        y = y + (s - t) * (y - gm.denoiser(p)(y, t)) / t
    np.testing.assert_allclose(res.x, y, rtol=1e-12, atol=1e-12)
    assert bool(jnp.all(jnp.isfinite(res.trajectory)))


# --------------------------------------------------------------------------------------------
# The other solvers against their papers.


def test_heun_reproduces_edm_algorithm_1(x64):
    """17 Heun steps on EDM's 18-point Karras grid + the final denoise = Algorithm 1 with
    t_N = 0 (Euler on the last step), 35 evaluations."""
    p = diffax.EDM()
    gm = mixture_2d()
    D = gm.denoiser(p)
    x_init = p.prior_sample(jax.random.key(0), (32, 2))
    res = jax.jit(lambda p, x: samplers.sample(None, p, gm.denoiser(p), x,
                                               solver=samplers.Heun(), num_steps=17,
                                               denoise_final=True))(p, x_init)
    assert int(res.nfe) == 35
    n, rho, smin, smax = 18, 7.0, 0.002, 80.0
    i = np.arange(n)
    t = np.append((smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho)))
                  ** rho, 0.0)
    x, nfe = np.asarray(x_init), 0
    for k in range(n):
        d = (x - np.asarray(D(x, t[k]))) / t[k]
        x_next = x + (t[k + 1] - t[k]) * d
        nfe += 1
        if t[k + 1] != 0:
            d2 = (x_next - np.asarray(D(x_next, t[k + 1]))) / t[k + 1]
            x_next = x + (t[k + 1] - t[k]) * (0.5 * d + 0.5 * d2)
            nfe += 1
        x = x_next
    assert nfe == 35
    np.testing.assert_allclose(res.x, x, rtol=1e-10, atol=1e-10)


def test_edm_stochastic_is_algorithm_2(x64):
    p = diffax.EDM()
    gm = mixture_2d()
    D = gm.denoiser(p)
    x_init = p.prior_sample(jax.random.key(0), (8, 2))
    n = 6
    table = jax.random.normal(jax.random.key(1), (n, 8, 2))
    times = np.asarray(schedules.Karras()(p, n))
    noise_fn = lambda k, t, tn, shape: table[jnp.argmin(jnp.abs(times - t))]  # noqa: E731
    s_churn, s_min, s_max, s_noise = 4.0, 0.05, 50.0, 1.007
    solver = samplers.EDMStochastic(S_churn=s_churn, S_min=s_min, S_max=s_max, S_noise=s_noise)
    res = samplers.sample(jax.random.key(2), p, D, x_init, solver=solver, num_steps=n,
                          noise_fn=noise_fn)
    x = np.asarray(x_init)
    for k in range(n):
        tc, tn = times[k], times[k + 1]
        gamma = min(s_churn / n, np.sqrt(2) - 1) if s_min <= tc <= s_max else 0.0
        th = tc + gamma * tc
        xh = x + np.sqrt(th**2 - tc**2) * s_noise * np.asarray(table[k])
        d = (xh - np.asarray(D(xh, th))) / th
        x_next = xh + (tn - th) * d
        d2 = (x_next - np.asarray(D(x_next, tn))) / tn
        x = xh + (tn - th) * (0.5 * d + 0.5 * d2)
    np.testing.assert_allclose(res.x, x, rtol=1e-10, atol=1e-10)
    # S_churn = 0 is Heun.
    heun = samplers.sample(None, p, D, x_init, solver=samplers.Heun(), num_steps=n)
    churn0 = samplers.sample(jax.random.key(2), p, D, x_init, solver=samplers.EDMStochastic(),
                             num_steps=n)
    np.testing.assert_allclose(churn0.x, heun.x, rtol=1e-13, atol=1e-13)


def test_ddpm_is_ho_et_al_on_discrete_vp(x64):
    """On a DiscreteVP grid with the noise given, DDPM() is Ho et al.'s sampler: ancestral
    steps from q(x_{n-1} | x_n, x0_hat) for n = T..2, then x_0 = x0_hat(x_1)."""
    T = 10
    p = diffax.DiscreteVP.linear(num_steps=T, beta_start=0.01, beta_end=0.3)
    gm = mixture_2d()
    D = gm.denoiser(p)
    x_init = p.prior_sample(jax.random.key(0), (16, 2))
    table = jax.random.normal(jax.random.key(1), (T + 1, 16, 2))
    res = samplers.sample(jax.random.key(2), p, D, x_init, solver=samplers.DDPM(),
                          num_steps=T - 1, denoise_final=True, noise_fn=_table_noise(table, T))
    assert int(res.nfe) == T
    np.testing.assert_allclose(res.times, np.arange(T, 0, -1) / T, rtol=1e-14)
    betas = np.asarray(p.betas)
    abar = np.cumprod(1 - betas)
    x = np.asarray(x_init)
    for n in range(T, 1, -1):
        x0_hat = np.asarray(D(x, n / T))
        mean, std = p.discrete_posterior(x, x0_hat, n)
        # Ho et al. eq. 11 (the eps form of the same mean).
        eps = (x - np.sqrt(abar[n - 1]) * x0_hat) / np.sqrt(1 - abar[n - 1])
        mean11 = (x - betas[n - 1] / np.sqrt(1 - abar[n - 1]) * eps) / np.sqrt(1 - betas[n - 1])
        np.testing.assert_allclose(mean, mean11, rtol=1e-10, atol=1e-12)
        x = np.asarray(mean + std * table[n])
    x = np.asarray(D(x, 1 / T))
    np.testing.assert_allclose(res.x, x, rtol=1e-10, atol=1e-12)


def test_euler_maruyama_with_given_noise(x64):
    p = diffax.VP()
    gm = mixture_2d()
    D = gm.denoiser(p)
    n = 5
    x_init = p.prior_sample(jax.random.key(0), (8, 2))
    table = jax.random.normal(jax.random.key(1), (n, 8, 2))
    times = np.asarray(schedules.TimeUniform()(p, n))
    noise_fn = lambda k, t, tn, shape: table[jnp.argmin(jnp.abs(times - t))]  # noqa: E731
    res = samplers.sample(jax.random.key(2), p, D, x_init, solver=samplers.EulerMaruyama(),
                          num_steps=n, noise_fn=noise_fn)
    x = np.asarray(x_init)
    for k in range(n):
        t, dt = times[k], times[k + 1] - times[k]
        score = np.asarray(gm.score(p, x, t))
        drift = float(p.f(t)) * x - float(p.g2(t)) * score
        x = x + dt * drift + np.sqrt(-dt * float(p.g2(t))) * np.asarray(table[k])
    np.testing.assert_allclose(res.x, x, rtol=1e-10, atol=1e-10)


def test_predictor_corrector_composes_and_langevin_works_on_subvp(x64):
    p = diffax.SubVP()
    gm = mixture_2d()
    D = gm.denoiser(p)
    x_init = p.prior_sample(jax.random.key(0), (8, 2))
    key = jax.random.key(1)
    run = lambda solver: samplers.sample(key, p, D, x_init, solver=solver, num_steps=4)  # noqa: E731
    np.testing.assert_array_equal(run(samplers.PredictorCorrector(corrector=None)).x,
                                  run(samplers.ReverseDiffusion()).x)
    np.testing.assert_array_equal(
        run(samplers.PredictorCorrector(predictor="ancestral", corrector="none")).x,
        run(samplers.DDPM()).x)

    # One Langevin step on SubVP (score_sde's LangevinCorrector fails on subVPSDE: it reads
    # sde.alphas). With alpha_i = (alpha_t / alpha_s)^2 and batch-mean norms:
    t, s, snr = 0.5, 0.4, 0.16
    z = jax.random.normal(jax.random.key(2), (8, 2))
    ctx = StepContext(index=jnp.int32(0), t=jnp.asarray(t), t_next=jnp.asarray(s), times=None,
                      key=key, num_steps=1, requested_steps=1,
                      noise_fn=lambda k, t, tn, shape: z)
    out, nfe = samplers.Langevin().correct(p, D, x_init, ctx, key, snr=snr, n_steps=1)
    score = np.asarray(gm.score(p, x_init, t))
    ratio = snr * np.linalg.norm(z, axis=1).mean() / np.linalg.norm(score, axis=1).mean()
    e = 2 * (float(p.alpha(t)) / float(p.alpha(s))) ** 2 * ratio**2
    np.testing.assert_allclose(out, x_init + e * score + np.sqrt(2 * e) * z, rtol=1e-12)
    assert int(nfe) == 1


# --------------------------------------------------------------------------------------------
# NFE, trajectory, declared properties.


def test_nfe_matches_declared_nfe_per_step(x64):
    p = diffax.VP()
    x = jnp.ones((4, 3))
    solvers = [samplers.Euler(), samplers.Heun(), samplers.DDIM(eta=0.3), samplers.DDPM(),
               samplers.EulerMaruyama(), samplers.ReverseDiffusion(),
               samplers.PredictorCorrector(n_corrector_steps=2), samplers.EDMStochastic()]

    @jax.jit
    def nfes(key):
        return [samplers.sample(key, p, _zero_denoiser, x, solver=s, num_steps=5).nfe
                for s in solvers]

    for solver, nfe in zip(solvers, nfes(jax.random.key(0))):
        assert int(nfe) == 5 * solver.nfe_per_step, solver
    assert samplers.PredictorCorrector(n_corrector_steps=2).nfe_per_step == 3
    assert [s.order for s in solvers[:2]] == [1, 2]
    assert not samplers.Euler().stochastic and not samplers.DDIM(eta=0.0).stochastic
    assert samplers.DDIM(eta=0.3).stochastic and samplers.DDPM().stochastic
    assert samplers.Adaptive().order == 5 and samplers.Adaptive().nfe_per_step == 6


def test_heun_euler_on_last_step_to_sigma_zero(x64):
    # Rectified flow down to t = 0 (sigma = 0): the last Heun step is Euler, 2N - 1 evaluations;
    # the state is finite and equals the denoised value there.
    p = diffax.RectifiedFlow(t_min=0.0)
    gm = mixture_2d()
    x = p.prior_sample(jax.random.key(0), (8, 2))
    res = samplers.sample(None, p, gm.denoiser(p), x, solver=samplers.Heun(), num_steps=6,
                          schedule=schedules.TimeUniform(), return_trajectory=True)
    assert int(res.nfe) == 11
    assert bool(jnp.all(jnp.isfinite(res.trajectory)))
    last_t = res.times[-2]
    np.testing.assert_allclose(res.x, gm.denoiser(p)(res.trajectory[-2], last_t), rtol=1e-12)


def test_trajectory_times_and_denoise_final(x64):
    p = diffax.VE()
    gm = mixture_2d()
    x = p.prior_sample(jax.random.key(0), (8, 2))
    res = samplers.sample(None, p, gm.denoiser(p), x, solver=samplers.Euler(), num_steps=4,
                          return_trajectory=True, denoise_final=True)
    assert res.trajectory.shape == (5, 8, 2) and res.times.shape == (5,)
    np.testing.assert_array_equal(res.trajectory[0], x)
    np.testing.assert_allclose(res.x, gm.denoiser(p)(res.trajectory[-1], p.t_min), rtol=1e-14)
    assert int(res.nfe) == 5 and res.status.tolist() == [0] * 8
    plain = samplers.sample(None, p, gm.denoiser(p), x, solver=samplers.Euler(), num_steps=4)
    assert plain.trajectory is None
    np.testing.assert_array_equal(plain.x, res.trajectory[-1])


def test_float32_state_stays_float32(x64):
    p = diffax.VP()
    x = jnp.ones((4, 2), jnp.float32)
    gm = mixture_2d(jnp.float32)
    for solver in (samplers.Heun(), samplers.DDPM()):
        res = samplers.sample(jax.random.key(0), p, gm.denoiser(p), x, solver=solver,
                              num_steps=3)
        assert res.x.dtype == jnp.float32 and res.times.dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# The loop: compile time, recompilation, sharding.


@pytest.mark.parametrize("solver", [samplers.Euler(), samplers.Heun(), samplers.DDPM(),
                                    samplers.PredictorCorrector(), samplers.EDMStochastic(),
                                    samplers.Adaptive()])
def test_program_size_does_not_grow_with_num_steps(solver):
    p = diffax.VP()
    x = jnp.ones((4, 2))

    def program(n):
        jaxpr = jax.make_jaxpr(lambda key, x: samplers.sample(
            key, p, _zero_denoiser, x, solver=solver, num_steps=n).x)(jax.random.key(0), x)
        return re.sub(r"\d+", "#", str(jaxpr))  # the program up to its numbers (e.g. lengths)

    assert program(10) == program(1000)


def test_new_process_numbers_and_schedules_do_not_recompile(x64):
    gm = mixture_2d()

    @jax.jit
    def run(p, x, sched):
        return samplers.sample(None, p, gm.denoiser(p), x, solver=samplers.Heun(), num_steps=4,
                               schedule=sched).x

    x = jnp.ones((4, 2))
    a = run(diffax.VP(), x, schedules.Karras(rho=7.0))
    b = run(diffax.VP(beta_max=15.0), x, schedules.Karras(rho=5.0))
    assert run._cache_size() == 1
    assert not np.allclose(a, b)


def test_sharded_batch_under_jit(x64):
    devices = np.array(jax.devices()[:8])
    mesh = Mesh(devices, ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    p = diffax.VP()
    gm = mixture_2d()
    x = p.prior_sample(jax.random.key(0), (16, 2))

    @jax.jit
    def run(key, x):
        return [samplers.sample(key, p, gm.denoiser(p), x, solver=s, num_steps=5).x
                for s in (samplers.Heun(), samplers.PredictorCorrector())]

    sharded = run(jax.random.key(1), jax.device_put(x, sharding))
    plain = run(jax.random.key(1), x)
    for a, b in zip(sharded, plain):
        assert a.sharding.is_equivalent_to(sharding, a.ndim)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Adaptive.


def test_adaptive_per_example_error_control_status_and_nfe(x64):
    p = diffax.VP()
    gm = mixture_2d()
    x = p.prior_sample(jax.random.key(0), (4, 2))

    @jax.jit
    def run(p, x):
        D = gm.denoiser(p)
        out = {}
        for name, solver, n in (
                ("batch", samplers.Adaptive(rtol=1e-6, atol=1e-6), 10),
                ("shared", samplers.Adaptive(rtol=1e-6, atol=1e-6, per_example=False), 10),
                ("capped", samplers.Adaptive(rtol=1e-6, atol=1e-6, max_steps=3), 10)):
            out[name] = samplers.sample(None, p, D, x, solver=solver, num_steps=n)
        out["alone"] = samplers.sample(None, p, D, x[1:2], solver=samplers.Adaptive(
            rtol=1e-6, atol=1e-6), num_steps=10)
        # With an explicit grid the solve reports the state at each of its times.
        out["tsit5_checkpoints"] = samplers.sample(
            None, p, D, x, solver=samplers.Adaptive(rtol=1e-6, atol=1e-6, method="tsit5"),
            schedule=jnp.array([1.0, 0.5, 0.001]), return_trajectory=True)
        return out

    out = run(p, x)
    batch = out["batch"]
    nfe = np.asarray(batch.stats["nfe"])
    # Each example adapts its steps to its own error, so the counts differ between examples.
    assert len(set(nfe.tolist())) > 1, nfe
    assert int(batch.nfe) == nfe.max()
    np.testing.assert_array_equal(np.asarray(batch.stats["nfe"]),
                                  1 + 6 * np.asarray(batch.stats["num_steps"]))
    # ... so an example's result does not depend on the rest of the batch.
    np.testing.assert_allclose(out["alone"].x[0], batch.x[1], rtol=1e-12, atol=1e-12)
    assert int(out["alone"].nfe) == nfe[1]
    # A shared step size gives every example the same count.
    assert len(set(np.asarray(out["shared"].stats["nfe"]).tolist())) == 1
    # num_steps = 10 only sets the first step size: it does not bound the solve.
    assert int(np.asarray(batch.stats["num_steps"]).min()) > 10
    checkpoints = out["tsit5_checkpoints"]
    assert checkpoints.trajectory.shape == (3, 4, 2)
    np.testing.assert_array_equal(checkpoints.trajectory[0], x)
    np.testing.assert_array_equal(checkpoints.trajectory[-1], checkpoints.x)
    for name in ("shared", "tsit5_checkpoints"):
        np.testing.assert_allclose(out[name].x, batch.x, rtol=0, atol=2e-5)
        assert out[name].status.tolist() == [0, 0, 0, 0]
    # Failures are reported, not raised.
    assert out["capped"].status.tolist() == [1, 1, 1, 1]
    assert int(out["capped"].nfe) == 1 + 6 * 3


def test_adaptive_errors():
    with pytest.raises(ValueError, match="method"):
        samplers.Adaptive(method="rk4")
    with pytest.raises(ValueError, match="rtol"):
        samplers.Adaptive(rtol=0.0)
    with pytest.raises(ValueError, match="sigma = 0"):
        samplers.sample(None, diffax.RectifiedFlow(t_min=0.0), _zero_denoiser, jnp.ones((2, 2)),
                        solver=samplers.Adaptive(), num_steps=4)


# --------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument, before anything is compiled.


def test_bad_inputs_raise_before_compiling():
    p = diffax.VP()
    gm = mixture_2d()
    D = gm.denoiser(p)
    x = jnp.ones((4, 2))
    ok = dict(solver=samplers.Euler(), num_steps=4)

    def bad(match, *, key=None, process=p, denoiser=D, x_init=x, **kwargs):
        with pytest.raises(ValueError, match=match):
            samplers.sample(key, process, denoiser, x_init, **{**ok, **kwargs})

    # x_init the denoiser cannot take (wrong event shape), or without a batch axis.
    bad(r"`x_init` of shape \(4, 3\)", x_init=jnp.ones((4, 3)))
    bad(r"`x_init` of shape \(4, 3\)",
        denoiser=diffax.as_denoiser(lambda x, t: x @ jnp.ones((2, 2)), p, prediction="eps"),
        x_init=jnp.ones((4, 3)))
    bad("returned .* for `x_init`", denoiser=lambda x, t: x[:, :1])
    bad("batch axis", x_init=jnp.ones(()))
    bad("floating", x_init=jnp.ones((4, 2), jnp.int32))
    # num_steps.
    bad("`num_steps` must be >= 1", num_steps=0)
    bad("`num_steps` must be a Python int", num_steps=2.5)
    bad("`num_steps` is required", num_steps=None)
    # Schedules outside the process's range, not decreasing, or of the wrong length.
    bad("outside the time range", schedule=np.array([2.0, 1.0, 0.5, 0.2, 0.001]))
    bad("outside the time range", schedule=np.array([1.0, 0.5, 0.2, 0.1, 0.0]))
    bad("strictly decreasing", schedule=np.array([1.0, 0.2, 0.5, 0.1, 0.001]))
    bad("5 times, i.e. 4 steps", schedule=np.array([1.0, 0.5, 0.2, 0.1, 0.001]), num_steps=8)
    # Solvers and keys.
    bad("did you mean Euler()", solver=samplers.Euler)
    bad("`key` is None", solver=samplers.DDPM())
    bad("`key` must be a single PRNG key", key=0, solver=samplers.DDPM())
    bad("`key` must be a single PRNG key", key=jax.random.split(jax.random.key(0)))
    bad("`solver` must be", solver="euler")
    bad("`process` must be", process="vp")
    with pytest.raises(ValueError, match="predictor"):
        samplers.PredictorCorrector(predictor="leapfrog")
    with pytest.raises(ValueError, match="eta"):
        samplers.DDIM(eta=-1.0)
    with pytest.raises(ValueError, match="S_min <= S_max"):
        samplers.EDMStochastic(S_min=2.0, S_max=1.0)


def test_validation_happens_at_trace_time_under_jit():
    # Inside jit the same errors come from tracing, before XLA compiles anything.
    p = diffax.VP()

    @jax.jit
    def run(x):
        return samplers.sample(None, p, mixture_2d().denoiser(p), x, solver=samplers.Heun(),
                               num_steps=4).x

    with pytest.raises(ValueError, match="x_init"):
        run(jnp.ones((4, 5)))
