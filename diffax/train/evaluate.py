"""Evaluation of a trained run: restore, samples, held-out likelihood and metrics.

What ``diffax sample | likelihood | eval | demo`` compute, as importable functions::

    trained = evaluate.restore(workdir, experiment)        # the latest checkpoint, read-only
    out = evaluate.sample(trained, workdir)                 # samples/<tag>.npz and .png
    nll = evaluate.likelihood(trained, workdir)             # eval/likelihood.json
    metrics = evaluate.evaluate(trained, workdir, nll=nll)  # eval/metrics.json

Everything is written under the workdir:

* ``samples/<tag>.npz`` (array ``x`` ``[N, ...]`` in the data's own range and layout: images
  uint8 ``[N, H, W, C]`` in 0..255, 2-D points float32 ``[N, 2]``; ``range`` = (low, high) of
  that range, (-inf, inf) for real vectors; ``nfe``; ``step``) with ``samples/<tag>.png``: a
  grid of images, or a scatter plot of the points over the test data's density;
* ``eval/likelihood.json`` (test-set NLL through the probability-flow ODE: bits/dim for
  images, nats per example otherwise);
* ``eval/metrics.json`` (sample quality: Fréchet distance in a whitened PCA feature space
  fitted on the training split, sliced Wasserstein distance, both against the held-out split,
  with the same numbers for the training split (the floor) and for an untrained model (the
  baseline); nearest-training-example distances; NLL; NFE).

The ``eval`` config keys are :class:`diffax.train.options.EvalOptions`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import weakref
from typing import Any

from diffax.train import parallel
from diffax.train.build import Experiment
from diffax.train.options import ConfigError, EvalOptions, Options
from diffax.train.progress import Progress

__all__ = ["Trained", "stored_config", "restore", "sampling_program", "sample_labels",
           "generate", "sample", "likelihood", "evaluate", "run_all", "sample_pretrained",
           "held_out", "to_data_range", "plot", "summary_table", "write_json", "write_npz"]


@dataclasses.dataclass
class Trained:
    """A trained model ready to sample: its experiment, state and checkpoint step."""

    exp: Experiment
    state: Any
    step: int
    mesh: Any

    @property
    def options(self) -> Options:
        return self.exp.options


def stored_config(workdir: str, step: int | None = None) -> tuple[dict[str, Any], int]:
    """``(config, step)``: the config stored with checkpoint ``step`` (default: the latest) of
    ``workdir``, its ``sample`` and ``eval`` sections completed with the defaults
    (:data:`~diffax.train.options.SAMPLE_DEFAULTS`, :data:`~diffax.train.options.EVAL_DEFAULTS`)
    so that each key can be overridden.

    Raises:
      FileNotFoundError: no workdir, no checkpoints (naming ``--workdir``).
      LookupError: no checkpoint at ``step`` (naming ``--step``).
      diffax.train.CorruptCheckpointError: the stored config cannot be read.
    """
    from diffax.train.checkpoint import Checkpointer, CorruptCheckpointError
    from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir {workdir} does not exist")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--workdir {workdir} has no checkpoints/ (run `diffax train` "
                                "first)")
    with Checkpointer.open_read_only(directory) as ckpt:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(f"--workdir {workdir}: no complete checkpoint in "
                                    f"{directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise LookupError(f"--step {step}: no checkpoint at that step in {directory}; "
                              f"have {steps}")
        try:
            raw = ckpt.stored_config(step) or {}
        except CorruptCheckpointError as e:
            text = " ".join(str(e).split())[:700]
            raise CorruptCheckpointError(f"{text}; pick another with --step", step=e.step,
                                         path=e.path) from e
    raw["sample"] = dict(SAMPLE_DEFAULTS, **(raw.get("sample") or {}))
    raw["eval"] = dict(EVAL_DEFAULTS, **(raw.get("eval") or {}))
    raw.setdefault("data", {})
    return raw, step


def _template_state(exp: Experiment, mesh: Any) -> Any:
    import jax

    from diffax.train.state import TrainState

    def create():
        key = jax.random.key(0)
        params = exp.model.init(key, *exp.model.example_inputs())
        return TrainState.create(params=params, optimizer=exp.optimizer, key=key,
                                 ema_decays=exp.ema_decays)

    return parallel.abstract_like(jax.eval_shape(create), mesh)


def restore(workdir: str, exp: Experiment, *, step: int | None = None) -> Trained:
    """The train state of checkpoint ``step`` (default: the latest) of ``workdir``, opened
    read-only (:meth:`diffax.train.Checkpointer.open_read_only`), on this host's mesh.

    Raises:
      diffax.train.CorruptCheckpointError: if the checkpoint cannot be restored.
    """
    from diffax.train.checkpoint import Checkpointer, CorruptCheckpointError

    mesh = parallel.make_mesh()
    target = _template_state(exp, mesh)
    with Checkpointer.open_read_only(os.path.join(workdir, "checkpoints")) as ckpt:
        try:
            restored = ckpt.restore(target, step=step)
        except CorruptCheckpointError as e:
            raise CorruptCheckpointError(f"{e}; pick another with --step", step=e.step,
                                         path=e.path) from e
    return Trained(exp=exp, state=restored.state, step=restored.step, mesh=mesh)


def _say(text: str) -> None:
    import sys

    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _params(trained: Trained) -> Any:
    return trained.state.sampling_params(use_ema=trained.options.sample.use_ema)


def _batch_sharding(mesh: Any, batch: int) -> Any:
    from diffax.train import parallel

    if batch % mesh.devices.size == 0:
        return parallel.batch_sharding(mesh)
    return parallel.replicated_sharding(mesh)


def sampling_program(exp: Experiment, *, batch: int, mesh: Any) -> Any:
    """The one sampling program of an experiment: a jitted
    ``run(params, key, labels) -> (x [batch, ...], nfe)`` in the model's range.

    ``diffax sample | eval`` (:func:`generate`) and the training loop's periodic sample grids
    (:func:`diffax.train.loop.train_and_evaluate`) both run it, so the same options sample
    through the same compiled program (one per experiment object, batch and mesh: the
    loop's grids and ``diffax demo``'s samples of one experiment share it when their batch
    sizes agree; the eval samples and the untrained baseline always do). The prior draw and
    the solver's noise come from ``key`` (split in two); ``labels`` ``[batch]`` (int)
    condition a class-conditional model (``None`` otherwise, see :func:`sample_labels`); the
    prior is sharded over ``mesh``'s devices when ``batch`` divides over them. A discrete
    process (:mod:`diffax.discrete`) runs its ``sample.solver`` method on tokens
    ``[batch, L]``; CLD's state ``(x, v)`` returns its data part ``x``.

    Example (``exp`` from :func:`diffax.train.build.build_experiment`)::

        run = evaluate.sampling_program(exp, batch=64, mesh=parallel.make_mesh())
        x, nfe = run(params, jax.random.key(1), evaluate.sample_labels(exp, 64))
    """
    import jax

    from diffax import samplers

    programs = _PROGRAMS.get(id(exp))
    if programs is None:  # one cache per experiment object, dropped with it
        programs = _PROGRAMS[id(exp)] = {}
        weakref.finalize(exp, _PROGRAMS.pop, id(exp), None)
    if (batch, mesh) in programs:
        return programs[batch, mesh]
    if exp.process is None:
        raise ValueError(f"{exp.options.model.name!r} is an autoencoder: it has no sampler "
                         "(`diffax eval` reports its reconstructions; a stage-2 config with "
                         "config.latent.workdir samples its latents).")
    if getattr(exp, "divae", None) is not None:
        raise ValueError("a DiVAE decoder (config.latent.role='decoder') samples p(x | z) for "
                         "given codes: `diffax sample` / `eval` decode the codes of held-out "
                         "examples (diffax.train.divae); it has no unconditional sampler.")
    latent = getattr(exp, "latent", None)  # stage 2 of latent diffusion: sample latents
    shape = (batch, *(exp.data_info.shape if latent is None else latent.latent_shape))
    denoise_final = exp.options.sample.denoise_final

    def run(params, key, labels):
        if isinstance(exp.solver, str):  # a discrete process (diffax.discrete)
            from diffax import discrete

            res = discrete.sample(key, exp.process, exp.denoiser(params), shape=shape,
                                  num_steps=exp.sample_steps, method=exp.solver)
            return res.x, res.nfe
        k_init, k_solve = jax.random.split(key)
        x_init = exp.process.prior_sample(k_init, shape)
        x_init = jax.lax.with_sharding_constraint(x_init, _batch_sharding(mesh, batch))
        D = exp.denoiser(params, **({} if labels is None else {"label": labels}))
        res = samplers.sample(k_solve, exp.process, D, x_init, solver=exp.solver,
                              num_steps=exp.sample_steps, schedule=exp.sample_schedule,
                              denoise_final=denoise_final)
        x = res.x[0] if isinstance(res.x, tuple) else res.x  # CLD's (x, v): the data part
        if latent is not None:  # decoded to data space (LSGM: by the trained decoder)
            x = latent.decode(x) if exp.trainer is None else exp.trainer.decode(params, x)
        return x, res.nfe

    programs[batch, mesh] = jax.jit(run)
    return programs[batch, mesh]


_PROGRAMS: dict[int, dict[tuple[int, Any], Any]] = {}
""":func:`sampling_program`'s programs by experiment (``id``), then by ``(batch, mesh)``."""


