"""Benchmark of diffax's samplers on Gaussian mixtures (D = 2 and D = 64), on CPU.

Prints markdown tables and writes them to ``--out``:

1. Accuracy per mixture, for the VP process (score_sde's, t in [1e-3, 1]) in float64: for each
   deterministic solver and NFE budget in {5, 10, 20, 50}, the RMS error of the final state
   against the probability-flow trajectory from the same ``x_init`` solved tightly (diffrax
   Tsit5, rtol = atol = 1e-9). Each solver uses its default schedule and as many steps as fit
   the budget (the NFE actually spent is shown). Stochastic solvers have no trajectory to
   follow; for them the table gives the sliced Wasserstein distance of their samples to exact
   samples of ``p_{t_min}``, divided by the same distance between exact samples (mean of 4
   pairs; 1 is the sampling-noise floor). ``Adaptive`` has its own table: error and NFE per
   tolerance.
2. Overhead: microseconds per step of ``diffax.sample`` with ``Euler`` against a bare
   ``lax.scan`` Euler loop calling the same denoiser with the same grid, batch 4096, float32
   (target: at most 1.10x).
3. Compile time at 1000 steps over compile time at 10 steps, per solver (target: at most 1.5x).

Run: ``python tools/bench_samplers.py --out bench_samplers.md`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import diffax  # noqa: E402
from diffax import samplers  # noqa: E402
from diffax.parameterization import velocity_from_denoiser  # noqa: E402
from diffax.testing import GaussianMixture  # noqa: E402

NFES = (5, 10, 20, 50)
BATCH = 512
TIMING_BATCH = 4096


def mixture(dim: int, dtype=jnp.float64) -> GaussianMixture:
    if dim == 2:
        return GaussianMixture(means=jnp.array([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], dtype),
                               stds=jnp.array([0.3, 0.6, 0.4], dtype),
                               weights=jnp.array([0.3, 0.5, 0.2], dtype))
    means = 0.5 * np.random.default_rng(0).standard_normal((4, dim))
    return GaussianMixture(means=jnp.asarray(means, dtype),
                           stds=jnp.array([0.3, 0.5, 0.7, 0.9], dtype),
                           weights=jnp.array([0.1, 0.2, 0.3, 0.4], dtype))


DETERMINISTIC = {  # name: (solver, schedule; None = the solver's default)
    "Euler (= DDIM eta=0, DPM-Solver-1), time-uniform": (samplers.Euler(), None),
    "Heun (EDM Alg. 1), Karras rho=7 (its default)": (samplers.Heun(), None),
    "Heun, time-uniform": (samplers.Heun(), diffax.schedules.TimeUniform()),
}
STOCHASTIC = {
    "DDPM": samplers.DDPM(),
    "DDIM eta=0.5": samplers.DDIM(eta=0.5),
    "EulerMaruyama": samplers.EulerMaruyama(),
    "PC (reverse diffusion + Langevin)": samplers.PredictorCorrector(),
    "EDMStochastic (S_churn=40)": samplers.EDMStochastic(S_churn=40.0),
}
ADAPTIVE_TOLS = (1e-2, 1e-3, 1e-4, 1e-5)


def reference(process, gm, x_init):
    velocity = velocity_from_denoiser(process, gm.denoiser(process))

    @jax.jit
    def solve(x):
        term = diffrax.ODETerm(lambda t, y, args: velocity(y, t))
        return diffrax.diffeqsolve(term, diffrax.Tsit5(), process.t_max, process.t_min, None, x,
                                   stepsize_controller=diffrax.PIDController(rtol=1e-9,
                                                                             atol=1e-9),
                                   max_steps=100_000).ys[0]

    return solve(x_init)


def sliced_wasserstein(a, b, key, num_projections=128):
    dirs = jax.random.normal(key, (a.shape[1], num_projections), a.dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = jnp.sort(a @ dirs, axis=0), jnp.sort(b @ dirs, axis=0)
    return float(jnp.sqrt(jnp.mean(jnp.square(pa - pb))))


def accuracy_table(dim: int) -> str:
    p = diffax.VP()
    gm = mixture(dim)
    x_init = p.prior_sample(jax.random.key(0), (BATCH, dim))
    ref = reference(p, gm, x_init)
    run = jax.jit(lambda key, x, solver, n, schedule=None: samplers.sample(
        key, p, gm.denoiser(p), x, solver=solver, num_steps=n, schedule=schedule),
        static_argnums=(2, 3))
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x - ref))))  # noqa: E731
    header = "| solver | " + " | ".join(f"NFE {n}" for n in NFES) + " |"
    lines = [f"**D = {dim}**, VP process, {BATCH} examples, float64: RMS error of the final "
             "state against the tight reference trajectory (actual NFE in brackets)", "",
             header, "|---" * (len(NFES) + 1) + "|"]
    for name, (solver, schedule) in DETERMINISTIC.items():
        cells = []
        for budget in NFES:
            n = max(1, budget // solver.nfe_per_step)
            res = run(None, x_init, solver, n, schedule)
            cells.append(f"{rms(res.x):.2e} ({int(res.nfe)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"**D = {dim}**, Adaptive (dopri5, per-example steps, rtol = atol = tol): "
              "RMS error and NFE (batched calls; the per-example mean in brackets)", "",
              "| tol | " + " | ".join(f"{tol:g}" for tol in ADAPTIVE_TOLS) + " |",
              "|---" * (len(ADAPTIVE_TOLS) + 1) + "|"]
    cells = []
    for tol in ADAPTIVE_TOLS:
        res = run(None, x_init, samplers.Adaptive(rtol=tol, atol=tol), 10)
        mean_nfe = float(jnp.mean(res.stats["nfe"]))
        cells.append(f"{rms(res.x):.2e}, NFE {int(res.nfe)} ({mean_nfe:.0f})")
    lines.append("| Adaptive | " + " | ".join(cells) + " |")

    exact = [gm.sample(jax.random.key(k), p, p.t_min, BATCH * 4) for k in range(1, 6)]
    kp = jax.random.key(0)
    floor = float(np.mean([sliced_wasserstein(e, exact[0], kp) for e in exact[1:]]))
    x_big = p.prior_sample(jax.random.key(4), (BATCH * 4, dim))
    lines += ["", f"**D = {dim}**, stochastic solvers, {BATCH * 4} samples: sliced Wasserstein "
              "distance to exact samples of p_{t_min} / the same between exact samples "
              f"(mean of 4 pairs, = {floor:.3g}: 1 is the sampling-noise floor)", "", header,
              "|---" * (len(NFES) + 1) + "|"]
    for name, solver in STOCHASTIC.items():
        cells = []
        for budget in NFES:
            n = max(1, budget // solver.nfe_per_step)
            res = run(jax.random.key(5), x_big, solver, n)
            cells.append(f"{sliced_wasserstein(res.x, exact[0], kp) / floor:.2f} "
                         f"({int(res.nfe)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_time(f, *args, repeats=7):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def overhead_rows(dim: int, num_steps: int = 200) -> list[str]:
    p = diffax.VP()
    gm = mixture(dim, jnp.float32)
    denoiser = gm.denoiser(p)
    x = p.prior_sample(jax.random.key(0), (TIMING_BATCH, dim), jnp.float32)
    times = diffax.schedules.TimeUniform()(p, num_steps, dtype=jnp.float32)

    @jax.jit
    def bare(x, ts):
        def body(x, tt):
            t, s = tt
            a_t, s_t, a_s, s_s = p.alpha(t), p.sigma(t), p.alpha(s), p.sigma(s)
            d = denoiser(x, jnp.full(x.shape[:1], t))
            r = s_s / s_t
            return r * x + (a_s - a_t * r) * d, None
        return jax.lax.scan(body, x, (ts[:-1], ts[1:]))[0]

    @jax.jit
    def ours(x, ts):
        return samplers.sample(None, p, denoiser, x, solver=samplers.Euler(), schedule=ts).x

    np.testing.assert_allclose(bare(x, times), ours(x, times), rtol=1e-4, atol=1e-4)
    rows = []
    # Interleave the two to share whatever load the machine has.
    b_min, b_med, o_min, o_med = [], [], [], []
    for _ in range(3):
        bm, bd = _best_time(bare, x, times)
        om, od = _best_time(ours, x, times)
        b_min.append(bm)
        b_med.append(bd)
        o_min.append(om)
        o_med.append(od)
    b, o = min(b_min) / num_steps * 1e6, min(o_min) / num_steps * 1e6
    rows.append(f"| {dim} | {b:.1f} | {o:.1f} | {o - b:+.1f} | {o / b:.3f} |")
    return rows


def compile_seconds(solver, n: int, dim: int = 2) -> float:
    p = diffax.VP()
    gm = mixture(dim, jnp.float32)
    x = jnp.ones((64, dim), jnp.float32)

    def f(key, x):
        return samplers.sample(key, p, gm.denoiser(p), x, solver=solver, num_steps=n).x

    best = float("inf")
    for _ in range(3):
        jax.clear_caches()  # otherwise the second compile of the same program is a cache hit
        g = jax.jit(f)
        t0 = time.perf_counter()
        g.lower(jax.random.key(0), x).compile()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    parser.add_argument("--dims", default="2,64")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    out = [f"diffax sampler benchmark (jax {jax.__version__}, "
           f"{jax.devices()[0].platform.upper()}, {jax.device_count()} device(s))", ""]
    for dim in dims:
        out += [accuracy_table(dim), ""]
        print("\n".join(out[-2:]), flush=True)

    out += [f"Sampler overhead, Euler, batch {TIMING_BATCH}, float32, 200 steps (best of 21 "
            "runs): microseconds per step", "",
            "| D | bare lax.scan Euler | diffax.sample(Euler) | overhead | ratio (target <= 1.10) "
            "|",
            "|---|---|---|---|---|"]
    for dim in dims:
        out += overhead_rows(dim)
    out += [""]
    print("\n".join(out[-(len(dims) + 5):]), flush=True)

    out += ["Compile time (trace + lower + XLA compile), 1000 steps vs 10 steps, D = 2, float32 "
            "(best of 3, seconds)", "",
            "| solver | 10 steps | 1000 steps | ratio (target <= 1.5) |", "|---|---|---|---|"]
    for name, solver in {"Euler": samplers.Euler(), "Heun": samplers.Heun(),
                         "DDPM": samplers.DDPM(), "PC": samplers.PredictorCorrector(),
                         "EDMStochastic": samplers.EDMStochastic(S_churn=40.0)}.items():
        c10, c1000 = compile_seconds(solver, 10), compile_seconds(solver, 1000)
        out.append(f"| {name} | {c10:.2f} | {c1000:.2f} | {c1000 / c10:.2f} |")
        print(out[-1], flush=True)
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
