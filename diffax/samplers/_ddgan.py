"""Denoising diffusion GAN sampling (Xiao, Kreis & Vahdat, ICLR 2022).

A DDGAN generator ``G(x_t, t, z) -> x0`` proposes a clean sample from a latent ``z ~ N(0, I)``;
the step then draws ``x_s ~ q(x_s | x_t, x0)``, the forward process's own posterior
(:meth:`diffax.Process.posterior`, exactly DDPM's ``q(x_{n-1} | x_n, x0)`` on a
:class:`diffax.DiscreteVP` grid). With an exact sampler of ``p(x0 | x_t)`` in place of ``G`` the
chain draws exactly from ``q(x_s | x_t)``, whatever the number of steps; only the generator
approximates.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import pytree_dataclass, static_field
from diffax.samplers._base import Solver, StepContext
from diffax.samplers._first_order import ancestral_step

__all__ = ["DDGAN"]


@pytree_dataclass
class DDGAN(Solver):
    """Ancestral sampling with a DDGAN generator: ``x0 = G(x_t, t, z)``, ``z ~ N(0, I)``, then
    ``x_s ~ q(x_s | x_t, x0)``. One generator call per step.

    The ``denoiser`` given to :func:`diffax.sample` is the generator, called as
    ``G(x, t, z=z)`` with ``z`` ``[B, *latent_shape]`` (``z=None`` must also work; e.g.
    :meth:`diffax.ddgan.DDGANTrainer.denoiser`). On a :class:`diffax.DiscreteVP` the default grid
    is the process's own, ``t_n = n / T`` for ``n = T .. 0``: ``num_steps`` must be ``T`` and the
    last step lands on clean data (``q(x_0 | x_1, x0) = delta(x0)``).

    Attributes:
      latent_shape: the shape of one latent ``z`` (static).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=4)
      >>> G = lambda x, t, z=None: jnp.zeros_like(x) if z is None else z[:, :2]
      >>> res = diffax.sample(jax.random.key(0), p, G, jnp.zeros((3, 2)),
      ...                     solver=diffax.samplers.DDGAN(latent_shape=(4,)), num_steps=4)
      >>> res.x.shape, int(res.nfe), res.times.tolist()
      ((3, 2), 4, [1.0, 0.75, 0.5, 0.25, 0.0])
    """

    latent_shape: tuple[int, ...] = static_field(default=(1,))

    order = 1
    nfe_per_step = 1
    stochastic = True
    reaches_clean_data = True

    def __post_init__(self):
        shape = self.latent_shape
        if (not isinstance(shape, tuple) or not shape
                or not all(isinstance(d, int | np.integer) and d >= 1 for d in shape)):
            raise ValueError(f"DDGAN: `latent_shape` must be a non-empty tuple of positive "
                             f"integers, got {shape!r}.")

    def default_schedule(self, process: Any) -> Any:
        num = getattr(process, "num_steps", None)
        if num is None:
            raise ValueError(f"DDGAN: the default grid needs a diffax.DiscreteVP (its T steps); "
                             f"got {type(process).__name__}: pass an explicit `schedule`.")
        return np.arange(num, -1, -1, dtype=np.float64) / num

    def step(self, process: Any, denoiser: Any, x: jax.Array, state: Any, ctx: StepContext
             ) -> tuple[jax.Array, Any, jax.Array]:
        if ctx.key is None:
            raise ValueError("DDGAN is stochastic: diffax.sample needs a PRNG `key`.")
        k_z, k_eps = jax.random.split(ctx.key)
        z = ctx.noise(k_z, (x.shape[0], *self.latent_shape))
        generator = lambda x, t: denoiser(x, t, z=z)  # noqa: E731 - x0 for this step's z
        return ancestral_step(process, generator, x, ctx, k_eps), state, jnp.int32(1)
