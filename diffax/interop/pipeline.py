"""Sampling a converted diffusers UNet with a diffusers scheduler config (what ``diffax sample
--pretrained DIR`` runs).

The UNet (:func:`diffax.interop.load_pretrained`) takes diffusers' integer timesteps ``k``; the
scheduler (:func:`diffax.interop.load_scheduler`) gives the :class:`diffax.DiscreteVP`, the
prediction type, the time grid and the solver, and turns ``net(x, k)`` into a diffax denoiser
(``k = process.index(t)``, with ``clip_sample``'s clipping).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.interop.diffusers import Pretrained
from diffax.interop.diffusers_models import DiffusersUNet, TimeEmbedding
from diffax.interop.schedulers import Scheduler

__all__ = ["sample_pretrained", "unet_fn"]


def unet_fn(pretrained: Pretrained) -> Callable[..., jax.Array]:
    """``net(params, x, k, context=None, label=None)``: the UNet on diffusers' timesteps ``k``.

    ``x`` is ``[B, H, W, C]``, ``k`` ``[B]`` (integers or floats in the training units).

    Raises:
        ValueError: ``pretrained`` is not a UNet.

    Example:
        >>> import jax, jax.numpy as jnp, diffax
        >>> from diffax.interop.diffusers import module_from_spec, spec_from_config
        >>> m = module_from_spec(spec_from_config(
        ...     {"_class_name": "UNet2DModel", "block_out_channels": [8], "norm_num_groups": 4,
        ...      "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}))
        >>> x = jnp.zeros((2, 4, 4, 3))
        >>> params = jax.jit(m.init)(jax.random.key(0), x, jnp.zeros(2))
        >>> net = unet_fn(Pretrained(m, params, {"_class_name": "UNet2DModel"}))
        >>> s = diffax.interop.load_scheduler({"_class_name": "DDIMScheduler"})
        >>> D = jax.jit(s.denoiser(lambda x, k: net(params, x, k)))
        >>> D(x, jnp.full((2,), 0.5)).shape
        (2, 4, 4, 3)
    """
    module = pretrained.module
    if not isinstance(module, DiffusersUNet):
        raise ValueError(f"pretrained: a {pretrained.class_name} is not a denoising network")

    def net(params, x, k, context=None, label=None):
        return module.apply(params, x, jnp.asarray(k).astype(jnp.float32), context, label)

    return net


def sample_pretrained(key: jax.Array, pretrained: Pretrained, scheduler: Scheduler, *,
                      num_steps: int, num_samples: int, batch_size: int = 16,
                      solver: Any = None, schedule: Any = None) -> tuple[np.ndarray, int]:
    """``num_samples`` samples of an unconditional converted UNet, in the model's range.

    Runs :func:`diffax.sample` from the prior at ``scheduler.process.t_max`` in batches of
    ``batch_size`` (one compiled program), with ``scheduler.solver`` on ``scheduler.grid(
    num_steps)`` unless ``solver`` / ``schedule`` are given. Returns ``(x [N, H, W, C], NFE per
    sample)``.

    Raises:
        ValueError: a conditional model (cross-attention or class labels), a score-SDE
            (Fourier) model, no ``sample_size`` in its config, or bad counts.
    """
    from diffax.samplers import sample

    net = unet_fn(pretrained)
    spec = pretrained.module.spec
    if spec.num_class_embeds is not None or any(
            b.kind.cross_attention for b in (*spec.down, *spec.up)):
        raise ValueError(f"pretrained: {pretrained.class_name} needs conditioning (labels or "
                         "text context); sample_pretrained runs unconditional UNets only")
    if spec.time_embedding is TimeEmbedding.FOURIER:
        raise ValueError("pretrained: a score-SDE (fourier time embedding) UNet takes sigma, "
                         "not DDPM timesteps; diffusers' schedulers read here are DDPM-type")
    if int(num_samples) < 1 or int(batch_size) < 1 or int(num_steps) < 1:
        raise ValueError(f"num_samples, batch_size and num_steps must be >= 1; got "
                         f"{num_samples}, {batch_size}, {num_steps}")
    process = scheduler.process
    solver = scheduler.solver if solver is None else solver
    schedule = scheduler.grid(int(num_steps)) if schedule is None else schedule
    # An explicit grid (diffusers' own; it may end at t = 0, clean data, and may drop a
    # zero-length step) is an argument of the compiled program: its length gives the steps,
    # and the concrete-value range checks of diffax.sample, which cannot see that sigma(0) = 0
    # under jit, were done when the scheduler made it.
    explicit = isinstance(schedule, np.ndarray | jax.Array)
    steps = None if explicit else int(num_steps)
    batch = min(int(batch_size), int(num_samples))
    shape = (batch, *pretrained.sample_shape)

    @jax.jit
    def run(params, key, grid):
        k_init, k_solve = jax.random.split(key)
        x_init = process.prior_sample(k_init, shape)
        D = scheduler.denoiser(lambda x, k: net(params, x, k))
        res = sample(k_solve, process, D, x_init, solver=solver, num_steps=steps,
                     schedule=grid if explicit else schedule)
        return res.x, res.nfe

    grid = jnp.asarray(schedule, jnp.float32) if explicit else None
    out, nfe = [], 0
    for i in range(math.ceil(num_samples / batch)):
        x, n = run(pretrained.params, jax.random.fold_in(key, i), grid)
        out.append(np.asarray(x))
        nfe = int(n)
    return np.concatenate(out)[:num_samples], nfe
