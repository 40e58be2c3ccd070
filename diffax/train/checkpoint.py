"""Checkpoints with orbax's ``CheckpointManager``: train state, data-iterator state, config.

A checkpoint at step ``n`` is a directory ``<dir>/<n>`` with three items:

* ``state``: the :class:`~diffax.train.TrainState` (orbax ``StandardSave``: tensorstore/OCDBT
  arrays, no pickle);
* ``data``: the data pipeline's ``get_state()`` (a JSON-able dict, or bytes stored as base64),
  as JSON;
* ``config``: the experiment config as JSON (an ml_collections ``ConfigDict`` or a dict).

Saves are asynchronous (the step loop continues while arrays are written) and atomic: orbax
writes into a temporary directory and renames it only when every item is complete, so a crash
mid-save leaves the previous checkpoints as the latest restorable ones. Retention keeps the last
``keep_last`` checkpoints plus every step that is a multiple of ``keep_every``. Restoring takes
a target tree whose shardings say where the arrays go, so a checkpoint written on 8 devices
restores onto 1 (or 16).

Faults, and what this module guarantees:

* a crash during a save leaves a temporary ``<step>.orbax-checkpoint-tmp*`` directory: the next
  :class:`Checkpointer` on that directory lists it in :attr:`Checkpointer.partial_saves`, warns
  naming it (:class:`CheckpointWarning`) and removes it; it is never restored;
* a state with a NaN or infinite entry is never written (:class:`NonFiniteStateError`);
* a failed write (disk full, unwritable directory) raises :class:`CheckpointWriteError` naming
  the step and the directory; complete checkpoints already written are untouched;
* a checkpoint that cannot be restored (truncated or missing file, another tree structure or
  shapes) raises :class:`CorruptCheckpointError` naming its directory;
  :meth:`Checkpointer.restore_latest` can instead set it aside (``quarantine``) and fall back to
  the newest one that restores;
* restoring runs no code from the checkpoint: arrays are tensorstore (zarr/OCDBT) files and
  everything else is JSON; nothing is unpickled.

Example:
  >>> import tempfile, jax, jax.numpy as jnp, optax
  >>> from diffax.train import TrainState, Checkpointer
  >>> state = TrainState.create(params={"w": jnp.ones(2)}, optimizer=optax.adam(1e-3),
  ...                           key=jax.random.key(0))
  >>> with Checkpointer(tempfile.mkdtemp(), save_every=10) as ckpt:
  ...     ckpt.save(10, state, data_state={"pos": 3}, config={"seed": 0})
  ...     ckpt.wait_until_finished()
  ...     restored = ckpt.restore(state)
  True
  >>> restored.step, restored.data_state, restored.config
  (10, {'pos': 3}, {'seed': 0})
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from diffax._checks import check_int
from diffax.typing import PyTree

__all__ = ["Checkpointer", "Restored", "encode_data_state", "decode_data_state",
           "config_to_json", "CheckpointError", "CheckpointWriteError",
           "CorruptCheckpointError", "NonFiniteStateError", "CheckpointWarning",
           "find_partial_saves"]

ITEMS = ("state", "data", "config")
"""The items of every checkpoint, each a subdirectory of ``<directory>/<step>``."""

_TMP_MARK = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the directory."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (disk full, unwritable directory, ...)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint exists but cannot be restored (truncated or missing files, another tree
    structure, shapes or config). ``step`` and ``path`` name it."""

    def __init__(self, message: str, *, step: int | None = None, path: str | None = None):
        super().__init__(message)
        self.step, self.path = step, path


class NonFiniteStateError(CheckpointError, FloatingPointError):
    """The state to save has NaN or infinite entries (nothing was written)."""


class CheckpointWarning(UserWarning):
    """A partial save was found and removed, or a corrupt checkpoint was set aside."""


