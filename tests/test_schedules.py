"""Schedules: exact end points, strictly decreasing grids for every process, the published
formulas where a process makes them checkable, and clear errors for bad explicit grids."""

import dataclasses
import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import schedules

PROCESSES = {
    "VP": diffax.VP(),
    "CosineVP": diffax.VP.cosine(),
    "SubVP": diffax.SubVP(),
    "VE": diffax.VE(),
    "EDM": diffax.EDM(),
    "RectifiedFlow": diffax.RectifiedFlow(),
    "RectifiedFlow_t0": diffax.RectifiedFlow(t_min=0.0),
    "EDM_sigma0": diffax.EDM(sigma_min=0.0),
    "DiscreteVP": diffax.DiscreteVP.linear(num_steps=1000),
}
SCHEDULES = {
    "time_uniform": schedules.TimeUniform(),
    "quadratic": schedules.Quadratic(),
    "log_snr_uniform": schedules.LogSNRUniform(),
    "karras": schedules.Karras(rho=7.0),
    "shift": schedules.Shift(shift=3.0),
    "shift_down": schedules.Shift(shift=0.2, base=schedules.Karras()),
}


@pytest.mark.parametrize("pname", list(PROCESSES))
@pytest.mark.parametrize("sname", list(SCHEDULES))
def test_grid_is_decreasing_from_t_max_to_t_min(x64, pname, sname):
    p, sched = PROCESSES[pname], SCHEDULES[sname]
    for n in (1, 7):
        ts = np.asarray(sched(p, n))
        assert ts.shape == (n + 1,)
        assert np.all(np.isfinite(ts)), ts
        assert ts[0] == float(p.t_max) and ts[-1] == float(p.t_min)
        assert np.all(np.diff(ts) < 0), ts


def test_time_uniform_and_quadratic_formulas(x64):
    p = diffax.VP()
    np.testing.assert_allclose(schedules.TimeUniform()(p, 4),
                               [1.0, 0.75025, 0.5005, 0.25075, 0.001], rtol=1e-12)
    u = np.linspace(1, 0, 5)
    np.testing.assert_allclose(schedules.Quadratic()(p, 4), 0.001 + 0.999 * u**2, rtol=1e-12)


