"""The ``diffax`` command: ``train | sample | likelihood | eval | demo``.

The only place in diffax that parses command-line flags (absl flags; the experiment config is
an ml_collections config file, ``--config=configs/X.py[:variant]``, whose keys are overridden
with ``--config.section.key=value``).

::

    diffax train --config configs/toy2d_flow.py --workdir /tmp/toy [--config.train.num_steps=2000]
    diffax sample --workdir /tmp/toy [--config.sample.solver=heun --config.sample.num_steps=20]
    diffax likelihood --workdir /tmp/toy
    diffax eval --workdir /tmp/toy
    diffax demo --workdir /tmp/diffax-demo

``sample``, ``likelihood`` and ``eval`` read the config stored with the latest checkpoint in
``WORKDIR/checkpoints`` and accept overrides of its ``sample.*`` and ``eval.*`` keys (and
``seed``, ``data.data_dir``). Everything is written under the workdir:

* ``checkpoints/``, TensorBoard events and ``samples/step_*.png`` (training);
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

Usage errors (missing ``--workdir``, a workdir without checkpoints, an unknown config key, a
value of the wrong type or out of range, an unknown solver, a dataset that is not prepared)
print one line naming the key or argument and exit with code 2 before anything is computed or
written (:func:`diffax.train.build.check_config`). Faults found while running (a corrupt
checkpoint, a full disk, a NaN loss under ``train.nonfinite=error``, a dead process of a
multi-process job) print one line saying what and where, and exit with code 1.

Config keys of ``eval`` (defaults in brackets): ``split`` [test]: the held-out split;
``num_samples`` [1000]: samples scored; ``batch_size`` [500]: examples per device call when
sampling and computing likelihoods; ``feature_dim`` [16]: PCA components; ``num_projections``
[256]: directions of the sliced Wasserstein distance; ``likelihood`` [True]: include the NLL in
``diffax eval``; ``likelihood_examples`` [1000]: held-out examples for the NLL (at most the
split); ``divergence`` [exact]: exact | hutchinson; ``num_probes`` [1]; ``rtol`` [1e-5];
``atol`` [1e-5]; ``dequantize`` [True]: uniform dequantization of 8-bit images for the NLL.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "demo_config", "EVAL_DEFAULTS", "SAMPLE_DEFAULTS", "UsageError"]

#: Defaults of the ``eval`` section (see the module docstring).
EVAL_DEFAULTS: dict[str, Any] = {
    "split": "test",
    "num_samples": 1000,
    "batch_size": 500,
    "feature_dim": 16,
    "num_projections": 256,
    "likelihood": True,
    "likelihood_examples": 1000,
    "divergence": "exact",
    "num_probes": 1,
    "rtol": 1e-5,
    "atol": 1e-5,
    "dequantize": True,
}

#: Defaults of the ``sample`` section filled into a stored config so that every key can be
#: overridden on the command line (the same defaults :mod:`diffax.train.build` uses).
SAMPLE_DEFAULTS: dict[str, Any] = {
    "solver": "euler",
    "num_steps": 50,
    "num_samples": 64,
    "use_ema": True,
    "denoise_final": False,
    "order": 2,
    "eta": 0.0,
    "snr": 0.16,
    "churn": 0.0,
    "rtol": 1e-5,
    "atol": 1e-5,
}

# Keys `diffax sample | likelihood | eval` may override in a stored config.
_POST_TRAINING_KEYS = ("seed", "sample.", "eval.", "data.data_dir")


class UsageError(Exception):
    """A command-line error: printed as one line, exit code 2."""


def _one_line(error: BaseException | str) -> str:
    text = str(error)
    if isinstance(error, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1].encode().decode("unicode_escape")
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# ============================================================================================
# The demo's config (also configs/digits_demo.py).


def demo_config(variant: str = "") -> Any:
    """The config ``diffax demo`` trains by default: EDM on 8x8 digits with a small UNet.

    Args:
      variant: ``""`` (the demo) or ``"tiny"`` (a few steps of a tiny model, for tests).

    Example:
      >>> cfg = demo_config()
      >>> cfg.data.name, cfg.process.name, cfg.sample.solver
      ('digits', 'edm', 'heun')
    """
    import ml_collections

    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.process = ml_collections.ConfigDict(
        {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5})
    # Every UNet field that matters is stated, so the demo does not change with the variant.
    cfg.model = ml_collections.ConfigDict({
        "name": "unet", "variant": "digits", "conditional": False,
        "kwargs": {"nf": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (),
                   "dropout": 0.1, "resblock_type": "biggan", "embedding_type": "fourier"}})
    cfg.loss = ml_collections.ConfigDict(
        {"weighting": "edm", "prediction": "edm", "time_sampler": "lognormal",
         "lognormal_mean": -1.2, "lognormal_std": 1.2})
    cfg.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "warmup_steps": 100, "schedule": "constant",
         "grad_clip": 1.0, "ema_decays": (0.999,), "ema_warmup": True})
    cfg.train = ml_collections.ConfigDict(
        {"num_steps": 2000, "batch_size": 64, "checkpoint_every": 1000, "log_every": 100,
         "sample_every": 0, "n_jitted_steps": 1, "keep_last": 1})
    cfg.data = ml_collections.ConfigDict({"name": "digits", "value_range": (-1.0, 1.0)})
    cfg.sample = ml_collections.ConfigDict(dict(SAMPLE_DEFAULTS, solver="heun", num_steps=18,
                                                num_samples=100))
    cfg.eval = ml_collections.ConfigDict(dict(EVAL_DEFAULTS, num_samples=500, batch_size=500,
                                              likelihood_examples=200, divergence="hutchinson",
                                              num_probes=1, rtol=1e-3, atol=1e-3))
    if variant == "tiny":
        cfg.model.kwargs.update({"nf": 16})
        cfg.train.update({"num_steps": 4, "batch_size": 16, "checkpoint_every": 2,
                          "log_every": 2})
        cfg.sample.update({"num_steps": 4, "num_samples": 16})
        cfg.eval.update({"num_samples": 64, "likelihood_examples": 16, "batch_size": 64})
    elif variant:
        raise ValueError(f"demo_config: unknown variant {variant!r}; '' or 'tiny'.")
    cfg.lock()
    return cfg


# ============================================================================================
# Flags and configs.


@dataclasses.dataclass
class _Command:
    name: str
    summary: str
    description: str
    run: Callable[[Sequence[str]], int]


def _override_keys(argv: Sequence[str]) -> list[str]:
    keys = []
    for arg in argv:
        m = re.match(r"^--?(no)?config\.([^=]+)", arg)
        if m:
            keys.append(m.group(2))
    return keys


def _check_override_key(config: Any, key: str) -> None:
    """Raises UsageError unless ``key`` (``a.b.c``) names an existing field of ``config``."""
    node, path = config, []
    for part in key.split("."):
        fields = list(node.keys()) if hasattr(node, "keys") else []
        if part not in fields:
            where = ".".join(path) or "the config"
            close = difflib.get_close_matches(part, [str(f) for f in fields], n=1)
            hint = f"; did you mean `{'.'.join([*path, close[0]])}`?" if close else (
                f"; known keys of `{where}`: {', '.join(sorted(map(str, fields)))}"
                if fields else "")
            raise UsageError(f"unknown config key `{key}` (--config.{key}){hint}")
        node = node[part]
        path.append(part)


def _parse_flags(command: str, argv: Sequence[str], define: Callable[[Any], None], *,
                 config_file: bool = False, config_dict: Any = None,
                 allowed_overrides: tuple[str, ...] | None = None) -> Any:
    """Parses ``argv`` with a fresh ``FlagValues``: ``define(fv)`` adds the command's flags."""
    from absl import flags
    from ml_collections import config_flags

    argv = list(argv)
    overrides = _override_keys(argv)
    if allowed_overrides is not None:
        for key in overrides:
            if not any(key == a or key.startswith(a) for a in allowed_overrides):
                allowed = ", ".join(f"--config.{a}*" if a.endswith(".") else f"--config.{a}"
                                    for a in allowed_overrides)
                raise UsageError(f"--config.{key} cannot change after training: `diffax "
                                 f"{command}` uses the config stored with the checkpoint and "
                                 f"accepts only {allowed}")
    if config_dict is not None and any(re.match(r"^--?config(=|$)", a) for a in argv):
        raise UsageError(f"--config: `diffax {command}` reads the config stored in "
                         "WORKDIR/checkpoints; override keys with --config.KEY=VALUE")
    if config_file and overrides and not any(re.match(r"^--?config(=|$)", a) for a in argv):
        raise UsageError(f"--config.{overrides[0]} given without --config=FILE")
    if config_file:
        for i, arg in enumerate(argv):
            m = re.match(r"^--?config(=(.*))?$", arg)
            if m:
                value = m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else "")
                path = value.split(":", 1)[0]
                if not path or not os.path.isfile(path):
                    raise UsageError(f"--config: no such config file {path!r}")

    def flag_values(with_overrides: bool):
        fv = flags.FlagValues()
        args = argv if with_overrides else [a for a in argv
                                            if not re.match(r"^--?(no)?config\.", a)]
        sys_argv = [f"diffax {command}", *args]
        if config_file:
            config_flags.DEFINE_config_file("config", None, "The experiment config: a Python "
                                            "file with get_config(), optionally `FILE:variant`.",
                                            flag_values=fv, lock_config=True, sys_argv=sys_argv)
        elif config_dict is not None:
            config_flags.DEFINE_config_dict("config", config_dict, "The experiment config.",
                                            flag_values=fv, lock_config=True, sys_argv=sys_argv)
        define(fv)
        return fv, sys_argv

    try:
        if overrides and (config_file or config_dict is not None):
            # First pass without overrides: the config, to name unknown keys clearly.
            fv, sys_argv = flag_values(False)
            fv(sys_argv)
            for key in overrides:
                _check_override_key(fv.config, key)
        fv, sys_argv = flag_values(True)
        rest = fv(sys_argv)
    except UsageError:
        raise
    except flags.Error as e:
        raise UsageError(_one_line(e)) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, SyntaxError) as e:
        raise UsageError(_one_line(e)) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument {rest[1]!r} (flags are --name=value)")
    return fv


