"""Data parallelism over every device of every host: one mesh, one ``jax.jit`` program.

The mesh has one axis, ``data``. Batches are sharded along it
(``NamedSharding(mesh, P("data"))``), the train state is replicated (``P()``), and the train
step is a single ``jax.jit`` program with those shardings, in which XLA inserts the gradient
all-reduce (this is what ``pmap`` loops with ``lax.pmean`` become on current JAX). On several
hosts, each process holds its slice of the global batch and
``jax.make_array_from_process_local_data`` assembles the global array. The layout is ready for
a second (``fsdp``) axis: only the state's sharding would change.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from diffax.train import parallel
  >>> mesh = parallel.make_mesh()
  >>> batch = parallel.shard_batch({"x": jnp.ones((mesh.size * 2, 3))}, mesh)
  >>> batch["x"].sharding.spec
  P('data',)
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from diffax._checks import check_int
from diffax.train.step import TrainStep
from diffax.typing import PyTree

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "batch_sharding",
    "replicated_sharding",
    "check_batch_size",
    "process_batch_size",
    "shard_batch",
    "replicate",
    "abstract_like",
    "gather",
    "compile_train_step",
    "initialize_distributed",
    "DistributedInitError",
]

DATA_AXIS = "data"
"""The mesh axis batches are sharded over."""


def make_mesh(num_devices: int | None = None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every host).

    Args:
      num_devices: use only the first ``num_devices`` devices (tests, benchmarks).
      devices: explicit devices; overrides ``num_devices``.

    Example:
      >>> mesh = make_mesh(1)
      >>> dict(mesh.shape)
      {'data': 1}
    """
    if devices is None:
        devices = jax.devices()
        if num_devices is not None:
            if not 1 <= num_devices <= len(devices):
                raise ValueError(f"make_mesh: `num_devices` must be in [1, {len(devices)}], got "
                                 f"{num_devices}.")
            devices = devices[:num_devices]
    devices = list(devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                         devices=devices)


