"""``train_and_evaluate(config, workdir)``: a config-driven, resumable, data-parallel run.

The loop (on every process of a multi-host job, each feeding its share of the batch):

1. ``jax.distributed.initialize()`` when the environment is a cluster; the mesh of every
   device; a clear error if ``train.batch_size`` does not divide over the devices;
2. objects from the config (:mod:`diffax.train.build`), a replicated :class:`TrainState`;
3. resume from ``workdir/checkpoints`` if a checkpoint exists (train state *and* the data
   iterator's position, so the run continues exactly where it stopped, on any device count);
4. ``train.n_jitted_steps`` updates per call of one jitted, donated step;
5. every ``train.log_every`` steps: loss, grad norm, learning rate, steps/s and examples/s to
   the console (a progress line) and to TensorBoard event files in ``workdir``;
   every ``train.checkpoint_every`` steps an asynchronous checkpoint (plus the config as JSON);
   every ``train.sample_every`` steps a PNG grid of samples in ``workdir/samples`` (from
   :func:`diffax.train.evaluate.sampling_program`, the program of ``diffax sample``; a discrete
   process writes its tokens: :func:`diffax.train.evaluate.write_tokens`);
6. SIGTERM (preemption): the current step is checkpointed and the function returns normally.

Faults (see the README's "Reliability" section and ``tests/train/test_faults.py``):

* the whole config is checked first (:func:`diffax.train.options.parse_config`), and the
  checkpoint directory must be writable, before anything is computed;
* a NaN/inf loss or gradient never reaches the parameters (the compiled step skips the update);
  ``train.nonfinite="error"`` (default) then stops with :class:`NonFiniteLossError` naming the
  step and the last checkpoint, ``"skip"`` goes on and counts ``skipped_updates``; a state with
  a NaN is never checkpointed;
* a corrupt newest checkpoint, or one written by a config whose ``process``, ``model``,
  ``loss`` or ``data.name`` differ, stops the run with
  :class:`~diffax.train.checkpoint.CorruptCheckpointError`; with ``train.restore_fallback``
  it is moved to ``checkpoints.corrupt/`` and the run resumes from the newest good one;
* partial saves left by a killed process are reported (a warning naming them) and removed;
* a failed checkpoint write (disk full) raises
  :class:`~diffax.train.checkpoint.CheckpointWriteError`; written checkpoints stay intact;
* with several processes, a collective that fails because another process died raises
  :class:`CollectiveError` (and the coordination service stops processes stuck waiting after
  ``train.heartbeat_timeout`` seconds).

The loop reads no config key itself: it uses the checked options the experiment carries
(:class:`diffax.train.options.Options`: ``seed``, ``train.*``, ``data``, ``sample.num_samples``,
``sample.use_ema``, ``sample.denoise_final``); the config itself is only stored with each
checkpoint and compared with a stored one (:data:`COMPATIBLE_KEYS`).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import signal
import threading
import time
import weakref
from typing import Any

import jax
import numpy as np

from diffax.train import build, evaluate, parallel
from diffax.train._tensorboard import SummaryWriter
from diffax.train.checkpoint import (
    Checkpointer,
    CorruptCheckpointError,
    config_to_json,
)
from diffax.train.progress import Progress
from diffax.train.state import TrainState
from diffax.train.step import make_train_step

__all__ = ["train_and_evaluate", "TrainResult", "sample_grid_png",
           "NonFiniteLossError", "CollectiveError", "TrainingError", "check_compatible",
           "COMPATIBLE_KEYS"]


class TrainingError(RuntimeError):
    """A run stopped by a fault it cannot repair; the message says what and where."""


class NonFiniteLossError(TrainingError, FloatingPointError):
    """A NaN or infinite loss or gradient under ``train.nonfinite="error"``. ``step`` is the
    update that produced it (not applied) and ``last_checkpoint`` the newest checkpoint path
    (or ``None``)."""

    def __init__(self, message: str, *, step: int, last_checkpoint: str | None):
        super().__init__(message)
        self.step, self.last_checkpoint = step, last_checkpoint


class CollectiveError(TrainingError):
    """A cross-process operation failed: another process of the job died or hung."""


COMPATIBLE_KEYS = ("process", "model", "loss", "data.name", "gan")
"""Config entries a checkpoint must share with the config resuming from it."""


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _differences(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}.{k}")
        return out
    return [] if a == b else [f"{prefix} (stored {a!r}, now {b!r})"]


def check_compatible(stored_config: dict[str, Any], config: Any, *, path: str = "checkpoint"
                     ) -> None:
    """Refuses a checkpoint whose config differs from ``config`` in :data:`COMPATIBLE_KEYS`.

    Raises:
      CorruptCheckpointError: naming ``path`` and the keys that differ.

    Example:
      >>> check_compatible({"model": {"name": "mlp"}}, {"model": {"name": "unet"}})
      Traceback (most recent call last):
      ...
      diffax.train.checkpoint.CorruptCheckpointError: checkpoint was written by an \
