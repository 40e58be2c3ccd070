"""The pure train step: ``train_step(state, batch) -> (state, metrics)``.

:func:`make_train_step` composes a loss function (``losses.DenoisingLoss.bind`` or any
``loss_fn(params, key, batch) -> (loss, aux)``), an optax optimizer and EMA updates into one
pure function. With ``n_steps > 1`` it runs that many updates per call with ``lax.scan`` over a
leading axis of the batch (score_sde's ``n_jitted_steps``). Compiling it for a device mesh,
with donated buffers, is :func:`diffax.train.parallel.compile_train_step`.

:func:`make_optimizer` is optax's Adam(W) with linear warmup, an optional cosine decay and
global-norm gradient clipping, returning the learning-rate schedule too (for the metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffax._checks import check_int
from diffax.train.state import TrainState
from diffax.typing import Array, PyTree

__all__ = ["make_train_step", "make_optimizer", "reduce_metrics", "TrainStep", "ema_update",
           "finish_update", "repeat_steps"]

TrainStep = Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]
"""``train_step(state, batch) -> (state, metrics)``."""


def reduce_metrics(metrics: dict[str, Array]) -> dict[str, Array]:
    """Metrics of several updates (a leading axis) as one: counts summed, the first
    ``nonfinite_step`` that is not ``-1``, means of the rest.

    Example:
      >>> import jax.numpy as jnp
      >>> m = reduce_metrics({"loss": jnp.array([1.0, 3.0]), "nonfinite": jnp.array([0, 1]),
      ...                     "nonfinite_step": jnp.array([-1, 8])})
      >>> {k: v.item() for k, v in m.items()}
      {'loss': 2.0, 'nonfinite': 1, 'nonfinite_step': 8}
    """
    out = {}
    for name, m in metrics.items():
        if name == "nonfinite":
            out[name] = jnp.sum(m, axis=0)
        elif name == "nonfinite_step":
            big = jnp.iinfo(m.dtype).max
            first = jnp.min(jnp.where(m < 0, big, m), axis=0)
            out[name] = jnp.where(first == big, -1, first).astype(m.dtype)
        else:
            out[name] = jnp.mean(m, axis=0)
    return out


def make_optimizer(*, learning_rate: float, warmup_steps: int = 0,
                   decay_steps: int | None = None, end_learning_rate: float = 0.0,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   weight_decay: float = 0.0, grad_clip: float | None = 1.0
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam(W) with linear warmup, optional cosine decay and gradient clipping.

    Args:
      learning_rate: peak learning rate.
      warmup_steps: linear warmup from 0 over this many steps (score_sde: 5000).
      decay_steps: if given, cosine decay from the peak to ``end_learning_rate`` over this many
        steps after warmup; otherwise constant after warmup.
      end_learning_rate: the learning rate at the end of the decay.
      b1, b2, eps: Adam's parameters.
      weight_decay: decoupled weight decay (AdamW); 0 gives Adam.
      grad_clip: clip gradients to this global norm first; ``None`` disables clipping.

    Returns:
      ``(optimizer, schedule)``; ``schedule(step)`` is the learning rate at ``step``.

    Example:
      >>> opt, schedule = make_optimizer(learning_rate=2e-4, warmup_steps=100)
      >>> round(float(schedule(50)), 7), round(float(schedule(1000)), 7)
      (0.0001, 0.0002)
    """
    if not learning_rate > 0:
        raise ValueError(f"make_optimizer: `learning_rate` must be positive, got "
                         f"{learning_rate!r}.")
    if warmup_steps < 0:
        raise ValueError(f"make_optimizer: `warmup_steps` must be >= 0, got {warmup_steps!r}.")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"make_optimizer: `grad_clip` must be positive or None, got "
                         f"{grad_clip!r}.")
    if decay_steps is None:
        after = optax.constant_schedule(learning_rate)
    else:
        if decay_steps <= 0:
            raise ValueError(f"make_optimizer: `decay_steps` must be positive, got "
                             f"{decay_steps!r}.")
        after = optax.cosine_decay_schedule(learning_rate, decay_steps,
                                            alpha=end_learning_rate / learning_rate)
    if warmup_steps > 0:
        warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
        schedule = optax.join_schedules([warmup, after], [warmup_steps])
    else:
        schedule = after
    adam = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    chain = [adam] if grad_clip is None else [optax.clip_by_global_norm(grad_clip), adam]
    return optax.chain(*chain), schedule


