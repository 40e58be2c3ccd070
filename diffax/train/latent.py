"""Latent diffusion in the training runs: stage 1 (an autoencoder) and stage 2 (its latents).

* After ``diffax train`` of an autoencoder (``model.name`` ``autoencoder_kl`` |
  ``autoencoder_vq``), :func:`write_scale_factor` encodes the whole training split with the
  final sampling parameters and writes ``WORKDIR/latent_scale.json``: ``scale_factor = 1 /
  std`` of the latents (:func:`diffax.latent.measure_scale_factor`; KL: posterior samples with
  a fixed key, the latents stage 2 trains on; VQ: the quantised codes), with the step it
  belongs to.
* A stage-2 config names that workdir in ``config.latent.workdir``;
  :func:`load_autoencoder` restores the stage-1 checkpoint read-only, checks that it is an
  autoencoder (of the kind ``latent.autoencoder`` asks for) trained on the same data, reads
  the scale (or ``latent.scale_factor``) and returns the :class:`diffax.latent.FrozenAutoencoder`
  and scale. Every failure is a :class:`~diffax.train.options.ConfigError` naming the key.
* :func:`evaluate_autoencoder`: ``diffax eval`` of a stage-1 run (held-out reconstruction
  PSNR, codebook usage, the scale).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from diffax.train.options import AUTOENCODER_NAMES, ConfigError, LatentOptions

__all__ = ["SCALE_FILE", "write_scale_factor", "read_scale_factor", "load_autoencoder",
           "encode_split", "evaluate_autoencoder", "digits_8x8_scores", "latent_likelihood",
           "latent_bound_report"]

SCALE_FILE = "latent_scale.json"
"""The file in a stage-1 workdir holding the measured latent scale."""

_BATCH = 256
_SCALE_KEY_TAG = 17  # fold_in(seed key, tag): the posterior draws of the scale measurement


def _frozen(exp: Any, params: Any) -> Any:
    from diffax import latent

    if hasattr(exp.model, "autoencoder"):  # trained against a patch discriminator
        return latent.FrozenAutoencoder(module=exp.model.autoencoder,
                                        params=params["generator"])
    return latent.FrozenAutoencoder(module=exp.model, params=params)


def encode_split(exp: Any, params: Any, split: str, *, key: Any = None,
                 max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, z)``: examples of ``split`` in the model's range and their latents (posterior
    samples when ``key`` is given), in batches of 256 through one jitted program."""
    import jax

    from diffax import data

    o = exp.options.data
    x = data.load_split(o.name, split=split, value_range=o.value_range,
                        max_examples=max_examples, **o.source)["x"]
    ae = _frozen(exp, params)
    encode = jax.jit(lambda xb, k: ae.encode(xb, key=k))
    return x, _batched(lambda xb, i: encode(xb, None if key is None
                                            else jax.random.fold_in(key, i)), x)


def _batched(fn: Any, x: np.ndarray) -> np.ndarray:
    """``fn(batch, i)`` over ``x`` in batches of 256, the last one padded (one compile)."""
    out = []
    for i in range(0, len(x), _BATCH):
        xb = x[i:i + _BATCH]
        pad = _BATCH - len(xb)
        if pad:
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        out.append(np.asarray(fn(xb, i))[:_BATCH - pad])
    return np.concatenate(out)


