"""Pixel vs latent diffusion at equal training steps on the 16x16 digits (issue #18).

Trains, through ``diffax.train.train_and_evaluate`` and configs/digits_ldm.py:

1. stage 1: the KL autoencoder (``:autoencoder``, ``--ae_steps`` steps), then its held-out
   reconstruction PSNR and latent scale (``diffax.train.latent.evaluate_autoencoder``);
2. latent: stage 2 of configs/digits_ldm.py (a UNet on the 8x8x2 latents), ``--steps`` steps;
3. pixel: the same config without ``latent``, i.e. the same UNet widths, process, loss,
   optimiser, batch and steps on the 16x16x1 pixels (attention at the lowest resolution, 8
   instead of 4).

Both diffusion models sample ``--num_samples`` digits with the same solver and steps (Heun,
``--sample_steps``); samples go back to 8x8 with ``diffax.data.downsample_digits`` (the
least-squares inverse of the upsampling) and are scored like the digits models of
``diffax eval``: Frechet distance in a whitened 16-D PCA space fitted on the 8x8 training
digits, against the 300 held-out digits, next to the floor (as many training digits). Also:
sampling FLOPs per sample (XLA's cost analysis of the compiled sampling program, decoder
included) and wall time per sample (second call, after compilation).

    nice -n 10 python tools/bench_latent.py --ae_steps 300 --steps 400 --batch 16 \
        --num_samples 256 --sample_steps 10 --ae_nf 8 --unet_nf 16 \
        --out experiments/digits_ldm/bench_latent.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _configs():
    spec = importlib.util.spec_from_file_location("digits_ldm",
                                                  os.path.join(ROOT, "configs", "digits_ldm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(cfg, workdir):
    from diffax.train import build, evaluate
    from diffax.train.loop import train_and_evaluate

    t0 = time.perf_counter()
    train_and_evaluate(cfg, workdir)
    seconds = time.perf_counter() - t0
    exp = build.build_experiment(cfg)
    return evaluate.restore(workdir, exp), seconds


def _steps(cfg, steps, batch):
    cfg.train.update({"num_steps": steps, "batch_size": batch, "checkpoint_every": steps,
                      "log_every": max(1, steps // 10), "sample_every": 0, "keep_last": 1})


def _score(trained, num, reference):
    """FD-PCA at 8x8, FLOPs and seconds per sample."""
    from diffax import data
    from diffax.evaluation import metrics
    from diffax.train import evaluate

    exp = trained.exp
    params = trained.state.sampling_params(use_ema=True)
    run = evaluate.sampling_program(exp, batch=num, mesh=trained.mesh)
    key = jax.random.key(1)
    compiled = run.lower(params, key, None).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float(cost.get("flops", float("nan"))) / num
    x, _ = run(params, key, None)  # compile + run
    jax.block_until_ready(x)
    t0 = time.perf_counter()
    x, nfe = run(params, jax.random.key(2), None)
    jax.block_until_ready(x)
    seconds = (time.perf_counter() - t0) / num
    x8 = data.downsample_digits(np.asarray(x), value_range=exp.options.data.value_range)
    pca, test8, floor8 = reference
    x8 = x8.astype(np.float64) / 255.0
    fd = metrics.frechet_distance(*metrics.gaussian_statistics(metrics.pca_features(pca, x8)),
                                  *metrics.gaussian_statistics(metrics.pca_features(pca, test8)))
    return {"fd_pca_8x8": fd, "flops_per_sample": flops, "seconds_per_sample": seconds,
            "nfe": int(nfe)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae_steps", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num_samples", type=int, default=512)
    parser.add_argument("--sample_steps", type=int, default=25)
    parser.add_argument("--ae_nf", type=int, default=None,
                        help="the autoencoder's base width (default: the config's, 32)")
    parser.add_argument("--unet_nf", type=int, default=None,
                        help="both UNets' base width (default: the config's, 32)")
    parser.add_argument("--workdir", default="/tmp/bench_latent")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from diffax import data
    from diffax.evaluation import metrics
    from diffax.train import latent as latent_train

    module = _configs()
    os.makedirs(args.workdir, exist_ok=True)
    ae_dir, lat_dir, pix_dir = (os.path.join(args.workdir, n) for n in ("ae", "latent", "pixel"))

    train8 = data.load_split("digits", split="train", value_range=None)["x"] / 255.0
    test8 = data.load_split("digits", split="test", value_range=None)["x"] / 255.0
    pca = metrics.fit_pca(train8.astype(np.float64), num_components=16)
    idx = np.random.default_rng(0).permutation(len(train8))[:args.num_samples]
    floor = metrics.frechet_distance(
        *metrics.gaussian_statistics(metrics.pca_features(pca, train8[idx])),
        *metrics.gaussian_statistics(metrics.pca_features(pca, test8)))
    reference = (pca, test8, floor)

    ae_cfg = module.get_config("autoencoder")
    _steps(ae_cfg, args.ae_steps, args.batch)
    if args.ae_nf:
        ae_cfg.unlock()
        ae_cfg.model.kwargs.nf = args.ae_nf
        ae_cfg.lock()
    ae, ae_seconds = _train(ae_cfg, ae_dir)
    ae_eval = latent_train.evaluate_autoencoder(ae, ae_dir)

    rows = {}
    for name, workdir in (("latent", lat_dir), ("pixel", pix_dir)):
        cfg = module.get_config()
        cfg.unlock()
        _steps(cfg, args.steps, args.batch)
        cfg.sample.update({"solver": "heun", "num_steps": args.sample_steps})
        if args.unet_nf:
            cfg.model.kwargs.nf = args.unet_nf
        if name == "latent":
            cfg.latent.workdir = ae_dir
        else:
            del cfg["latent"]
            cfg.model.kwargs.attn_resolutions = (8,)
        cfg.lock()
        trained, seconds = _train(cfg, workdir)
        rows[name] = dict(_score(trained, args.num_samples, reference), train_seconds=seconds)

    lines = [
        f"# Pixel vs latent diffusion, digits_upsampled/16, {args.steps} steps each "
        f"(batch {args.batch})",
        "",
        f"Command: `nice -n 10 python tools/bench_latent.py --ae_steps {args.ae_steps} "
        f"--steps {args.steps} --batch {args.batch} --num_samples {args.num_samples} "
        f"--sample_steps {args.sample_steps}"
        + (f" --ae_nf {args.ae_nf}" if args.ae_nf else "")
        + (f" --unet_nf {args.unet_nf}" if args.unet_nf else "") + "`",
        "",
        f"Autoencoder (KL, f = 2, 8x8x2 latents, nf {ae_cfg.model.kwargs.get('nf', 32)}, "
        f"{args.ae_steps} steps, "
        f"{ae_seconds:.0f} s): held-out PSNR "
        f"{ae_eval['reconstruction_psnr_db']['mean']:.2f} ± "
        f"{ae_eval['reconstruction_psnr_db']['stderr']:.2f} dB (pixels in [0, 1]), "
        f"scale_factor {ae_eval['scale']['scale_factor']:.4f}.",
        "",
        f"Samples: {args.num_samples}, Heun {args.sample_steps} steps; FD in whitened 16-D PCA "
        f"features of the 8x8 digits after `downsample_digits`, against the 300 held-out "
        f"digits. Floor ({args.num_samples} training digits): {floor:.3f}.",
        "",
        "| model | FD-PCA (8x8) | NFE | GFLOP / sample | ms / sample | train s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['fd_pca_8x8']:.3f} | {r['nfe']} | "
                     f"{r['flops_per_sample'] / 1e9:.3f} | {1e3 * r['seconds_per_sample']:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