def _define_workdir(fv: Any, *, step: bool = True) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, samples, metrics.",
                        flag_values=fv)
    if step:
        flags.DEFINE_integer("step", None, "Checkpoint step to use (default: the latest).",
                             flag_values=fv)


def _require_workdir(fv: Any) -> str:
    if not fv.workdir:
        raise UsageError("--workdir is required")
    return os.path.abspath(os.path.expanduser(fv.workdir))


def _section(config: Any, name: str) -> dict[str, Any]:
    from diffax.train import build

    return build.section(config, name)


def _check_eval_section(config: Any) -> dict[str, Any]:
    cfg = dict(EVAL_DEFAULTS, **_section(config, "eval"))
    unknown = sorted(set(cfg) - set(EVAL_DEFAULTS))
    if unknown:
        raise UsageError(f"unknown config key(s) {', '.join('eval.' + k for k in unknown)}; "
                         f"known keys of `eval`: {', '.join(sorted(EVAL_DEFAULTS))}")
    for key in ("num_samples", "batch_size", "feature_dim", "num_projections",
                "likelihood_examples", "num_probes"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"config.eval.{key} must be an integer >= 1, got {v!r}")
    if cfg["divergence"] not in ("exact", "hutchinson"):
        raise UsageError(f"config.eval.divergence={cfg['divergence']!r} is not one of "
                         "'exact', 'hutchinson'")
    for key in ("rtol", "atol"):
        if not (isinstance(cfg[key], int | float) and cfg[key] > 0):
            raise UsageError(f"config.eval.{key} must be a positive number, got {cfg[key]!r}")
    return cfg


def _validate(config: Any, *, training: bool, distributed: dict[str, Any] | None = None) -> Any:
    """Every check that needs no compute; returns the built Experiment.

    Raises:
      UsageError: naming the config key.
    """
    from diffax import data
    from diffax.train import build, parallel

    for key in ("seed", "data", "train"):
        if config.get(key) is None:
            raise UsageError(f"config key `{key}` is required")
    try:
        if training:
            opts = build.train_options(config)
            parallel.initialize_distributed(heartbeat_timeout=opts.heartbeat_timeout,
                                            **(distributed or {}))
            import jax

            build.check_config(config, num_devices=jax.device_count())
        else:
            build.check_config(config, num_devices=1)
        data_cfg = build.section(config, "data")
        if data_cfg.get("name"):
            # A TFDS dataset that is not prepared fails here, before anything is written.
            data.data_source(data_cfg["name"], split=data_cfg.get("split", "train"),
                             **build.dataset_kwargs(data_cfg))
        exp = build.build_experiment(config)
        _check_eval_section(config)
    except UsageError:
        raise
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise UsageError(_one_line(e)) from None
    return exp