def batch_sharding(mesh: Mesh, *, leading_steps: bool = False) -> NamedSharding:
    """Sharding of a batch ``[B, ...]`` along ``data`` (``[n_steps, B, ...]`` with
    ``leading_steps``)."""
    return NamedSharding(mesh, P(None, DATA_AXIS) if leading_steps else P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Full replication over the mesh (the train state)."""
    return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh, *,
                     name: str = "train.batch_size") -> int:
    """Checks that the global batch splits evenly over devices; returns the per-process size.

    Raises:
      ValueError: naming ``name`` (the config key) when the batch is not divisible by the
        number of devices.

    Example:
      >>> check_batch_size(16, make_mesh(4))  # on one host: the whole batch
      16
      >>> check_batch_size(10, make_mesh(4))
      Traceback (most recent call last):
      ...
      ValueError: `train.batch_size`=10 is not divisible by the number of devices (4 ...
    """
    n = mesh.size
    check_int(global_batch_size, name=name, integral=True)
    if global_batch_size % n:
        raise ValueError(
            f"`{name}`={global_batch_size} is not divisible by the number of devices ({n} "
            f"over {jax.process_count()} process(es)); use a multiple of {n}, e.g. "
            f"{max(n, global_batch_size // n * n)} or {(global_batch_size // n + 1) * n}.")
    return process_batch_size(global_batch_size, mesh)


def process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch (its devices' share of the mesh)."""
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    return global_batch_size * local // mesh.size


def shard_batch(batch: PyTree, mesh: Mesh, *, leading_steps: bool = False) -> PyTree:
    """Assembles global arrays sharded along ``data`` from this process's slice of a batch.

    Every leaf of ``batch`` is this process's part ``[B / num_processes, ...]`` (or
    ``[n_steps, B / num_processes, ...]`` with ``leading_steps``); on one host that is the
    whole batch. Uses ``jax.make_array_from_process_local_data``.
    """
    sharding = batch_sharding(mesh, leading_steps=leading_steps)
    axis = 1 if leading_steps else 0
    n_proc = len({d.process_index for d in mesh.devices.flat})

    def put(x):
        x = np.asarray(x)
        if x.ndim <= axis:
            raise ValueError(f"shard_batch: a batch leaf of shape {x.shape} has no batch axis "
                             f"{axis}.")
        global_shape = x.shape[:axis] + (x.shape[axis] * n_proc,) + x.shape[axis + 1:]
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree.map(put, batch)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every leaf of ``tree`` on every device of ``mesh``.

    On several processes every process must pass the same values (e.g. parameters initialized
    from the same seed); each one supplies the copies on its own devices.
    """
    sharding = replicated_sharding(mesh)
    if all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        return jax.device_put(tree, sharding)

    def put(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def abstract_like(tree: PyTree, mesh: Mesh) -> PyTree:
    """``ShapeDtypeStruct``s of ``tree`` replicated over ``mesh``: a restore target that puts a
    checkpoint on this mesh, whatever mesh it was saved from."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding),
                        tree)


def gather(x: jax.Array) -> np.ndarray:
    """The whole (global) array ``x`` on this host as numpy (an all-gather across processes
    when ``x`` is sharded over several).

    Example:
      >>> gather(jax.numpy.arange(3))
      array([0, 1, 2], dtype=int32)
    """
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def compile_train_step(train_step: TrainStep, mesh: Mesh, *, leading_steps: bool = False,
                       donate: bool = True) -> TrainStep:
    """``jax.jit`` of a train step for a mesh: replicated state, batch sharded on ``data``.

    Args:
      train_step: from :func:`diffax.train.make_train_step`.
      mesh: from :func:`make_mesh`.
      leading_steps: the batch has a leading ``n_steps`` axis (``make_train_step(n_steps>1)``).
      donate: donate the state's buffers (the old state is unusable after the call).

    Example:
      >>> import jax, jax.numpy as jnp, optax, diffax
      >>> from diffax import losses
      >>> from diffax.train import TrainState, make_train_step
      >>> mesh = make_mesh()
      >>> loss_fn = losses.DenoisingLoss(process=diffax.VP()).bind(
      ...     lambda params, x, t: params * x)
      >>> opt = optax.sgd(1e-2)
      >>> state = replicate(TrainState.create(params=jnp.ones(()), optimizer=opt,
      ...                                     key=jax.random.key(0)), mesh)
      >>> step = compile_train_step(make_train_step(loss_fn, opt), mesh)
      >>> state, metrics = step(state, shard_batch(jnp.ones((16, 2)), mesh))
      >>> int(state.step)
      1
    """
    state_sharding = replicated_sharding(mesh)
    return jax.jit(
        train_step,
        in_shardings=(state_sharding, batch_sharding(mesh, leading_steps=leading_steps)),
        out_shardings=(state_sharding, state_sharding),
        donate_argnums=(0,) if donate else (),
    )


class DistributedInitError(RuntimeError):
    """This process could not join the multi-process job (coordinator unreachable, a wrong
    process id, or the other processes never came)."""


def _wait_for_coordinator(address: str, timeout: float, who: str) -> None:
    """Returns once a TCP connection to ``address`` succeeds; raises after ``timeout`` s."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        # Each attempt and each pause is cut to what is left, so the wait ends by the deadline.
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError("timed out")
            with socket.create_connection((host.strip("[]"), int(port)),
                                          timeout=min(2.0, left)):
                return
        except OSError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DistributedInitError(
                    f"could not join the multi-process job ({who}): nothing answered at the "
                    f"coordinator address {address} for {timeout} s ({e}). Start process 0 "
                    "(it serves the coordinator) and check the address and that its port is "
                    "reachable from this host.") from None
            time.sleep(min(0.5, left))


def initialize_distributed(*, heartbeat_timeout: int | None = None, force: bool = False,
                           initialization_timeout: int | None = None, **kwargs: Any) -> bool:
    """Calls ``jax.distributed.initialize`` when running on several processes.

    With keyword arguments (``coordinator_address``, ``num_processes``, ``process_id``, ...)
    they are passed on. Without them it initializes when the environment says so (a cluster
    JAX detects by itself: Cloud TPU, SLURM, Open MPI; or ``JAX_COORDINATOR_ADDRESS`` with
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, e.g. several processes on one machine) and
    does nothing on a single host. Returns whether it initialized.

    Args:
      heartbeat_timeout: seconds without a heartbeat after which the coordination service
        declares a process dead and stops the others (jax's ``heartbeat_timeout_seconds``;
        default jax's own, 100), so that a job whose process died fails instead of waiting
        in a collective forever.
      force: initialize even without a cluster hint in the environment, leaving the detection
        to jax (``diffax train --distributed``; needed on Cloud TPU VMs, whose slice is found
        through the VM metadata rather than environment variables).
      initialization_timeout: seconds to wait for every process to join (jax's default 300);
        past it this process fails with :class:`DistributedInitError`.
      **kwargs: passed to ``jax.distributed.initialize``.

    Raises:
      DistributedInitError: joining the job failed (the message names the coordinator and
        this process's id).
    """
    if jax.distributed.is_initialized():
        return False
    if heartbeat_timeout is not None:
        kwargs["heartbeat_timeout_seconds"] = int(heartbeat_timeout)
    if initialization_timeout is not None:
        kwargs["initialization_timeout"] = int(initialization_timeout)
    explicit = set(kwargs) - {"heartbeat_timeout_seconds", "initialization_timeout"}
    if not explicit:
        if os.environ.get("JAX_COORDINATOR_ADDRESS") and os.environ.get("JAX_NUM_PROCESSES"):
            kwargs.update(num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                          process_id=int(os.environ.get("JAX_PROCESS_ID", "0")))
        env_hints = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                     "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")
        if not force and not any(os.environ.get(k) for k in env_hints):
            return False
    timeout = kwargs.get("initialization_timeout", 300)  # 300: jax's default
    who = ", ".join(f"{k}={kwargs[k]!r}" for k in ("coordinator_address", "num_processes",
                                                   "process_id") if k in kwargs)
    if kwargs.get("coordinator_address") and kwargs.get("process_id", 0) != 0:
        # jax aborts the whole process (no Python exception) when the coordinator cannot be
        # reached: find out first, and fail with a message.
        start = time.monotonic()
        _wait_for_coordinator(kwargs["coordinator_address"], timeout, who)
        # One budget for both waits: what is left of it goes to jax.
        kwargs["initialization_timeout"] = max(1, int(timeout - (time.monotonic() - start)))
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised with what the user needs to know
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedInitError(
            f"could not join the multi-process job ({who or 'auto-detected cluster'}, waited "
            f"up to {timeout} s): {first}. Check that the "
            "coordinator address is reachable from every process, that every process got the "
            "same --num_processes and a distinct --process_id in [0, num_processes), and that "
            "all of them were started.") from e
    return True
