"""Pixel vs latent diffusion, and LSGM vs LDM two-stage, at equal training steps on the 16x16
digits (issue #18).

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

4. lsgm (``--stage lsgm``): configs/digits_lsgm.py, the same UNet, process, optimiser, batch
   and ``--steps`` steps, its autoencoder (``--ae_nf``) trained jointly with the score model on
   LSGM's objective; scored like the others, plus its autoencoder's held-out PSNR (posterior
   mean -> decoder); ``--stage lsgm_uniform``: the same with uniform ``t`` (``:uniform``);
   ``--stage lsgm_unweighted``: importance-sampled ``t`` for the encoder and decoder, the score
   model on its own unweighted objective (``:unweighted``, the paper's separate training).

5. ae_gan (``--stage ae_gan``): stage 1 again, against a patch discriminator
   (``:autoencoder_gan``, :mod:`diffax.patchgan`) switched on at ``--ae_steps // 2``, the same
   steps, batch and width as ``ae``; both stages also report the held-out reconstructions' FD
   (8x8, as the samples') and sharpness (mean squared finite differences of the 16x16
   reconstructions over those of the originals: 1 is as sharp as the data, blur is below 1).

``--stage`` runs one part (``ae``, ``latent`` [needs ``ae``], ``pixel``, ``lsgm``), each its own
job of the shared queue, each writing ``WORKDIR/<part>/bench.json``; ``--stage table`` (no
training) prints every part's rows side by side, parts without a ``bench.json`` as "not
measured"; ``--stage all`` (default) runs everything in one process, then the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _configs(name="digits_ldm"):
    spec = importlib.util.spec_from_file_location(name,
                                                  os.path.join(ROOT, "configs", f"{name}.py"))
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


def _steps(cfg, steps, batch, warmup=None):
    cfg.train.update({"num_steps": steps, "batch_size": batch,
                      "checkpoint_every": max(1, steps // 4),
                      "log_every": max(1, steps // 10), "sample_every": 0, "keep_last": 1})
    if warmup is not None:
        cfg.optim.warmup_steps = warmup


def _score(trained, num, reference):
    """FD-PCA and sliced Wasserstein at 8x8, FLOPs and seconds per sample."""
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
    sw = metrics.sliced_wasserstein(x8, test8)
    return {"fd_pca_8x8": fd, "sliced_wasserstein_8x8": float(sw), "flops_per_sample": flops,
            "seconds_per_sample": seconds, "nfe": int(nfe)}


def _lsgm_psnr(trained):
    """Held-out reconstruction PSNR (pixels in [0, 1]) of LSGM's autoencoder: posterior mean
    -> decoder, as ``diffax eval`` of an autoencoder measures it."""
    import math

    from diffax import data
    from diffax.evaluation import metrics
    from diffax.train import latent as latent_train

    exp = trained.exp
    o = exp.options
    params = trained.state.sampling_params(use_ema=o.sample.use_ema)
    x = data.load_split(o.data.name, split=o.eval.split, value_range=o.data.value_range)["x"]
    tr = exp.trainer
    recon_fn = jax.jit(lambda xb: tr.decode(params, tr.posterior(params, xb).mean))
    recon = latent_train._batched(lambda xb, i: recon_fn(xb), x)
    as01 = lambda a: data.from_model_range(a, o.data.value_range).astype(np.float64) / 255.0
    psnr = np.asarray(metrics.psnr(as01(recon), as01(x), data_range=1.0))
    return {"mean": float(psnr.mean()), "stderr": float(psnr.std(ddof=1) / math.sqrt(len(psnr)))}


def _recon_quality(trained):
    """Held-out reconstructions (deterministic latent): FD-PCA at 8x8 against the held-out
    8x8 digits, and sharpness (mean squared finite differences, recon over originals)."""
    from diffax import data
    from diffax.evaluation import metrics
    from diffax.train import latent as latent_train

    exp = trained.exp
    o = exp.options
    params = trained.state.sampling_params(use_ema=o.sample.use_ema)
    x, z = latent_train.encode_split(exp, params, o.eval.split)
    decode = jax.jit(latent_train._frozen(exp, params).decode)
    recon = latent_train._batched(lambda zb, i: decode(zb), z)
    as01 = lambda a: data.from_model_range(a, o.data.value_range).astype(np.float64) / 255.0
    energy = lambda a: float(np.mean(np.diff(a, axis=1) ** 2) + np.mean(np.diff(a, axis=2) ** 2))
    pca, test8, _ = _reference(16)[0]
    r8 = data.downsample_digits(np.asarray(recon), value_range=o.data.value_range)
    r8 = r8.astype(np.float64) / 255.0
    fd = metrics.frechet_distance(*metrics.gaussian_statistics(metrics.pca_features(pca, r8)),
                                  *metrics.gaussian_statistics(metrics.pca_features(pca, test8)))
    return {"recon_fd_pca_8x8": float(fd),
            "sharpness": energy(as01(recon)) / energy(as01(x))}


def _reference(num_samples):
    from diffax import data
    from diffax.evaluation import metrics

    train8 = data.load_split("digits", split="train", value_range=None)["x"] / 255.0
    test8 = data.load_split("digits", split="test", value_range=None)["x"] / 255.0
    pca = metrics.fit_pca(train8.astype(np.float64), num_components=16)
    idx = np.random.default_rng(0).permutation(len(train8))[:num_samples]
    real = train8[idx].astype(np.float64)
    floor = metrics.frechet_distance(
        *metrics.gaussian_statistics(metrics.pca_features(pca, real)),
        *metrics.gaussian_statistics(metrics.pca_features(pca, test8)))
    floor_sw = float(metrics.sliced_wasserstein(real, test8))
    return (pca, test8, floor), floor_sw


def _write(path, obj):
    import json

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _read(path):
    import json

    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _diffusion_cfg(module, args, variant=""):
    cfg = module.get_config(variant)
    cfg.unlock()
    _steps(cfg, args.steps, args.batch, args.warmup)
    cfg.sample.update({"solver": "heun", "num_steps": args.sample_steps})
    if args.unet_nf:
        cfg.model.kwargs.nf = args.unet_nf
    return cfg


def _run_stage(stage, args, dirs):
    from diffax.train import latent as latent_train

    if stage in ("ae", "ae_gan"):
        ae_cfg = _configs().get_config("autoencoder" if stage == "ae" else "autoencoder_gan")
        _steps(ae_cfg, args.ae_steps, args.batch, args.warmup)
        ae_cfg.unlock()
        if args.ae_nf:
            ae_cfg.model.kwargs.nf = args.ae_nf
        if stage == "ae_gan":
            ae_cfg.loss.disc_start = args.ae_steps // 2
        ae_cfg.lock()
        ae, seconds = _train(ae_cfg, dirs[stage])
        ev = latent_train.evaluate_autoencoder(ae, dirs[stage])
        _write(os.path.join(dirs[stage], "bench.json"), {
            "steps": args.ae_steps, "nf": ae_cfg.model.kwargs.get("nf", 32),
            "train_seconds": seconds, "psnr": ev["reconstruction_psnr_db"],
            "scale_factor": ev["scale"]["scale_factor"], **_recon_quality(ae),
            **({"disc_start": args.ae_steps // 2} if stage == "ae_gan" else {})})
        return
    reference, floor_sw = _reference(args.num_samples)
    if stage in ("latent", "pixel"):
        cfg = _diffusion_cfg(_configs(), args)
        if stage == "latent":
            cfg.latent.workdir = dirs["ae"]
        else:
            del cfg["latent"]
            cfg.model.kwargs.attn_resolutions = (8,)
    else:  # lsgm
        cfg = _diffusion_cfg(_configs("digits_lsgm"), args,
                             stage[len("lsgm_"):] if stage.startswith("lsgm_") else "")
        if args.ae_nf:
            cfg.lsgm.autoencoder_kwargs.nf = args.ae_nf
    cfg.lock()
    trained, seconds = _train(cfg, dirs[stage])
    row = dict(_score(trained, args.num_samples, reference), train_seconds=seconds,
               steps=args.steps, batch=args.batch, floor_fd=reference[2], floor_sw=floor_sw)
    if stage.startswith("lsgm"):
        row["psnr"] = _lsgm_psnr(trained)
    _write(os.path.join(dirs[stage], "bench.json"), row)


_STAGES = ("ae", "latent", "pixel", "lsgm", "lsgm_uniform", "lsgm_unweighted", "ae_gan")
_LABELS = {"latent": "LDM two-stage: latent UNet on the frozen autoencoder (8x8x2)",
           "pixel": "pixel UNet (16x16x1)",
           "lsgm": "LSGM, joint (8x8x2, importance-sampled t)",
           "lsgm_uniform": "LSGM, joint (8x8x2, uniform t)",
           "lsgm_unweighted": "LSGM, separate score objective (8x8x2, importance-sampled t for "
                              "the encoder, unweighted uniform t for the score model)"}


def _table(args, dirs, command):
    rows = {name: _read(os.path.join(dirs[name], "bench.json")) for name in _STAGES}
    ae = rows["ae"]
    any_row = next((r for n, r in rows.items() if r and n not in ("ae", "ae_gan")), None)
    lines = [
        f"# Pixel vs latent diffusion and LSGM vs LDM, digits_upsampled/16, {args.steps} "
        f"steps each (batch {args.batch})", "", f"Command: `{command}`", ""]
    if ae:
        lines.append(
            f"LDM autoencoder (KL, f = 2, 8x8x2 latents, nf {ae['nf']}, {ae['steps']} steps, "
            f"{ae['train_seconds']:.0f} s): held-out PSNR {ae['psnr']['mean']:.2f} ± "
            f"{ae['psnr']['stderr']:.2f} dB (pixels in [0, 1]), scale_factor "
            f"{ae['scale_factor']:.4f}.")
    else:
        lines.append("LDM autoencoder: not measured.")
    lines += ["", f"Samples: {args.num_samples}, Heun {args.sample_steps} steps; FD in whitened "
              f"16-D PCA features and sliced Wasserstein (pixels in [0, 1]) of the 8x8 digits "
              f"after `downsample_digits`, against the 300 held-out digits."
              + (f" Real digits ({args.num_samples} training digits, the floor): FD "
                 f"{any_row['floor_fd']:.3f}, SW {any_row['floor_sw']:.4f}." if any_row else ""),
              "", "| model | FD-PCA (8x8) | SW (8x8) | AE PSNR dB | NFE | GFLOP / sample | "
              "ms / sample | train s |", "|---|---|---|---|---|---|---|---|"]
    if any_row:
        lines.append(f"| real digits (floor) | {any_row['floor_fd']:.3f} | "
                     f"{any_row['floor_sw']:.4f} | | | | | |")
    for name in _STAGES[1:]:
        if name == "ae_gan":
            continue
        r = rows[name]
        if r is None:
            lines.append(f"| {_LABELS[name]} | not measured | | | | | | |")
            continue
        psnr = r.get("psnr") or (ae["psnr"] if name == "latent" and ae else None)
        lines.append(
            f"| {_LABELS[name]} | {r['fd_pca_8x8']:.3f} | {r['sliced_wasserstein_8x8']:.4f} | "
            + (f"{psnr['mean']:.2f} ± {psnr['stderr']:.2f}" if psnr else "") + " | "
            f"{r['nfe']} | {r['flops_per_sample'] / 1e9:.3f} | "
            f"{1e3 * r['seconds_per_sample']:.2f} | {r['train_seconds']:.0f} |")
    lines += ["", "Stage 1 with vs without the patch discriminator (`--stage ae` / `ae_gan`, "
              "equal steps; held-out reconstructions):", "",
              "| autoencoder | PSNR dB | recon FD-PCA (8x8) | sharpness | train s |",
              "|---|---|---|---|---|"]
    for name, label in (("ae", "KL, L1 + KL"), ("ae_gan", "KL, L1 + KL + patch GAN")):
        r = rows[name]
        if r is None or "sharpness" not in r:
            lines.append(f"| {label} | not measured | | | |")
            continue
        start = f" (on from step {r['disc_start']})" if "disc_start" in r else ""
        lines.append(f"| {label}{start} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} "
                     f"| {r['recon_fd_pca_8x8']:.4f} | {r['sharpness']:.4f} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="all", choices=("all", "table", *_STAGES))
    parser.add_argument("--ae_steps", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=None,
                        help="learning-rate warmup steps (default: the configs')")
    parser.add_argument("--num_samples", type=int, default=512)
    parser.add_argument("--sample_steps", type=int, default=25)
    parser.add_argument("--ae_nf", type=int, default=None,
                        help="the autoencoders' base width (default: the config's, 32)")
    parser.add_argument("--unet_nf", type=int, default=None,
                        help="the UNets' base width (default: the config's, 32)")
    parser.add_argument("--workdir", default="/tmp/bench_latent")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    os.makedirs(args.workdir, exist_ok=True)
    dirs = {name: os.path.join(args.workdir, name) for name in _STAGES}
    stages = ("ae", "latent", "pixel", "lsgm") if args.stage == "all" else (
        () if args.stage == "table" else (args.stage,))
    for stage in stages:
        _run_stage(stage, args, dirs)
    command = ("python tools/bench_latent.py --stage STAGE "
               f"--ae_steps {args.ae_steps} --steps {args.steps} --batch {args.batch} "
               f"--num_samples {args.num_samples} --sample_steps {args.sample_steps}"
               + (f" --warmup {args.warmup}" if args.warmup is not None else "")
               + (f" --ae_nf {args.ae_nf}" if args.ae_nf else "")
               + (f" --unet_nf {args.unet_nf}" if args.unet_nf else "")
               + f" --workdir {args.workdir}")
    text = _table(args, dirs, command)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
