"""Inpainting and posterior sampling against the exact conditional of a Gaussian mixture.

    python tools/bench_inverse.py --out bench_inverse.md

A 4-D mixture of four components (weights 0.4, 0.2, 0.2, 0.2, std 0.35, means at corners of
the cube [-1, 1]^4) tying the coordinates together; coordinates 0 and 2 are observed
(0.9, 1.1), 1 and 3 are missing. The exact conditional ``p(x_1, x_3 | x_0, x_2)`` is again a
mixture (``GaussianMixture.condition``). Each method draws ``--num`` samples with the exact
denoiser on the VP process in float64; the table gives the energy distance of the missing
coordinates to ``--num`` exact conditional samples (mean and range over ``--seeds`` seeds),
next to the noise floor (two independent exact sample sets) and unconditional samples, and the
fraction of samples with ``x_1 > 0`` (the exact conditional's is in the first row), plus the
denoiser evaluations per sample.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import diffax  # noqa: E402
from diffax import inverse  # noqa: E402
from diffax.testing import GaussianMixture  # noqa: E402

MEANS = jnp.array([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0],
                   [1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]])
MASK = jnp.array([1.0, 0.0, 1.0, 0.0])
X_KNOWN = jnp.array([0.9, 0.0, 1.1, 0.0])
MISSING = np.array([1, 3])


def energy_distance(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mean_dist = lambda u, v: np.mean(np.linalg.norm(u[:, None] - v[None], axis=-1))
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()

    gm = GaussianMixture(means=MEANS, stds=jnp.full((4,), 0.35),
                         weights=jnp.array([0.4, 0.2, 0.2, 0.2]))
    p, n = diffax.VP(), args.num
    D = gm.denoiser(p)
    exact = gm.condition(X_KNOWN, np.asarray(MASK))
    ref = exact.sample_data(jax.random.key(10_000), n)
    A = inverse.masking(MASK)
    x_known = jnp.broadcast_to(X_KNOWN, (n, 4))

    methods = {
        "replace, 50 steps": lambda k, x: diffax.inpaint(
            k, p, D, x, x_known, MASK, method="replace", num_steps=50),
        "replace, 200 steps": lambda k, x: diffax.inpaint(
            k, p, D, x, x_known, MASK, method="replace", num_steps=200),
        "RePaint j=5 r=5, 50 steps": lambda k, x: diffax.inpaint(
            k, p, D, x, x_known, MASK, method="repaint", num_steps=50, jump_length=5,
            resample=5),
        "RePaint j=10 r=10, 50 steps": lambda k, x: diffax.inpaint(
            k, p, D, x, x_known, MASK, method="repaint", num_steps=50),
        "RePaint j=10 r=10, 100 steps": lambda k, x: diffax.inpaint(
            k, p, D, x, x_known, MASK, method="repaint", num_steps=100),
        "DPS step 0.03, 200 steps": lambda k, x: inverse.dps(
            k, p, D, x, A(x_known), A, step_size=0.03, num_steps=200),
        "DPS step 0.1, 200 steps": lambda k, x: inverse.dps(
            k, p, D, x, A(x_known), A, step_size=0.1, num_steps=200),
    }
    rows = []

    def add(name, dists, frac, nfe):
        d = np.asarray(dists)
        rows.append(f"| {name} | {d.mean():.4f} | {d.min():.4f}-{d.max():.4f} | "
                    f"{np.mean(frac):.3f} | {nfe} |")

    seeds = range(args.seeds)
    add("exact conditional (noise floor)",
        [energy_distance(exact.sample_data(jax.random.key(s), n), ref) for s in seeds],
        [float(jnp.mean(exact.sample_data(jax.random.key(s), n)[:, 0] > 0)) for s in seeds], "")
    prior = [gm.sample_data(jax.random.key(s), n)[:, MISSING] for s in seeds]
    add("unconditional samples", [energy_distance(x, ref) for x in prior],
        [float(jnp.mean(x[:, 0] > 0)) for x in prior], "")
    for name, fn in methods.items():
        run = jax.jit(fn)
        dists, fracs, nfe = [], [], None
        for s in seeds:
            key = jax.random.key(100 + s)
            x_init = p.prior_sample(jax.random.fold_in(key, 1), (n, 4), jnp.float64)
            res = run(key, x_init)
            dists.append(energy_distance(res.x[:, MISSING], ref))
            fracs.append(float(jnp.mean(res.x[:, 1] > 0)))
            nfe = int(res.nfe)
        add(name, dists, fracs, nfe)
        print(rows[-1], flush=True)

    table = "\n".join(
        [f"Energy distance to the exact conditional, {n} samples, {args.seeds} seeds", "",
         "| method | mean | range | fraction x_1 > 0 | NFE |", "|---|---|---|---|---|", *rows])
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
