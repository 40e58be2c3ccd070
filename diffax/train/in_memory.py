"""In-memory training: a train step over random minibatches of arrays that fit in memory.

For small networks on in-memory data (the task examples train on scikit-learn's digits), often
with losses the config-driven loop does not know (a classifier's cross-entropy, denoising with
simplex noise, a conditional denoiser fed an extra image). :func:`fit` runs
:func:`diffax.train.make_train_step` (the same pure step, optimizer and EMA as ``diffax train``)
over minibatches drawn inside one jitted ``lax.scan``; :attr:`FitResult.params` is
``TrainState.sampling_params(use_ema=True)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._checks import check_int
from diffax.train.state import TrainState
from diffax.train.step import make_optimizer, make_train_step
from diffax.typing import Array, PRNGKey, PyTree

__all__ = ["FitResult", "fit"]


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns: the final :class:`diffax.train.TrainState` and the losses."""

    state: Any
    losses: np.ndarray
    """The training loss of every step, ``[num_steps]``."""

    @property
    def params(self) -> PyTree:
        """The EMA parameters (what the task examples evaluate)."""
        return self.state.sampling_params(use_ema=True)


def fit(loss_fn: Callable[[PyTree, PRNGKey, Any], tuple[Array, Any]], params: PyTree,
        key: PRNGKey, data: Mapping[str, Any], *, num_steps: int, batch_size: int,
        learning_rate: float = 1e-3, warmup_steps: int = 0, ema_decay: float = 0.999,
        steps_per_call: int = 100, log: Callable[[int, float], None] | None = None,
        xla_optimization_level: int | None = None, unroll: int = 1) -> FitResult:
    """Trains ``params`` on minibatches drawn uniformly (with replacement) from ``data``.

    Args:
      loss_fn: ``loss_fn(params, key, batch) -> (loss, aux)``, e.g.
        ``diffax.losses.DenoisingLoss(...).bind(apply_fn)``.
      params: initial parameters.
      key: PRNG key (the minibatches and the train step's keys derive from it).
      data: arrays with a common leading axis ``N``; a batch is ``{k: v[idx]}``.
      num_steps: optimizer updates.
      batch_size: examples per update.
      learning_rate: Adam's peak learning rate (after ``warmup_steps`` of linear warmup).
      warmup_steps: linear warmup steps.
      ema_decay: decay of the EMA copy returned as :attr:`FitResult.params` (with warmup).
      steps_per_call: updates per jitted call.
      log: called as ``log(step, mean loss of the call)`` after every call.
      xla_optimization_level: None (default): the training call compiles under the process's
        XLA flags; 0-3: it compiles with XLA's ``xla_backend_optimization_level`` set to it
        (``jax.jit``'s ``compiler_options``), e.g. 3 to optimise a long run in a process that
        compiles without LLVM optimisation (the test suite: a :tiny SR step 0.074 -> 0.007
        CPU-s).
      unroll: updates per iteration of the compiled loop of a call (``jax.lax.scan``'s
        ``unroll``; 1, the default, is the plain scan). ``unroll >= steps_per_call`` compiles
        a call's updates as one loop-free program. On XLA's CPU backend (jax 0.10 and 0.12) a
        convolutional train step inside a loop is much slower than outside one (the CT / MRI
        tasks' UNet: ~19x, ``tools/bench_scan.md``); ``steps_per_call=1, unroll=1``
        does not help (a length-1 scan is still a loop), ``steps_per_call=k, unroll=k`` does,
        at k times the compile time.

    Returns:
      a :class:`FitResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss_fn = lambda p, key, b: (jnp.mean((p["w"] * b["x"] - 2.0 * b["x"]) ** 2), {})
      >>> res = fit(loss_fn, {"w": jnp.zeros(())}, jax.random.key(0),
      ...           {"x": jnp.ones((10, 3))}, num_steps=300, batch_size=4,
      ...           learning_rate=0.05, ema_decay=0.0)
      >>> round(float(res.params["w"]), 2)
      2.0
    """
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size),
                        ("steps_per_call", steps_per_call)):
        check_int(value, name=name, where="fit", integral=True)
    level = check_int(xla_optimization_level, name="xla_optimization_level", where="fit",
                      minimum=0, allow_none=True)
    unroll = check_int(unroll, name="unroll", where="fit", integral=True)
    if level is not None and level > 3:
        raise ValueError(f"fit: `xla_optimization_level` must be None or an integer in [0, 3], "
                         f"got {level!r}.")
    data = {k: jnp.asarray(v) for k, v in data.items()}
    sizes = {v.shape[0] for v in data.values()}
    if len(sizes) != 1:
        raise ValueError(f"fit: every entry of `data` needs the same leading size, got "
                         f"{ {k: v.shape for k, v in data.items()} }.")
    n = sizes.pop()
    optimizer, schedule = make_optimizer(learning_rate=learning_rate, warmup_steps=warmup_steps)
    step = make_train_step(loss_fn, optimizer, ema_warmup=True)
    key_state, key_batch = jax.random.split(key)
    state = TrainState.create(params=params, optimizer=optimizer, key=key_state,
                              ema_decays=(ema_decay,))

    def body(state, _):
        idx = jax.random.randint(jax.random.fold_in(key_batch, state.step), (batch_size,), 0, n)
        state, metrics = step(state, {k: v[idx] for k, v in data.items()})
        return state, metrics["loss"]

    jit_kwargs = ({} if level is None else
                  {"compiler_options": {"xla_backend_optimization_level": level}})
    scan_kwargs = {} if unroll == 1 else {"unroll": int(unroll)}
    run = jax.jit(lambda state, length: jax.lax.scan(body, state, None, length=length,
                                                     **scan_kwargs),
                  static_argnums=1, **jit_kwargs)
    losses = []
    done = 0
    while done < num_steps:
        length = min(int(steps_per_call), int(num_steps) - done)
        state, chunk = run(state, length)
        losses.append(np.asarray(chunk))
        done += length
        if log is not None:
            log(done, float(np.mean(losses[-1])))
    return FitResult(state=state, losses=np.concatenate(losses))