def sample_labels(exp: Experiment, batch: int, *, offset: Any = 0) -> Any:
    """The class labels ``(arange(batch) + offset) % num_classes`` of a conditional model
    (``None`` for an unconditional one): every class in turn, starting at ``offset``."""
    import jax.numpy as jnp

    if not exp.conditional:
        return None
    num_classes = exp.data_info.num_classes
    return (jnp.arange(batch) + offset) % num_classes


def generate(trained: Trained, params: Any, *, num: int, batch_size: int, seed_tag: int,
             label: str) -> tuple[Any, int, float]:
    """``num`` samples in the model's range, the NFE per sample, and seconds spent, from
    :func:`sampling_program` in batches of ``batch_size`` (rounded to the devices)."""
    import jax
    import numpy as np

    exp = trained.exp
    batch = min(int(batch_size), int(num))
    batch = max(trained.mesh.devices.size, batch - batch % trained.mesh.devices.size)
    run = sampling_program(exp, batch=batch, mesh=trained.mesh)
    base = jax.random.fold_in(jax.random.key(trained.options.seed), seed_tag)
    chunks = int(math.ceil(num / batch))
    bar = Progress(label, num)
    start, out, nfe = time.perf_counter(), [], 0
    for i in range(chunks):
        key = jax.random.fold_in(base, i)
        labels = None
        if exp.conditional and not isinstance(exp.solver, str):
            # A random first class per batch, so that the classes are spread over batches.
            labels = sample_labels(exp, batch, offset=jax.random.randint(
                key, (), 0, exp.data_info.num_classes))
        x, n = run(params, key, labels)
        out.append(parallel.gather(x))
        nfe = int(n)
        bar.update(min((i + 1) * batch, num), f"NFE {nfe}")
    bar.close()
    return np.concatenate(out)[:num], nfe, time.perf_counter() - start


