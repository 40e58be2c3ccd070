"""Flax score networks: the NCSN++ / DDPM++ :class:`UNet` and a residual :class:`MLP`.

Each network has a frozen, validated config dataclass and a ``VARIANTS`` dict of named
configs (``UNET_VARIANTS``, ``MLP_VARIANTS`` here), and is called as
``model.apply(params, x, t, label=None, train=False, rngs={"dropout": key})``, where ``params``
is what ``model.init`` returns. :func:`apply_fn` turns a model into the pure
``apply_fn(params, x, t, **cond)`` the diffax core takes; :func:`from_nnx` does the same for a
``flax.nnx`` module.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffax import models
    >>> model = models.MLP.from_variant("tiny")
    >>> params = model.init_params(jax.random.key(0))
    >>> f = jax.jit(models.apply_fn(model))
    >>> f(params, jnp.zeros((8, 2)), jnp.ones(8)).shape
    (8, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from diffax.models.autoencoder import (
    AUTOENCODER_VARIANTS,
    AutoencoderConfig,
    AutoencoderKL,
    AutoencoderVQ,
)
from diffax.models.layers import BlockType, Embedding, drop_labels
from diffax.models.mlp import MLP, MLPConfig
from diffax.models.mlp import VARIANTS as MLP_VARIANTS
from diffax.models.nnx import from_nnx
from diffax.models.patchgan import PatchDiscriminator
from diffax.models.transformer import VARIANTS as TRANSFORMER_VARIANTS
from diffax.models.transformer import Transformer, TransformerConfig
from diffax.models.unet import VARIANTS as UNET_VARIANTS
from diffax.models.unet import UNet, UNetConfig

__all__ = [
    "AUTOENCODER_VARIANTS",
    "AutoencoderConfig",
    "AutoencoderKL",
    "AutoencoderVQ",
    "MLP",
    "MLP_VARIANTS",
    "PatchDiscriminator",
    "TRANSFORMER_VARIANTS",
    "Transformer",
    "TransformerConfig",
    "UNET_VARIANTS",
    "BlockType",
    "Embedding",
    "MLPConfig",
    "UNet",
    "UNetConfig",
    "apply_fn",
    "count_params",
    "drop_labels",
    "from_nnx",
]


def apply_fn(model: nn.Module) -> Callable[..., jax.Array]:
    """The pure function ``f(params, x, t, *, label=None, train=False, key=None)`` of a model.

    ``f`` calls ``model.apply(params, x, t, label=label, train=train)``, with
    ``rngs={"dropout": key}`` when ``key`` is given (dropout needs it when ``train=True``).
    Only ``label`` is passed on when it is not ``None``, so ``f`` also fits models without one.

    Args:
        model: a linen module called as ``model(x, t, *, label=..., train=...)``, such as
            :class:`UNet` or :class:`MLP`.

    Returns:
        ``f(params, x, t, *, label=None, train=False, key=None) -> [B, ...]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = MLP.from_variant("tiny", num_classes=3)
        >>> params = model.init_params(jax.random.key(0))
        >>> f = jax.jit(apply_fn(model), static_argnames="train")
        >>> f(params, jnp.zeros((4, 2)), jnp.ones(4), label=jnp.arange(4) % 3).shape
        (4, 2)
    """

    def f(
        params: Any,
        x: jax.Array,
        t: jax.Array,
        *,
        label: jax.Array | None = None,
        train: bool = False,
        key: jax.Array | None = None,
    ) -> jax.Array:
        kwargs: dict[str, Any] = {"train": train}
        if label is not None:
            kwargs["label"] = label
        rngs = None if key is None else {"dropout": key}
        return model.apply(params, x, t, rngs=rngs, **kwargs)

    return f


def count_params(model: UNet | MLP) -> int:
    """Number of parameters of ``model``, from ``jax.eval_shape`` (no memory, no compile).

    Example:
        >>> count_params(MLP.from_variant("tiny"))
        8930
    """
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))