def test_karras_is_edm_eq5_on_the_edm_process(x64):
    p = diffax.EDM(sigma_min=0.002, sigma_max=80.0)
    n, rho = 17, 7.0
    i = np.arange(n + 1)
    # Karras et al. (2022), eq. 5 (N = n + 1 points, t_N = 0 appended by the sampler).
    ref = (80.0 ** (1 / rho) + i / n * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
    np.testing.assert_allclose(schedules.Karras(rho=rho)(p, n), ref, rtol=1e-12)
    # On VP it is the same law on sigma/alpha (EDM's treatment of VP models).
    q = diffax.VP()
    lvl = np.exp(-0.5 * np.asarray(q.log_snr(schedules.Karras(rho=rho)(q, n))))
    lo, hi = np.exp(-0.5 * np.asarray(q.log_snr(np.array([q.t_min, q.t_max]))))
    np.testing.assert_allclose(lvl, (hi ** (1 / rho) + i / n * (lo ** (1 / rho) - hi ** (1 / rho)))
                               ** rho, rtol=1e-9)


def test_karras_sigma_overrides_and_zero_sigma_min(x64):
    p = diffax.EDM(sigma_min=0.0, sigma_max=80.0)
    ts = np.asarray(schedules.Karras(rho=7.0)(p, 4))
    np.testing.assert_allclose(ts[1:-1], (80 ** (1 / 7) * (1 - np.arange(1, 4) / 4)) ** 7,
                               rtol=1e-12)
    ts = np.asarray(schedules.Karras(rho=1.0, sigma_max=40.0, sigma_min=0.0)(p, 4))
    np.testing.assert_allclose(ts, [80.0, 30.0, 20.0, 10.0, 0.0], rtol=1e-12)


def test_log_snr_uniform_is_uniform_in_log_snr(x64):
    for p in (diffax.VP(), diffax.SubVP(), diffax.DiscreteVP.linear()):
        lam = np.asarray(p.log_snr(schedules.LogSNRUniform()(p, 8)))
        np.testing.assert_allclose(np.diff(lam), np.full(8, np.diff(lam).mean()), rtol=1e-7)


def test_rectified_flow_infinite_log_snr_uses_an_inset_end(x64):
    # alpha(1) = 0: log_snr(t_max) = -inf. Interior points come from the value at 1e-3 inside.
    p = diffax.RectifiedFlow(t_min=0.0)
    ts = np.asarray(schedules.LogSNRUniform()(p, 4))
    lam = np.asarray(p.log_snr(ts[1:-1]))
    lo, hi = 2 * np.log(0.001 / 0.999), 2 * np.log(0.999 / 0.001)
    np.testing.assert_allclose(lam, np.linspace(lo, hi, 5)[1:-1], rtol=1e-9, atol=1e-9)
    assert ts[0] == 1.0 and ts[-1] == 0.0


def test_shift_is_sd3_time_shift_on_rectified_flow(x64):
    p = diffax.RectifiedFlow(t_min=0.0)
    s = 3.0
    u = np.linspace(1, 0, 9)
    np.testing.assert_allclose(schedules.Shift(shift=s)(p, 8), s * u / (1 + (s - 1) * u),
                               rtol=1e-12, atol=1e-15)
    # shift = 1 is the identity on its base; a shift is a pytree leaf (no recompilation).
    base = schedules.Quadratic()
    np.testing.assert_allclose(schedules.Shift(shift=1.0, base=base)(p, 8), base(p, 8),
                               rtol=1e-12, atol=1e-15)


def test_schedules_trace_with_traced_numbers(x64):
    # A traced rho / shift / process does not recompile and gives the same grid.
    f = jax.jit(lambda p, sched: sched(p, 6))
    for sched in (schedules.Karras(rho=7.0), schedules.Shift(shift=2.0)):
        np.testing.assert_allclose(f(diffax.VP(), sched), sched(diffax.VP(), 6), rtol=1e-12)
    assert f._cache_size() == 2
    f(diffax.VP(beta_max=15.0), schedules.Karras(rho=5.0))
    assert f._cache_size() == 2


def test_factories_and_num_steps_errors():
    p = diffax.VP()
    assert isinstance(schedules.karras(rho=5.0), schedules.Karras)
    assert isinstance(schedules.shift(2.0), schedules.Shift)
    for f in (schedules.time_uniform, schedules.quadratic, schedules.log_snr_uniform):
        assert f()(p, 3).shape == (4,)
    for bad in (0, -1, 2.5, None, True):
        with pytest.raises(ValueError, match="num_steps"):
            schedules.TimeUniform()(p, bad)
    with pytest.raises(ValueError, match="rho"):
        schedules.Karras(rho=0.0)
    with pytest.raises(ValueError, match="shift"):
        schedules.Shift(shift=-1.0)


def test_resolve_explicit_arrays(x64):
    p = diffax.VP()
    ts = schedules.resolve(np.array([1.0, 0.5, 0.001]), p, 2)
    np.testing.assert_allclose(ts, [1.0, 0.5, 0.001])
    assert schedules.resolve([1.0, 0.2], p, None).shape == (2,)
    with pytest.raises(ValueError, match="schedule.*3 times.*num_steps"):
        schedules.resolve(np.array([1.0, 0.5, 0.001]), p, 5)
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedules.resolve(np.array([0.001, 0.5, 1.0]), p, 2)
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedules.resolve(np.array([1.0, 0.5, 0.5, 0.001]), p, 3)
    with pytest.raises(ValueError, match="outside the time range"):
        schedules.resolve(np.array([2.0, 0.5, 0.001]), p, 2)
    with pytest.raises(ValueError, match="outside the time range"):
        schedules.resolve(np.array([1.0, 0.5, 0.0]), p, 2)
    with pytest.raises(ValueError, match="1-D"):
        schedules.resolve(np.ones((2, 2)), p, None)
    with pytest.raises(ValueError, match="finite"):
        schedules.resolve(np.array([1.0, np.nan]), p, 1)
    # Under jit the values are not known: the shape is still checked, values are not.
    out = jax.jit(lambda ts: schedules.resolve(ts, p, 2))(jnp.array([1.0, 0.5, 0.001]))
    np.testing.assert_allclose(out, [1.0, 0.5, 0.001])


# --------------------------------------------------------------------------------------------
# t_start / t_end: a grid over a sub-interval, by the same law.

ENDS_SCHEDULES = dict(SCHEDULES, endpoints=schedules.Endpoints())


def test_t_start_and_t_end_follow_each_law(x64):
    a, b, n = 0.6, 0.1, 4
    u = np.linspace(1.0, 0.0, n + 1)
    p = diffax.VP()
    np.testing.assert_allclose(schedules.TimeUniform(t_start=a, t_end=b)(p, n),
                               np.linspace(a, b, n + 1), rtol=1e-12)
    np.testing.assert_allclose(schedules.Quadratic(t_start=a, t_end=b)(p, n),
                               b + (a - b) * u**2, rtol=1e-12)
    lam = p.log_snr(schedules.LogSNRUniform(t_start=a, t_end=b)(p, n))
    np.testing.assert_allclose(lam, np.linspace(p.log_snr(a), p.log_snr(b), n + 1), rtol=1e-10)
    np.testing.assert_array_equal(schedules.Endpoints(t_start=a, t_end=b)(p, 7), [a, b])
    # EDM's eq. 5 with sigma_max = t_start, sigma_min = t_end (sigma = t on EDM).
    rho, i = 7.0, np.arange(n + 1)
    ref = (10.0 ** (1 / rho) + i / n * (0.01 ** (1 / rho) - 10.0 ** (1 / rho))) ** rho
    np.testing.assert_allclose(schedules.Karras(rho=rho, t_start=10.0, t_end=0.01)(
        diffax.EDM(), n), ref, rtol=1e-12)
    # SD3's shift on rectified flow restricted to [0, 0.5]: s = t / (1 - t) runs over [0, 1];
    # the Moebius map fixing both ends, v' = k v / (1 + (k - 1) v), then t = s / (1 + s).
    k, t = 3.0, np.linspace(0.5, 0.0, n + 1)
    v = t / (1 - t)
    s = k * v / (1 + (k - 1) * v)
    np.testing.assert_allclose(schedules.Shift(shift=k, t_start=0.5)(
        diffax.RectifiedFlow(t_min=0.0), n), s / (1 + s), rtol=1e-12, atol=1e-15)


def test_t_start_and_t_end_give_exact_ends_on_every_process(x64):
    for pname, p in PROCESSES.items():
        lo, hi = float(p.t_min), float(p.t_max)
        a, b = lo + 0.6 * (hi - lo), lo + 0.1 * (hi - lo)
        for sname, sched in ENDS_SCHEDULES.items():
            ts = np.asarray(dataclasses.replace(sched, t_start=a, t_end=b)(p, 7))
            assert ts[0] == a and ts[-1] == b, (pname, sname, ts)
            assert np.all(np.isfinite(ts)) and np.all(np.diff(ts) < 0), (pname, sname, ts)
            # The whole interval written out is the default grid, bit for bit.
            full = dataclasses.replace(sched, t_start=hi, t_end=lo)
            np.testing.assert_array_equal(full(p, 7), sched(p, 7), err_msg=f"{pname} {sname}")


def test_t_start_traces_without_recompiling(x64):
    f = jax.jit(lambda sched: sched(diffax.VP(), 5))
    for a in (0.9, 0.4):
        sched = schedules.Karras(t_start=a)
        np.testing.assert_allclose(f(sched), sched(diffax.VP(), 5), rtol=1e-12)
    assert f._cache_size() == 1


def test_t_start_and_t_end_errors_name_the_argument():
    p = diffax.VP()
    with pytest.raises(ValueError, match="`t_start`=1.5 lies outside"):
        schedules.TimeUniform(t_start=1.5)(p, 4)
    with pytest.raises(ValueError, match="`t_end`=0 lies outside"):
        schedules.karras(t_end=0.0)(p, 4)
    with pytest.raises(ValueError, match="`t_end`=0.5 must be below `t_start`=0.5"):
        schedules.Quadratic(t_start=0.5, t_end=0.5)
    with pytest.raises(ValueError, match="`t_start` must be a scalar"):
        schedules.LogSNRUniform(t_start=np.ones(2))
    with pytest.raises(ValueError, match="`t_end` must be a finite"):
        schedules.shift(t_end=float("nan"))
    with pytest.raises(ValueError, match="`t_start` is not an option"):
        schedules.Spacing(t_start=0.5)
    with pytest.raises(TypeError):
        schedules.time_uniform(0.5)  # keyword-only
    with pytest.raises(ValueError, match="t_start.*sdedit starts"):
        diffax.inverse.sdedit(jax.random.key(0), p, lambda x, t: x, jnp.ones((2, 2)), t0=0.5,
                              num_steps=2, schedule=schedules.TimeUniform(t_start=0.7))


def test_docstring_examples():
    result = doctest.testmod(schedules, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
