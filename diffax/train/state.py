"""The training state: one pytree holding everything a step reads and writes.

``TrainState`` is a pytree dataclass (step, params, optax state, EMA parameters for one or
more decays, PRNG key). It is what the pure train step maps to its successor, what the mesh
replicates and what checkpoints save: nothing about training lives outside it except the data
iterator's position (saved next to it by :mod:`diffax.train.checkpoint`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffax._pytree import pytree_dataclass, static_field
from diffax.typing import PRNGKey, PyTree

__all__ = ["TrainState"]


@pytree_dataclass
class TrainState:
    """Step counter, parameters, optimizer state, EMA parameters and PRNG key.

    Attributes:
      step: int32 scalar, the number of optimizer updates applied so far.
      params: the model's parameters (any pytree).
      opt_state: the optax state of the optimizer.
      ema_params: a tuple with one copy of the parameters per EMA decay.
      key: typed PRNG key; step ``n`` uses ``jax.random.fold_in(key, n)``, so a run's
        randomness depends only on the step, never on how steps are grouped or resumed.
      ema_decays: the EMA decays (static: part of the tree structure), one per
        ``ema_params`` entry.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> state = TrainState.create(params={"w": jnp.zeros(3)}, optimizer=optax.adam(1e-3),
      ...                           key=jax.random.key(0), ema_decays=(0.999, 0.9999))
      >>> int(state.step), len(state.ema_params), state.ema(0.9999)["w"].shape
      (0, 2, (3,))
    """

    step: Any
    params: PyTree
    opt_state: PyTree
    ema_params: tuple[PyTree, ...]
    key: PRNGKey
    ema_decays: tuple[float, ...] = static_field(default=())

    @classmethod
    def create(cls, *, params: PyTree, optimizer: optax.GradientTransformation, key: PRNGKey,
               ema_decays: tuple[float, ...] = (0.9999,)) -> TrainState:
        """A fresh state at step 0; EMA copies start equal to ``params``.

        Args:
          params: initial parameters.
          optimizer: the optax transformation the train step will use.
          key: a typed PRNG key (``jax.random.key``); raw uint32 keys are wrapped.
          ema_decays: one or more decays in ``[0, 1)``; ``()`` keeps no EMA.
        """
        decays = tuple(float(d) for d in ema_decays)
        for d in decays:
            if not 0.0 <= d < 1.0:
                raise ValueError(f"TrainState.create: every entry of `ema_decays` must lie in "
                                 f"[0, 1), got {ema_decays!r}.")
        if len(set(decays)) != len(decays):
            raise ValueError(f"TrainState.create: `ema_decays` has duplicates: {ema_decays!r}.")
        if not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
        copy = lambda tree: jax.tree.map(jnp.array, tree)
        return cls(step=jnp.zeros((), jnp.int32), params=params,
                   opt_state=optimizer.init(params),
                   ema_params=tuple(copy(params) for _ in decays), key=key,
                   ema_decays=decays)

    def ema(self, decay: float | None = None) -> PyTree:
        """The EMA parameters for ``decay`` (default: the first decay).

        Raises:
          ValueError: if the state keeps no EMA or not this decay.
        """
        if not self.ema_decays:
            raise ValueError("TrainState.ema: this state keeps no EMA (`ema_decays` is empty).")
        if decay is None:
            return self.ema_params[0]
        for d, p in zip(self.ema_decays, self.ema_params, strict=True):
            if d == float(decay):
                return p
        raise ValueError(f"TrainState.ema: no EMA with decay {decay!r}; the state keeps "
                         f"{self.ema_decays!r}.")

    def sampling_params(self, *, use_ema: bool = True) -> PyTree:
        """The parameters to sample with: the first EMA when ``use_ema`` and the state keeps
        one, else the raw parameters (``config.sample.use_ema``).

        Example:
          >>> import optax, jax.numpy as jnp
          >>> s = TrainState.create(params={"w": jnp.ones(2)}, optimizer=optax.sgd(0.1),
          ...                       key=jax.random.key(0), ema_decays=())
          >>> s.sampling_params()["w"].shape
          (2,)
        """
        return self.ema() if use_ema and self.ema_decays else self.params

    def replace(self, **changes: Any) -> TrainState:
        """A copy with some fields changed."""
        import dataclasses

        return dataclasses.replace(self, **changes)