def write_scale_factor(exp: Any, state: Any, workdir: str) -> dict[str, Any]:
    """Measures ``1 / std`` of the training split's latents and writes ``latent_scale.json``.

    The parameters are the ones ``diffax sample`` would use (``sample.use_ema``); a KL
    autoencoder's latents are posterior samples (``fold_in(key(seed), 17)``).
    """
    import jax

    from diffax import latent

    o = exp.options
    params = state.sampling_params(use_ema=o.sample.use_ema)
    key = (jax.random.fold_in(jax.random.key(o.seed), _SCALE_KEY_TAG)
           if o.model.name == "autoencoder_kl" else None)
    _, z = encode_split(exp, params, "train", key=key)
    result = latent.measure_scale_factor(z)
    result.update(step=int(state.step), split="train", autoencoder=o.model.name,
                  params="ema" if o.sample.use_ema and state.ema_decays else "raw",
                  latents="posterior samples" if key is not None else "quantised codes",
                  latent_shape=list(z.shape[1:]))
    path = os.path.join(workdir, SCALE_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return result


def read_scale_factor(workdir: str) -> dict[str, Any]:
    """The ``latent_scale.json`` of a stage-1 workdir.

    Raises:
      ConfigError: naming ``latent.workdir`` when the file is missing or unreadable.
    """
    path = os.path.join(workdir, SCALE_FILE)
    if not os.path.isfile(path):
        raise ConfigError("latent.workdir", f"config.latent.workdir={workdir!r} has no "
                          f"{SCALE_FILE} (the scale factor is measured when the stage-1 "
                          f"`diffax train` finishes); finish stage 1, or set "
                          f"config.latent.scale_factor.")
    try:
        with open(path) as f:
            out = json.load(f)
        float(out["scale_factor"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("latent.workdir", f"config.latent.workdir: cannot read {path}: "
                          f"{e}") from None
    return out


def load_autoencoder(opts: LatentOptions, data_name: str) -> tuple[Any, float, Any]:
    """``(FrozenAutoencoder, scale_factor, stage-1 experiment)`` of ``config.latent``.

    Raises:
      ConfigError: naming ``latent.workdir`` (no checkpoint, not an autoencoder, no scale),
        ``latent.autoencoder`` (another kind of autoencoder), ``latent.step`` (no such
        checkpoint, or a scale measured at another step) or ``data.name`` (other data).
    """
    from diffax.train import build, evaluate
    from diffax.train.options import parse_config

    workdir = os.path.abspath(os.path.expanduser(opts.workdir))
    try:
        raw, step = evaluate.stored_config(workdir, opts.step)
    except LookupError as e:
        raise ConfigError("latent.step", f"config.latent.step: {e}") from None
    except FileNotFoundError as e:
        raise ConfigError("latent.workdir", f"config.latent.workdir: {e}") from None
    try:
        stage1 = parse_config(raw, num_devices=1)
    except ConfigError as e:
        raise ConfigError("latent.workdir", f"config.latent.workdir={opts.workdir!r}: its "
                          f"stored config does not parse: {e}") from None
    name = stage1.model.name
    if name not in AUTOENCODER_NAMES:
        raise ConfigError("latent.workdir", f"config.latent.workdir={opts.workdir!r} holds a "
                          f"checkpoint of model.name={name!r}, not an autoencoder "
                          f"({', '.join(AUTOENCODER_NAMES)}).")
    if opts.autoencoder is not None and name != opts.autoencoder:
        raise ConfigError("latent.autoencoder", f"config.latent.autoencoder="
                          f"{opts.autoencoder!r} but the checkpoint in {opts.workdir!r} is an "
                          f"{name!r}.")
    if stage1.data.name != data_name:
        raise ConfigError("data.name", f"config.data.name={data_name!r} but the autoencoder "
                          f"in config.latent.workdir was trained on {stage1.data.name!r}.")
    if opts.scale_factor is not None:
        scale = float(opts.scale_factor)
    else:  # checked before the (slow) restore: `step` is the checkpoint it would restore
        stored = read_scale_factor(workdir)
        if int(stored.get("step", -1)) != step:
            raise ConfigError("latent.step", f"the {SCALE_FILE} of {opts.workdir!r} was "
                              f"measured at step {stored.get('step')}, the checkpoint restored "
                              f"is step {step}; set config.latent.step="
                              f"{stored.get('step')} or config.latent.scale_factor.")
        scale = float(stored["scale_factor"])
    exp = build.build_experiment(stage1)
    trained = evaluate.restore(workdir, exp, step=step)
    params = trained.state.sampling_params(use_ema=stage1.sample.use_ema)
    return _frozen(exp, params), scale, exp


def evaluate_autoencoder(trained: Any, workdir: str) -> dict[str, Any]:
    """``diffax eval`` of an autoencoder: held-out reconstruction PSNR (pixels in [0, 1],
    through the deterministic latent: posterior mean / quantised code), the VQ codebook's
    usage on the held-out codes, and the stored scale; writes ``eval/metrics.json``."""
    import jax

    from diffax import data, latent
    from diffax.evaluation import metrics
    from diffax.train import evaluate

    exp = trained.exp
    o = exp.options
    params = trained.state.sampling_params(use_ema=o.sample.use_ema)
    x, z = encode_split(exp, params, o.eval.split)
    ae = _frozen(exp, params)
    decode = jax.jit(ae.decode)
    recon = _batched(lambda zb, i: decode(zb), z)
    lo, hi = o.data.value_range
    as01 = lambda a: data.from_model_range(a, (lo, hi)).astype(np.float64) / 255.0
    psnr = np.asarray(metrics.psnr(as01(recon), as01(x), data_range=1.0))
    result: dict[str, Any] = {
        "step": trained.step, "autoencoder": o.model.name,
        "data": {"name": o.data.name, "held_out_split": o.eval.split, "num_held_out": len(x)},
        "latent_shape": list(z.shape[1:]),
        "reconstruction_psnr_db": {"mean": float(psnr.mean()),
                                   "stderr": float(psnr.std(ddof=1) / math.sqrt(len(psnr)))},
        "latent_std_held_out": float(z.std()),
    }
    if o.model.name == "autoencoder_vq":
        codebook = ae.params["params"]["codebook"]
        _, idx = latent.quantize(z, codebook)
        usage = latent.codebook_usage(idx, codebook.shape[0])
        result["codebook"] = {"size": int(codebook.shape[0]),
                              "fraction_used": float(usage["fraction_used"]),
                              "perplexity": float(usage["perplexity"])}
    if os.path.isfile(os.path.join(workdir, SCALE_FILE)):
        result["scale"] = read_scale_factor(workdir)
    rows = [f"reconstruction PSNR ({o.eval.split}, pixels in [0, 1]): "
            f"{result['reconstruction_psnr_db']['mean']:.2f} ± "
            f"{result['reconstruction_psnr_db']['stderr']:.2f} dB",
            f"latent shape {tuple(result['latent_shape'])}, held-out latent std "
            f"{result['latent_std_held_out']:.4g}"]
    if "scale" in result:
        rows.append(f"scale_factor {result['scale']['scale_factor']:.6g} (1 / std of the "
                    f"training latents at step {result['scale']['step']})")
    if "codebook" in result:
        c = result["codebook"]
        rows.append(f"codebook: {c['fraction_used']:.1%} of {c['size']} codewords used, "
                    f"perplexity {c['perplexity']:.1f}")
    result["table"] = "\n".join(rows)  # what `diffax eval` prints
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "metrics.json")
    evaluate.write_json(path, result)
    result["path"] = path
    return result


def digits_8x8_scores(exp: Any, x: np.ndarray, x_untrained: np.ndarray) -> dict[str, Any]:
    """Samples of a ``digits_upsampled/<S>`` model scored by the 8x8 digits yardstick:
    ``diffax.data.downsample_digits`` (the least-squares inverse of the upsampling) takes
    them (pixels in [0, 1]) back to 8x8, then the scores of ``diffax eval`` on the ``digits``
    dataset (PCA fitted on its training split, against its held-out split, with the training
    floor and the untrained model's samples beside them)."""
    from diffax import data
    from diffax.evaluation import metrics
    from diffax.train import evaluate

    o = exp.options
    source = {k: v for k, v in o.data.source.items() if k == "data_dir"}
    split = lambda s: data.load_split("digits", split=s, value_range=None,
                                      **source)["x"].astype(np.float64) / 255
    as8 = lambda a: data.downsample_digits(a, value_range=(0.0, 1.0)).astype(np.float64) / 255
    test8, train8 = split(o.eval.split), split("train")
    pca = metrics.fit_pca(train8, num_components=o.eval.feature_dim)
    scores = evaluate._sample_scores(as8(x), as8(x_untrained), test8, train8, pca, o.eval, True)
    scores["how"] = ("samples downsampled to 8x8 by diffax.data.downsample_digits, scored "
                     "against the `digits` dataset")
    return scores


_DECODER_STD_EXAMPLES = 1000  # training examples whose reconstruction error sets the std


def latent_likelihood(trained: Any, workdir: str) -> dict[str, Any]:
    """``diffax likelihood`` of latent diffusion (stage 2): the latent NLL through the
    probability-flow ODE plus the decoder term, in bits/dim of the 8-bit data
    (:func:`diffax.latent.latent_log_likelihood`); writes ``eval/likelihood.json``.

    The decoder is :class:`diffax.latent.DiscretizedGaussianDecoder` (a probability of the
    8-bit values, so no dequantisation) with ``std`` the root-mean-square reconstruction error
    of the autoencoder on the first 1000 training examples (its maximum-likelihood value), in
    the model's range. Per example, ``-log2 P(x) / N <= -(log P(x | u) + log p_Z(s u) +
    D log s - log q(u | x)) / (N ln 2)`` (``N`` data dimensions, ``D`` latent ones): an upper
    bound in expectation when the encoder has a posterior and ``latent.sample_posterior``
    (a KL autoencoder); for a deterministic encoder (VQ codes, or the posterior mean) the same
    sum without ``log q`` is reported and labelled as not a bound.
    """
    import jax

    from diffax import latent as latent_lib
    from diffax.train import evaluate

    exp = trained.exp
    o = trained.options
    lat = exp.latent
    lo, hi = o.data.value_range
    to_model = lambda k: lo + (hi - lo) * np.asarray(k, np.float32) / 255.0
    ae = lat.autoencoder
    recon = jax.jit(lambda xb: ae.decode(ae.encode(xb)))
    x_train = to_model(evaluate.held_out(exp, "train", _DECODER_STD_EXAMPLES)["x"])
    err = _batched(lambda xb, i: np.asarray(recon(xb), np.float64) - xb, x_train)
    std = float(np.sqrt(np.mean(np.square(err))))
    if not std > 0:
        raise ValueError(f"diffax likelihood: the autoencoder reconstructs the training "
                         f"examples exactly (rms error {std!r}); a decoder std of 0 gives no "
                         f"finite likelihood.")
    decoder = latent_lib.DiscretizedGaussianDecoder(std=std, data_range=(lo, hi))
    has_posterior = o.latent.sample_posterior and hasattr(getattr(ae, "module", None),
                                                          "posterior")
    decoder_info = {"kind": "discretized Gaussian on the 8-bit values", "std": std,
                    "std_from": f"rms reconstruction error on {len(x_train)} training examples "
                                f"(model range {lo:g}..{hi:g})"}
    return latent_bound_report(trained, workdir, latent_of=lambda params: lat, decoder=decoder,
                               sample_posterior=o.latent.sample_posterior,
                               has_posterior=has_posterior, decoder_info=decoder_info)


def latent_bound_report(trained: Any, workdir: str, *, latent_of: Any, decoder: Any,
                        sample_posterior: bool, has_posterior: bool,
                        decoder_info: dict[str, Any]) -> dict[str, Any]:
    """The held-out loop of :func:`latent_likelihood` (LDM stage 2) and of
    :func:`diffax.train.lsgm.lsgm_likelihood` (LSGM): one
    :func:`diffax.latent.latent_log_likelihood` per batch of 8-bit data, reported in bits/dim
    with its terms; writes ``eval/likelihood.json``.

    Args:
      trained: the restored run.
      workdir: where ``eval/likelihood.json`` goes.
      latent_of: ``params -> diffax.Latent`` (the autoencoder, latent process and scale of
        the sampling parameters).
      decoder: a :class:`diffax.latent.DiscretizedGaussianDecoder` of the 8-bit values.
      sample_posterior: draw ``u ~ q(u | x)`` (``latent_log_likelihood``'s argument).
      has_posterior: whether the sum is a bound (an encoder posterior is sampled).
      decoder_info: the ``decoder`` entry of the report (kind, std, where it comes from).
    """
    import time

    import jax

    from diffax import latent as latent_lib
    from diffax.train import evaluate, parallel
    from diffax.train.progress import Progress

    exp = trained.exp
    o = trained.options
    ev = o.eval
    lo, hi = o.data.value_range
    kwargs = {"divergence": ev.divergence, "rtol": float(ev.rtol), "atol": float(ev.atol)}
    if ev.divergence == "hutchinson":
        kwargs["num_probes"] = int(ev.num_probes)

    @jax.jit
    def run(params, key, k_uint8):
        xm = lo + (hi - lo) * k_uint8.astype(jax.numpy.float32) / 255.0
        r = latent_lib.latent_log_likelihood(
            key, latent_of(params), exp.denoiser(params), xm, decoder=decoder,
            sample_posterior=sample_posterior, data=k_uint8, **kwargs)
        return (r.logp, r.latent_logp, r.log_det_scale, r.decoder_logp, r.posterior_logq,
                r.nfe)

    held = evaluate.held_out(exp, ev.split, ev.likelihood_examples)["x"]
    num, dims = len(held), int(np.prod(exp.data_info.shape))
    ndev = trained.mesh.devices.size
    batch = min(ev.batch_size, num)
    batch = max(ndev, batch + (-batch) % ndev)
    params = trained.state.sampling_params(use_ema=o.sample.use_ema)
    lat = latent_of(params)
    key = jax.random.fold_in(jax.random.key(o.seed), 7)
    parts: list[list[np.ndarray]] = [[] for _ in range(6)]
    bar = Progress("likelihood", num)
    start = time.perf_counter()
    for i, s in enumerate(range(0, num, batch)):
        xb = held[s:s + batch]
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.repeat(xb[:1], batch - n, axis=0)])
        xb = jax.device_put(xb, evaluate._batch_sharding(trained.mesh, batch))
        for acc, v in zip(parts, run(params, jax.random.fold_in(key, i), xb), strict=True):
            acc.append(parallel.gather(v)[:n])
        bar.update(min(s + n, num))
    bar.close()
    logp, latent_lp, log_det, dec, logq, nfe = (np.concatenate(p).astype(np.float64)
                                                for p in parts)
    to_bpd = lambda v: -v / (dims * math.log(2.0))
    bpd = to_bpd(logp)
    ok = np.isfinite(bpd)
    mean_se = lambda v: (float(np.mean(v[ok])), float(np.std(v[ok], ddof=1) / math.sqrt(ok.sum()))
                         if ok.sum() > 1 else float("nan"))
    value, stderr = mean_se(bpd)
    result: dict[str, Any] = {
        "value": value, "stderr": stderr,
        "unit": "bits/dim" + (" (upper bound)" if has_posterior else " (not a bound)"),
        "bound": ("-log2 P(x)/N <= -(log P(x|u) + log p_Z(s u) + D log s - log q(u|x))/(N ln 2), "
                  "one posterior draw u ~ q(u|x) per example" if has_posterior else
                  "deterministic encoder: -(log P(x|u) + log p_Z(s u) + D log s)/(N ln 2) at "
                  "u = E(x), the code's rate + distortion, not a bound on -log2 P(x)/N"),
        "terms_bits_per_dim": {
            "latent_nll": mean_se(to_bpd(latent_lp))[0],
            "log_det_scale": mean_se(to_bpd(log_det))[0],
            "decoder": mean_se(to_bpd(dec))[0],
            "posterior_logq": -mean_se(to_bpd(logq))[0]},
        "decoder": decoder_info,
        "scale_factor": float(lat.scale_factor), "latent_dims": int(np.prod(lat.latent_shape)),
        "data_dims": dims, "num_examples": int(num), "num_failed": int((~ok).sum()),
        "nfe": float(np.mean(nfe)), "nfe_max": int(np.max(nfe)), "divergence": ev.divergence,
        "rtol": kwargs["rtol"], "atol": kwargs["atol"], "split": ev.split,
        "step": trained.step, "seconds": time.perf_counter() - start}
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "likelihood.json")
    evaluate.write_json(path, result)
    result["path"] = path
    return result
