"""A converted diffusers UNet as a diffax denoiser, and sampling it (what ``diffax sample
--pretrained DIR`` runs).

diffusers' UNets take the timestep in their training units: DDPM's integer step ``0 .. T-1``
(positional embedding) or the noise level sigma (score-SDE Fourier embedding). diffax's time
``t`` is mapped once, here: on a :class:`diffax.DiscreteVP` the step is ``p.index(t)`` (the
nearest grid step, exact on the grid where DDIM / DPM-Solver / UniPC evaluate), and Fourier
models get ``p.sigma(t)``.
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
from diffax.parameterization import as_denoiser
from diffax.processes import DiscreteVP, Process

__all__ = ["denoiser_fn", "sample_pretrained", "timestep_fn"]


def timestep_fn(pretrained: Pretrained, process: Process) -> Callable[[jax.Array], jax.Array]:
    """``t -> the timestep the network was trained with`` for ``process``.

    Raises:
        ValueError: the module is not a UNet, or the pairing has no defined timestep map.

    Example:
        >>> import diffax, jax.numpy as jnp
        >>> from diffax.interop.diffusers import module_from_spec, spec_from_config
        >>> unet = Pretrained(module_from_spec(spec_from_config(
        ...     {"_class_name": "UNet2DModel", "block_out_channels": [8], "norm_num_groups": 4,
        ...      "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]})),
        ...     params=None, config={"_class_name": "UNet2DModel"})
        >>> p = diffax.DiscreteVP.linear(num_steps=1000)
        >>> timestep_fn(unet, p)(jnp.array([1.0, 0.001]))
        Array([999.,   0.], dtype=float32)
    """
    module = pretrained.module
    if not isinstance(module, DiffusersUNet):
        raise ValueError(f"pretrained: a {pretrained.class_name} is not a denoising network")
    if module.spec.time_embedding is TimeEmbedding.FOURIER:
        return lambda t: process.sigma(t).astype(jnp.float32)
    if isinstance(process, DiscreteVP):
        return lambda t: process.index(t).astype(jnp.float32)
    raise ValueError(f"process: a positional-embedding diffusers UNet runs on DDPM's discrete "
                     f"steps; pass a diffax.DiscreteVP (got {type(process).__name__})")


def denoiser_fn(pretrained: Pretrained, process: Process, *, prediction: str = "eps"
                ) -> Callable[..., Any]:
    """``D(params, x, t, context=None, label=None) -> E[x0 | x_t = x]`` of a converted UNet.

    ``prediction`` is what the network outputs (diffusers' scheduler ``prediction_type``:
    ``"eps"`` for ``epsilon``, ``"v"`` for ``v_prediction``, ``"x0"`` for ``sample``; score-SDE
    Fourier models output the score).

    Example:
        >>> import diffax, jax, jax.numpy as jnp
        >>> from diffax.interop.diffusers import module_from_spec, spec_from_config
        >>> m = module_from_spec(spec_from_config(
        ...     {"_class_name": "UNet2DModel", "block_out_channels": [8], "norm_num_groups": 4,
        ...      "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}))
        >>> x = jnp.zeros((2, 4, 4, 3))
        >>> params = jax.jit(m.init)(jax.random.key(0), x, jnp.zeros(2))
        >>> unet = Pretrained(m, params, {"_class_name": "UNet2DModel"})
        >>> D = jax.jit(denoiser_fn(unet, diffax.DiscreteVP.linear(num_steps=1000)))
        >>> D(params, x, jnp.full((2,), 0.5)).shape
        (2, 4, 4, 3)
    """
    to_step = timestep_fn(pretrained, process)
    module = pretrained.module

    def D(params, x, t, context=None, label=None):
        def fn(x, t):
            return module.apply(params, x, to_step(t), context, label)

        return as_denoiser(fn, process, prediction=prediction)(x, t)

    return D


def sample_pretrained(key: jax.Array, pretrained: Pretrained, process: Process, *,
                      prediction: str, solver: Any, num_steps: int, schedule: Any = None,
                      num_samples: int, batch_size: int = 16) -> tuple[np.ndarray, int]:
    """``num_samples`` samples of an unconditional converted UNet, in the model's range.

    Runs :func:`diffax.sample` from the prior at ``process.t_max`` in batches of
    ``batch_size`` (one compiled program). Returns ``(x [N, H, W, C], nfe per sample)``.

    Raises:
        ValueError: a conditional model (cross-attention or class labels), or no
            ``sample_size`` in its config.
    """
    from diffax.samplers import sample

    module = pretrained.module
    spec = module.spec
    if spec.num_class_embeds is not None or any(
            b.kind.cross_attention for b in (*spec.down, *spec.up)):
        raise ValueError(f"pretrained: {pretrained.class_name} needs conditioning (labels or "
                         "text context); sample_pretrained runs unconditional UNets only")
    if int(num_samples) < 1 or int(batch_size) < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1; got {num_samples}, "
                         f"{batch_size}")
    D = denoiser_fn(pretrained, process, prediction=prediction)
    batch = min(int(batch_size), int(num_samples))
    shape = (batch, *pretrained.sample_shape)

    @jax.jit
    def run(params, key):
        k_init, k_solve = jax.random.split(key)
        x_init = process.prior_sample(k_init, shape)
        res = sample(k_solve, process, lambda x, t: D(params, x, t), x_init, solver=solver,
                     num_steps=num_steps, schedule=schedule)
        return res.x, res.nfe

    out, nfe = [], 0
    for i in range(math.ceil(num_samples / batch)):
        x, n = run(pretrained.params, jax.random.fold_in(key, i))
        out.append(np.asarray(x))
        nfe = int(n)
    return np.concatenate(out)[:num_samples], nfe