def find_partial_saves(directory: str | os.PathLike) -> list[str]:
    """Paths of the unfinished saves under a checkpoint directory: orbax's temporary
    ``<step>.orbax-checkpoint-tmp*`` directories, left behind when a process dies mid-save.

    Example:
      >>> import os, tempfile
      >>> d = tempfile.mkdtemp()
      >>> os.makedirs(os.path.join(d, "7.orbax-checkpoint-tmp-123"))
      >>> [os.path.basename(p) for p in find_partial_saves(d)]
      ['7.orbax-checkpoint-tmp-123']
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if _TMP_MARK in name)


@jax.jit
def _all_finite(leaves: list[jax.Array]) -> jax.Array:
    flags = [jnp.all(jnp.isfinite(x)) for x in leaves]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def _nonfinite_leaves(tree: PyTree) -> list[str]:
    """Paths of the floating-point leaves of ``tree`` with a NaN or infinite entry."""
    leaves = [(path, x) for path, x in jax.tree_util.tree_leaves_with_path(tree)
              if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return []
    ok = _all_finite([x for _, x in leaves])
    if bool(np.asarray(ok.addressable_data(0))):
        return []
    return [jax.tree_util.keystr(path) for path, x in leaves
            if not bool(np.asarray(_all_finite([x]).addressable_data(0)))]


def encode_data_state(data_state: Any) -> dict[str, Any]:
    """Wraps a data-iterator state (JSON-able value, bytes or ``None``) for JSON storage.

    Example:
      >>> decode_data_state(encode_data_state(b"\\x00\\x01"))
      b'\\x00\\x01'
    """
    if data_state is None:
        return {"format": "none"}
    if isinstance(data_state, bytes | bytearray):
        return {"format": "bytes", "value": base64.b64encode(bytes(data_state)).decode("ascii")}
    try:
        json.dumps(data_state)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Checkpointer.save: `data_state` must be JSON-serializable (a dict of "
                         f"numbers, strings, lists) or bytes; got {type(data_state).__name__}: "
                         f"{e}") from None
    return {"format": "json", "value": data_state}


def decode_data_state(stored: dict[str, Any]) -> Any:
    """Inverse of :func:`encode_data_state`."""
    fmt = stored.get("format")
    if fmt == "none":
        return None
    if fmt == "bytes":
        return base64.b64decode(stored["value"])
    if fmt == "json":
        return stored["value"]
    raise ValueError(f"unknown stored data-state format {fmt!r}.")


def config_to_json(config: Any) -> dict[str, Any]:
    """A config (``ConfigDict``, ``FrozenConfigDict``, dict or ``None``) as a JSON-able dict."""
    if config is None:
        return {}
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort(sort_keys=True))
    try:
        return json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"Checkpointer.save: `config` must be a ConfigDict or a JSON-able "
                         f"dict; {e}") from None


@dataclasses.dataclass(frozen=True)
class Restored:
    """What :meth:`Checkpointer.restore` returns."""

    step: int
    state: PyTree
    data_state: Any
    config: dict[str, Any]


def _as_target(tree: PyTree) -> PyTree:
    def leaf(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        raise ValueError(f"Checkpointer.restore: `target` leaves must be jax.Arrays or "
                         f"jax.ShapeDtypeStructs (with the sharding to restore onto), got "
                         f"{type(x).__name__}.")

    return jax.tree.map(leaf, tree)


class Checkpointer:
    """Saves and restores (train state, data-iterator state, config) with orbax.

    Args:
      directory: where checkpoints live (created if missing; made absolute).
      save_every: :meth:`save` writes at steps that are multiples of this (``force=True``
        writes at any step, e.g. on preemption or at the end).
      keep_last: keep the latest ``keep_last`` checkpoints ...
      keep_every: ... plus every checkpoint whose step is a multiple of ``keep_every``.
      async_save: write in a background thread (call :meth:`wait_until_finished` before
        exiting; :meth:`close` does).
      check_finite: refuse to save a state with NaN or infinite entries
        (:class:`NonFiniteStateError`).

    Attributes:
      partial_saves: unfinished saves found (and removed) when this object was created.

    Raises:
      CheckpointWriteError: if ``directory`` cannot be created or written to.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep_last: int = 3,
                 keep_every: int | None = None, async_save: bool = True,
                 check_finite: bool = True):
        for name, value in (("save_every", save_every), ("keep_last", keep_last)):
            check_int(value, name=name, where="Checkpointer", integral=True)
        check_int(keep_every, name="keep_every", where="Checkpointer", allow_none=True,
                  integral=True)
        keep = [policies.LatestN(int(keep_last))]
        if keep_every is not None:
            keep.append(policies.EveryNSteps(int(keep_every)))
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.FixedIntervalPolicy(int(save_every)),
            preservation_policy=policies.AnyPreservationPolicy(keep),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.directory = os.path.abspath(os.fspath(directory))
        self.check_finite = bool(check_finite)
        self._options = options
        self._check_writable()
        self.partial_saves = self._remove_partial_saves()
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=ITEMS)
        self._pending: int | None = None
        self.read_only = False

    @classmethod
    def open_read_only(cls, directory: str | os.PathLike) -> Checkpointer:
        """Opens existing checkpoints for reading: nothing is created, written or removed
        (``diffax sample | likelihood | eval``); :meth:`save` raises.

        Raises:
          FileNotFoundError: if ``directory`` does not exist.

        Example:
          >>> import tempfile, os
          >>> d = tempfile.mkdtemp()
          >>> with Checkpointer.open_read_only(d) as ck:
          ...     ck.all_steps()
          []
        """
        directory = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Checkpointer: no checkpoint directory {directory}.")
        self = cls.__new__(cls)
        self.directory, self.check_finite, self.read_only = directory, True, True
        self.partial_saves, self._pending = [], None
        self._manager = ocp.CheckpointManager(
            directory, item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(read_only=True, create=False))
        return self

    def _check_writable(self) -> None:
        if jax.process_index() != 0:
            return
        try:
            os.makedirs(self.directory, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".write-probe-"):
                pass
        except OSError as e:
            raise CheckpointWriteError(
                f"checkpoint directory {self.directory} is not writable: "
                f"{type(e).__name__}: {e}") from e

    def _remove_partial_saves(self) -> list[str]:
        found = find_partial_saves(self.directory)
        if found and jax.process_index() == 0:
            warnings.warn(
                f"{len(found)} partial checkpoint save(s) in {self.directory} (a process died "
                f"while saving) are skipped and removed: {', '.join(found)}",
                CheckpointWarning, stacklevel=3)
            for path in found:
                shutil.rmtree(path, ignore_errors=True)
        return found

    def _write_error(self, step: int | None, e: BaseException) -> CheckpointWriteError:
        steps = sorted(self._manager.all_steps())
        return CheckpointWriteError(
            f"writing the checkpoint{'' if step is None else f' of step {step}'} to "
            f"{self.directory} failed: {type(e).__name__}: {e}. Complete checkpoints already "
            f"written are intact (steps {steps}); free space or fix the directory and run "
            f"again to resume from the latest.")

    # ---- queries ---------------------------------------------------------------------------

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of every complete checkpoint, ascending."""
        return sorted(self._manager.all_steps())

    def stored_config(self, step: int | None = None) -> dict[str, Any]:
        """The config stored with checkpoint ``step`` (default: the latest), as a dict.

        Raises:
          FileNotFoundError: if there is no such checkpoint.
          CorruptCheckpointError: if it cannot be read.
        """
        steps = self.all_steps()
        step = steps[-1] if step is None and steps else step
        if step is None or int(step) not in steps:
            where = "" if step is None else f" at step {step}"
            raise FileNotFoundError(f"Checkpointer: no checkpoint{where} in {self.directory}; "
                                    f"have {steps}.")
        path = os.path.join(self.directory, str(int(step)))
        try:
            out = self._manager.restore(int(step), args=ocp.args.Composite(
                config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure to read means: corrupt
            raise CorruptCheckpointError(f"checkpoint {path}: its config cannot be read "
                                         f"({type(e).__name__}: {e})", step=int(step),
                                         path=path) from e
        return out.config

    def should_save(self, step: int) -> bool:
        """Whether :meth:`save` would write at ``step`` without ``force``."""
        return self._manager.should_save(int(step))

    # ---- save / restore --------------------------------------------------------------------

    def save(self, step: int, state: PyTree, *, data_state: Any = None, config: Any = None,
             force: bool = False) -> bool:
        """Starts saving a checkpoint at ``step`` if due (or ``force``); returns whether it did.

        Args:
          step: the step number naming the checkpoint (usually ``int(state.step)``).
          state: the train state (any pytree of ``jax.Array``).
          data_state: the data iterator's ``get_state()``: JSON-able or bytes.
          config: the experiment config (``ConfigDict`` or JSON-able dict).
          force: save even if ``step`` is not a multiple of ``save_every``.
        """
        if self.read_only:
            raise CheckpointWriteError(f"Checkpointer.save: {self.directory} was opened "
                                       "read-only (Checkpointer.open_read_only).")
        if not force and not self._manager.should_save(int(step)):
            return False  # not due: skip encoding the data state and config
        if self.check_finite:
            bad = _nonfinite_leaves(state)
            if bad:
                raise NonFiniteStateError(
                    f"refusing to save a checkpoint of step {step} to {self.directory}: "
                    f"non-finite values in {', '.join(bad[:5])}"
                    f"{' ...' if len(bad) > 5 else ''}.")
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(encode_data_state(data_state)),
            config=ocp.args.JsonSave(config_to_json(config)),
        )
        try:
            saved = self._manager.save(int(step), args=args, force=force)
        except (OSError, ValueError, RuntimeError) as e:
            # An earlier asynchronous save's failure surfaces at the next save.
            raise self._write_error(self._pending or int(step), e) from e
        if saved:
            self._pending = int(step)
        return saved

    def restore(self, target: PyTree, *, step: int | None = None) -> Restored:
        """Restores the checkpoint at ``step`` (default: the latest) onto ``target``'s layout.

        Args:
          target: a tree with the state's structure whose leaves are ``jax.Array`` or
            ``jax.ShapeDtypeStruct`` carrying the shardings to restore onto (e.g. a freshly
            initialized, replicated state, or :func:`diffax.train.parallel.abstract_like`).
          step: which checkpoint; ``None`` for the latest.

        Raises:
          FileNotFoundError: if there is no checkpoint (at ``step``).
          CorruptCheckpointError: if the checkpoint cannot be restored onto ``target``.
        """
        self.wait_until_finished()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"Checkpointer.restore: no checkpoint in "
                                        f"{self.directory}.")
        elif int(step) not in self.all_steps():
            raise FileNotFoundError(f"Checkpointer.restore: no checkpoint at step {step} in "
                                    f"{self.directory}; have {self.all_steps()}.")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(_as_target(target)),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        )
        path = os.path.join(self.directory, str(int(step)))
        try:
            out = self._manager.restore(int(step), args=args)
            data_state = decode_data_state(out.data)
            if not isinstance(out.config, dict):
                raise ValueError(f"the stored config is {type(out.config).__name__}, not a dict")
        except Exception as e:  # noqa: BLE001 - any failure to read means: corrupt
            reason = " ".join(str(e).split())
            if len(reason) > 600:
                reason = reason[:600] + " ..."
            raise CorruptCheckpointError(
                f"checkpoint {path} cannot be restored ({type(e).__name__}: {reason})",
                step=int(step), path=path) from e
        return Restored(step=int(step), state=out.state, data_state=data_state,
                        config=out.config)

    def restore_latest(self, target: PyTree, *, fallback: bool = False,
                       validate: Callable[[int, dict[str, Any]], None] | None = None
                       ) -> Restored | None:
        """Restores the newest checkpoint, or with ``fallback`` the newest one that restores.

        Args:
          target: as for :meth:`restore`.
          fallback: when the newest checkpoint is corrupt, move it aside (see
            :meth:`quarantine`), warn naming it, and try the one before, and so on. Without
            it, a corrupt checkpoint raises and nothing is moved.
          validate: ``validate(step, stored_config)`` is called before a checkpoint's arrays
            are read; raising :class:`CorruptCheckpointError` refuses it (e.g. written by an
            incompatible config).

        Returns:
          The :class:`Restored` checkpoint, or ``None`` if there is none (left).

        Raises:
          CorruptCheckpointError: without ``fallback``, if the newest checkpoint is refused.
        """
        while True:
            steps = self.all_steps()
            if not steps:
                return None
            try:
                if validate is not None:
                    validate(steps[-1], self.stored_config(steps[-1]))
                return self.restore(target, step=steps[-1])
            except CorruptCheckpointError as e:
                if not fallback:
                    older = steps[:-1]
                    hint = (f"; to resume from the previous one (steps {older}) instead, allow "
                            f"falling back (config train.restore_fallback=True)" if older
                            else "")
                    raise CorruptCheckpointError(f"{e}{hint}", step=e.step,
                                                 path=e.path) from e
                moved = self.quarantine(steps[-1])
                warnings.warn(f"{e}; moved it to {moved} and falling back to the previous "
                              f"checkpoint.", CheckpointWarning, stacklevel=2)

    def quarantine(self, step: int) -> str:
        """Moves checkpoint ``step`` out of the directory (to ``<directory>.corrupt/``) so it
        is neither restored nor overwritten; returns where it went."""
        self.wait_until_finished()
        src = os.path.join(self.directory, str(int(step)))
        dest_root = self.directory.rstrip(os.sep) + ".corrupt"
        dest = os.path.join(dest_root, f"{int(step)}-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_index() == 0:
            os.makedirs(dest_root, exist_ok=True)
            shutil.move(src, dest)
        self._manager.reload()
        return dest

    # ---- lifecycle -------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        """Blocks until pending asynchronous saves are written and committed.

        Raises:
          CheckpointWriteError: if a pending save failed.
        """
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except (OSError, ValueError, RuntimeError) as e:
            step, self._pending = self._pending, None
            raise self._write_error(step, e) from e
        self._pending = None

    def close(self) -> None:
        """Waits for pending saves and releases the manager.

        Raises:
          CheckpointWriteError: if a pending save failed (the manager is released anyway).
        """
        error = None
        try:
            self.wait_until_finished()
        except CheckpointWriteError as e:
            error = e
        try:
            self._manager.close()
        except (OSError, ValueError, RuntimeError) as e:  # a failed save, raised again
            error = error or self._write_error(None, e)
        if error is not None:
            raise error

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
