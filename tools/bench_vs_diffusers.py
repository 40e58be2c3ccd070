"""diffax (jit) vs diffusers (torch eager, torch.compile) on the same network, weights and batch.

Run where torch + diffusers are installed (torch is never a dependency of diffax):

    PYTHONPATH=. nice -n 10 /work/venv-torch/bin/python tools/bench_vs_diffusers.py \\
        --out tools/bench_vs_diffusers.md [--models ddpm,sd_small --grid "1:10,50 16:10,50"]

Networks (random weights, created once with diffusers and saved to a temporary folder; both
sides load that folder, so the weights are bit-identical):

* ``ddpm``: google/ddpm-cifar10-32's ``UNet2DModel`` config (35.7M parameters), 32x32x3;
* ``sd_small``: a small Stable-Diffusion-shaped ``UNet2DConditionModel`` (channels 64-128-256-256,
  cross-attention to a 77x256 context, 8 heads), 32x32x4 latents.

Each cell samples with deterministic DDIM for ``steps`` network evaluations from the same
initial noise: diffusers' ``DDIMScheduler`` loop calling the torch UNet, and ``diffax.sample``
with the same scheduler config read by ``diffax.interop.load_scheduler`` (same timesteps, same
update) on the converted Flax UNet under one ``jax.jit``; the table also gives the largest
difference of the final samples, relative to their largest value. Every
(side, network, batch) runs in its own subprocess, so peak memory (max RSS of the process,
the framework included) is its own. Times: one warm-up network call, then the fastest of
``--repeats`` timed sampling runs per step count. Compile times (XLA's trace + compile of the
whole sampler; torch.compile's first call) are reported separately, outside the sampling
times. Both sides are pinned to the same ``--threads`` cores (sched_setaffinity) and use that
many threads: torch.set_num_threads, and XLA's CPU pool (one thread per core of the mask; with
``--threads 1`` its Eigen pool is switched off). torch runs with OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

DDPM_CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2, attention_head_dim=None, norm_eps=1e-6, flip_sin_to_cos=False,
    freq_shift=1, downsample_padding=0, norm_num_groups=32)
SD_SMALL = dict(
    sample_size=32, in_channels=4, out_channels=4, block_out_channels=(64, 128, 256, 256),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
    cross_attention_dim=256, attention_head_dim=8, norm_num_groups=32)
MODELS = {"ddpm": ("UNet2DModel", DDPM_CIFAR10), "sd_small": ("UNet2DConditionModel", SD_SMALL)}
CONTEXT_LEN = 77
# DDPM's betas, deterministic DDIM, no clipping: read by diffusers and by diffax.interop.
SCHEDULER = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000,
             "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
             "clip_sample": False, "set_alpha_to_one": True, "timestep_spacing": "leading"}


def _inputs(model: str, batch: int):
    cfg = MODELS[model][1]
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, cfg["in_channels"], 32, 32)).astype(np.float32)
    ctx = None
    if "cross_attention_dim" in cfg:
        ctx = rng.standard_normal((batch, CONTEXT_LEN, cfg["cross_attention_dim"]),
                                  dtype=np.float32)
    return x, ctx


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# Workers (one process each)


def worker_torch(folder: str, model: str, batch: int, steps: list[int], compile_: bool,
                 threads: int, repeats: int) -> dict:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel, UNet2DModel

    torch.set_num_threads(threads)
    cls = UNet2DConditionModel if MODELS[model][0] == "UNet2DConditionModel" else UNet2DModel
    net = cls.from_pretrained(folder).eval()
    x_np, ctx_np = _inputs(model, batch)
    x0 = torch.from_numpy(x_np)
    extra = {} if ctx_np is None else {"encoder_hidden_states": torch.from_numpy(ctx_np)}
    sched = DDIMScheduler.from_config(SCHEDULER)
    out = {"threads": torch.get_num_threads()}
    call = net
    with torch.inference_mode():
        if compile_:
            call = torch.compile(net)
            t0 = time.perf_counter()
            call(x0, torch.full((batch,), 999), **extra)
            out["compile_s"] = time.perf_counter() - t0
        call(x0, torch.full((batch,), 999), **extra)  # warm-up
        for n in steps:
            sched.set_timesteps(n)
            times = []
            for _ in range(repeats):
                x = x0.clone()
                t0 = time.perf_counter()
                for t in sched.timesteps:
                    # One shape and dtype for every call (as the warm-up): no recompiles.
                    eps = call(x, torch.full((batch,), int(t)), **extra).sample
                    x = sched.step(eps, t, x).prev_sample
                times.append(time.perf_counter() - t0)
            out[f"run_{n}"] = min(times)
            out[f"nfe_{n}"] = len(sched.timesteps)
            tag = "compile" if compile_ else "eager"
            np.save(os.path.join(folder, f"x_{tag}_{batch}_{n}.npy"), x.numpy())
    out["peak_mb"] = _peak_mb()
    return out


def worker_diffax(folder: str, model: str, batch: int, steps: list[int], threads: int,
                  repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import diffax
    from diffax import interop
    from diffax.interop import pipeline

    pre = interop.load_pretrained(folder)
    net = pipeline.unet_fn(pre)
    sched = interop.load_scheduler(SCHEDULER)
    p = sched.process
    x_np, ctx_np = _inputs(model, batch)
    x0 = jnp.asarray(np.transpose(x_np, (0, 2, 3, 1)))
    ctx = None if ctx_np is None else jnp.asarray(ctx_np)
    out = {"threads": threads}
    warm = jax.jit(lambda params, x, c: net(params, x, jnp.full((x.shape[0],), 999), c))
    warm(pre.params, x0, ctx).block_until_ready()

    def run(params, x, c, grid):
        D = sched.denoiser(lambda x, k: net(params, x, k, c))
        res = diffax.sample(None, p, D, x, solver=sched.solver, schedule=grid)
        return res.x, res.nfe

    for n in steps:
        # diffusers' own DDIM grid (same timesteps as its scheduler loop), passed as an argument.
        grid = jnp.asarray(sched.grid(n), jnp.float32)
        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(pre.params, x0, ctx, grid).compile()
        out[f"compile_{n}"] = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x, nfe = compiled(pre.params, x0, ctx, grid)
            x.block_until_ready()
            times.append(time.perf_counter() - t0)
        out[f"run_{n}"] = min(times)
        out[f"nfe_{n}"] = int(nfe)
        np.save(os.path.join(folder, f"x_diffax_{batch}_{n}.npy"),
                np.transpose(np.asarray(x), (0, 3, 1, 2)))
    out["peak_mb"] = _peak_mb()
    out["params"] = int(sum(v.size for v in jax.tree.leaves(pre.params)))
    return out


# --------------------------------------------------------------------------------------------
# Driver


def make_folder(model: str, root: str, seed: int = 0) -> str:
    import torch
    from diffusers import UNet2DConditionModel, UNet2DModel

    torch.manual_seed(seed)
    name, cfg = MODELS[model]
    cls = UNet2DConditionModel if name == "UNet2DConditionModel" else UNet2DModel
    folder = os.path.join(root, model)
    cls(**cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def _spawn(args: list[str], threads: int, repeats: int) -> dict:
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                            + " --xla_cpu_multi_thread_eigen=false").strip()
    env["OMP_NUM_THREADS"] = str(threads)
    # Idle OpenMP threads sleep instead of spinning: on a loaded machine torch's default
    # spin-waiting made a 2-thread forward 20x slower than a 1-thread one (measured).
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--repeats",
                           str(repeats), "--worker", *args], env=env,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)[-300:]}
    return json.loads(lines[-1][len("RESULT "):])


def _parity(folder: str, batch: int, n: str) -> str:
    """max |x_diffax - x_torch| / max |x_torch| of the final samples (same noise, same grid)."""
    try:
        a = np.load(os.path.join(folder, f"x_diffax_{batch}_{n}.npy"))
        b = np.load(os.path.join(folder, f"x_eager_{batch}_{n}.npy"))
    except OSError:
        return "-"
    return f"{np.max(np.abs(a - b)) / np.max(np.abs(b)):.1e}"


def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--models", default="ddpm,sd_small")
    parser.add_argument("--grid", default="1:10,50 16:10,50",
                        help="batch:steps cells, e.g. '1:10,50 16:10' (reduce on a busy machine)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the minimum is kept")
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        # Both sides on the same cores: XLA sizes its pool from the affinity mask.
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.threads]))
        side, folder, model, batch, steps = args.worker[:5]
        steps = [int(s) for s in steps.split(",")]
        if side == "diffax":
            res = worker_diffax(folder, model, int(batch), steps, args.threads, args.repeats)
        else:
            res = worker_torch(folder, model, int(batch), steps, side == "compile",
                               args.threads, args.repeats)
        print("RESULT " + json.dumps(res), flush=True)
        return

    models = args.models.split(",")
    grid = {int(b): s for b, s in (cell.split(":") for cell in args.grid.split())}
    batches = list(grid)
    sides = ["diffax", "eager"] + ([] if args.no_compile else ["compile"])
    results, folders = {}, {}
    root = tempfile.mkdtemp()  # the weights and final samples of both sides
    for model in models:
        folder = folders[model] = make_folder(model, root)
        for batch in batches:
            for side in sides:
                t0 = time.perf_counter()
                res = _spawn([side, folder, model, str(batch), grid[batch]], args.threads,
                             args.repeats)
                results[(model, batch, side)] = res
                print(f"# {model} batch {batch} {side}: {json.dumps(res)} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    import platform

    load = os.getloadavg()
    lines = [
        f"Command: `PYTHONPATH=. nice -n 10 python tools/bench_vs_diffusers.py --models "
        f"{args.models} --grid '{args.grid}' --threads {args.threads} "
        f"--repeats {args.repeats}"
        f"{' --no_compile' if args.no_compile else ''}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} at the end (shared machine: absolute times are inflated "
        f"and noisy, both sides alike). Threads: {args.threads} for each side "
        "(torch.set_num_threads; XLA's CPU thread pool).",
        "",
        "Sampling time (s, excluding compilation) and ratio = torch time / diffax time "
        "(> 1: diffax faster); last column: max |x_diffax - x_torch| / max |x_torch| of the "
        "final samples (same noise, same timesteps):",
        "",
        "| network | batch | DDIM steps | diffax jit | torch eager | torch.compile | "
        "eager / diffax | compile / diffax | diffax ms / sample / step | max diff vs eager |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for batch in batches:
            d = results[(model, batch, "diffax")]
            e = results[(model, batch, "eager")]
            c = results.get((model, batch, "compile"), {"error": "skipped"})
            for n in grid[batch].split(","):
                dt, et, ct = d.get(f"run_{n}"), e.get(f"run_{n}"), c.get(f"run_{n}")
                lines.append(
                    f"| {model} | {batch} | {n} | {_fmt(dt)} | {_fmt(et)} | {_fmt(ct)} | "
                    f"{_fmt(et / dt if dt and et else None)} | "
                    f"{_fmt(ct / dt if dt and ct else None)} | "
                    f"{_fmt(1e3 * dt / batch / int(n) if dt else None, 1)} | "
                    f"{_parity(folders[model], batch, n)} |")
    lines += ["", "Compile time (s) and peak memory (max RSS of the process, MB):", "",
              "| network | batch | diffax compile (per step count) | torch.compile first call | "
              "peak MB diffax | peak MB torch eager | peak MB torch.compile |",
              "|---|---|---|---|---|---|---|"]
    for model in models:
        for batch in batches:
            d = results[(model, batch, "diffax")]
            e = results[(model, batch, "eager")]
            c = results.get((model, batch, "compile"), {})
            comp = ", ".join(f"{n} steps: {_fmt(d.get(f'compile_{n}'), 1)}"
                             for n in grid[batch].split(","))
            lines.append(f"| {model} | {batch} | {comp} | {_fmt(c.get('compile_s'), 1)} | "
                         f"{_fmt(d.get('peak_mb'), 0)} | {_fmt(e.get('peak_mb'), 0)} | "
                         f"{_fmt(c.get('peak_mb'), 0)} |")
    errors = [f"{k}: {v['error']}" for k, v in results.items() if "error" in v]
    params = {m: results[(m, batches[0], "diffax")].get("params") for m in models}
    lines += ["", "Parameters: " + ", ".join(f"{m} {p / 1e6:.1f}M" for m, p in params.items()
                                            if p)]
    if errors:
        lines += ["", "Failures: " + "; ".join(errors)]
    shutil.rmtree(root)
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