# ============================================================================================
# Console progress.


class _Bar:
    """A one-line progress bar on stdout (a line per update when stdout is not a terminal)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.start = label, max(int(total), 1), time.perf_counter()
        self.tty = sys.stdout.isatty()
        self.update(0)

    def update(self, done: int, extra: str = "") -> None:
        width = 24
        filled = int(width * min(done, self.total) / self.total)
        elapsed = time.perf_counter() - self.start
        line = (f"{self.label} {done}/{self.total} [{'#' * filled}{'-' * (width - filled)}] "
                f"{elapsed:.0f}s {extra}").rstrip()
        sys.stdout.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stdout.flush()

    def close(self) -> None:
        if self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ============================================================================================
# A trained model: restore, sample, likelihood.


@dataclasses.dataclass
class _Trained:
    config: Any
    exp: Any
    state: Any
    step: int
    mesh: Any
    # Jitted sampling programs by batch size: the eval samples and the untrained baseline
    # (other parameters, same shapes) run one compiled program.
    sample_fns: dict[int, Any] = dataclasses.field(default_factory=dict, repr=False)


_ITEMS = ("state", "data", "config")  # the items diffax.train.Checkpointer writes


def _read_only_manager(directory: str):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        directory, item_names=_ITEMS,
        options=ocp.CheckpointManagerOptions(read_only=True, create=False))


def _stored_config(workdir: str, step: int | None) -> tuple[Any, int]:
    """The config stored with checkpoint ``step`` (default latest), with sample/eval defaults."""
    import ml_collections
    import orbax.checkpoint as ocp

    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(workdir):
        raise UsageError(f"--workdir {workdir} does not exist")
    if not os.path.isdir(directory):
        raise UsageError(f"--workdir {workdir} has no checkpoints/ (run `diffax train` first)")
    manager = _read_only_manager(directory)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise UsageError(f"--workdir {workdir}: no complete checkpoint in {directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise UsageError(f"--step {step}: no checkpoint at that step in {directory}; have "
                             f"{steps}")
        try:
            stored = manager.restore(step, args=ocp.args.Composite(
                config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure to read means: corrupt
            from diffax.train.checkpoint import CorruptCheckpointError

            path = os.path.join(directory, str(step))
            raise CorruptCheckpointError(
                f"checkpoint {path}: its config cannot be read ({type(e).__name__}: "
                f"{_one_line(e)[:600]}); pick another with --step", step=step, path=path) from e
    finally:
        manager.close()
    raw = stored.config or {}
    raw["sample"] = dict(SAMPLE_DEFAULTS, **(raw.get("sample") or {}))
    raw["eval"] = dict(EVAL_DEFAULTS, **(raw.get("eval") or {}))
    raw.setdefault("data", {}).setdefault("data_dir", "")
    config = ml_collections.ConfigDict(raw)
    return config, step


def _clean_config(config: Any) -> Any:
    """``data.data_dir=''`` (a placeholder so it can be overridden) means the default."""
    if config.get("data") is not None and config.data.get("data_dir", None) == "":
        config.unlock()
        del config.data["data_dir"]
        config.lock()
    return config


def _template_state(exp: Any, mesh: Any) -> Any:
    import jax

    from diffax.train import parallel
    from diffax.train.state import TrainState

    def create():
        key = jax.random.key(0)
        params = exp.model.init(key, *exp.model.example_inputs())
        return TrainState.create(params=params, optimizer=exp.optimizer, key=key,
                                 ema_decays=exp.ema_decays)

    return parallel.abstract_like(jax.eval_shape(create), mesh)


def _restore(workdir: str, config: Any, step: int, exp: Any) -> _Trained:
    import orbax.checkpoint as ocp

    from diffax.train import parallel

    mesh = parallel.make_mesh()
    target = _template_state(exp, mesh)
    from diffax.train.checkpoint import CorruptCheckpointError

    manager = _read_only_manager(os.path.join(workdir, "checkpoints"))
    try:
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(
            target)))
    except Exception as e:  # noqa: BLE001 - any failure to read the arrays means: corrupt
        path = os.path.join(workdir, "checkpoints", str(step))
        raise CorruptCheckpointError(
            f"checkpoint {path} cannot be restored ({type(e).__name__}: {_one_line(e)[:600]}); "
            f"pick another with --step", step=step, path=path) from e
    finally:
        manager.close()
    return _Trained(config=config, exp=exp, state=out.state, step=step, mesh=mesh)


def _load(command: str, argv: Sequence[str], extra_flags: Callable[[Any], None] | None = None
          ) -> tuple[_Trained, Any]:
    """Parses ``--workdir``/``--step``/overrides, validates, restores the checkpoint."""
    from absl import flags

    # --workdir and --step first (the stored config defines which --config.* flags exist).
    pre = flags.FlagValues()
    _define_workdir(pre)
    if extra_flags:
        extra_flags(pre)
    try:
        pre([f"diffax {command}", *[a for a in argv if not re.match(r"^--?(no)?config", a)]])
    except flags.Error as e:
        raise UsageError(_one_line(e)) from None
    workdir = _require_workdir(pre)
    config, step = _stored_config(workdir, pre.step)

    def define(fv):
        _define_workdir(fv)
        if extra_flags:
            extra_flags(fv)

    fv = _parse_flags(command, argv, define, config_dict=config,
                      allowed_overrides=_POST_TRAINING_KEYS)
    config = _clean_config(fv.config)
    exp = _validate(config, training=False)
    _say(f"diffax {command}: restoring {workdir}/checkpoints/{step}")
    return _restore(workdir, config, step, exp), fv


def _params(trained: _Trained) -> Any:
    sample_cfg = _section(trained.config, "sample")
    state = trained.state
    if sample_cfg.get("use_ema", True) and state.ema_decays:
        return state.ema()
    return state.params


def _gather(x: Any) -> Any:
    import jax
    import numpy as np

    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _batch_sharding(mesh: Any, batch: int) -> Any:
    from diffax.train import parallel

    if batch % mesh.devices.size == 0:
        return parallel.batch_sharding(mesh)
    return parallel.replicated_sharding(mesh)


def _generate(trained: _Trained, params: Any, *, num: int, batch_size: int, seed_tag: int,
              label: str) -> tuple[Any, int, float]:
    """``num`` samples in the model's range, the NFE per sample, and seconds spent."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffax import samplers

    exp, config = trained.exp, trained.config
    sample_cfg = _section(config, "sample")
    denoise_final = bool(sample_cfg.get("denoise_final", False))
    batch = min(int(batch_size), int(num))
    batch = max(trained.mesh.devices.size, batch - batch % trained.mesh.devices.size)
    shape = (batch, *exp.data_info.shape)
    num_classes = exp.data_info.num_classes if exp.conditional else None

    def run(params, key):
        k_init, k_solve = jax.random.split(key)
        x_init = exp.process.prior_sample(k_init, shape)
        x_init = jax.lax.with_sharding_constraint(x_init, _batch_sharding(trained.mesh, batch))
        cond = {}
        if num_classes:
            cond["label"] = (jnp.arange(batch) + jax.random.randint(key, (), 0, num_classes)
                             ) % num_classes
        D = exp.loss.denoiser(exp.apply_fn, params, **cond)
        res = samplers.sample(k_solve, exp.process, D, x_init, solver=exp.solver,
                              num_steps=exp.sample_steps, schedule=exp.sample_schedule,
                              denoise_final=denoise_final)
        return res.x, res.nfe

    run = trained.sample_fns.setdefault(batch, jax.jit(run))
    base = jax.random.fold_in(jax.random.key(int(config.seed)), seed_tag)
    chunks = int(math.ceil(num / batch))
    bar = _Bar(label, num)
    start, out, nfe = time.perf_counter(), [], 0
    for i in range(chunks):
        x, n = run(params, jax.random.fold_in(base, i))
        out.append(_gather(x))
        nfe = int(n)
        bar.update(min((i + 1) * batch, num), f"NFE {nfe}")
    bar.close()
    return np.concatenate(out)[:num], nfe, time.perf_counter() - start


