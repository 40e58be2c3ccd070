"""Benchmark of diffax's samplers on Gaussian mixtures (D = 2 and D = 64), on CPU.

Prints markdown tables and writes them to ``--out``:

1. Accuracy per mixture, for the VP process (score_sde's, t in [1e-3, 1]) in float64: for each
   deterministic solver and NFE budget in {5, 10, 20, 50}, the RMS error of the final state
   against the probability-flow trajectory from the same ``x_init`` solved tightly (diffrax
   Tsit5, rtol = atol = 1e-9). Each solver uses its default schedule and as many steps as fit
   the budget (the NFE actually spent is shown); the best entry per budget is in bold. The
   fast solvers (DPM-Solver, DPM-Solver++, UniPC, DEIS, iPNDM, LMS) are compared with UniPC on
   a grid from ``diffax.schedules.optimize`` fitted on 128 other starting points, and a second
   table gives that grid's gain over the log-SNR, Karras and time-uniform grids. Stochastic
   solvers have no trajectory to follow; for them the table gives the sliced Wasserstein
   distance of their samples to exact samples of ``p_{t_min}``, divided by the same distance
   between exact samples (mean of 4 pairs; 1 is the sampling-noise floor). ``Adaptive`` and
   the adaptive DPM-Solver have their own table: error and NFE per tolerance.
2. Overhead: microseconds per step of ``diffax.sample`` with ``Euler`` against a bare
   ``lax.scan`` Euler loop calling the same denoiser with the same grid, batch 4096, float32
   (target: at most 1.10x).
3. Compile time at 1000 steps over compile time at 10 steps, per solver (target: at most 1.5x).
4. Diffusers' default grids (``--parts diffusers``): DDPM's linear schedule with diffusers'
   ``linspace`` / ``leading`` / ``trailing`` timesteps (``diffax.schedules.Spacing``), 10/25/50
   steps, ending at ``t_min`` and at clean data ``t = 0``; every multistep solver under the old
   lower-order rule, diffusers' rule, ``StepRatio(2)`` and its default now
   (``samplers.default_rule``), with DDIM as the baseline, against
   ``diffax.testing.log_snr_reference``.

Timings are paired (the two things compared run back to back, alternately first) and reported
as the median of the paired ratios, which is robust to a machine whose load drifts.

Run: ``python tools/bench_samplers.py --out bench_samplers.md`` (14 minutes on 2 busy
cores, most of it compiling and optimizing grids); ``--parts overhead,compile`` for the timings
only, ``--dims 2 --parts accuracy`` for one accuracy table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
    "DPM-Solver-2 (singlestep), log-SNR": (samplers.DPMSolver(order=2, method="singlestep"),
                                           None),
    "DPM-Solver-3 (singlestep), log-SNR": (samplers.DPMSolver(order=3, method="singlestep"),
                                           None),
    "DPM-Solver (3M, eps), log-SNR": (samplers.DPMSolver(order=3), None),
    "DPM-Solver++(3S), log-SNR": (samplers.DPMSolverPP(order=3, method="singlestep"), None),
    "DPM-Solver++(2M), log-SNR": (samplers.DPMSolverPP(order=2), None),
    "DPM-Solver++(3M), log-SNR": (samplers.DPMSolverPP(order=3), None),
    "UniPC-2 (bh2), log-SNR": (samplers.UniPC(order=2), None),
    "UniPC-2 (bh1), log-SNR": (samplers.UniPC(order=2, variant="bh1"), None),
    "UniPC-3 (bh2), log-SNR": (samplers.UniPC(order=3), None),
    "DEIS-3 (tAB), time-quadratic": (samplers.DEIS(order=3), None),
    "iPNDM (order 4), time-quadratic": (samplers.IPNDM(), None),
    "LMS (order 4), Karras rho=7": (samplers.LMS(), None),
}
# Solvers also run on a grid from diffax.schedules.optimize (fitted on other samples than the
# evaluated ones), and the grids compared with it.
OPTIMIZED = {"UniPC-2 (bh2), optimized grid": samplers.UniPC(order=2)}
OPT_TRAIN, OPT_ITERS = 128, 100
STOCHASTIC = {
    "DDPM": samplers.DDPM(),
    "SDE-DPM-Solver++(2M)": samplers.DPMSolverPP(order=2, sde=True),
    "SDE-DPM-Solver++(3M)": samplers.DPMSolverPP(order=3, sde=True),
    "DDIM eta=0.5": samplers.DDIM(eta=0.5),
    "EulerMaruyama": samplers.EulerMaruyama(),
    "PC (reverse diffusion + Langevin)": samplers.PredictorCorrector(),
    "EDMStochastic (S_churn=40)": samplers.EDMStochastic(S_churn=40.0),
}
ADAPTIVE_TOLS = (1e-2, 1e-3, 1e-4, 1e-5)


def steps_for_budget(solver, budget: int) -> int:
    """The most steps whose evaluations fit ``budget``: for singlestep DPM-Solvers with
    ``lower_order_final`` the last steps use orders ``min(order, steps left)`` (DPM-Solver-fast's
    split of the budget)."""
    if isinstance(solver, (samplers.DPMSolver, samplers.DPMSolverPP)) \
            and solver.method == "singlestep":
        rule = solver.lower_order_final
        rule = samplers.default_rule(solver) if rule is None else rule

        def cost(n):
            if rule is True and n < 15:
                return sum(min(solver.order, n - i) for i in range(n))
            return solver.order * n
        return max(n for n in range(1, budget + 1) if cost(n) <= budget)
    return max(1, budget // solver.nfe_per_step)


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
    rows = {}
    for name, (solver, schedule) in DETERMINISTIC.items():
        rows[name] = []
        for budget in NFES:
            res = run(None, x_init, solver, steps_for_budget(solver, budget), schedule)
            rows[name].append((rms(res.x), int(res.nfe)))
    x_train = p.prior_sample(jax.random.key(11), (OPT_TRAIN, dim))
    grids = {}
    for name, solver in OPTIMIZED.items():
        rows[name] = []
        for budget in NFES:
            grid = diffax.schedules.optimize(p, gm.denoiser(p), x_train, budget, solver,
                                             num_iters=OPT_ITERS)
            grids[(name, budget)] = grid
            res = run(None, x_init, solver, budget, jnp.asarray(grid))
            rows[name].append((rms(res.x), int(res.nfe)))
    best = [min(range(len(rows)), key=lambda r: list(rows.values())[r][k][0])
            for k in range(len(NFES))]
    for r, (name, cells) in enumerate(rows.items()):
        text = [f"**{e:.2e}** ({n})" if best[k] == r else f"{e:.2e} ({n})"
                for k, (e, n) in enumerate(cells)]
        lines.append(f"| {name} | " + " | ".join(text) + " |")
    lines += ["", "Best entry per NFE in bold. Published fast solvers on their default grids vs "
              "diffax's best:", ""]
    published = [n for n in DETERMINISTIC if not n.startswith(("Euler", "Heun"))]
    for k, budget in enumerate(NFES):
        peer = min(published, key=lambda n: rows[n][k][0])
        ours = min(rows, key=lambda n: rows[n][k][0])
        lines.append(f"- NFE {budget}: best published {peer} {rows[peer][k][0]:.2e}; best "
                     f"overall {ours} {rows[ours][k][0]:.2e} "
                     f"({rows[peer][k][0] / rows[ours][k][0]:.1f}x lower)")
    for name, solver in OPTIMIZED.items():
        lines += ["", f"**D = {dim}**, {name.split(',')[0]}: RMS error on the optimized grid "
                  f"(schedules.optimize on {OPT_TRAIN} other samples, {OPT_ITERS} Adam steps) "
                  "against the usual grids, and the gain", "",
                  "| NFE | optimized | log-SNR | Karras rho=7 | time-uniform | gain over log-SNR "
                  "| gain over Karras |", "|---|---|---|---|---|---|---|"]
        for k, budget in enumerate(NFES):
            e_opt = rows[name][k][0]
            e_log = rms(run(None, x_init, solver, budget, diffax.schedules.LogSNRUniform()).x)
            e_kar = rms(run(None, x_init, solver, budget, diffax.schedules.Karras()).x)
            e_tim = rms(run(None, x_init, solver, budget, diffax.schedules.TimeUniform()).x)
            lines.append(f"| {budget} | {e_opt:.2e} | {e_log:.2e} | {e_kar:.2e} | {e_tim:.2e} "
                         f"| {e_log / e_opt:.1f}x | {e_kar / e_opt:.1f}x |")
        g = grids[(name, 10)]
        lines += ["", f"Optimized 10-step grid (t): {np.array2string(g, precision=4)}"]
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
    cells = []
    for tol in ADAPTIVE_TOLS:
        res = run(None, x_init, samplers.DPMSolver(order=3, method="adaptive", rtol=tol,
                                                   atol=tol), 10)
        cells.append(f"{rms(res.x):.2e}, NFE {int(res.nfe)}")
    lines.append("| DPM-Solver-23 (adaptive, batch-wide steps) | " + " | ".join(cells) + " |")

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
            res = run(jax.random.key(5), x_big, solver, steps_for_budget(solver, budget))
            cells.append(f"{sliced_wasserstein(res.x, exact[0], kp) / floor:.2f} "
                         f"({int(res.nfe)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Diffusers' default grids: DDPM's linear schedule (DiscreteVP, T = 1000), diffusers' integer
# timestep spacings (schedules.Spacing) ending at t_min (final_sigmas_type="sigma_min") or at
# clean data t = 0 ("zero", diffusers' default for DPM-Solver++ and UniPC; DDIM's
# set_alpha_to_one=True). Each multistep solver runs with three lower-order rules.
DIFFUSERS_STEPS = (10, 25, 50)
DIFFUSERS_SPACINGS = ("linspace", "leading", "trailing")
DIFFUSERS_RULES = {"old": True, "diffusers": "diffusers", "StepRatio(2)": samplers.StepRatio(),
                   "default": None}
DIFFUSERS_SOLVERS = {
    "DPM-Solver (3M, eps)": lambda rule: samplers.DPMSolver(order=3, lower_order_final=rule),
    "DPM-Solver++(2M)": lambda rule: samplers.DPMSolverPP(order=2, lower_order_final=rule),
    "DPM-Solver++(3M)": lambda rule: samplers.DPMSolverPP(order=3, lower_order_final=rule),
    "UniPC-2 (bh2)": lambda rule: samplers.UniPC(order=2, lower_order_final=rule),
    "UniPC-3 (bh2)": lambda rule: samplers.UniPC(order=3, lower_order_final=rule),
    "DEIS-3 (log-SNR)": lambda rule: samplers.DEIS(order=3, interpolation="log_snr",
                                                   lower_order_final=rule),
    "iPNDM (order 3)": lambda rule: samplers.IPNDM(order=3, lower_order_final=rule),
}


def diffusers_grid_tables() -> str:
    """RMS errors on diffusers' default grids (module docstring), one table per end point."""
    p = diffax.DiscreteVP.linear()
    gm = mixture(4)
    x_init = p.prior_sample(jax.random.key(0), (BATCH, 4))
    ends = (False, True)
    cols = [(n, sp) for n in DIFFUSERS_STEPS for sp in DIFFUSERS_SPACINGS]
    rows = {"DDIM": samplers.DDIM()}
    for name, make in DIFFUSERS_SOLVERS.items():
        for rname, rule in DIFFUSERS_RULES.items():
            rule = samplers.diffusers_rule(make(True)) if rule == "diffusers" else rule
            rows[f"{name}, {rname}"] = make(rule)
    results = {clean: {} for clean in ends}  # clean -> row -> (n, spacing) -> error
    for n in DIFFUSERS_STEPS:
        keys = [(clean, sp) for clean in ends for sp in DIFFUSERS_SPACINGS]
        grids = jnp.stack([diffax.schedules.Spacing(spacing=sp, clean_end=clean)(p, n)
                           for clean, sp in keys])
        refs = jnp.stack([diffax.testing.log_snr_reference(
            p, gm.denoiser(p), x_init, t_start=g[0], t_end=g[-1]) for g in np.asarray(grids)])
        done = {}  # a solver whose default rule equals another row's rule runs once
        for name, solver in rows.items():
            if getattr(solver, "lower_order_final", True) is None:
                solver = dataclasses.replace(solver,
                                             lower_order_final=samplers.default_rule(solver))
            if repr(solver) in done:
                errs = done[repr(solver)]
                for (clean, sp), e in zip(keys, errs, strict=True):
                    results[clean].setdefault(name, {})[(n, sp)] = float(e)
                continue
            run = jax.jit(jax.vmap(lambda grid, solver=solver: samplers.sample(
                None, p, gm.denoiser(p), x_init, solver=solver, schedule=grid).x))
            errs = np.sqrt(np.mean(np.square(np.asarray(run(grids) - refs)), axis=(1, 2)))
            done[repr(solver)] = errs
            for (clean, sp), e in zip(keys, errs, strict=True):
                results[clean].setdefault(name, {})[(n, sp)] = float(e)
        print(f"diffusers grids: {n} steps done", flush=True)
    out = []
    for clean in ends:
        res = results[clean]
        end = "t = 0 (clean data)" if clean else "t_min"
        lines = [f"**Diffusers' grids ending at {end}**: DDPM linear schedule (T = 1000), a "
                 f"4-component mixture in D = 4, {BATCH} examples, float64: RMS error of the "
                 "final state against the log-SNR reference (testing.log_snr_reference, "
                 "rtol = atol = 1e-10). Rules: old = lower_order_final=True (below 15 steps, "
                 "the default before), diffusers = diffusers_rule(solver), StepRatio(2) = "
                 "StepRatio(max_ratio=2), default = the solver's default now "
                 "(samplers.default_rule: StepRatio(2, long_step=1) for DPM-Solver++ and UniPC, "
                 "StepRatio(2) for DPM-Solver and DEIS(log-SNR), none for iPNDM). Bold: best "
                 "rule per solver and column; * = worse than DDIM.", "",
                 "| solver, rule | " + " | ".join(f"{n} {sp}" for n, sp in cols) + " |",
                 "|---" * (len(cols) + 1) + "|"]
        for name, cells in res.items():
            group = [k for k in res if k.rsplit(", ", 1)[0] == name.rsplit(", ", 1)[0]]
            text = []
            for c in cols:
                e = cells[c]
                best = len(group) > 1 and e <= min(res[k][c] for k in group)
                mark = "*" if e > res["DDIM"][c] else ""
                text.append(f"**{e:.2e}**{mark}" if best else f"{e:.2e}{mark}")
            lines.append(f"| {name} | " + " | ".join(text) + " |")
        wins = {r: 0 for r in DIFFUSERS_RULES}
        ties = {r: 0 for r in DIFFUSERS_RULES}
        worse = {r: 0 for r in DIFFUSERS_RULES}
        for solver_name in DIFFUSERS_SOLVERS:
            for c in cols:
                errs = {r: res[f"{solver_name}, {r}"][c] for r in DIFFUSERS_RULES}
                wins[min(errs, key=errs.get)] += 1
                for r, e in errs.items():
                    worse[r] += e > res["DDIM"][c]
                    ties[r] += e <= min(errs.values())
        total = len(DIFFUSERS_SOLVERS) * len(cols)
        lines += ["", "Best rule per (solver, column), ties to the first listed: " + ", ".join(
            f"{r} {k}/{total}" for r, k in wins.items()) + "; best or tied: " + ", ".join(
            f"{r} {k}/{total}" for r, k in ties.items()) + "; worse than DDIM: " + ", ".join(
            f"{r} {k}/{total}" for r, k in worse.items()), ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def _seconds(f, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t0


def overhead_row(dim: int, num_steps: int = 200, pairs: int = 25) -> str:
    """Paired timing: each round runs the bare loop and diffax back to back, so slow drifts of
    the machine's load affect both; the ratio is the median over rounds of the paired ratios,
    the times are the minima."""
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
    b, o = [], []
    for k in range(pairs):
        first, second = (bare, ours) if k % 2 == 0 else (ours, bare)
        t1, t2 = _seconds(first, x, times), _seconds(second, x, times)
        b.append(t1 if first is bare else t2)
        o.append(t2 if first is bare else t1)
    ratio = statistics.median(np.asarray(o) / np.asarray(b))
    b_us, o_us = min(b) / num_steps * 1e6, min(o) / num_steps * 1e6
    return f"| {dim} | {b_us:.1f} | {o_us:.1f} | {o_us - b_us:+.1f} | {ratio:.3f} |"


def compile_row(name, solver, dim: int = 2, pairs: int = 5) -> str:
    """Compile time at 10 and 1000 steps, measured in alternating pairs (caches cleared)."""
    p = diffax.VP()
    gm = mixture(dim, jnp.float32)
    x = jnp.ones((64, dim), jnp.float32)

    def seconds(n):
        def f(key, x):
            return samplers.sample(key, p, gm.denoiser(p), x, solver=solver, num_steps=n).x
        jax.clear_caches()  # otherwise compiling the same program again is a cache hit
        t0 = time.perf_counter()
        jax.jit(f).lower(jax.random.key(0), x).compile()
        return time.perf_counter() - t0

    c10, c1000 = [], []
    for _ in range(pairs):
        c10.append(seconds(10))
        c1000.append(seconds(1000))
    ratio = statistics.median(np.asarray(c1000) / np.asarray(c10))
    return f"| {name} | {min(c10):.2f} | {min(c1000):.2f} | {ratio:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    parser.add_argument("--dims", default="2,64")
    parser.add_argument("--parts", default="accuracy,diffusers,overhead,compile")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    parts = args.parts.split(",")
    out = [f"diffax sampler benchmark (jax {jax.__version__}, "
           f"{jax.devices()[0].platform.upper()}, {jax.device_count()} device(s), "
           f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start)", ""]
    print(out[0], flush=True)
    if "accuracy" in parts:
        for dim in dims:
            out += [accuracy_table(dim), ""]
            print("\n".join(out[-2:]), flush=True)
    if "diffusers" in parts:
        out += [diffusers_grid_tables(), ""]
        print("\n".join(out[-2:]), flush=True)
    if "overhead" in parts:
        out += [f"Sampler overhead, Euler, batch {TIMING_BATCH}, float32, 200 steps: "
                "microseconds per step (minimum over 25 runs each) and the median of 25 paired "
                "ratios", "",
                "| D | bare lax.scan Euler | diffax.sample(Euler) | overhead | ratio (target <= "
                "1.10) |", "|---|---|---|---|---|"]
        for dim in dims:
            out.append(overhead_row(dim))
            print(out[-1], flush=True)
        out += [""]
    if "compile" in parts:
        out += ["Compile time (trace + lower + XLA compile), D = 2, float32: seconds (minimum of "
                "5) and the median of 5 paired ratios", "",
                "| solver | 10 steps | 1000 steps | ratio (target <= 1.5) |", "|---|---|---|---|"]
        for name, solver in {"Euler": samplers.Euler(), "Heun": samplers.Heun(),
                             "DDPM": samplers.DDPM(), "PC": samplers.PredictorCorrector(),
                             "EDMStochastic": samplers.EDMStochastic(S_churn=40.0),
                             "DPM-Solver++(3M)": samplers.DPMSolverPP(order=3),
                             "UniPC-3": samplers.UniPC(order=3)}.items():
            out.append(compile_row(name, solver))
            print(out[-1], flush=True)
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
