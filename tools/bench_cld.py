"""CLD vs VP with exact (mixture-oracle) denoisers: distribution distance against NFE.

For a 2-D and a 16-D Gaussian mixture, samples from diffax.CLD with SSCS, Euler-Maruyama and
the probability-flow ODE (Heun), and from diffax.VP with several solvers (the best per NFE is
reported), are compared with exact data samples by the sliced 2-Wasserstein distance (x part
only for CLD). The noise floor is the distance between two independent exact samples of the
same size. Also fits the slope of log(SW2^2 - floor^2) against log(NFE) for SSCS and EM.

    python tools/bench_cld.py --out experiments/cld/bench_cld.md

With ``--trained STEPS`` it instead trains configs/toy2d_cld.py and configs/toy2d_vp.py for the
same number of steps (same MLP width/depth, batch, optimiser schedule) and compares their
samples with data samples at 20/50/100 NFE (digits were out of reach of the CPU time here):

    python tools/bench_cld.py --trained 4000 --out experiments/cld/bench_cld_trained.md
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffax
from diffax import samplers
from diffax.testing import GaussianMixture

NFES = (10, 20, 50, 100)


def mixtures():
    two = GaussianMixture(means=jnp.array([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]]),
                          stds=jnp.array([0.3, 0.6, 0.4]), weights=jnp.array([0.3, 0.5, 0.2]))
    means = 0.7 * np.random.default_rng(0).standard_normal((4, 16))
    sixteen = GaussianMixture(means=jnp.asarray(means, jnp.float32),
                              stds=jnp.array([0.3, 0.5, 0.7, 0.9]),
                              weights=jnp.array([0.1, 0.2, 0.3, 0.4]))
    return {"2-D": two, "16-D": sixteen}


def sliced_w2(a, b, key, num_projections=512):
    dirs = jax.random.normal(key, (a.shape[1], num_projections), a.dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = jnp.sort(a @ dirs, axis=0), jnp.sort(b @ dirs, axis=0)
    return float(jnp.sqrt(jnp.mean(jnp.square(pa - pb))))


def run(process, gm, solver, steps, n, key):
    d = gm.denoiser(process)
    dim = gm.dim
    x_init = process.prior_sample(jax.random.fold_in(key, 1), (n, dim))
    fn = jax.jit(lambda k, u: diffax.sample(k, process, d, u, solver=solver, num_steps=steps))
    if isinstance(x_init, tuple) and not solver.stochastic and n > CHUNK:
        # The CLD probability-flow ODE at n = 2000 in 16-D hung in XLA's CPU runtime (every
        # thread in a futex wait, no CPU used; 3 of 3 tries, n = 200 ran): a deterministic
        # solver gives the same samples in chunks.
        parts = [fn(key, tuple(a[i:i + CHUNK] for a in x_init)) for i in range(0, n, CHUNK)]
        return jnp.concatenate([r.x[0] for r in parts]), int(parts[0].nfe)
    res = fn(key, x_init)
    x = res.x[0] if isinstance(res.x, tuple) else res.x
    return x, int(res.nfe)


CHUNK = 250


def _draw(key, process, d, solver, steps, n):
    u = process.prior_sample(jax.random.key(1), (n, 2))
    res = jax.jit(lambda u: diffax.sample(key, process, d, u, solver=solver,
                                          num_steps=steps))(u)
    return res.x[0] if isinstance(res.x, tuple) else res.x


def trained(steps, n):
    import importlib.util
    import os
    import tempfile

    from diffax.data import sample_toy2d
    from diffax.train import build
    from diffax.train.loop import train_and_evaluate

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ref = jnp.asarray(sample_toy2d("eight_gaussians", n, seed=1)[0])
    floor = sliced_w2(jnp.asarray(sample_toy2d("eight_gaussians", n, seed=2)[0]), ref,
                      jax.random.key(7))
    lines = [f"Trained on toy2d/eight_gaussians for {steps} steps each (batch 512, the configs' "
             f"MLP toy2d, lr 2e-3 cosine, EMA 0.999); sliced W2 of {n} samples (x only for "
             f"CLD) to data samples, noise floor {floor:.4f}.", "",
             "| NFE | CLD SSCS | CLD EM | VP Heun | VP DPMSolverPP(2) | VP EulerMaruyama |",
             "|---|---|---|---|---|---|"]
    models = {}
    for name in ("toy2d_cld", "toy2d_vp"):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, "configs",
                                                                         f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cfg = module.get_config()
        cfg.train.num_steps = steps
        cfg.train.checkpoint_every = steps
        cfg.optim.warmup_steps = min(200, steps // 10)
        t0 = time.time()
        result = train_and_evaluate(cfg, tempfile.mkdtemp())
        exp = build.build_experiment(cfg)
        params = result.state.ema_params[0]
        models[name] = (exp, exp.loss.denoiser(exp.apply_fn, params))
        print(f"{name}: trained {steps} steps in {time.time() - t0:.0f} s", flush=True)
    key = jax.random.key(0)
    for nfe in (20, 50, 100):
        row = []
        exp, d = models["toy2d_cld"]
        for solver in (samplers.SSCS(), samplers.EulerMaruyama()):
            x = _draw(key, exp.process, d, solver, nfe, n)
            row.append(sliced_w2(x, ref, jax.random.key(7)))
        exp, d = models["toy2d_vp"]
        for solver in (samplers.Heun(), samplers.DPMSolverPP(order=2), samplers.EulerMaruyama()):
            x = _draw(key, exp.process, d, solver, max(1, nfe // solver.nfe_per_step), n)
            row.append(sliced_w2(x, ref, jax.random.key(7)))
        lines.append(f"| {nfe} | " + " | ".join(f"{e:.4f}" for e in row) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


ORDER_STEPS = (8, 16, 32, 64, 128)


def weak_order(num):
    """Weak error of SSCS and Euler-Maruyama against step count on an exact 1-D mixture, in
    float64: chains start at the exact marginal of ``t_max`` (so only the discretisation
    errs); the error is the Frobenius norm of the error of ``E[u u^T]`` at ``t_min`` (exact:
    ``m m^T E[x0^2] + Sigma(t_min)``), with its Monte Carlo standard error (delta method)."""
    jax.config.update("jax_enable_x64", True)
    p = diffax.CLD()
    gm = GaussianMixture(means=jnp.array([[-1.0], [1.5]]), stds=jnp.array([0.4, 0.6]),
                         weights=jnp.array([0.4, 0.6]))
    m, cov = p.marginal_coefficients(jnp.float64(p.t_min))
    second = float(jnp.sum(gm.weights * (jnp.square(gm.means[:, 0]) + jnp.square(gm.stds))))
    exact = np.asarray(jnp.outer(m, m) * second + cov).reshape(-1)
    u0 = gm.sample(jax.random.key(1), p, p.t_max, num)
    d = gm.denoiser(p)
    lines = [f"Weak error vs steps (1-D mixture, exact denoiser, float64, M = {num} chains "
             f"from the exact marginal at t_max; error = |E[u u^T] - exact|_F at t_min, "
             f"+- its standard error):", "",
             "| steps (NFE) | " + " | ".join(str(k) for k in ORDER_STEPS) + " | fitted order |",
             "|---|" + "---|" * len(ORDER_STEPS) + "---|"]
    for name, solver in (("SSCS", samplers.SSCS()), ("EM", samplers.EulerMaruyama())):
        errs, ses = [], []
        for steps in ORDER_STEPS:
            res = jax.jit(lambda u, s=solver, k=steps: diffax.sample(
                jax.random.key(3), p, d, u, solver=s, num_steps=k))(u0)
            x, v = (np.asarray(a[:, 0]) for a in res.x)
            prods = np.stack([x * x, x * v, x * v, v * v], -1)
            diff = prods.mean(0) - exact
            err = float(np.sqrt(np.sum(diff ** 2)))
            errs.append(err)
            ses.append(float(np.std(prods @ (diff / err)) / np.sqrt(num)))
            print(name, steps, err, ses[-1], flush=True)
        e = np.asarray(errs)
        pairs = ", ".join(f"{-np.log2(e[i + 1] / e[i]):.2f}" for i in range(len(e) - 1))
        fit = -np.polyfit(np.log(ORDER_STEPS), np.log(e), 1)[0]
        lines.append(f"| {name} | " + " | ".join(f"{a:.4f} +- {b:.4f}" for a, b in
                                                 zip(errs, ses, strict=True))
                     + f" | {fit:.2f} (per doubling: {pairs}) |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--trained", type=int, default=0)
    ap.add_argument("--order", type=int, default=0,
                    help="measure the weak order with this many chains (instead of tables)")
    ap.add_argument("--dims", default="2-D,16-D", help="which mixtures to tabulate")
    args = ap.parse_args()
    n = args.n
    if args.order:
        text = weak_order(args.order)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        return
    if args.trained:
        text = trained(args.trained, n)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        return
    cld, vp = diffax.CLD(), diffax.VP()
    vp_solvers = {"DPMSolverPP(2)": samplers.DPMSolverPP(order=2), "UniPC(2)": samplers.UniPC(
        order=2), "Heun": samplers.Heun(), "Euler": samplers.Euler(),
        "EulerMaruyama": samplers.EulerMaruyama(), "DDPM": samplers.DDPM()}
    cld_solvers = {"SSCS": (samplers.SSCS(), 1), "EulerMaruyama": (samplers.EulerMaruyama(), 1),
                   "PF-ODE Heun": (samplers.Heun(), 2)}
    lines = [f"Sliced W2 to exact data samples (N = {n}, x only for CLD; exact denoisers; "
             f"float32). CLD(beta=4, m_inv=4, gamma=0.04), VP(0.1, 20); uniform time grids "
             f"for CLD, each VP solver's default grid.", ""]
    slopes = []
    t0 = time.time()
    for name, gm in mixtures().items():
        if name not in args.dims.split(","):
            continue
        key = jax.random.key(0)
        ref = gm.sample_data(jax.random.key(100), n)
        floor = sliced_w2(gm.sample_data(jax.random.key(101), n), ref, jax.random.key(7))
        lines += [f"### {name} mixture (noise floor {floor:.4f})", "",
                  "| NFE | CLD SSCS | CLD EM | CLD PF-ODE Heun | best VP (solver) |",
                  "|---|---|---|---|---|"]
        errs = {k: [] for k in cld_solvers}
        for nfe in NFES:
            row = []
            for sname, (solver, per) in cld_solvers.items():
                x, used = run(cld, gm, solver, max(1, nfe // per), n, key)
                e = sliced_w2(x, ref, jax.random.key(7))
                errs[sname].append(e)
                row.append(f"{e:.4f}")
            best = None
            for vname, solver in vp_solvers.items():
                steps = max(1, nfe // solver.nfe_per_step)
                x, used = run(vp, gm, solver, steps, n, key)
                e = sliced_w2(x, ref, jax.random.key(7))
                if best is None or e < best[0]:
                    best = (e, vname)
            row.append(f"{best[0]:.4f} ({best[1]})")
            lines.append(f"| {nfe} | " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
        for sname in ("SSCS", "EulerMaruyama"):
            e = np.asarray(errs[sname])
            excess = np.maximum(e ** 2 - floor ** 2, 1e-12)
            slope = np.polyfit(np.log(NFES), np.log(excess), 1)[0]
            slopes.append(f"{name} {sname}: slope of log(SW2^2 - floor^2) vs log NFE = "
                          f"{slope:.2f}")
        lines.append("")
    lines += ["Error decay (squared distance above the floor; -2 would be a weak order 1 in "
              "W2^2 terms):", ""] + [f"- {s}" for s in slopes]
    lines += ["", f"(wall time {time.time() - t0:.0f} s)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
