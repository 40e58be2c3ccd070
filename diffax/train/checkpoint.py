"""Checkpoints with orbax's ``CheckpointManager``: train state, data-iterator state, config.

A checkpoint at step ``n`` is a directory ``<dir>/<n>`` with three items:

* ``state``: the :class:`~diffax.train.TrainState` (orbax ``StandardSave``: tensorstore/OCDBT
  arrays, no pickle);
* ``data``: the data pipeline's ``get_state()`` (a JSON-able dict, or bytes stored as base64),
  as JSON;
* ``config``: the experiment config as JSON (an ml_collections ``ConfigDict`` or a dict).

Saves are asynchronous (the step loop continues while arrays are written) and atomic: orbax
writes into a temporary directory and renames it only when every item is complete, so a crash
mid-save leaves the previous checkpoints as the latest restorable ones (leftover temporary
directories are removed when the next manager opens). Retention keeps the last
``keep_last`` checkpoints plus every step that is a multiple of ``keep_every``. Restoring takes
a target tree whose shardings say where the arrays go, so a checkpoint written on 8 devices
restores onto 1 (or 16).

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
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from diffax.typing import PyTree

__all__ = ["Checkpointer", "Restored", "encode_data_state", "decode_data_state",
           "config_to_json"]

_ITEMS = ("state", "data", "config")


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

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep_last: int = 3,
                 keep_every: int | None = None, async_save: bool = True):
        for name, value in (("save_every", save_every), ("keep_last", keep_last)):
            if int(value) != value or value < 1:
                raise ValueError(f"Checkpointer: `{name}` must be a positive integer, got "
                                 f"{value!r}.")
        if keep_every is not None and (int(keep_every) != keep_every or keep_every < 1):
            raise ValueError(f"Checkpointer: `keep_every` must be a positive integer or None, "
                             f"got {keep_every!r}.")
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
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=_ITEMS)

    # ---- queries ---------------------------------------------------------------------------

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of every complete checkpoint, ascending."""
        return sorted(self._manager.all_steps())

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
        if not force and not self._manager.should_save(int(step)):
            return False  # not due: skip encoding the data state and config
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(encode_data_state(data_state)),
            config=ocp.args.JsonSave(config_to_json(config)),
        )
        return self._manager.save(int(step), args=args, force=force)

    def restore(self, target: PyTree, *, step: int | None = None) -> Restored:
        """Restores the checkpoint at ``step`` (default: the latest) onto ``target``'s layout.

        Args:
          target: a tree with the state's structure whose leaves are ``jax.Array`` or
            ``jax.ShapeDtypeStruct`` carrying the shardings to restore onto (e.g. a freshly
            initialized, replicated state, or :func:`diffax.train.parallel.abstract_like`).
          step: which checkpoint; ``None`` for the latest.

        Raises:
          FileNotFoundError: if there is no checkpoint (at ``step``).
        """
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
        out = self._manager.restore(int(step), args=args)
        return Restored(step=int(step), state=out.state,
                        data_state=decode_data_state(out.data), config=out.config)

    # ---- lifecycle -------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        """Blocks until pending asynchronous saves are written and committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