incompatible config: model.name (stored 'mlp', now 'unet')
    """
    current = config_to_json(config)
    diffs: list[str] = []
    for key in COMPATIBLE_KEYS:
        diffs += _differences(_lookup(stored_config, key), _lookup(current, key), key)
    if diffs:
        more = f" and {len(diffs) - 5} more" if len(diffs) > 5 else ""
        raise CorruptCheckpointError(f"{path} was written by an incompatible config: "
                                     f"{'; '.join(diffs[:5])}{more}", path=path)


def _host(x: jax.Array) -> np.ndarray:
    """A replicated array's value (also when it spans other processes' devices)."""
    return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train_and_evaluate` returns."""

    state: TrainState
    step: int
    preempted: bool
    restored_from: int | None


# --------------------------------------------------------------------------------------------
# Preemption.


class _Preemption:
    """Sets a flag on SIGTERM; all processes agree on it at the check points."""

    def __init__(self):
        self._flag = threading.Event()
        self._previous = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handler(self, signum, frame) -> None:
        self._flag.set()

    def requested(self) -> bool:
        local = self._flag.is_set()
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
        return bool(np.any(flags))


# --------------------------------------------------------------------------------------------
# Sampling and PNG grids.


def sample_grid_png(x: np.ndarray, *, value_range: tuple[float, float] = (-1.0, 1.0),
                    bins: int = 128, extent: float | None = None) -> tuple[bytes, int, int, int]:
    """Encodes samples as a PNG: a grid of images ``[N, H, W, C]``, or for 2-D points ``[N, 2]``
    a density image (2-D histogram).

    Returns:
      ``(png_bytes, height, width, channels)``.

    Example:
      >>> import numpy as np
      >>> png, h, w, c = sample_grid_png(np.zeros((4, 8, 8, 1)))
      >>> png[:4], (h, w, c)
      (b'\\x89PNG', (19, 19, 1))
    """
    from PIL import Image

    x = np.asarray(x, np.float64)
    if x.ndim == 2 and x.shape[1] == 2:
        lim = extent or float(np.nanmax(np.abs(x[np.isfinite(x).all(1)]), initial=1.0)) * 1.05
        hist, _, _ = np.histogram2d(x[:, 1], x[:, 0], bins=bins, range=[[-lim, lim]] * 2)
        img = (255 * (1 - hist[::-1] / max(hist.max(), 1))).astype(np.uint8)[..., None]
    elif x.ndim == 4:
        lo, hi = value_range
        img01 = np.clip((np.nan_to_num(x) - lo) / (hi - lo), 0, 1)
        n, h, w, c = img01.shape
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        pad = 1
        grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c))
        for i in range(n):
            r, k = divmod(i, cols)
            grid[pad + r * (h + pad):pad + r * (h + pad) + h,
                 pad + k * (w + pad):pad + k * (w + pad) + w] = img01[i]
        img = np.round(255 * grid).astype(np.uint8)
    else:
        raise ValueError(f"sample_grid_png: expected images [N, H, W, C] or points [N, 2], got "
                         f"shape {x.shape}.")
    height, width, channels = img.shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ValueError(f"sample_grid_png: {channels} channels cannot be written as PNG.")
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if channels == 1 else img, mode=mode).save(buf, format="PNG")
    return buf.getvalue(), height, width, channels


# --------------------------------------------------------------------------------------------
# The loop.


_COMPILED: dict[int, dict[tuple, Any]] = {}
"""The loop's jitted programs (state init, train step) by experiment (``id``), then by key: a
second run of the same experiment object in one process (e.g. a resumed run given
``experiment=``) reuses them instead of compiling again. Everything they compute comes from
the experiment, ``n_jitted_steps`` (its options) and the mesh, which are in the key."""


def _compiled(exp: build.Experiment, key: tuple, make: Any) -> Any:
    programs = _COMPILED.get(id(exp))
    if programs is None:  # one cache per experiment object, dropped with it
        programs = _COMPILED[id(exp)] = {}
        weakref.finalize(exp, _COMPILED.pop, id(exp), None)
    if key not in programs:
        programs[key] = make()
    return programs[key]


