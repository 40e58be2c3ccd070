"""DiVAE in the training runs: ``diffax sample`` / ``diffax eval`` of a diffusion decoder.

A DiVAE run (``config.latent.role="decoder"``, :mod:`diffax.divae`) trains ``p(x | z)`` on
the codes of a frozen stage-1 autoencoder. It has no unconditional sampler: its "samples" are
decodings of the codes of held-out examples (reconstructions), so

* :func:`sample` (``diffax sample``) reconstructs the first ``sample.num_samples`` examples of
  ``eval.split`` and writes ``samples/<tag>.npz`` (``x``: the DiVAE reconstructions in the
  data's range, ``original``, ``vq_decoder``: the autoencoder's own deterministic decoding of
  the same codes) and a PNG (rows of originals, autoencoder decodings, DiVAE decodings);
* :func:`evaluate` (``diffax eval``) reconstructs ``eval.num_samples`` held-out examples and
  compares the DiVAE decoder with the autoencoder's decoder on the same codes: PSNR (pixels
  in [0, 1]) and, for ``digits_upsampled/<S>``, the 8x8 yardstick after
  :func:`diffax.data.downsample_digits`: Fréchet distance in the whitened PCA features of the
  ``digits`` training split against its held-out split (with the originals and as many
  training digits beside them) and the digit score: the accuracy of a 1-nearest-neighbour
  classifier on the 8x8 training digits at recovering each original's label.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = ["reconstruct", "sample", "evaluate"]


def reconstruct(trained: Any, x: np.ndarray, *, seed_tag: int) -> dict[str, np.ndarray]:
    """DiVAE and autoencoder reconstructions of ``x`` (uint8 images): both in the data's range
    (uint8), through one jitted program in batches of ``eval.batch_size``."""
    import jax

    from diffax import data
    from diffax.train import evaluate, parallel

    exp = trained.exp
    o = trained.options
    params = trained.state.sampling_params(use_ema=o.sample.use_ema)
    value_range = o.data.value_range
    run = _program(exp)
    ndev = trained.mesh.devices.size
    batch = min(int(o.eval.batch_size), len(x))
    batch = max(ndev, batch + (-batch) % ndev)
    base = jax.random.fold_in(jax.random.key(o.seed), seed_tag)
    outs, vqs, nfe = [], [], 0
    for i, s in enumerate(range(0, len(x), batch)):
        xb = x[s:s + batch]
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.repeat(xb[:1], batch - n, axis=0)])
        xb = jax.device_put(xb, evaluate._batch_sharding(trained.mesh, batch))
        rec, vq, nfe = run(params, jax.random.fold_in(base, i), xb)
        outs.append(parallel.gather(rec)[:n])
        vqs.append(parallel.gather(vq)[:n])
    to_uint8 = lambda a: data.from_model_range(np.concatenate(a), value_range)
    return {"divae": to_uint8(outs), "vq_decoder": to_uint8(vqs), "nfe": int(nfe)}


_PROGRAMS: dict[int, Any] = {}


def _program(exp: Any) -> Any:
    """The jitted ``run(params, key, x_uint8) -> (divae, autoencoder, nfe)`` of an experiment
    (one per experiment object: ``diffax sample`` and ``eval`` share its compilations)."""
    import weakref

    import jax

    if id(exp) in _PROGRAMS:
        return _PROGRAMS[id(exp)]
    o = exp.options
    dv = exp.divae
    lo, hi = o.data.value_range

    @jax.jit
    def run(params, key, xb):
        xm = lo + (hi - lo) * xb.astype(jax.numpy.float32) / 255.0
        denoiser = lambda x, t, cond: exp.denoiser(params, cond=cond)(x, t)
        res = dv.reconstruct(key, denoiser, xm, solver=exp.solver, num_steps=exp.sample_steps,
                             schedule=exp.sample_schedule,
                             denoise_final=o.sample.denoise_final)
        return res.x, dv.autoencoder.decode(dv.autoencoder.encode(xm)), res.nfe

    _PROGRAMS[id(exp)] = run
    weakref.finalize(exp, _PROGRAMS.pop, id(exp), None)
    return run


def sample(trained: Any, workdir: str) -> dict[str, Any]:
    """``diffax sample`` of a DiVAE run (see the module docstring)."""
    from diffax.evaluation import plots
    from diffax.train import evaluate

    o = trained.options
    num = o.sample.num_samples
    x = evaluate.held_out(trained.exp, o.eval.split, num)["x"]
    rec = reconstruct(trained, x, seed_tag=1)
    tag = (f"step_{trained.step:08d}_{o.sample.solver}_{trained.exp.sample_steps}_seed{o.seed}"
           f"_reconstructions")
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    npz = os.path.join(workdir, "samples", tag + ".npz")
    evaluate.write_npz(npz, x=rec["divae"], original=x, vq_decoder=rec["vq_decoder"],
                       range=np.asarray((0.0, 255.0)), nfe=np.int64(rec["nfe"]),
                       step=np.int64(trained.step))
    k = min(len(x), 16)
    rows = np.concatenate([x[:k], rec["vq_decoder"][:k], rec["divae"][:k]])
    scale = max(1, 64 // max(x.shape[1], 1))
    grid = plots.image_grid(rows, value_range=(0, 255), scale=scale, pad=max(1, scale // 2),
                            background=128, num_cols=k)
    png = plots.write_png(os.path.join(workdir, "samples", tag + ".png"), grid)
    return {"npz": npz, "png": png, "num_samples": len(x), "nfe": rec["nfe"],
            "x": rec["divae"], "solver": o.sample.solver,
            "num_steps": trained.exp.sample_steps}


def _psnr(a: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from diffax.evaluation import metrics

    p = np.asarray(metrics.psnr(a.astype(np.float64) / 255.0, ref.astype(np.float64) / 255.0,
                                data_range=1.0), np.float64)
    p = p[np.isfinite(p)]  # an exact reconstruction has infinite PSNR
    return {"mean": float(p.mean()), "stderr": float(p.std(ddof=1) / math.sqrt(len(p))),
            "num_finite": int(len(p))}


def _digits_8x8(exp: Any, images: dict[str, np.ndarray], labels: np.ndarray | None
                ) -> dict[str, Any]:
    """The 8x8 yardstick of each set of 16x16 (or 32x32) uint8 ``images``."""
    from diffax import data
    from diffax.evaluation import metrics

    o = exp.options
    source = {k: v for k, v in o.data.source.items() if k == "data_dir"}
    load = lambda s: data.load_split("digits", split=s, value_range=None, **source)
    test, train = load(o.eval.split), load("train")
    test8 = test["x"].astype(np.float64) / 255
    train8 = train["x"].astype(np.float64) / 255
    pca = metrics.fit_pca(train8, num_components=o.eval.feature_dim)
    stats = lambda a: metrics.gaussian_statistics(metrics.pca_features(pca, a))
    ref = stats(test8)
    n = len(next(iter(images.values())))
    floor = train8[np.random.default_rng(0).permutation(len(train8))[:n]]
    flat_train = train8.reshape(len(train8), -1)
    out: dict[str, Any] = {"fd_pca": {}, "digit_score": {}}
    for name, x in {**images, "training_digits_floor": None}.items():
        x8 = floor if x is None else data.downsample_digits(x).astype(np.float64) / 255
        out["fd_pca"][name] = metrics.frechet_distance(*stats(x8), *ref)
        if x is not None and labels is not None:
            d = ((x8.reshape(len(x8), -1)[:, None, :] - flat_train[None]) ** 2).sum(-1)
            pred = train["label"][np.argmin(d, axis=1)]
            out["digit_score"][name] = float(np.mean(pred == labels))
    out["how"] = ("reconstructions downsampled to 8x8 by diffax.data.downsample_digits; FD in "
                  f"whitened {int(pca.components.shape[0])}-D PCA features of the `digits` "
                  f"training split against its {o.eval.split!r} split ({len(test8)} digits); "
                  "digit_score: accuracy of a 1-nearest-neighbour classifier on the 8x8 "
                  "training digits at recovering the original's label; "
                  "training_digits_floor: as many training digits as reconstructions")
    return out


def evaluate(trained: Any, workdir: str) -> dict[str, Any]:
    """``diffax eval`` of a DiVAE run: DiVAE against the autoencoder's own decoder on the
    codes of ``eval.num_samples`` held-out examples; writes ``eval/metrics.json``."""
    import time

    from diffax.train import evaluate as ev_lib

    exp, o = trained.exp, trained.options
    held = ev_lib.held_out(exp, o.eval.split, o.eval.num_samples)
    x = held["x"]
    start = time.perf_counter()
    rec = reconstruct(trained, x, seed_tag=2)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "step": trained.step, "model": "divae",
        "data": {"name": exp.data_info.name, "held_out_split": o.eval.split,
                 "num_reconstructed": int(len(x)), "shape": list(exp.data_info.shape)},
        "decoder": {"solver": o.sample.solver, "num_steps": int(exp.sample_steps),
                    "nfe": rec["nfe"], "seconds": seconds},
        "autoencoder": {"workdir": o.latent.workdir, "latent_shape": list(exp.divae.latent_shape),
                        "scale_factor": float(exp.divae.scale_factor)},
        "psnr_db": {"divae": _psnr(rec["divae"], x), "vq_decoder": _psnr(rec["vq_decoder"], x)},
    }
    if exp.data_info.name.startswith("digits_upsampled"):
        result["digits_8x8"] = _digits_8x8(
            exp, {"divae": rec["divae"], "vq_decoder": rec["vq_decoder"], "originals": x},
            held.get("label"))
    rows = [f"reconstructions of {len(x)} {o.eval.split} examples (DiVAE: "
            f"{o.sample.solver}, NFE {rec['nfe']})",
            "| decoder | PSNR dB | FD-PCA 8x8 | digit score |", "|---|---|---|---|"]
    d8 = result.get("digits_8x8", {"fd_pca": {}, "digit_score": {}})
    for name in ("divae", "vq_decoder", "originals", "training_digits_floor"):
        p = result["psnr_db"].get(name)
        fd, acc = d8["fd_pca"].get(name), d8["digit_score"].get(name)
        rows.append(f"| {name} | "
                    + (f"{p['mean']:.2f} ± {p['stderr']:.2f}" if p else "-") + " | "
                    + (f"{fd:.3f}" if fd is not None else "-") + " | "
                    + (f"{acc:.3f}" if acc is not None else "-") + " |")
    result["table"] = "\n".join(rows)
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "metrics.json")
    ev_lib.write_json(path, result)
    result["path"] = path
    return result