def make_train_step(loss_fn: Callable[[PyTree, Array, Any], tuple[Array, Any]],
                    optimizer: optax.GradientTransformation, *,
                    learning_rate: optax.ScalarOrSchedule | None = None, n_steps: int = 1,
                    ema_warmup: bool = False, skip_nonfinite: bool = True,
                    post_update: Callable[[PyTree, Any], tuple[PyTree, dict[str, Array]]]
                    | None = None) -> TrainStep:
    """Builds the pure ``train_step(state, batch) -> (state, metrics)``.

    One update: ``key = fold_in(state.key, state.step)``; gradients of
    ``loss_fn(params, key, batch)``; ``optimizer.update``; every EMA copy moves as
    ``ema <- decay * ema + (1 - decay) * params`` (``optax.incremental_update``).

    Non-finite numbers: when the loss or the gradient norm is NaN or infinite, the update is
    skipped inside the compiled program (``skip_nonfinite``): parameters, optimizer state and
    EMA keep their values and only ``step`` advances (so the next update draws fresh
    randomness and the step still counts the batches consumed). The ``nonfinite`` metric counts
    such updates and ``nonfinite_step`` names the first one (the value ``step`` had after it;
    ``-1`` if none); :func:`diffax.train.loop.train_and_evaluate` stops on them or counts them
    (``train.nonfinite``). With finite numbers the result is bit for bit the plain update.

    Args:
      loss_fn: ``loss_fn(params, key, batch) -> (loss, aux)`` with a scalar loss, e.g.
        ``losses.DenoisingLoss(...).bind(apply_fn)``.
      optimizer: an optax transformation (see :func:`make_optimizer`).
      learning_rate: a number or schedule reported as the ``learning_rate`` metric.
      n_steps: updates per call. With ``n_steps > 1`` every leaf of ``batch`` has a leading
        axis of size ``n_steps`` (one batch per update), the updates run in ``lax.scan`` and
        the metrics are averaged over them (``nonfinite`` is summed, ``nonfinite_step`` is the
        first).
      ema_warmup: use ``min(decay, (1 + step) / (10 + step))`` so early EMA copies follow the
        parameters (off by default, as in score_sde).
      skip_nonfinite: skip updates whose loss or gradients are not finite (see above);
        ``False`` applies them (the parameters then turn NaN).
      post_update: ``post_update(params, aux) -> (params, metrics)`` applied to the updated
        parameters with the loss's ``aux`` before the EMA (e.g. a VQ autoencoder's EMA codebook
        update, :class:`diffax.latent.CodebookEMA`); its metrics join the step's. ``None``
        (default): the parameters are the optimizer's.

    Returns:
      ``train_step(state, batch) -> (state, metrics)`` with metrics ``loss``, ``grad_norm``
      (before clipping), ``nonfinite`` (int32: updates with a non-finite loss or gradient),
      ``nonfinite_step`` (int32) and, when ``learning_rate`` is given, ``learning_rate``; all
      scalars.

    Example:
      >>> import jax, jax.numpy as jnp, optax, diffax
      >>> from diffax import losses
      >>> from diffax.train import TrainState, make_train_step
      >>> loss_fn = losses.DenoisingLoss(process=diffax.VP()).bind(
      ...     lambda params, x, t: params["w"] * x)
      >>> opt = optax.adam(1e-2)
      >>> state = TrainState.create(params={"w": jnp.ones(())}, optimizer=opt,
      ...                           key=jax.random.key(0))
      >>> step = jax.jit(make_train_step(loss_fn, opt, n_steps=2), donate_argnums=0)
      >>> state, metrics = step(state, {"x": jnp.ones((2, 8, 3))})
      >>> int(state.step), sorted(metrics)
      (2, ['grad_norm', 'loss', 'nonfinite', 'nonfinite_step'])
    """
    n_steps = check_int(n_steps, name="n_steps", where="make_train_step", integral=True)
    schedule = learning_rate if callable(learning_rate) else (
        None if learning_rate is None else (lambda step: jnp.asarray(learning_rate)))

    def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, key,
                                                                        batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        extra = {}
        if post_update is not None:
            params, extra = post_update(params, aux)
        ema_params = ema_update(state, params, ema_warmup=ema_warmup)
        grad_norm = optax.tree.norm(grads)
        bad = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        metrics = {"loss": loss, "grad_norm": grad_norm, **extra}
        return finish_update(state, params, opt_state, ema_params, metrics, bad=bad,
                             schedule=schedule, skip_nonfinite=skip_nonfinite)

    return repeat_steps(one_step, n_steps)


