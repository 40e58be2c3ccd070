"""Probability-flow ODE likelihood: diffax in-graph versus score_sde's host loop.

    python tools/bench_likelihood.py --out tools/bench_likelihood.md
    python tools/bench_likelihood.py --ddpm   # bits/dim: ODE likelihood vs DDPM's bound

Both methods compute log p_{t_min}(x) with the exact divergence, for the same denoiser (the exact
denoiser of a 16-D Gaussian mixture from ``diffax.testing``), the same process and the same
``rtol``/``atol``, in float64, and are scored against the mixture's exact log-density:

* **diffax**: ``diffax.likelihood.log_likelihood(..., divergence="exact")`` under ``jax.jit``:
  the whole solve is one compiled program (diffrax Tsit5, per-example step sizes, the ODE
  written in the angle variable ``phi = atan2(sigma, alpha)``, the divergence of the denoiser
  by batched forward-mode JVPs, the affine part of the drift's divergence in closed form), with
  the default options (among them ``batch_chunk=256``: batches above 256 are solved in groups
  of 256, one after another) and, for those batches, also with ``batch_chunk=None`` (the whole
  batch in one vmapped solve, waiting for its slowest example).
* **host loop (score_sde)**: ``scipy.integrate.solve_ivp(method="RK45")`` over the flattened
  batch plus one log-density entry per example, integrating in ``t`` from ``t_min`` to
  ``t_max`` (one step size for the whole batch, error norm over the whole batch), with
  score_sde's ``ode_func``: at every evaluation a jitted drift call and a jitted divergence
  call. The divergence is score_sde's ``div_fn`` (``grad(sum(drift * eps)) . eps``, a
  reverse-mode VJP) summed over the ``N`` basis vectors ``eps = e_i``, the ``N`` VJPs batched
  with ``vmap`` in that one call. **host loop, fused call**: the same, but one jitted call
  returns both (a leaner baseline than score_sde's own code). Both host loops use score_sde's
  reverse-mode divergence (N VJPs); diffax uses forward-mode JVPs.
* **diffax, joint error control**: ``error_control="joint", batch_chunk=None``: the whole batch
  advances with one step size under one error norm (the RMS over the batch of the
  per-example norms), the host loop's kind of step control, in-graph.
* **diffax, Hutchinson**: ``divergence="hutchinson"`` with one Rademacher probe per example
  (one JVP per evaluation instead of N): its error against the oracle includes the estimator's
  noise, which is not a solver error.

``--tolerances`` adds a work-precision table: for each tolerance ``rtol = atol`` in the list,
the wall time, NFE and error against the exact log-density of diffax (per-example and joint
control) and both host loops at batch ``--wp_batch``, so that the methods can be compared at
equal accuracy rather than at equal tolerance.

``--ddpm`` instead compares, on 8-bit binary toy data of known entropy, the ODE likelihood in
bits/dim (``bits_per_dim``) with DDPM's variational bound (``ddpm_bound_bpd``) for DDPM's
linear 1000-step schedule, both with the exact denoiser.

Wall times exclude compilation (each function is called once first) and are the median of
``--repeats`` rounds (5 times as many for batches up to 64), run in alternating order; the
speed-up is the score_sde median divided by the method's median, so the time columns and the
speed-up come from one estimator (the median: robust to a machine whose load drifts). The
interquartile range of the per-round ratios is shown next to the speed-up. NFE is the number of
drift-and-divergence evaluations (diffax: per example, mean and max over the batch; a group's
cost follows its max). The error is the mean (and max) absolute difference from the oracle's
``log p_{t_min}(x)`` in nats per example.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def _mixture(dim: int):
    """A point-symmetric 16-D mixture (mean zero, so the prior mismatch at t_max is tiny)."""
    from diffax.testing import GaussianMixture

    rng = np.random.default_rng(0)
    half = 4
    means = 0.5 * rng.standard_normal((half, dim))
    stds = 0.1 + 0.4 * rng.uniform(size=(half, dim))
    weights = rng.uniform(0.5, 1.5, size=half)
    weights = np.concatenate([weights, weights]) / (2 * weights.sum())
    return GaussianMixture(means=np.concatenate([means, -means]),
                           stds=np.concatenate([stds, stds]), weights=weights)


def _host_loop(process, denoiser, dim, *, fused):
    """score_sde's method: scipy RK45 over the flattened batch, calling jitted JAX functions for
    the drift and the divergence at every evaluation.

    ``fused=False`` is score_sde's ``ode_func`` as written: one jitted call for the drift and
    one for the divergence (whose VJPs recompute the drift), ``vec_t = ones(B) * t`` built each
    time. ``fused=True`` is a leaner variant: a single jitted call returns both.
    """
    import jax
    import jax.numpy as jnp
    from scipy import integrate

    from diffax.parameterization import probability_flow_drift

    drift = probability_flow_drift(process, denoiser)

    def exact_div(x, vec_t):
        f = lambda z: drift(z, vec_t)  # noqa: E731

        def div_fn(eps):  # score_sde's get_div_fn: grad of sum(f(x) * eps), dotted with eps
            g = jax.grad(lambda z: jnp.sum(f(z) * eps))(x)
            return jnp.sum((g * eps).reshape(x.shape[0], -1), axis=-1)

        basis = jnp.broadcast_to(jnp.eye(dim, dtype=x.dtype)[:, None, :], (dim,) + x.shape)
        return jnp.sum(jax.vmap(div_fn)(basis), axis=0)

    drift_fn = jax.jit(drift)
    div_fn = jax.jit(exact_div)
    both_fn = jax.jit(lambda x, vec_t: (drift(x, vec_t), exact_div(x, vec_t)))

    def run(x, rtol, atol):
        x = np.asarray(x)
        shape, b = x.shape, x.shape[0]
        nfe = [0]

        def ode_func(t, y):
            nfe[0] += 1
            sample = jnp.asarray(y[:-b].reshape(shape))
            vec_t = jnp.ones((b,), sample.dtype) * t
            if fused:
                v, div = both_fn(sample, vec_t)
            else:
                v, div = drift_fn(sample, vec_t), div_fn(sample, vec_t)
            return np.concatenate([np.asarray(v).reshape(-1), np.asarray(div)])

        y0 = np.concatenate([x.reshape(-1), np.zeros(b)])
        sol = integrate.solve_ivp(ode_func, (float(process.t_min), float(process.t_max)), y0,
                                  rtol=rtol, atol=atol, method="RK45")
        x1 = jnp.asarray(sol.y[:-b, -1].reshape(shape))
        logp = np.asarray(process.prior_logp(x1)) + sol.y[-b:, -1]
        return logp, nfe[0], sol.status

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--process", default="VP", choices=["VP", "SubVP", "VE", "EDM",
                                                            "RectifiedFlow"])
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--tolerances", default="",
                        help="comma-separated rtol = atol values for a work-precision table")
    parser.add_argument("--wp_batch", type=int, default=1024)
    parser.add_argument("--wp_repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    parser.add_argument("--ddpm", action="store_true",
                        help="bits/dim of the ODE likelihood vs DDPM's bound on toy data")
    args = parser.parse_args(argv)
    if args.ddpm:
        return _ddpm_comparison(args)

    import jax

    jax.config.update("jax_enable_x64", True)

    import diffax
    from diffax.likelihood import log_likelihood

    process = getattr(diffax, args.process)()
    gm = _mixture(args.dim)
    denoiser = gm.denoiser(process)
    load_start = os.getloadavg()[0]

    def ours(rtol, atol, **kw):
        f = jax.jit(lambda p, x, key: log_likelihood(key, p, gm.denoiser(p), x, rtol=rtol,
                                                     atol=atol, **kw))

        def run(x):
            res = jax.block_until_ready(f(process, x, jax.random.key(0)))
            assert np.all(np.asarray(res.status) == 0)
            nfe = np.asarray(res.nfe)
            return np.asarray(res.logp), f"{nfe.mean():.0f} / {nfe.max()}"
        return run

    def host(fused):
        loop = _host_loop(process, denoiser, args.dim, fused=fused)

        def bind(rtol, atol):
            def run(x):
                logp, nfe, status = loop(x, rtol, atol)
                assert status == 0
                return logp, f"{nfe} / {nfe}"
            return run
        return bind

    hosts = {"score_sde": host(False), "fused": host(True)}
    names = {"diffax": "diffax (in-graph)", "diffax_whole": "diffax, batch_chunk=None",
             "joint": "diffax, joint error control", "hutchinson": "diffax, Hutchinson (1 probe)",
             "score_sde": "host loop (score_sde, reverse-mode div)",
             "fused": "host loop, fused call (reverse-mode div)"}

    def methods(batch, rtol, atol, *, extras):
        runs = {"diffax": ours(rtol, atol)}
        if extras and batch > 256:
            runs["diffax_whole"] = ours(rtol, atol, batch_chunk=None)
        if batch > 1:
            runs["joint"] = ours(rtol, atol, batch_chunk=None, error_control="joint")
        if extras:
            runs["hutchinson"] = ours(rtol, atol, divergence="hutchinson")
        runs.update({k: bind(rtol, atol) for k, bind in hosts.items()})
        return runs

    def measure(batch, runs, repeats):
        """Median wall time, NFE and errors per method; the speed-up from the same medians."""
        x = gm.sample(jax.random.key(batch), process, process.t_min, batch)
        exact = np.asarray(gm.log_prob(process, x, process.t_min))
        results, times = {}, {k: [] for k in runs}
        for f in runs.values():  # compile (and warm the host loops' jitted calls)
            f(x)
        order = list(runs)
        for r in range(repeats):  # alternating order (ABBA)
            for k in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                results[k] = runs[k](x)
                times[k].append(time.perf_counter() - t0)
        base = np.asarray(times["score_sde"])
        rows = []
        for k in order:
            t = np.asarray(times[k])
            err = np.abs(results[k][0] - exact)
            q1, q3 = np.percentile(base / t, [25, 75])
            rows.append((batch, names[k], float(np.median(t)), results[k][1], err.mean(),
                         err.max(), float(np.median(base) / np.median(t)), q1, q3))
        print(f"batch {batch}: " + ", ".join(f"{k} {np.median(v) * 1e3:.1f} ms"
                                             for k, v in times.items()),
              file=sys.stderr, flush=True)
        return rows

    rows = []
    for batch in [int(b) for b in args.batches.split(",") if b]:
        reps = args.repeats if batch > 64 else 5 * args.repeats
        rows += measure(batch, methods(batch, args.rtol, args.atol, extras=True), reps)
    wp_rows = []
    for tol in [float(v) for v in args.tolerances.split(",") if v]:
        wp_rows += [(tol, *r) for r in measure(
            args.wp_batch, methods(args.wp_batch, tol, tol, extras=False), args.wp_repeats)]
    load_end = os.getloadavg()[0]

    header = (f"({platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
              f"load average {load_start:.1f} at the start, {load_end:.1f} at the end; "
              "times: median of the rounds; speed-up: ratio of the medians, with the "
              "interquartile range of the per-round ratios)")
    lines = [
        f"Probability-flow likelihood, exact divergence (Hutchinson where named), "
        f"{args.process} process, {args.dim}-D Gaussian mixture (exact denoiser), float64",
        header, "",
    ]
    if rows:
        lines += [
            f"rtol = atol = {args.rtol:g}" + ("" if args.rtol == args.atol
                                               else f"/{args.atol:g}") +
            f"; median of {args.repeats} rounds, {5 * args.repeats} for batches <= 64",
            "",
            "| batch | method | wall time | NFE (mean / max) | mean abs error (nats) "
            "| max abs error | speed-up vs score_sde (IQR) |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for batch, name, t, nfe, e_mean, e_max, speedup, q1, q3 in rows:
            lines.append(f"| {batch} | {name} | {_ms(t)} | {nfe} | {e_mean:.1e} | {e_max:.1e} "
                         f"| {speedup:.2f}x ({q1:.2f}-{q3:.2f}) |")
        lines.append("")
    if wp_rows:
        lines += [
            f"Work-precision at batch {args.wp_batch}: rtol = atol = tol, median of "
            f"{args.wp_repeats} rounds; error against the exact log-density",
            "",
            "| tol | method | wall time | NFE (mean / max) | mean abs error (nats) "
            "| max abs error |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for tol, _, name, t, nfe, e_mean, e_max, *_ in wp_rows:
            lines.append(f"| {tol:g} | {name} | {_ms(t)} | {nfe} | {e_mean:.1e} "
                         f"| {e_max:.1e} |")
    table = "\n".join(lines).rstrip()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


def _ddpm_comparison(args) -> int:
    """Bits/dim on binary 8-bit data {0, 255}^2 with P(255) = 0.3 per dimension."""
    import itertools

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import diffax
    from diffax.likelihood import bits_per_dim, ddpm_bound_bpd
    from diffax.testing import GaussianMixture

    probs = np.array([0.7, 0.3])
    atoms = np.array(list(itertools.product([0, 255], repeat=2)), np.uint8)
    weights = np.array([probs[a // 255] * probs[b // 255] for a, b in atoms])
    entropy = float(-(probs * np.log2(probs)).sum())
    gm = GaussianMixture(means=-1.0 + 2.0 * atoms.astype(np.float64) / 255.0,
                         stds=np.full(4, 1e-5), weights=weights)
    p = diffax.DiscreteVP.linear(num_steps=1000)
    reps = 256
    x = jnp.repeat(jnp.asarray(atoms), reps, axis=0)
    key = jax.random.key(0)

    def expected(bpd):  # exact over the 4 atoms, Monte Carlo over the noise
        per_atom = np.asarray(bpd).reshape(4, reps)
        return float(weights @ per_atom.mean(1)), float(
            np.sqrt((weights**2 * per_atom.var(1, ddof=1) / reps).sum()))

    rows = [("entropy of the data", entropy, 0.0)]
    # sigma(t) = 2.27e-3 = bin / sqrt(12) at t = 5.15e-5: the best-matched Gaussian blur.
    for t_start, note in [(None, "t_start = t_min = 1/T (sigma = 0.01)"),
                          (5.15e-5, "t_start = 5.15e-5 (sigma = bin/sqrt(12))")]:
        bpd = bits_per_dim(key, p, gm.denoiser(p), x, t_start=t_start)
        rows.append((f"ODE likelihood, {note}", *expected(bpd)))
    for variance in ["beta_tilde", "beta"]:
        out = ddpm_bound_bpd(key, p, gm.denoiser(p), x, variance=variance)
        m, se = expected(out.bpd)
        dec, _ = expected(out.decoder)
        rows.append((f"DDPM bound, sigma_n^2 = {variance} (decoder {dec:.3f})", m, se))
    lines = ["Bits/dim on binary 8-bit data {0, 255}^2, P(255) = 0.3 per dimension; "
             "DiscreteVP.linear(1000), exact denoiser, float64",
             "", "| quantity | bits/dim | standard error |", "|---|---:|---:|"]
    lines += [f"| {name} | {m:.3f} | {se:.3f} |" for name, m, se in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())