def _to_data_range(exp: Any, config: Any, x: Any) -> tuple[Any, tuple[float, float]]:
    """Samples from the model's range to the data's own range and layout."""
    import numpy as np

    from diffax import data

    if exp.data_info.is_image:
        value_range = tuple(_section(config, "data").get("value_range", (-1.0, 1.0)))
        return data.from_model_range(x, value_range), (0.0, 255.0)
    return np.asarray(x, np.float32), (-math.inf, math.inf)


def _held_out(exp: Any, config: Any, split: str, max_examples: int | None = None
              ) -> dict[str, Any]:
    from diffax import data
    from diffax.train import build

    data_cfg = _section(config, "data")
    kwargs = build.dataset_kwargs(data_cfg)
    try:
        return data.load_split(data_cfg["name"], split=split, value_range=None,
                               max_examples=max_examples, **kwargs)
    except ValueError as e:
        raise UsageError(f"config.eval.split: {_one_line(e)}") from None


def _plot(trained: _Trained, x_data: Any, path: str, title: str) -> str:
    from diffax.evaluation import plots

    exp = trained.exp
    if exp.data_info.is_image:
        # Small images are enlarged (8x8 digits to 64x64) and framed in grey.
        scale = max(1, 64 // max(exp.data_info.shape[0], 1))
        grid = plots.image_grid(x_data[:256], value_range=(0, 255), scale=scale,
                                pad=max(1, scale // 2), background=128)
        return plots.write_png(path, grid)
    if exp.data_info.shape == (2,):
        split = _check_eval_section(trained.config)["split"]
        reference = _held_out(exp, trained.config, split)["x"]
        return plots.scatter_png(path, x_data, reference, title=title)
    return ""


def _write_npz(path: str, **arrays: Any) -> None:
    import numpy as np

    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def do_sample(trained: _Trained, workdir: str) -> dict[str, Any]:
    """Samples ``sample.num_samples`` examples; writes the npz and the PNG."""
    import numpy as np

    sample_cfg = _section(trained.config, "sample")
    eval_cfg = _check_eval_section(trained.config)
    num = int(sample_cfg.get("num_samples", 64))
    x, nfe, seconds = _generate(trained, _params(trained), num=num,
                                batch_size=eval_cfg["batch_size"], seed_tag=1, label="sample")
    x_data, value_range = _to_data_range(trained.exp, trained.config, x)
    solver = str(sample_cfg.get("solver", "euler"))
    tag = (f"step_{trained.step:08d}_{solver}_{trained.exp.sample_steps}"
           f"_seed{int(trained.config.seed)}")
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    npz = os.path.join(workdir, "samples", tag + ".npz")
    _write_npz(npz, x=x_data, range=np.asarray(value_range, np.float64),
               nfe=np.int64(nfe), step=np.int64(trained.step))
    title = f"{trained.exp.data_info.name}, step {trained.step}, {solver} NFE {nfe}"
    png = _plot(trained, x_data, os.path.join(workdir, "samples", tag + ".png"), title)
    return {"npz": npz, "png": png, "num_samples": num, "nfe": nfe, "seconds": seconds,
            "x": x_data, "solver": solver, "num_steps": trained.exp.sample_steps}


def _likelihood_fn():
    """``diffax.likelihood`` (log_likelihood, dequantize, bpd_from_logp), or None."""
    try:
        from diffax import likelihood
    except ImportError:
        return None
    needed = ("log_likelihood", "dequantize", "bpd_from_logp")
    return likelihood if all(hasattr(likelihood, n) for n in needed) else None


def do_likelihood(trained: _Trained, workdir: str) -> dict[str, Any]:
    """Held-out NLL through the probability-flow ODE; writes ``eval/likelihood.json``.

    Images (uint8) are uniformly dequantized into the model's range and reported in bits/dim
    (:func:`diffax.likelihood.dequantize`, :func:`diffax.likelihood.bpd_from_logp`); other
    data in nats per example. Examples whose ODE solve failed are counted, not averaged.
    """
    import jax
    import numpy as np

    lik = _likelihood_fn()
    if lik is None:
        raise RuntimeError("diffax.likelihood is not available in this installation.")
    exp, config = trained.exp, trained.config
    eval_cfg = _check_eval_section(config)
    held = _held_out(exp, config, eval_cfg["split"], eval_cfg["likelihood_examples"])
    info = exp.data_info
    x_held = held["x"] if info.is_image else np.asarray(held["x"], np.float32)
    num, dims = len(x_held), int(np.prod(info.shape))
    value_range = tuple(float(v) for v in
                        _section(config, "data").get("value_range", (-1.0, 1.0)))
    dequantize = info.is_image and bool(eval_cfg["dequantize"])
    divergence = eval_cfg["divergence"]
    kwargs = {"divergence": divergence, "rtol": float(eval_cfg["rtol"]),
              "atol": float(eval_cfg["atol"])}
    if divergence == "hutchinson":
        kwargs["num_probes"] = int(eval_cfg["num_probes"])
    num_classes = info.num_classes if exp.conditional else None
    labels = held.get("label")
    ndev = trained.mesh.devices.size
    batch = min(eval_cfg["batch_size"], num)
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
        D = exp.loss.denoiser(exp.apply_fn, params, **cond)
        res = lik.log_likelihood(k_ll, exp.process, D, x, **kwargs)
        return res.logp, res.nfe

    params = _params(trained)
    key = jax.random.fold_in(jax.random.key(int(config.seed)), 7)
    logps, nfes = [], []
    bar = _Bar("likelihood", num)
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
        logps.append(_gather(logp)[:n])
        nfes.append(_gather(nfe)[:n])
        shown = _nll_summary(np.concatenate(logps), info, dims, value_range, dequantize, lik)
        bar.update(min(s + n, num), f"NLL {shown['value']:.4g} {shown['unit']}")
    bar.close()
    nfe_all = np.concatenate(nfes).astype(np.float64)
    result = _nll_summary(np.concatenate(logps), info, dims, value_range, dequantize, lik)
    result.update({"nfe": float(np.mean(nfe_all)), "nfe_max": int(np.max(nfe_all)),
                   "divergence": divergence, "rtol": kwargs["rtol"], "atol": kwargs["atol"],
                   "split": eval_cfg["split"], "step": trained.step,
                   "seconds": time.perf_counter() - start})
    if divergence == "hutchinson":
        result["num_probes"] = kwargs["num_probes"]
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "likelihood.json")
    _write_json(path, result)
    result["path"] = path
    return result


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


def _untrained_params(trained: _Trained) -> Any:
    import jax

    from diffax.train import parallel

    exp = trained.exp
    key = jax.random.fold_in(jax.random.key(int(trained.config.seed)), 99)
    return jax.jit(lambda k: exp.model.init(k, *exp.model.example_inputs()),
                   out_shardings=parallel.replicated_sharding(trained.mesh))(key)


def _quality(x: Any, reference: Any, pca: Any, eval_cfg: dict[str, Any], scale: float
             ) -> dict[str, float]:
    from diffax.evaluation import metrics

    fa = metrics.gaussian_statistics(metrics.pca_features(pca, x))
    fb = metrics.gaussian_statistics(metrics.pca_features(pca, reference))
    return {"fd_pca": metrics.frechet_distance(*fa, *fb),
            "sliced_wasserstein": metrics.sliced_wasserstein(
                x / scale, reference / scale, num_projections=eval_cfg["num_projections"])}


_MAX_TRAIN_EXAMPLES = 10_000  # training examples used for the PCA, the floor and neighbours


def do_eval(trained: _Trained, workdir: str, *, likelihood: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Sample quality against held-out data, NLL and NFE; writes ``eval/metrics.json``."""
    import numpy as np

    from diffax.evaluation import metrics

    exp, config = trained.exp, trained.config
    eval_cfg = _check_eval_section(config)
    info = exp.data_info
    split = eval_cfg["split"]
    test = _held_out(exp, config, split)["x"]
    train = _held_out(exp, config, "train", _MAX_TRAIN_EXAMPLES)["x"]
    scale = 255.0 if info.is_image else 1.0  # image metrics on pixels in [0, 1]
    pca = metrics.fit_pca(np.asarray(train, np.float64) / scale,
                          num_components=eval_cfg["feature_dim"])
    num = eval_cfg["num_samples"]
    x, nfe, seconds = _generate(trained, _params(trained), num=num,
                                batch_size=eval_cfg["batch_size"], seed_tag=2,
                                label="eval samples")
    x = _to_data_range(exp, config, x)[0].astype(np.float64) / scale
    x_untrained, _, _ = _generate(trained, _untrained_params(trained), num=num,
                                  batch_size=eval_cfg["batch_size"], seed_tag=2,
                                  label="untrained baseline")
    x_untrained = _to_data_range(exp, config, x_untrained)[0].astype(np.float64) / scale
    test_s = np.asarray(test, np.float64) / scale
    train_s = np.asarray(train, np.float64) / scale
    # The floor: training examples (as many as there are samples) against the same test set.
    floor_idx = np.random.default_rng(0).permutation(len(train_s))[:num]
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    sample_q = (_quality(x[finite], test_s, pca, eval_cfg, 1.0) if finite.sum() > 1
                else {"fd_pca": float("nan"), "sliced_wasserstein": float("nan")})
    nn_samples = metrics.nearest_neighbor_distances(x[finite], train_s)
    nn_test = metrics.nearest_neighbor_distances(test_s, train_s)
    sample_cfg = _section(config, "sample")
    result: dict[str, Any] = {
        "step": trained.step,
        "data": {"name": info.name, "held_out_split": split, "num_held_out": int(len(test_s)),
                 "num_train": int(len(train_s)), "shape": list(info.shape)},
        "samples": {"num": int(num), "num_finite": int(finite.sum()),
                    "solver": str(sample_cfg.get("solver")),
                    "num_steps": int(exp.sample_steps), "nfe": int(nfe),
                    "seconds": seconds},
        "fd_pca": sample_q["fd_pca"],
        "sliced_wasserstein": sample_q["sliced_wasserstein"],
        "reference": {
            "train_vs_held_out": _quality(train_s[floor_idx], test_s, pca, eval_cfg, 1.0),
            "untrained_model": _quality(x_untrained, test_s, pca, eval_cfg, 1.0)
            if np.isfinite(x_untrained).all() else None,
        },
        "nearest_train_distance": {
            "samples_median": float(np.median(nn_samples)) if len(nn_samples) else None,
            "held_out_median": float(np.median(nn_test)),
        },
        "feature_space": {
            "kind": "whitened PCA fitted on the training split"
                    + (" (pixels in [0, 1])" if info.is_image else ""),
            "num_components": int(pca.components.shape[0]),
            "explained_variance": float(np.sum(pca.explained_variance_ratio)),
        },
        "sliced_wasserstein_units": "pixels in [0, 1]" if info.is_image else "data units",
        "nll": None,
        "nfe": {"sample": int(nfe)},
    }
    if likelihood is None and eval_cfg["likelihood"]:
        if _likelihood_fn() is None:
            _say("diffax eval: diffax.likelihood is not available; NLL skipped.")
        else:
            likelihood = do_likelihood(trained, workdir)
    if likelihood is not None:
        result["nll"] = {k: v for k, v in likelihood.items() if k != "path"}
        result["nfe"]["likelihood_mean"] = likelihood["nfe"]
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", "metrics.json")
    _write_json(path, result)
    result["path"] = path
    return result


# ============================================================================================
# Commands.


def _define_train_flags(fv: Any) -> None:
    from absl import flags

    _define_workdir(fv, step=False)
    flags.DEFINE_bool("distributed", False, "Join a multi-process job: call "
                      "jax.distributed.initialize(), which finds the cluster by itself on Cloud "
                      "TPU, Slurm and Open MPI (already done when such a cluster is in the "
                      "environment, except on Cloud TPU VMs).", flag_values=fv)
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0's coordination "
                        "service, for clusters jax does not detect (needs --num_processes and "
                        "--process_id).", flag_values=fv)
    flags.DEFINE_integer("num_processes", None, "Processes in the job (with "
                         "--coordinator_address).", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes) "
                         "(with --coordinator_address).", flag_values=fv)
    flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for every process to "
                         "join before failing.", flag_values=fv)
    flags.DEFINE_bool("restore_fallback", False, "If the newest checkpoint is corrupt or was "
                      "written by an incompatible config, move it to checkpoints.corrupt/ and "
                      "resume from the newest good one (sets config.train.restore_fallback).",
                      flag_values=fv)


def _distributed_options(fv: Any) -> dict[str, Any]:
    """The keyword arguments for ``parallel.initialize_distributed`` from the train flags."""
    explicit = {k: fv[k].value for k in ("coordinator_address", "num_processes", "process_id")}
    given = [k for k, v in explicit.items() if v is not None]
    if fv.distributed_timeout < 1:
        raise UsageError(f"--distributed_timeout must be >= 1 second, got "
                         f"{fv.distributed_timeout}")
    if not given:
        return {"force": True, "initialization_timeout": fv.distributed_timeout} \
            if fv.distributed else {}
    missing = [k for k in explicit if explicit[k] is None]
    if missing:
        raise UsageError(f"--{', --'.join(given)} also need{'s' if len(given) == 1 else ''} "
                         f"--{' and --'.join(missing)}")
    if not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", explicit["coordinator_address"]):
        raise UsageError(f"--coordinator_address must be host:port, got "
                         f"{explicit['coordinator_address']!r}")
    if explicit["num_processes"] < 1:
        raise UsageError(f"--num_processes must be >= 1, got {explicit['num_processes']}")
    if not 0 <= explicit["process_id"] < explicit["num_processes"]:
        raise UsageError(f"--process_id must be in [0, {explicit['num_processes']}) "
                         f"(--num_processes), got {explicit['process_id']}")
    return dict(explicit, initialization_timeout=fv.distributed_timeout)


def _cmd_train(argv: Sequence[str]) -> int:
    fv = _parse_flags("train", argv, _define_train_flags, config_file=True)
    workdir = _require_workdir(fv)
    if fv.config is None:
        raise UsageError("--config is required (e.g. --config=configs/toy2d_flow.py)")
    config = fv.config
    if fv.restore_fallback:
        config.unlock()
        config.train.restore_fallback = True
        config.lock()
    _validate(config, training=True, distributed=_distributed_options(fv))
    from diffax.train import loop

    _say(f"diffax train: {fv['config'].config_filename} -> {workdir}")
    result = loop.train_and_evaluate(config, workdir)
    _say(f"diffax train: step {result.step}; checkpoints in {workdir}/checkpoints")
    return 0


def _cmd_sample(argv: Sequence[str]) -> int:
    if any(re.match(r"^--?pretrained(=|$)", a) for a in argv):
        return _cmd_sample_pretrained(argv)
    trained, fv = _load("sample", argv)
    out = do_sample(trained, _require_workdir(fv))
    _say(f"diffax sample: {out['num_samples']} samples, NFE {out['nfe']} -> {out['npz']}"
         + (f", {out['png']}" if out["png"] else ""))
    return 0


def _cmd_sample_pretrained(argv: Sequence[str]) -> int:
    """``diffax sample --pretrained DIR --workdir OUT``: a local diffusers UNet, no training."""
    import jax
    import ml_collections
    import numpy as np
    from absl import flags

    from diffax import data, interop
    from diffax.interop import pipeline
    from diffax.train import build

    defaults = ml_collections.ConfigDict({
        "seed": 0, "eval": {"batch_size": 16},
        "sample": dict(SAMPLE_DEFAULTS, solver="ddim", num_steps=50, num_samples=16)})

    def define(fv):
        _define_workdir(fv, step=False)
        flags.DEFINE_string("pretrained", None, "A local diffusers folder: a UNet2DModel "
                            "model folder, or a pipeline folder holding unet/.", flag_values=fv)

    fv = _parse_flags("sample", argv, define, config_dict=defaults,
                      allowed_overrides=("seed", "sample.", "eval.batch_size"))
    workdir = _require_workdir(fv)
    folder = root = os.path.expanduser(fv.pretrained or "")
    if os.path.isfile(os.path.join(folder, "unet", "config.json")):
        folder = os.path.join(folder, "unet")
    cfg = dict(fv.config.sample)
    try:
        solver, num_steps = build.build_solver(cfg)
        schedule = build.build_schedule(cfg)
        pre = interop.load_pretrained(folder)
        # The scheduler_config.json next to the model (or in the pipeline's scheduler/);
        # without one, diffusers' DDIMScheduler defaults (DDPM's linear betas, eps).
        roots = [r for r in (root, folder) if os.path.isfile(
            os.path.join(r, "scheduler_config.json")) or os.path.isfile(
            os.path.join(r, "scheduler", "scheduler_config.json"))]
        sched = interop.load_scheduler(roots[0] if roots else {"_class_name": "DDIMScheduler"})
        explicit = set(_override_keys(argv))
        x, nfe = pipeline.sample_pretrained(
            jax.random.key(int(fv.config.seed)), pre, sched, num_steps=num_steps,
            num_samples=int(cfg["num_samples"]), batch_size=int(fv.config.eval.batch_size),
            solver=solver if "sample.solver" in explicit else None,
            schedule=schedule if "sample.schedule" in explicit else None)
    except ValueError as e:
        raise UsageError(_one_line(e)) from None
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    npz = os.path.join(workdir, "samples",
                       f"pretrained_{num_steps}steps_seed{int(fv.config.seed)}.npz")
    _write_npz(npz, x=data.from_model_range(x), range=np.asarray((0.0, 255.0)),
               nfe=np.int64(nfe))
    where = f"the config in {roots[0]}" if roots else "diffusers' defaults"
    _say(f"diffax sample: {len(x)} samples of {folder} ({pre.class_name}; "
         f"{sched.class_name} with {where}), NFE {nfe} -> {npz}")
    return 0


def _cmd_likelihood(argv: Sequence[str]) -> int:
    if _likelihood_fn() is None:
        raise UsageError("diffax.likelihood is not available in this installation")
    trained, fv = _load("likelihood", argv)
    out = do_likelihood(trained, _require_workdir(fv))
    _say(f"diffax likelihood: NLL {out['value']:.4f} ± {out['stderr']:.4f} {out['unit']} on "
         f"{out['num_examples']} {out['split']} examples (mean NFE {out['nfe']:.0f}) -> "
         f"{out['path']}")
    return 0


def _cmd_eval(argv: Sequence[str]) -> int:
    trained, fv = _load("eval", argv)
    out = do_eval(trained, _require_workdir(fv))
    _say(_summary_table(out))
    _say(f"diffax eval: -> {out['path']}")
    return 0


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _summary_table(m: dict[str, Any]) -> str:
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


def _cmd_demo(argv: Sequence[str]) -> int:
    import ml_collections  # noqa: F401

    has_file = any(re.match(r"^--?config(=|$)", a) for a in argv)

    def define(fv):
        _define_workdir(fv, step=False)

    if has_file:
        fv = _parse_flags("demo", argv, define, config_file=True)
    else:
        fv = _parse_flags("demo", argv, define, config_dict=demo_config())
    workdir = _require_workdir(fv)
    config = fv.config
    exp = _validate(config, training=True)
    from diffax.models import count_params
    from diffax.train import loop, parallel

    t0 = time.perf_counter()
    _say(f"diffax demo: {config.data.name}, {config.process.name} process, "
         f"{type(exp.model).__name__} with {count_params(exp.model):,} parameters, "
         f"{config.train.num_steps} steps of batch {config.train.batch_size} -> {workdir}")
    result = loop.train_and_evaluate(config, workdir)
    t_train = time.perf_counter() - t0
    trained = _Trained(config=config, exp=exp, state=result.state, step=result.step,
                       mesh=parallel.make_mesh())
    t1 = time.perf_counter()
    samples = do_sample(trained, workdir)
    t_sample = time.perf_counter() - t1
    reference = ""
    if exp.data_info.is_image:  # held-out images in the same layout, to compare with
        split = _check_eval_section(config)["split"]
        held = _held_out(exp, config, split, samples["num_samples"])["x"]
        reference = _plot(trained, held, os.path.join(workdir, "samples", f"{split}_data.png"),
                          "")
    likelihood = None
    if _section(config, "eval").get("likelihood", True):
        if _likelihood_fn() is None:
            _say("diffax demo: diffax.likelihood is not available; NLL skipped.")
        else:
            likelihood = do_likelihood(trained, workdir)
    t2 = time.perf_counter()
    metrics = do_eval(trained, workdir, likelihood=likelihood)
    t_eval = time.perf_counter() - t2
    total = time.perf_counter() - t0
    _say("")
    _say(_summary_table(metrics))
    _say("")
    t_lik = likelihood["seconds"] if likelihood else 0.0
    _say(f"diffax demo: done in {total / 60:.1f} min (training {t_train / 60:.1f}, sampling "
         f"{t_sample / 60:.1f}, likelihood {t_lik / 60:.1f}, metrics {t_eval / 60:.1f}).")
    _say(f"  samples:     {samples['png']}")
    _say(f"               {samples['npz']}")
    if reference:
        _say(f"  data:        {reference}")
    if likelihood is not None:
        _say(f"  likelihood:  {likelihood['path']}")
    _say(f"  metrics:     {metrics['path']}")
    _say(f"  checkpoints: {os.path.join(workdir, 'checkpoints')}")
    _say(f"  TensorBoard: tensorboard --logdir {workdir}")
    return 0


_COMMANDS: dict[str, _Command] = {}


def _register(name: str, summary: str, description: str, flags_help: str,
              run: Callable[[Sequence[str]], int]) -> None:
    _COMMANDS[name] = _Command(name, summary, description + "\n\nflags:\n" + flags_help, run)


_WORKDIR_HELP = ("  --workdir DIR            the run's directory (required)\n"
                 "  --step N                 the checkpoint to use (default: the latest)\n")
_POST_HELP = ("  --config.seed=S          another seed for sampling and probes\n"
              "  --config.data.data_dir=DIR  where the dataset is prepared, if it moved\n")


def _eval_keys_help() -> str:
    return "".join(f"  --config.eval.{k}={v!r}\n".replace("'", "") for k, v in
                   EVAL_DEFAULTS.items()) + "     (defaults; the run's config may set others)\n"


_register(
    "train", "train a model from a config (resumes from WORKDIR/checkpoints)",
    "diffax train --config configs/X.py[:variant] --workdir DIR [--config.KEY=VALUE ...]\n\n"
    "Trains with diffax.train.loop.train_and_evaluate and writes checkpoints, TensorBoard "
    "events and sample grids under DIR; run it again to resume. Every key of the config "
    "file can be overridden; keys are documented in diffax/train/build.py, "
    "diffax/train/loop.py and diffax/cli.py (eval).",
    "  --config FILE[:variant]  the experiment config, e.g. configs/toy2d_vp.py:tiny "
    "(required)\n"
    "  --workdir DIR            where everything is written (required)\n"
    "  --restore_fallback       resume from the newest good checkpoint if the newest is "
    "corrupt\n"
    "  --config.KEY=VALUE       e.g. --config.train.num_steps=2000 --config.seed=1 "
    "--config.data.name=toy2d/two_moons\n",
    _cmd_train)
_register(
    "sample", "draw samples from the latest checkpoint",
    "diffax sample --workdir DIR [--step N] [--config.sample.solver=heun "
    "--config.sample.num_steps=18 --config.sample.num_samples=64 ...]\n\n"
    "Writes DIR/samples/<tag>.npz (array `x` [N, ...] in the data's own range and layout: "
    "uint8 images in 0..255, or float vectors; `range`; `nfe`; `step`) and a PNG: an image "
    "grid, or for 2-D data a scatter plot over the test data's density. Uses the config "
    "stored with the checkpoint.",
    _WORKDIR_HELP
    + "  --pretrained DIR             sample a local diffusers UNet2DModel folder (or a pipeline "
    "folder with unet/ and\n                               scheduler/) instead of a checkpoint: "
    "its scheduler_config.json gives the process,\n                               grid and "
    "solver (default: DDIMScheduler); writes samples/pretrained_*.npz\n"
    + "  --config.sample.solver=S     euler | heun | ddim | ddpm | euler_maruyama | "
    "reverse_diffusion | pc | edm_stochastic | adaptive\n"
    "                               | dpm_solver | dpm_solver_pp | unipc | deis | ipndm | lms\n"
    "  --config.sample.num_steps=N  solver steps\n"
    "  --config.sample.schedule=S   default | time_uniform | quadratic | log_snr | karras "
    "(rho=X)\n"
    "  --config.sample.num_samples=N\n"
    "  --config.sample.use_ema=BOOL, denoise_final=BOOL, order=K, method=M, variant=V, "
    "corrector=BOOL,\n"
    "    sde=BOOL, lower_order_final=BOOL, eta=X, snr=X, churn=X, rtol=X, atol=X\n"
    "  --config.eval.batch_size=N   samples per device call\n" + _POST_HELP,
    _cmd_sample)
_register(
    "likelihood", "held-out NLL through the probability-flow ODE",
    "diffax likelihood --workdir DIR [--step N] [--config.eval.likelihood_examples=1000 "
    "--config.eval.divergence=exact|hutchinson --config.eval.rtol=1e-5 ...]\n\n"
    "Reports bits/dim (8-bit images, uniformly dequantized) or nats per example (vectors) "
    "with its standard error and the mean NFE, and writes DIR/eval/likelihood.json.",
    _WORKDIR_HELP + _eval_keys_help() + _POST_HELP,
    _cmd_likelihood)
_register(
    "eval", "sample quality, NLL and NFE as JSON",
    "diffax eval --workdir DIR [--step N] [--config.eval.num_samples=1000 ...]\n\n"
    "Scores eval.num_samples samples against the held-out split: Fréchet distance in a "
    "whitened PCA feature space fitted on the training split, sliced Wasserstein distance, "
    "nearest-training-example distance; adds the NLL (eval.likelihood) and the NFE; writes "
    "DIR/eval/metrics.json. `reference` holds the same metrics for training examples (the "
    "floor) and for the untrained network (the baseline).",
    _WORKDIR_HELP + "  --config.sample.*            the sampler, as for `diffax sample`\n"
    + _eval_keys_help() + _POST_HELP,
    _cmd_eval)
_register(
    "demo", "the main job: train on 8x8 digits, sample, likelihood, metrics",
    "diffax demo --workdir DIR [--config configs/X.py] [--config.KEY=VALUE ...]\n\n"
    "Trains the default config (configs/digits_demo.py: EDM on scikit-learn's 8x8 digits, "
    "2000 steps; about 5-6 minutes on 2 CPU cores), then runs what `sample`, `likelihood` "
    "and `eval` run, and prints where everything was written with a table of metrics.",
    "  --workdir DIR            where everything is written (required)\n"
    "  --config FILE[:variant]  another config (default: the built-in digits demo)\n"
    "  --config.KEY=VALUE       e.g. --config.train.num_steps=4000\n",
    _cmd_demo)


def _usage() -> str:
    width = max(len(n) for n in _COMMANDS)
    lines = ["usage: diffax <command> [flags]", "", "Diffusion models in JAX: train, sample, "
             "score.", "", "commands:"]
    lines += [f"  {c.name.ljust(width)}  {c.summary}" for c in _COMMANDS.values()]
    lines += ["", "`diffax <command> --help` describes a command's flags. Errors in flags or "
              "config keys exit with code 2 before anything is computed or written."]
    return "\n".join(lines)


def _command_help(cmd: _Command) -> str:
    import textwrap

    usage, _, rest = cmd.description.partition("\n\n")
    details, _, flags_help = rest.partition("\n\nflags:\n")
    body = textwrap.fill(details, 92)
    return f"usage: {usage}\n\n{cmd.summary}.\n\n{body}\n\nflags:\n{flags_help}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``diffax <command> [flags]``; returns the exit code (2 for usage errors).

    Example:
      >>> main(["--help"])  # doctest: +ELLIPSIS
      usage: diffax <command> [flags]
      ...
      0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _say(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in _COMMANDS:
        close = difflib.get_close_matches(name, list(_COMMANDS), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        sys.stderr.write(f"diffax: error: unknown command {name!r}{hint} (commands: "
                         f"{', '.join(_COMMANDS)})\n")
        return 2
    cmd = _COMMANDS[name]
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in rest):
        _say(_command_help(cmd))
        return 0
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    try:
        return cmd.run(rest)
    except UsageError as e:
        sys.stderr.write(f"diffax {name}: error: {_one_line(e)}\n")
        return 2
    except Exception as e:
        from diffax.train.checkpoint import CheckpointError
        from diffax.train.loop import CollectiveError, TrainingError
        from diffax.train.parallel import DistributedInitError

        if not isinstance(e, CheckpointError | TrainingError | DistributedInitError):
            raise
        # A fault diffax detected and explained: one line, exit code 1.
        sys.stderr.write(f"diffax {name}: error: {_one_line(e)}\n")
        if isinstance(e, CollectiveError | DistributedInitError):
            # jax's shutdown would wait for the dead process at a barrier: leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