def ema_update(state: TrainState, params: PyTree, *, ema_warmup: bool = False
               ) -> tuple[PyTree, ...]:
    """Every EMA copy of ``state`` moved towards ``params``:
    ``ema <- decay * ema + (1 - decay) * params`` (with ``ema_warmup``, the decay is
    ``min(decay, (1 + step) / (10 + step))``).

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> s = TrainState.create(params=jnp.zeros(()), optimizer=optax.sgd(0.1),
      ...                       key=jax.random.key(0), ema_decays=(0.5,))
      >>> float(ema_update(s, jnp.ones(()))[0])
      0.5
    """
    ema_params = []
    for decay, ema in zip(state.ema_decays, state.ema_params, strict=True):
        d = jnp.asarray(decay, jnp.float32)
        if ema_warmup:
            s = state.step.astype(jnp.float32)
            d = jnp.minimum(d, (1.0 + s) / (10.0 + s))
        ema_params.append(optax.incremental_update(params, ema, 1.0 - d))
    return tuple(ema_params)


def finish_update(state: TrainState, params: PyTree, opt_state: PyTree,
                  ema_params: tuple[PyTree, ...], metrics: dict[str, Array], *, bad: Array,
                  schedule: optax.Schedule | None = None, skip_nonfinite: bool = True
                  ) -> tuple[TrainState, dict[str, Array]]:
    """The state after one update and its metrics: ``step + 1`` and the new parameters,
    optimizer state and EMA, or (``skip_nonfinite`` and ``bad``) the old ones; ``metrics`` gets
    ``nonfinite``, ``nonfinite_step`` and, with a ``schedule``, ``learning_rate``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> s = TrainState.create(params=jnp.zeros(()), optimizer=optax.sgd(0.1),
      ...                       key=jax.random.key(0), ema_decays=())
      >>> s2, m = finish_update(s, jnp.ones(()), s.opt_state, (), {}, bad=jnp.array(True))
      >>> int(s2.step), float(s2.params), int(m["nonfinite_step"])
      (1, 0.0, 1)
    """
    metrics = {**metrics, "nonfinite": bad.astype(jnp.int32),
               "nonfinite_step": jnp.where(bad, state.step + 1, -1).astype(jnp.int32)}
    if schedule is not None:
        metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    new = (params, opt_state, tuple(ema_params))
    if skip_nonfinite:
        old = (state.params, state.opt_state, state.ema_params)
        new = jax.tree.map(lambda n, o: jnp.where(bad, o, n), new, old)
    params, opt_state, ema_params = new
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         ema_params=ema_params), metrics


def repeat_steps(one_step: TrainStep, n_steps: int) -> TrainStep:
    """``one_step`` itself for ``n_steps == 1``; else a step running ``n_steps`` updates in
    ``lax.scan`` over the batch's leading axis, with :func:`reduce_metrics` of their metrics.

    Example:
      >>> import jax.numpy as jnp
      >>> step = repeat_steps(lambda s, b: (s + b, {"loss": b}), 2)
      >>> state, m = step(jnp.zeros(()), jnp.array([1.0, 3.0]))
      >>> float(state), float(m["loss"])
      (4.0, 2.0)
    """
    if n_steps == 1:
        return one_step

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        for leaf in jax.tree.leaves(batch):
            if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n_steps:
                raise ValueError(
                    f"train_step: with n_steps={n_steps} every batch leaf needs a leading axis "
                    f"of size {n_steps} (one batch per update); got shape {jnp.shape(leaf)}.")
        state, metrics = jax.lax.scan(one_step, state, batch)
        return state, reduce_metrics(metrics)

    return train_step
