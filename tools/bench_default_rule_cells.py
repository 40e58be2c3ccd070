"""The cells of tools/bench_samplers.py's accuracy tables (VP, each solver on its default
log-SNR grid, 512 examples, float64, against the tight Tsit5 reference) that the default order
rule near the data end (``lower_order_final=None``, ``samplers.default_rule``) can change,
each next to the step-count rule that was the default before (``lower_order_final=True``).

Run: ``python tools/bench_default_rule_cells.py > tools/bench_default_rule_cells.md`` (about
10 minutes on 2 busy cores). The other cells are the same computation under both rules: at
NFE 5 (5 steps of 1.92 in the half log-SNR) ``long_step=1.0`` lowers exactly the steps the
step-count rule lowers, and at NFE 20 and 50 neither rule lowers anything.
"""

from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_samplers as B  # noqa: E402  (also enables float64)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import diffax  # noqa: E402
from diffax import samplers  # noqa: E402

CELLS = {"DPM-Solver (3M, eps), log-SNR": (5, 10), "DPM-Solver++(2M), log-SNR": (10,),
         "DPM-Solver++(3M), log-SNR": (10,), "UniPC-2 (bh2), log-SNR": (10,),
         "UniPC-3 (bh2), log-SNR": (10,)}


def main() -> None:
    print("| D | solver | NFE | lower_order_final=True (before) | default (now) |")
    print("|---|---|---|---|---|")
    for dim in (2, 64):
        p = diffax.VP()
        gm = B.mixture(dim)
        x = p.prior_sample(jax.random.key(0), (B.BATCH, dim))
        ref = B.reference(p, gm, x)

        def rms(a, ref=ref):
            return float(jnp.sqrt(jnp.mean(jnp.square(a - ref))))

        for name, budgets in CELLS.items():
            solver = B.DETERMINISTIC[name][0]
            for n in budgets:
                new = samplers.sample(None, p, gm.denoiser(p), x, solver=solver, num_steps=n)
                old = samplers.sample(None, p, gm.denoiser(p), x, num_steps=n,
                                      solver=dataclasses.replace(solver, lower_order_final=True))
                print(f"| {dim} | {name} | {n} | {rms(old.x):.2e} | {rms(new.x):.2e} |",
                      flush=True)


if __name__ == "__main__":
    main()
