"""Benchmark: diffax's train step against a bare hand-written ``jax.jit`` step.

For each UNet variant (default: ``tiny`` and ``mid``) both steps train the same model with the
same loss (VP, eps-MSE, uniform t), the same optimizer (Adam with clipping) and one EMA, on the
same synthetic batch already on the device, so the difference is diffax's overhead (TrainState,
the loss objects, fold_in keys, metrics, sharding annotations). Timings alternate between the
two in several rounds; the best round of each is reported (load from other processes only
slows rounds down), and the overhead also as the median of per-round ratios. Also reported:
XLA's FLOP count of one step (``cost_analysis``) turned into achieved GFLOP/s, against the
machine's matmul rate measured here with a large float32 ``jnp.dot``.

Usage::

  python tools/bench_train.py                      # tiny and mid UNet, table to stdout
  python tools/bench_train.py --variants tiny --rounds 5 --out bench_train.md

Before timing, one step of each from the same state and batch must give the same loss and the
same parameter update (to float32 rounding: ``check_same_update``), so that the two time the
same computation. Otherwise not a test; the target is an overhead of at most 5%.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import diffax
from diffax import losses, models
from diffax.train import (
    TrainState,
    compile_train_step,
    make_mesh,
    make_train_step,
    parallel,
    replicate,
)

BATCH = {"tiny": 64, "mid": 16, "digits": 64, "cifar10": 8}


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best float32 matmul rate of the default device, GFLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def make_steps(variant: str, batch_size: int, *, lr: float = 2e-4, ema: float = 0.9999,
               n_jitted_steps: int = 1):
    """Builds (diffax step, diffax state, bare step, bare state, batch)."""
    model = models.UNet.from_variant(variant)
    apply_fn = models.apply_fn(model)
    process = diffax.VP()
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    params = model.init_params(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (batch_size, *model.config.input_shape))

    # diffax: loss object -> loss_fn -> make_train_step -> compile_train_step on a mesh.
    loss = losses.DenoisingLoss(process=process, weighting=losses.EpsMSE(),
                                time_sampler=losses.UniformTime(),
                                parameterization=losses.Predict(prediction="eps"),
                                cond_keys=(), key_arg="key")
    mesh = make_mesh(1)
    train_step = make_train_step(loss.bind(lambda p, x, t, **kw: apply_fn(p, x, t, train=True,
                                                                          **kw)),
                                 optimizer, learning_rate=lr, n_steps=n_jitted_steps)
    d_step = compile_train_step(train_step, mesh, leading_steps=n_jitted_steps > 1)
    d_state = replicate(TrainState.create(params=params, optimizer=optimizer,
                                          key=jax.random.key(2), ema_decays=(ema,)), mesh)
    d_batch = {"x": x if n_jitted_steps == 1 else jnp.stack([x] * n_jitted_steps)}
    d_batch = jax.device_put(d_batch, parallel.batch_sharding(mesh,
                                                              leading_steps=n_jitted_steps > 1))

    # bare: the same computation written directly.
    t_min, t_max = process.t_min, process.t_max
    b0, b1 = process.beta_min, process.beta_max

    def bare(carry, x):
        params, opt_state, ema_params, key, step = carry
        k_t, k_eps, k_drop = jax.random.split(jax.random.fold_in(key, step), 3)
        t = t_min + jax.random.uniform(k_t, (x.shape[0],)) * (t_max - t_min)
        eps = jax.random.normal(k_eps, x.shape)
        log_alpha = -0.25 * t**2 * (b1 - b0) - 0.5 * t * b0
        alpha = jnp.exp(log_alpha)[:, None, None, None]
        sigma = jnp.sqrt(-jnp.expm1(2 * log_alpha))[:, None, None, None]
        x_t = alpha * x + sigma * eps

        def loss_fn(p):
            out = model.apply(p, x_t, t, train=True, rngs={"dropout": k_drop})
            return jnp.mean(jnp.square(out - eps))

        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ema_params = jax.tree.map(lambda e, p: ema * e + (1 - ema) * p, ema_params, params)
        return (params, opt_state, ema_params, key, step + 1), (value, optax.tree.norm(grads))

    if n_jitted_steps == 1:
        b_step = jax.jit(bare, donate_argnums=0)
    else:
        b_step = jax.jit(lambda c, xs: jax.lax.scan(bare, c, xs), donate_argnums=0)
    copy = lambda tree: jax.tree.map(jnp.array, tree)
    b_state = (copy(params), optimizer.init(params), copy(params), jax.random.key(2),
               jnp.zeros((), jnp.int32))
    return d_step, d_state, b_step, b_state, d_batch["x"]


def check_same_update(d_step, d_state, b_step, b_state, x, d_wrap, b_wrap, *,
                      rtol: float = 1e-3) -> dict[str, float]:
    """One step of each from copies of the initial states: the losses, the gradient norms,
    the optimizer states (Adam's moments hold the gradient itself; its first update is only
    ``lr * sign(g)``) and the parameters must agree to ``rtol`` (relative to the size of each
    quantity), else ValueError."""
    copy = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731 - the steps donate
    d_new, d_metrics = d_step(copy(d_state), d_wrap(x))
    b_new, (b_loss, b_gnorm) = b_step(copy(b_state), b_wrap(x))

    def rel(a, b):  # max |a - b| / max |b| over a tree's float leaves
        pairs = [(np.asarray(u, np.float64), np.asarray(v, np.float64))
                 for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
                 if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)]
        diff = max(float(np.max(np.abs(u - v))) for u, v in pairs)
        return diff / max(max(float(np.max(np.abs(v))) for _, v in pairs), 1e-30)

    before = d_state.params
    upd = lambda new: jax.tree.map(lambda a, p: np.asarray(a) - np.asarray(p), new, before)  # noqa: E731
    out = {"loss": rel(np.mean(d_metrics["loss"]), np.mean(b_loss)),
           "grad_norm": rel(np.mean(d_metrics["grad_norm"]), np.mean(b_gnorm)),
           "optimizer_state": rel(d_new.opt_state, b_new[1]),
           "update": rel(upd(d_new.params), upd(b_new[0]))}
    if not all(v <= rtol for v in out.values()):
        raise ValueError(f"bench_train: diffax's step and the bare step compute different "
                         f"updates (relative differences {out}): the timing would compare "
                         f"different computations.")
    return out


def _time(step, state, batch, n: int, wrap):
    t = time.perf_counter()
    for _ in range(n):
        state, out = step(state, wrap(batch))
    jax.block_until_ready((state, out))
    return time.perf_counter() - t, state


def bench(variant: str, *, batch_size: int, steps: int, rounds: int, n_jitted_steps: int = 1):
    d_step, d_state, b_step, b_state, x = make_steps(variant, batch_size,
                                                     n_jitted_steps=n_jitted_steps)
    d_wrap = lambda x: {"x": x}
    b_wrap = lambda x: x
    # Compile once (ahead of time, which also gives XLA's FLOP count) and warm up.
    d_step = d_step.lower(d_state, d_wrap(x)).compile()
    b_step = b_step.lower(b_state, x).compile()
    same = check_same_update(d_step, d_state, b_step, b_state, x, d_wrap, b_wrap)
    flops = _flops(d_step) / n_jitted_steps
    bare_flops = _flops(b_step) / n_jitted_steps
    count = lambda c: sum(1 for line in c.as_text().splitlines() if " = " in line)
    structure = (count(d_step), count(b_step), d_step.memory_analysis().temp_size_in_bytes,
                 b_step.memory_analysis().temp_size_in_bytes)
    _, d_state = _time(d_step, d_state, x, 2, d_wrap)
    _, b_state = _time(b_step, b_state, x, 2, b_wrap)
    d_times, b_times = [], []
    for i in range(rounds):
        # ABBA order: neither step always runs first in a pair.
        if i % 2 == 0:
            dt, d_state = _time(d_step, d_state, x, steps, d_wrap)
            bt, b_state = _time(b_step, b_state, x, steps, b_wrap)
        else:
            bt, b_state = _time(b_step, b_state, x, steps, b_wrap)
            dt, d_state = _time(d_step, d_state, x, steps, d_wrap)
        d_times.append(dt / (steps * n_jitted_steps))
        b_times.append(bt / (steps * n_jitted_steps))
    ratios = [d / b for d, b in zip(d_times, b_times, strict=True)]
    # The fastest round of each approximates its time on an idle machine (other processes
    # only ever slow a round down); the median of per-round ratios is the second estimate.
    d_med, b_med = min(d_times), min(b_times)
    params = sum(p.size for p in jax.tree.leaves(d_state.params))
    return {
        "variant": variant, "batch": batch_size, "n_jitted": n_jitted_steps,
        "params": params,
        "diffax_steps_s": 1 / d_med, "bare_steps_s": 1 / b_med,
        "diffax_ex_s": batch_size / d_med, "bare_ex_s": batch_size / b_med,
        "overhead_pct": 100 * (d_med / b_med - 1),
        "overhead_median_pct": 100 * (statistics.median(ratios) - 1),
        "gflop_step": flops / 1e9, "bare_gflop_step": bare_flops / 1e9,
        "gflops": flops / d_med / 1e9,
        "structure": structure, "same": same,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="tiny,mid")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-jitted-steps", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)

    peak = matmul_gflops()
    rows = []
    for variant in args.variants.split(","):
        steps = args.steps or (20 if variant == "tiny" else 3)
        rows.append(bench(variant, batch_size=BATCH.get(variant, 16), steps=steps,
                          rounds=args.rounds, n_jitted_steps=args.n_jitted_steps))
    peak = max(peak, matmul_gflops())  # measured before and after: the less disturbed one
    dev = jax.devices()[0]
    lines = [
        f"Device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s); "
        f"float32 matmul (2048^3, best of 20): {peak:.1f} GFLOP/s. Best of {args.rounds} "
        f"alternating rounds (overhead also as the median of per-round ratios); "
        f"n_jitted_steps={args.n_jitted_steps}.",
        "",
        "| UNet | params | batch | diffax steps/s | bare steps/s | diffax ex/s | bare ex/s "
        "| overhead best (median) | GFLOP/step | achieved GFLOP/s | % of matmul |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params'] / 1e6:.2f}M | {r['batch']} "
            f"| {r['diffax_steps_s']:.2f} | {r['bare_steps_s']:.2f} "
            f"| {r['diffax_ex_s']:.0f} | {r['bare_ex_s']:.0f} "
            f"| {r['overhead_pct']:+.1f}% ({r['overhead_median_pct']:+.1f}%) "
            f"| {r['gflop_step']:.2f} | {r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    extra = [f"{r['variant']}: compiled programs, diffax vs bare: FLOPs per step "
             f"{r['gflop_step']:.3f} G vs {r['bare_gflop_step']:.3f} G, HLO instructions "
             f"{r['structure'][0]} vs {r['structure'][1]}, temp memory "
             f"{r['structure'][2] / 2**20:.1f} MiB vs {r['structure'][3] / 2**20:.1f} MiB; "
             "first step, relative difference diffax vs bare: "
             + ", ".join(f"{k} {v:.1e}" for k, v in r["same"].items())
             for r in rows]
    print("\n".join(extra))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