def train_and_evaluate(config: Any, workdir: str | os.PathLike, *,
                       experiment: build.Experiment | None = None) -> TrainResult:
    """Trains (or resumes training) from ``config``, writing everything under ``workdir``.

    Args:
      config: an ml_collections ``ConfigDict`` (see :mod:`diffax.train.build` and this
        module's docstring for the keys).
      workdir: output directory: ``checkpoints/``, TensorBoard event files, ``samples/``.
      experiment: ``build.build_experiment(config)`` when the caller has built it (the
        command line does, after starting jax's distributed runtime); default: parsed and
        built here.

    Returns:
      A :class:`TrainResult` with the final (replicated) state and whether the run stopped on
      SIGTERM.

    Raises:
      diffax.train.build.ConfigError: (a ``ValueError``) for a config key with a bad name,
        type or value, naming the key (e.g. a global batch size not divisible by the number
        of devices), before any compute.
      diffax.train.checkpoint.CheckpointError: an unwritable or full checkpoint directory
        (:class:`~diffax.train.checkpoint.CheckpointWriteError`), a corrupt or incompatible
        newest checkpoint without ``train.restore_fallback``
        (:class:`~diffax.train.checkpoint.CorruptCheckpointError`).
      NonFiniteLossError: a NaN/inf loss or gradient under ``train.nonfinite="error"``.
      CollectiveError: another process of a multi-process job died.
    """
    if experiment is None:
        opts = build.train_options(config)  # before jax starts: the heartbeat timeout
        parallel.initialize_distributed(heartbeat_timeout=opts.heartbeat_timeout)
        experiment = build.build_experiment(build.parse_config(config,
                                                               num_devices=jax.device_count()))
    exp = experiment
    options = exp.options
    opts = options.train
    workdir = os.path.abspath(os.fspath(workdir))
    num_steps, batch_size, n_jitted = opts.num_steps, opts.batch_size, opts.n_jitted_steps
    log_every, sample_every = opts.log_every, opts.sample_every
    mesh = parallel.make_mesh()
    local_batch = parallel.check_batch_size(batch_size, mesh, name="train.batch_size")
    seed = options.seed

    is_main = jax.process_index() == 0
    progress = Progress("step", num_steps, enabled=is_main)
    # Unwritable or full disks fail here, before any compute.
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                        save_every=opts.checkpoint_every, keep_last=opts.keep_last,
                        keep_every=opts.keep_every, async_save=opts.async_checkpoint)

    k_init, k_train, k_sample = jax.random.split(jax.random.key(seed), 3)
    # One jitted program builds the state directly replicated on the mesh (on every host).
    state = _compiled(exp, ("init", mesh), lambda: jax.jit(
        lambda k_init, k_train: TrainState.create(
            params=exp.model.init(k_init, *exp.model.example_inputs()),
            optimizer=exp.optimizer, key=k_train, ema_decays=exp.ema_decays),
        out_shardings=parallel.replicated_sharding(mesh)))(k_init, k_train)
    data_iter = build.build_data_iterator(
        options.data, seed=seed, batch_size=local_batch,
        shard_index=jax.process_index(), shard_count=jax.process_count())

    def compatible(step: int, stored: dict[str, Any]) -> None:
        check_compatible(stored, config,
                         path=f"checkpoint {os.path.join(ckpt.directory, str(step))}")

    try:
        restored = ckpt.restore_latest(state, fallback=opts.restore_fallback,
                                       validate=compatible)
    except BaseException:
        ckpt.close()
        raise
    restored_from = None
    if restored is not None:
        state, restored_from = restored.state, restored.step
        data_iter.set_state(restored.data_state)
        progress.message(f"Resumed from {ckpt.directory} at step {restored_from}.")

    def compile_step():
        if exp.trainer is not None:  # its own update (diffax.ddgan: two networks, optimizers)
            train_step = exp.trainer.train_step(learning_rate=exp.schedule, n_steps=n_jitted,
                                                ema_warmup=exp.ema_warmup)
        else:
            train_step = make_train_step(exp.loss.bind(exp.train_apply_fn), exp.optimizer,
                                         learning_rate=exp.schedule, n_steps=n_jitted,
                                         ema_warmup=exp.ema_warmup,
                                         post_update=getattr(exp, "post_update", None))
        return parallel.compile_train_step(train_step, mesh, leading_steps=n_jitted > 1)

    step_fn = _compiled(exp, ("step", n_jitted, mesh), compile_step)

    num_samples = options.sample.num_samples
    sample_fn = None
    writer = SummaryWriter(workdir) if is_main else None
    preemption = _Preemption()
    preemption.install()
    step = int(state.step)
    preempted = False
    saved_at = restored_from
    skipped = 0  # updates skipped for non-finite numbers since the last log

    def next_batch():
        if n_jitted == 1:
            return parallel.shard_batch(next(data_iter), mesh)
        batches = [next(data_iter) for _ in range(n_jitted)]
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)
        return parallel.shard_batch(stacked, mesh, leading_steps=True)

    def account(metrics: dict[str, jax.Array]) -> None:
        """Reads a call's non-finite count: stops (policy "error") or counts (policy "skip")."""
        nonlocal skipped
        count = int(_host(metrics["nonfinite"]))
        if not count:
            return
        if opts.nonfinite == "skip":
            skipped += count
            return
        bad = int(_host(metrics["nonfinite_step"]))
        last = None if saved_at is None else os.path.join(ckpt.directory, str(saved_at))
        raise NonFiniteLossError(
            f"non-finite loss or gradients at step {bad} (the update from step {bad - 1}; it "
            f"was not applied). Last good checkpoint: "
            f"{last or f'none (nothing saved yet in {ckpt.directory})'}. Lower "
            f"optim.learning_rate or fix the data, or set train.nonfinite='skip' to skip "
            f"such updates.", step=bad, last_checkpoint=last)

    def write_samples(at_step: int) -> None:
        # The program of `diffax sample` (one for both): the same prior draws, sampler noise
        # and labels (every class in turn) at every step, so successive grids show the same
        # noise decoded by the model as it trains.
        nonlocal sample_fn
        if sample_fn is None:
            sample_fn = evaluate.sampling_program(exp, batch=num_samples, mesh=mesh)
        params = state.sampling_params(use_ema=options.sample.use_ema)
        x, _ = sample_fn(params, k_sample, evaluate.sample_labels(exp, num_samples))
        x = parallel.gather(x)
        if not is_main:
            return
        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
        path = os.path.join(workdir, "samples", f"step_{at_step:08d}")
        if isinstance(exp.solver, str):  # tokens: text lines, or digit images
            evaluate.write_tokens(exp, np.asarray(x), path + ".txt")
            return
        png, h, w, c = sample_grid_png(x, value_range=options.data.value_range)
        with open(path + ".png", "wb") as f:
            f.write(png)
        writer.image("samples", png, height=h, width=w, channels=c, step=at_step)
        writer.flush()

    collective_failed = False
    try:
        t_last, step_last = time.perf_counter(), step
        lagged = None  # the previous call's metrics, read one call late (keeps one in flight)
        while step < num_steps:
            batch = next_batch()
            state, metrics = step_fn(state, batch)
            step += n_jitted
            if lagged is not None:
                account(lagged)
            lagged = metrics
            log_now = step % log_every == 0 or step == num_steps
            if log_now or ckpt.should_save(step):
                account(metrics)  # before logging or saving: never save past a NaN
                lagged = None
            if log_now:
                metrics = {k: float(_host(v)) for k, v in metrics.items()
                           if not k.startswith("nonfinite")}
                if opts.nonfinite == "skip":
                    metrics["skipped_updates"] = float(skipped)
                    skipped = 0
                now = time.perf_counter()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                metrics["steps_per_sec"] = rate
                metrics["examples_per_sec"] = rate * batch_size
                progress.update(step, "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
                if writer is not None:
                    writer.scalars(metrics, step)
                    writer.flush()
            t_other = time.perf_counter()  # checkpoint and sample time is not step time
            if ckpt.save(step, state, data_state=data_iter.get_state(), config=config):
                saved_at = step
            if sample_every and step % sample_every == 0:
                write_samples(step)
            t_last += time.perf_counter() - t_other
            # One process: check every step (free); several: at log steps (a collective).
            if ((jax.process_count() == 1 or step % log_every == 0)
                    and preemption.requested()):
                preempted = True
                break
        if lagged is not None:
            account(lagged)
        if saved_at != step:
            ckpt.save(step, state, data_state=data_iter.get_state(), config=config, force=True)
        if preempted:
            progress.message(f"SIGTERM: saved a checkpoint at step {step} and stopped.")
        else:
            progress.message(f"Done: {step} steps.")
            if exp.after_training is not None and is_main:  # an autoencoder's latent scale
                exp.after_training(state, workdir)
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        collective_failed = True
        cause = " ".join(str(e).split())[:300]
        raise CollectiveError(
            f"process {jax.process_index()} of {jax.process_count()}: a cross-process "
            f"operation failed near step {step}, most likely because another process died "
            f"({type(e).__name__}: {cause}). Restart the job: it resumes from the latest "
            f"checkpoint in {ckpt.directory}.") from e
    finally:
        preemption.uninstall()
        if not collective_failed:  # saves of a broken job would wait for the dead process
            ckpt.close()
        if writer is not None:
            writer.close()
    return TrainResult(state=state, step=step, preempted=preempted, restored_from=restored_from)