def to_data_range(exp: Any, x: Any) -> tuple[Any, tuple[float, float]]:
    """Samples from the model's range to the data's own range and layout."""
    import numpy as np

    from diffax import data

    if exp.data_info.is_image:
        return data.from_model_range(x, exp.options.data.value_range), (0.0, 255.0)
    if isinstance(exp.solver, str):  # tokens of a discrete process
        return np.asarray(x, np.int32), (0.0, float(exp.process.vocab_size - 1))
    return np.asarray(x, np.float32), (-math.inf, math.inf)


def held_out(exp: Any, split: str, max_examples: int | None = None) -> dict[str, Any]:
    """Examples of ``split`` in the data's own range (uint8 images), at most ``max_examples``.

    Raises:
      ConfigError: naming ``eval.split`` if the dataset has no such split.
    """
    from diffax import data

    data_opts = exp.options.data
    try:
        return data.load_split(data_opts.name, split=split, value_range=None,
                               max_examples=max_examples, **data_opts.source)
    except ValueError as e:
        raise ConfigError("eval.split", f"config.eval.split: {e}") from None


def plot(trained: Trained, x_data: Any, path: str, title: str) -> str:
    """A PNG of samples: an image grid, or for 2-D points a scatter over the held-out data's
    density; returns its path (``""`` for other data)."""
    from diffax.evaluation import plots

    exp = trained.exp
    if exp.data_info.is_image:
        # Small images are enlarged (8x8 digits to 64x64) and framed in grey.
        scale = max(1, 64 // max(exp.data_info.shape[0], 1))
        grid = plots.image_grid(x_data[:256], value_range=(0, 255), scale=scale,
                                pad=max(1, scale // 2), background=128)
        return plots.write_png(path, grid)
    if exp.data_info.shape == (2,):
        reference = held_out(exp, trained.options.eval.split)["x"]
        return plots.scatter_png(path, x_data, reference, title=title)
    return ""


def write_npz(path: str, **arrays: Any) -> None:
    """``numpy.savez`` written atomically (a temporary file, then a rename)."""
    import numpy as np

    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    """JSON written atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def sample(trained: Trained, workdir: str) -> dict[str, Any]:
    """Samples ``sample.num_samples`` examples; writes ``samples/<tag>.npz`` and the PNG.

    Returns:
      ``npz``, ``png`` (paths), ``num_samples``, ``nfe``, ``seconds``, ``x`` (the samples in
      the data's range), ``solver``, ``num_steps``.
    """
    import numpy as np

    if getattr(trained.exp, "divae", None) is not None:  # decodings of held-out codes
        from diffax.train import divae

        return divae.sample(trained, workdir)
    o = trained.options
    num = o.sample.num_samples
    x, nfe, seconds = generate(trained, _params(trained), num=num,
                               batch_size=o.eval.batch_size, seed_tag=1, label="sample")
    x_data, value_range = to_data_range(trained.exp, x)
    solver = o.sample.solver
    tag = f"step_{trained.step:08d}_{solver}_{trained.exp.sample_steps}_seed{o.seed}"
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    npz = os.path.join(workdir, "samples", tag + ".npz")
    write_npz(npz, x=x_data, range=np.asarray(value_range, np.float64),
               nfe=np.int64(nfe), step=np.int64(trained.step))
    title = f"{trained.exp.data_info.name}, step {trained.step}, {solver} NFE {nfe}"
    if isinstance(trained.exp.solver, str):
        png = write_tokens(trained.exp, x_data, os.path.join(workdir, "samples", tag + ".txt"))
        png = png if png.endswith(".png") else ""
    else:
        png = plot(trained, x_data, os.path.join(workdir, "samples", tag + ".png"), title)
    return {"npz": npz, "png": png, "num_samples": num, "nfe": nfe, "seconds": seconds,
            "x": x_data, "solver": solver, "num_steps": trained.exp.sample_steps}


def sample_pretrained(folder: str, workdir: str, *, seed: int, num_steps: int,
                      num_samples: int, batch_size: int, solver: Any = None,
                      schedule: Any = None) -> dict[str, Any]:
    """``diffax sample --pretrained``: samples of a local diffusers UNet (a model folder, or a
    pipeline folder holding ``unet/``) with the scheduler whose ``scheduler_config.json`` lies
    next to it (or in the pipeline's ``scheduler/``; diffusers' ``DDIMScheduler`` defaults
    without one), :func:`diffax.interop.pipeline.sample_pretrained`; writes
    ``samples/pretrained_<num_steps>steps_seed<seed>.npz`` (uint8 images in 0..255).

    Returns:
      ``npz`` (path), ``num_samples``, ``nfe``, ``folder`` (the model's), ``model`` and
      ``scheduler`` (diffusers class names), ``scheduler_config`` (where it came from).

    Raises:
      ValueError: a folder diffax cannot read, a conditional model, bad counts.
    """
    import jax
    import numpy as np

    from diffax import data, interop
    from diffax.interop import pipeline

    folder = root = os.path.expanduser(folder)
    if os.path.isfile(os.path.join(folder, "unet", "config.json")):
        folder = os.path.join(folder, "unet")
    pre = interop.load_pretrained(folder)
    roots = [r for r in (root, folder) if os.path.isfile(
        os.path.join(r, "scheduler_config.json")) or os.path.isfile(
        os.path.join(r, "scheduler", "scheduler_config.json"))]
    sched = interop.load_scheduler(roots[0] if roots else {"_class_name": "DDIMScheduler"})
    x, nfe = pipeline.sample_pretrained(
        jax.random.key(int(seed)), pre, sched, num_steps=num_steps, num_samples=num_samples,
        batch_size=batch_size, solver=solver, schedule=schedule)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    npz = os.path.join(workdir, "samples", f"pretrained_{num_steps}steps_seed{int(seed)}.npz")
    write_npz(npz, x=data.from_model_range(x), range=np.asarray((0.0, 255.0)),
              nfe=np.int64(nfe))
    return {"npz": npz, "num_samples": len(x), "nfe": nfe, "folder": folder,
            "model": pre.class_name, "scheduler": sched.class_name,
            "scheduler_config": f"the config in {roots[0]}" if roots else "diffusers' defaults"}


def likelihood(trained: Trained, workdir: str) -> dict[str, Any]:
    """Held-out NLL through the probability-flow ODE; writes ``eval/likelihood.json``.

    Images (uint8) are uniformly dequantized into the model's range and reported in bits/dim
    (:func:`diffax.likelihood.dequantize`, :func:`diffax.likelihood.bpd_from_logp`); other
    data in nats per example. Examples whose ODE solve failed are counted, not averaged.
    """
    import jax
    import numpy as np

    from diffax import cld
    from diffax import likelihood as lik

    if isinstance(trained.exp.solver, str):
        raise ConfigError("process.name", "a discrete process has no probability-flow ODE; "
                          "`diffax eval` reports its held-out NELBO")
    if getattr(trained.options, "lsgm", None) is not None:  # encoder draw + latent ODE
        from diffax.train.lsgm import lsgm_likelihood

        return lsgm_likelihood(trained, workdir)
    if trained.exp.trainer is not None and trained.exp.process is not None:  # (not a patchgan AE)
        raise ConfigError("gan", "a denoising diffusion GAN (config.gan) has no likelihood; set "
                          "eval.likelihood=False")
    if getattr(trained.exp, "divae", None) is not None:
        raise ConfigError("latent.role", "the likelihood of a DiVAE decoder "
                          "(config.latent.role='decoder') is not implemented; set "
                          "eval.likelihood=False")
    if trained.exp.process is None:
        raise ConfigError("eval.likelihood", "an autoencoder has no likelihood (its latent "
                          "diffusion model does: diffax likelihood of the stage-2 run); set "
                          "eval.likelihood=False")
    if getattr(trained.exp, "latent", None) is not None:  # latent NLL + decoder term
        from diffax.train.latent import latent_likelihood

        return latent_likelihood(trained, workdir)

    exp, ev = trained.exp, trained.options.eval
    held = held_out(exp, ev.split, ev.likelihood_examples)
    info = exp.data_info
    x_held = held["x"] if info.is_image else np.asarray(held["x"], np.float32)
    num, dims = len(x_held), int(np.prod(info.shape))
    value_range = exp.options.data.value_range
    dequantize = info.is_image and bool(ev.dequantize)
    divergence = ev.divergence
    kwargs = {"divergence": divergence, "rtol": float(ev.rtol), "atol": float(ev.atol)}
    if divergence == "hutchinson":
        kwargs["num_probes"] = int(ev.num_probes)
    num_classes = info.num_classes if exp.conditional else None
    is_cld = isinstance(exp.process, cld.CLD)
    labels = held.get("label")
    ndev = trained.mesh.devices.size
    batch = min(ev.batch_size, num)
    batch = max(ndev, batch + (-batch) % ndev)

    @jax.jit
    def run(params, key, x, label):
        k_deq, k_ll = jax.random.split(key)
        if info.is_image:
            if dequantize:
                x = lik.dequantize(k_deq, x, data_range=value_range)
            else:
                lo, hi = value_range
                x = lo + (hi - lo) * x.astype(jax.numpy.float32) / 255.0
        cond = {"label": label} if num_classes else {}
        D = exp.denoiser(params, **cond)
        if is_cld:  # the paper's bound on log p(x0): one velocity draw per example
            return cld._bound_and_nfe(k_ll, exp.process, D, x, num_samples=1, **kwargs)
        res = lik.log_likelihood(k_ll, exp.process, D, x, **kwargs)
        return res.logp, res.nfe

    params = _params(trained)
    key = jax.random.fold_in(jax.random.key(trained.options.seed), 7)
    logps, nfes = [], []
    bar = Progress("likelihood", num)
    start = time.perf_counter()
    for i, s in enumerate(range(0, num, batch)):
        xb, n = x_held[s:s + batch], len(x_held[s:s + batch])
        pad = batch - n
        lb = None
        if num_classes:
            lb = np.concatenate([np.asarray(labels[s:s + batch], np.int32),
                                 np.zeros(pad, np.int32)])
        if pad:
            xb = np.concatenate([xb, np.repeat(xb[:1], pad, axis=0)])
        xb = jax.device_put(xb, _batch_sharding(trained.mesh, batch))
        logp, nfe = run(params, jax.random.fold_in(key, i), xb, lb)
        logps.append(parallel.gather(logp)[:n])
        nfes.append(parallel.gather(nfe)[:n])
        shown = _nll_summary(np.concatenate(logps), info, dims, value_range, dequantize, lik)
        bar.update(min(s + n, num), f"NLL {shown['value']:.4g} {shown['unit']}")
    bar.close()
    nfe_all = np.concatenate(nfes).astype(np.float64)
    result = _nll_summary(np.concatenate(logps), info, dims, value_range, dequantize, lik)
    result.update({"nfe": float(np.mean(nfe_all)), "nfe_max": int(np.max(nfe_all)),
                   "divergence": divergence, "rtol": kwargs["rtol"], "atol": kwargs["atol"],
                   "split": ev.split, "step": trained.step,
                   "seconds": time.perf_counter() - start})
    if divergence == "hutchinson":
        result["num_probes"] = kwargs["num_probes"]
    if is_cld:
        result.update(_cld_bound_fields(result, dims))
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "likelihood.json")
    write_json(path, result)
    result["path"] = path
    return result


def _cld_bound_fields(result: dict[str, Any], dims: int) -> dict[str, Any]:
    """What a CLD likelihood reports besides the NLL: that it is the paper's bound, and the
    same number in the other unit (nats per example and bits/dim)."""
    value, stderr = result["value"], result["stderr"]
    if result["unit"] == "nats":
        nats = {"value": value, "stderr": stderr}
        bpd = {"value": value / (dims * math.log(2.0)), "stderr": stderr / (dims * math.log(2.0))}
    else:  # bits/dim (of dequantized images, in the data's 0..255 range)
        nats = {"value": value * dims * math.log(2.0), "stderr": stderr * dims * math.log(2.0)}
        bpd = {"value": value, "stderr": stderr}
    return {"bound": "upper bound on -log p(x0) (CLD, diffax.cld.data_log_likelihood_bound: "
                     "E_v0[log p(x0, v0) - log N(v0; 0, gamma M)], one velocity draw per "
                     "example)",
            "nats": nats, "bits_per_dim": bpd}


def _nll_summary(logp: Any, info: Any, dims: int, value_range: tuple[float, float],
                 dequantized: bool, lik: Any) -> dict[str, Any]:
    """Mean NLL and its standard error over the examples whose solve succeeded."""
    import numpy as np

    logp = np.asarray(logp, np.float64)
    if info.is_image:
        per = np.asarray(lik.bpd_from_logp(logp, dims, data_range=value_range), np.float64)
        unit = "bits/dim" if dequantized else "bits/dim (not dequantized)"
    else:
        per, unit = -logp, "nats"
    ok = per[np.isfinite(per)]
    stderr = float(ok.std(ddof=1) / math.sqrt(len(ok))) if len(ok) > 1 else float("nan")
    return {"value": float(ok.mean()) if len(ok) else float("nan"), "stderr": stderr,
            "unit": unit, "num_examples": int(len(per)), "num_failed": int(len(per) - len(ok))}


def _untrained_params(trained: Trained) -> Any:
    import jax

    from diffax.train import parallel

    exp = trained.exp
    key = jax.random.fold_in(jax.random.key(trained.options.seed), 99)
    return jax.jit(lambda k: exp.model.init(k, *exp.model.example_inputs()),
                   out_shardings=parallel.replicated_sharding(trained.mesh))(key)


def _quality(x: Any, reference: Any, pca: Any, ev: EvalOptions, scale: float
             ) -> dict[str, float]:
    from diffax.evaluation import metrics

    fa = metrics.gaussian_statistics(metrics.pca_features(pca, x))
    fb = metrics.gaussian_statistics(metrics.pca_features(pca, reference))
    return {"fd_pca": metrics.frechet_distance(*fa, *fb),
            "sliced_wasserstein": metrics.sliced_wasserstein(
                x / scale, reference / scale, num_projections=ev.num_projections)}


_MAX_TRAIN_EXAMPLES = 10_000  # training examples used for the PCA, the floor and neighbours


def _sample_scores(x: Any, x_untrained: Any, test_s: Any, train_s: Any, pca: Any,
                   ev: EvalOptions, is_image: bool) -> dict[str, Any]:
    """Samples ``x`` against held-out ``test_s`` (whitened-PCA Frechet distance and sliced
    Wasserstein), with the floor (as many training examples) and an untrained model's samples
    as references, and nearest-training-example distances; all arrays in the same units."""
    import numpy as np

    from diffax.evaluation import metrics

    # The floor: training examples (as many as there are samples) against the same test set.
    floor_idx = np.random.default_rng(0).permutation(len(train_s))[:len(x)]
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    sample_q = (_quality(x[finite], test_s, pca, ev, 1.0) if finite.sum() > 1
                else {"fd_pca": float("nan"), "sliced_wasserstein": float("nan")})
    nn_samples = metrics.nearest_neighbor_distances(x[finite], train_s)
    nn_test = metrics.nearest_neighbor_distances(test_s, train_s)
    return {
        "num_finite": int(finite.sum()),
        "fd_pca": sample_q["fd_pca"],
        "sliced_wasserstein": sample_q["sliced_wasserstein"],
        "reference": {
            "train_vs_held_out": _quality(train_s[floor_idx], test_s, pca, ev, 1.0),
            "untrained_model": _quality(x_untrained, test_s, pca, ev, 1.0)
            if np.isfinite(x_untrained).all() else None,
        },
        "nearest_train_distance": {
            "samples_median": float(np.median(nn_samples)) if len(nn_samples) else None,
            "held_out_median": float(np.median(nn_test)),
        },
        "feature_space": {
            "kind": "whitened PCA fitted on the training split"
                    + (" (pixels in [0, 1])" if is_image else ""),
            "num_components": int(pca.components.shape[0]),
            "explained_variance": float(np.sum(pca.explained_variance_ratio)),
        },
        "sliced_wasserstein_units": "pixels in [0, 1]" if is_image else "data units",
    }


def evaluate(trained: Trained, workdir: str, *, nll: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Sample quality against held-out data, NLL and NFE; writes ``eval/metrics.json``.
    Discrete processes: :func:`evaluate_tokens`."""
    import numpy as np

    from diffax.evaluation import metrics

    if isinstance(trained.exp.solver, str):
        return evaluate_tokens(trained, workdir)
    if trained.exp.process is None:  # an autoencoder (stage 1 of latent diffusion)
        from diffax.train.latent import evaluate_autoencoder

        return evaluate_autoencoder(trained, workdir)
    if getattr(trained.exp, "divae", None) is not None:  # DiVAE against the AE's decoder
        from diffax.train import divae

        return divae.evaluate(trained, workdir)

    exp, ev = trained.exp, trained.options.eval
    info = exp.data_info
    split = ev.split
    test = held_out(exp, split)["x"]
    train = held_out(exp, "train", _MAX_TRAIN_EXAMPLES)["x"]
    scale = 255.0 if info.is_image else 1.0  # image metrics on pixels in [0, 1]
    pca = metrics.fit_pca(np.asarray(train, np.float64) / scale,
                          num_components=ev.feature_dim)
    num = ev.num_samples
    x, nfe, seconds = generate(trained, _params(trained), num=num,
                                batch_size=ev.batch_size, seed_tag=2,
                                label="eval samples")
    x = to_data_range(exp, x)[0].astype(np.float64) / scale
    x_untrained, _, _ = generate(trained, _untrained_params(trained), num=num,
                                  batch_size=ev.batch_size, seed_tag=2,
                                  label="untrained baseline")
    x_untrained = to_data_range(exp, x_untrained)[0].astype(np.float64) / scale
    test_s = np.asarray(test, np.float64) / scale
    train_s = np.asarray(train, np.float64) / scale
    scores = _sample_scores(x, x_untrained, test_s, train_s, pca, ev, info.is_image)
    result: dict[str, Any] = {
        "step": trained.step,
        "data": {"name": info.name, "held_out_split": split, "num_held_out": int(len(test_s)),
                 "num_train": int(len(train_s)), "shape": list(info.shape)},
        "samples": {"num": int(num), "num_finite": scores.pop("num_finite"),
                    "solver": trained.options.sample.solver,
                    "num_steps": int(exp.sample_steps), "nfe": int(nfe),
                    "seconds": seconds},
        **scores,
        "nll": None,
        "nfe": {"sample": int(nfe)},
    }
    if info.name.startswith("digits_upsampled"):  # also scored by the 8x8 digits yardstick
        from diffax.train.latent import digits_8x8_scores

        result["digits_8x8"] = digits_8x8_scores(exp, x, x_untrained)
    if nll is None and ev.likelihood:
        nll = likelihood(trained, workdir)
    if nll is not None:
        result["nll"] = {k: v for k, v in nll.items() if k != "path"}
        result["nfe"]["likelihood_mean"] = nll["nfe"]
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "metrics.json")
    write_json(path, result)
    result["path"] = path
    return result


def write_tokens(exp: Any, x: Any, path: str) -> str:
    """Discrete samples: one decoded line per sample for text (``pydoc_text``) at ``path``; for
    ``digits_tokens`` a PNG grid of the images next to it; nothing otherwise. Returns the path
    written (or ``""``)."""
    import numpy as np

    from diffax import data

    if exp.data_info.name == "digits_tokens":
        from diffax.evaluation import plots

        images = data.digits_to_uint8(np.asarray(x).reshape(-1, 8, 8, 1))
        grid = plots.image_grid(images[:256], value_range=(0, 255), scale=8, pad=4,
                                background=128)
        return plots.write_png(os.path.splitext(path)[0] + ".png", grid)
    if exp.data_info.name != "pydoc_text":
        return ""
    with open(path, "w") as f:
        f.write("\n".join(data.decode_text(row) for row in x) + "\n")
    return path


def _digit_token_scores(trained: Trained, x: Any) -> dict[str, Any]:
    """``digits_tokens`` samples as 8x8 images in ``[0, 1]`` (the ``digits`` dataset's own
    pixels: same split, same ``digits_to_uint8`` map), scored as :func:`evaluate` scores the
    ``digits`` models (:func:`_sample_scores`, with an untrained model's samples)."""
    import numpy as np

    from diffax import data
    from diffax.evaluation import metrics

    ev = trained.options.eval
    pixels = lambda tokens: data.digits_to_uint8(np.asarray(tokens).reshape(-1, 8, 8, 1)
                                                 ).astype(np.float64) / 255.0
    test_s = pixels(held_out(trained.exp, ev.split)["x"])
    train_s = pixels(held_out(trained.exp, "train", _MAX_TRAIN_EXAMPLES)["x"])
    pca = metrics.fit_pca(train_s, num_components=ev.feature_dim)
    x_untrained, _, _ = generate(trained, _untrained_params(trained), num=len(x),
                                 batch_size=ev.batch_size, seed_tag=2,
                                 label="untrained baseline")
    return _sample_scores(pixels(x), pixels(x_untrained), test_s, train_s, pca, ev, True)


def evaluate_tokens(trained: Trained, workdir: str) -> dict[str, Any]:
    """A discrete model: held-out NELBO in bits per token next to add-one and Kneser-Ney
    n-gram baselines fitted on the training split, samples (text) and throughput, and for
    ``digits_tokens`` the samples' image scores (``image_quality``, as :func:`evaluate`);
    writes ``eval/metrics.json`` (with a printable ``table``) and ``eval/samples.txt``."""
    import jax

    from diffax.discrete import evaluation

    exp, o = trained.exp, trained.options
    ev = o.eval
    test = held_out(exp, ev.split, ev.likelihood_examples)["x"]
    train = held_out(exp, "train")["x"]
    baselines = evaluation.ngram_baselines(train, test, vocab_size=exp.process.vocab_size)
    params = _params(trained)
    bar = Progress("NELBO", len(test))
    steps = ev.nelbo_steps or None
    model = evaluation.held_out_nelbo(
        jax.random.fold_in(jax.random.key(o.seed), 7), exp.process, exp.denoiser, params, test,
        batch_size=ev.batch_size, num_samples=ev.num_probes, steps=steps,
        progress=bar.update)
    bar.close()
    num = ev.num_samples
    x, nfe, seconds = generate(trained, params, num=num, batch_size=ev.batch_size, seed_tag=2,
                               label="eval samples")
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    text = write_tokens(exp, x, os.path.join(workdir, "eval", "samples.txt"))
    length = int(test.shape[1])
    pixels = exp.data_info.name == "digits_tokens"  # tokens are grey levels: scored as images
    result = {
        "step": trained.step,
        "data": {"name": exp.data_info.name, "held_out_split": ev.split,
                 "num_held_out": int(len(test)), "num_train": int(len(train)),
                 "sequence_length": length},
        "nelbo": dict(model, unit="bits per token", num_probes=ev.num_probes, steps=steps),
        "baselines": baselines,
        "samples": {"num": int(num), "solver": exp.solver, "num_steps": int(exp.sample_steps),
                    "nfe": int(nfe), "seconds": seconds,
                    "tokens_per_second": num * length / max(seconds, 1e-9),
                    "text": text or None},
        "table": evaluation.format_table(model, baselines,
                                         unit="bits/pixel" if pixels else "bits/char"),
    }
    if pixels:  # scored as images, like the digits models
        result["image_quality"] = _digit_token_scores(trained, x)
    path = os.path.join(workdir, "eval", "metrics.json")
    write_json(path, result)
    result["path"] = path
    return result


# ============================================================================================
# Commands.


def run_all(trained: Trained, workdir: str) -> dict[str, Any]:
    """What ``diffax demo`` runs after training: samples (and held-out images beside them),
    the likelihood (``eval.likelihood``) and the metrics.

    Returns:
      ``metrics`` (as :func:`evaluate`), ``files`` (what was written, by kind) and
      ``seconds`` (by phase).
    """
    o, exp = trained.options, trained.exp
    t0 = time.perf_counter()
    samples = sample(trained, workdir)
    files = {"samples": [samples["png"], samples["npz"]]}
    seconds = {"sampling": time.perf_counter() - t0}
    if exp.data_info.is_image:  # held-out images in the same layout, to compare with
        held = held_out(exp, o.eval.split, samples["num_samples"])["x"]
        files["data"] = [plot(trained, held, os.path.join(
            workdir, "samples", f"{o.eval.split}_data.png"), "")]
    nll = likelihood(trained, workdir) if o.eval.likelihood else None
    seconds["likelihood"] = nll["seconds"] if nll else 0.0
    if nll is not None:
        files["likelihood"] = [nll["path"]]
    t1 = time.perf_counter()
    metrics = evaluate(trained, workdir, nll=nll)
    seconds["metrics"] = time.perf_counter() - t1
    files["metrics"] = [metrics["path"]]
    return {"metrics": metrics, "files": files, "seconds": seconds}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def summary_table(m: dict[str, Any]) -> str:
    if "table" in m:  # a discrete model (evaluate_tokens)
        if "image_quality" not in m:
            return m["table"]
        images = summary_table(dict(m["image_quality"], samples=m["samples"]))
        return f"{m['table']}\n\nsamples as 8x8 images:\n{images}"
    ref = m["reference"]
    untrained = ref.get("untrained_model") or {}
    rows = [("metric", "model", "train split", "untrained"),
            ("FD in PCA features", _fmt(m["fd_pca"]), _fmt(ref["train_vs_held_out"]["fd_pca"]),
             _fmt(untrained.get("fd_pca"))),
            ("sliced Wasserstein", _fmt(m["sliced_wasserstein"]),
             _fmt(ref["train_vs_held_out"]["sliced_wasserstein"]),
             _fmt(untrained.get("sliced_wasserstein"))),
            ("NFE per sample", str(m["samples"]["nfe"]), "", "")]
    if m.get("nll"):
        nll = m["nll"]
        rows.append((f"NLL ({nll['unit']})", f"{nll['value']:.3f} ± {nll['stderr']:.3f}",
                     "", ""))
        rows.append(("NFE likelihood (mean)", f"{nll['nfe']:.0f}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

