"""Benchmark: one train step called as its own jitted program vs inside ``jax.lax.scan``.

``diffax.train.fit`` (the trainer of every ``diffax.tasks`` example and of
``experiments/medical_ct/train.py``) runs ``steps_per_call`` updates per call in a
``lax.scan``; ``diffax train`` runs ``train.n_jitted_steps`` updates per call the same way
(:func:`diffax.train.step.repeat_steps`) when that is above 1. On XLA's CPU backend a
convolutional step inside the scan's loop was measured far slower than the same step as a
program of its own. This script times, for the same UNet train step (VP eps-MSE, Adam, one EMA,
the same batch already on the device):

* ``plain``: ``jax.jit(step)`` called ``k`` times from Python;
* ``scan``: ``jax.jit`` of ``lax.scan(step, length=k)`` called once (what ``fit`` does);
* ``unrolled``: the same scan with ``unroll=k`` (no loop left in the program).

Per-update seconds are the best of ``--rounds`` rounds (timings alternate between the forms;
load from other processes only slows a round down); the table also gives process CPU seconds
per update and the ratio to ``plain``, and each form's compile time. Before timing, the three
forms must reach the same parameters after ``k`` updates to float32 rounding (else they would
not time the same computation). Not a test.

Usage::

  python tools/bench_scan.py --out tools/bench_scan.md
  python tools/bench_scan.py --models tasks_tiny --batch 8 --size 16 --k 4
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffax import losses, models
from diffax.processes import VP
from diffax.train import TrainState, make_train_step
from diffax.train.step import make_optimizer

# The UNets of diffax.tasks (configs/tasks, diffax/tasks/defaults.py): the :tiny one and the
# CT / MRI tasks' (nf 16, ch_mult (1, 2, 2)), all "digits" variant with these fields replaced.
MODELS = {
    "tasks_tiny": {"nf": 8, "ch_mult": (1,)},
    "tasks": {"nf": 16, "ch_mult": (1, 2)},
    "phantom": {"nf": 16, "ch_mult": (1, 2, 2)},
}


def _setup(name: str, size: int, batch: int, k: int):
    model = models.UNet.from_variant("digits", image_size=size, num_channels=1,
                                     num_res_blocks=1, attn_resolutions=(), dropout=0.0,
                                     **MODELS[name])
    params = model.init_params(jax.random.key(0))
    loss = losses.DenoisingLoss(process=VP())
    optimizer, _ = make_optimizer(learning_rate=1e-3)
    step = make_train_step(loss.bind(models.apply_fn(model)), optimizer)
    state = TrainState.create(params=params, optimizer=optimizer, key=jax.random.key(1),
                              ema_decays=(0.999,))
    data = jax.random.normal(jax.random.key(2), (k, batch, size, size, 1))
    return step, state, data


def _forms(step, k: int):
    one = jax.jit(step)

    def plain(state, data):
        for i in range(k):
            state, metrics = one(state, {"x": data[i]})
        return state, metrics["loss"]

    def body(state, x):
        state, metrics = step(state, {"x": x})
        return state, metrics["loss"]

    scan = jax.jit(lambda state, data: jax.lax.scan(body, state, data))
    unrolled = jax.jit(lambda state, data: jax.lax.scan(body, state, data, unroll=k))
    return {"plain": plain, "scan": scan, "unrolled": unrolled}


def _timed(fn, state, data):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(state, data)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench(variant: str, size: int, batch: int, k: int, rounds: int) -> list[dict]:
    step, state, data = _setup(variant, size, batch, k)
    forms = _forms(step, k)
    compile_s, finals = {}, {}
    for name, fn in forms.items():  # first call: compile (+ one run)
        (new, _), wall, _ = _timed(fn, state, data)
        compile_s[name] = wall
        finals[name] = new.params
    ref = jax.tree.leaves(finals["plain"])
    for name in ("scan", "unrolled"):
        for a, b in zip(ref, jax.tree.leaves(finals[name]), strict=True):
            scale = float(jnp.max(jnp.abs(a))) + 1e-6
            err = float(jnp.max(jnp.abs(a - b))) / scale
            if err > 1e-3:
                raise AssertionError(f"{name} reached other parameters than plain "
                                     f"(relative max difference {err:.2e})")
    best = {name: (np.inf, np.inf) for name in forms}
    for _ in range(rounds):
        for name, fn in forms.items():
            _, wall, cpu = _timed(fn, state, data)
            best[name] = min(best[name], (wall / k, cpu / k))
    rows = []
    for name in forms:
        rows.append({"variant": variant, "form": name, "seconds": best[name][0],
                     "cpu": best[name][1], "ratio": best[name][0] / best["plain"][0],
                     "compile": compile_s[name]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tasks_tiny,phantom", help=f"of {sorted(MODELS)}")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--k", type=int, default=5, help="updates per call")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    lines = [f"jax {jax.__version__}, backend {jax.default_backend()}, "
             f"{jax.local_device_count()} device(s); UNet at {args.size}x{args.size}x1, "
             f"batch {args.batch}, k = {args.k} updates per call, best of {args.rounds} rounds",
             "",
             "| model | form | s / update | CPU s / update | vs plain | first call (compile) s |",
             "|---|---|---|---|---|---|"]
    for variant in args.models.split(","):
        for r in bench(variant, args.size, args.batch, args.k, args.rounds):
            lines.append(f"| {r['variant']} | {r['form']} | {r['seconds']:.4f} | "
                         f"{r['cpu']:.4f} | {r['ratio']:.2f}x | {r['compile']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("```\npython tools/bench_scan.py " + " ".join(
                f"--{k} {v}" for k, v in vars(args).items() if k != "out" and v is not None)
                + "\n```\n\n" + text + "\n")


if __name__ == "__main__":
    main()
