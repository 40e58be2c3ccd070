"""Building blocks shared by the score networks: embeddings, initialisers, residual blocks.

Everything here is a plain function or a small Flax linen module with explicit, typed fields.
Options that pick a behaviour (block type, embedding type, resampling) are enums that the model
configs validate once; the blocks themselves never parse strings.

Shapes are written ``[B, H, W, C]`` for images and ``[B, D]`` for vectors; ``t`` is ``[B]``.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any

_INV_SQRT2 = 1.0 / math.sqrt(2.0)  # a Python float: keeps the computation dtype

__all__ = [
    "AttentionBlock",
    "BlockType",
    "Embedding",
    "Resample",
    "ResnetBlock",
    "default_init",
    "drop_labels",
    "fourier_embedding",
    "group_norm",
    "num_groups",
    "sinusoidal_embedding",
    "time_embedding",
]


class BlockType(enum.StrEnum):
    """How a UNet changes resolution.

    ``DDPM``: plain residual blocks, with separate (conv) up/down-sampling layers between levels.
    ``BIGGAN``: the resampling happens inside a residual block (BigGAN style), as in DDPM++ and
    NCSN++ of score_sde.
    """

    DDPM = "ddpm"
    BIGGAN = "biggan"


class Embedding(enum.StrEnum):
    """Embedding of the scalar noise-conditioning input ``t``.

    ``POSITIONAL``: the transformer's sinusoidal embedding (fixed log-spaced frequencies from 1
    down to 1/10000), suited to inputs spanning roughly ``[0, 1000]``.
    ``FOURIER``: Gaussian random Fourier features, frequencies ``~ N(0, fourier_scale^2)``,
    suited to inputs of order one (``t`` in ``[0, 1]``, ``log sigma``).
    """

    POSITIONAL = "positional"
    FOURIER = "fourier"


class Resample(enum.Enum):
    """Resampling done inside a :class:`ResnetBlock`."""

    NONE = enum.auto()
    UP = enum.auto()
    DOWN = enum.auto()


def parse_enum(enum_cls: type[enum.Enum], value: Any, field: str) -> enum.Enum:
    """Converts ``value`` to ``enum_cls``, raising a ValueError naming ``field`` if it is invalid.

    Example:
        >>> parse_enum(BlockType, "biggan", "resblock_type")
        <BlockType.BIGGAN: 'biggan'>
    """
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{field} must be one of {allowed}; got {value!r}") from None


def positive_int(value: Any, field: str, *, minimum: int = 1) -> int:
    """Validates an integer config field (ValueError naming ``field``)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def int_tuple(value: Any, field: str) -> tuple[int, ...]:
    """Validates a sequence-of-positive-integers config field; returns a tuple."""
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{field} must be a sequence of integers; got {value!r}") from None
    return tuple(positive_int(v, f"{field}[{i}]") for i, v in enumerate(items))


def float_dtype(value: Any, field: str) -> np.dtype:
    """Validates a floating dtype config field (a name or dtype); returns a NumPy dtype."""
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise ValueError(f"{field} must be a floating dtype; got {value!r}") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{field} must be a floating dtype; got {value!r}")
    return dtype


def default_init(scale: float = 1.0) -> jax.nn.initializers.Initializer:
    """The initialiser of score_sde / DDPM: uniform variance scaling with ``fan_avg``.

    ``scale == 0`` gives an exactly zero initialiser (used on the last layer of residual
    branches and on the output layer, so that they start as the identity / output zero).

    Args:
        scale: variance scale; ``0.0`` means zeros.

    Returns:
        A ``jax.nn.initializers`` initialiser.

    Example:
        >>> w = default_init(1.0)(jax.random.key(0), (3, 3, 8, 16))
        >>> w.shape
        (3, 3, 8, 16)
        >>> float(jnp.abs(default_init(0.0)(jax.random.key(0), (4, 4))).max())
        0.0
    """
    if scale < 0:
        raise ValueError(f"init scale must be >= 0; got {scale}")
    if scale == 0:
        return jax.nn.initializers.zeros
    return jax.nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def num_groups(channels: int, max_groups: int = 32) -> int:
    """GroupNorm group count: ``min(channels // 4, 32)`` (score_sde), lowered to a divisor.

    Example:
        >>> num_groups(128), num_groups(16), num_groups(18)
        (32, 4, 3)
    """
    g = max(1, min(channels // 4, max_groups))
    while channels % g:
        g -= 1
    return g


def group_norm(x: Array, *, dtype: Dtype, name: str | None = None) -> Array:
    """GroupNorm over the last axis with :func:`num_groups` groups (statistics in float32).

    Must be called inside a compact linen module.
    """
    return nn.GroupNorm(num_groups=num_groups(x.shape[-1]), epsilon=1e-6, dtype=dtype, name=name)(
        x
    )


def sinusoidal_embedding(t: Array, dim: int, *, max_period: float = 10000.0) -> Array:
    """Sinusoidal (transformer / DDPM) embedding of a scalar per example.

    Frequencies are ``max_period ** (-k / (dim // 2 - 1))`` for ``k = 0 .. dim // 2 - 1``; the
    output is ``[sin(t f), cos(t f)]`` (zero-padded by one column when ``dim`` is odd).

    Args:
        t: ``[B]`` input.
        dim: embedding size.
        max_period: the longest period.

    Returns:
        ``[B, dim]`` float32 array.

    Example:
        >>> sinusoidal_embedding(jnp.array([0.0, 10.0]), 8).shape
        (2, 8)
    """
    half = dim // 2
    exponent = np.arange(half, dtype=np.float32) / max(half - 1, 1)
    freqs = jnp.asarray(np.exp(-math.log(max_period) * exponent), dtype=jnp.float32)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def fourier_frequencies(num_frequencies: int, scale: float, *, seed: int = 0) -> np.ndarray:
    """The fixed random frequencies of :func:`fourier_embedding`: ``scale * N(0, 1)`` draws.

    They are drawn with NumPy from a fixed seed when the model is traced, so they are constants
    (not parameters): nothing to train, checkpoint or decay, and the same on every host.

    Example:
        >>> fourier_frequencies(4, 16.0).shape
        (4,)
    """
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(num_frequencies)).astype(np.float32)


def fourier_embedding(t: Array, num_frequencies: int, *, scale: float = 16.0) -> Array:
    """Gaussian random Fourier features of a scalar per example (Tancik et al. 2020; score_sde).

    Args:
        t: ``[B]`` input.
        num_frequencies: number of random frequencies; the output has twice as many features.
        scale: standard deviation of the frequencies.

    Returns:
        ``[B, 2 * num_frequencies]`` float32 array ``[sin(2 pi t w), cos(2 pi t w)]``.

    Example:
        >>> fourier_embedding(jnp.array([0.1, 0.5]), 4).shape
        (2, 8)
    """
    w = jnp.asarray(fourier_frequencies(num_frequencies, scale))
    args = (2.0 * np.pi) * t.astype(jnp.float32)[:, None] * w[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def time_embedding(t: Array, dim: int, *, kind: Embedding, fourier_scale: float) -> Array:
    """Embeds ``t`` ``[B]`` with the chosen :class:`Embedding`.

    The positional embedding has ``dim`` features; the Fourier one uses ``dim`` random
    frequencies and so has ``2 * dim`` features (as NCSN++ does).

    Example:
        >>> time_embedding(jnp.zeros(3), 8, kind=Embedding.FOURIER, fourier_scale=16.0).shape
        (3, 16)
    """
    if kind is Embedding.FOURIER:
        return fourier_embedding(t, dim, scale=fourier_scale)
    return sinusoidal_embedding(t, dim)


def drop_labels(key: jax.Array, label: Array, *, null_label: int, rate: float) -> Array:
    """Replaces each label by ``null_label`` with probability ``rate`` (classifier-free guidance).

    Conditional models built with ``num_classes=K`` reserve label ``K`` as the "null" label;
    training with this function lets one network be both the conditional and the unconditional
    denoiser.

    Args:
        key: PRNG key.
        label: ``[B]`` integer labels.
        null_label: the index standing for "no label" (the model config's ``null_label``).
        rate: probability of dropping each label.

    Returns:
        ``[B]`` labels.

    Example:
        >>> drop_labels(jax.random.key(0), jnp.arange(4), null_label=10, rate=1.0)
        Array([10, 10, 10, 10], dtype=int32)
    """
    drop = jax.random.bernoulli(key, rate, label.shape)
    return jnp.where(drop, jnp.asarray(null_label, dtype=label.dtype), label)


@functools.partial(jax.jit, static_argnums=0)
def init_variables(model: nn.Module, key: jax.Array) -> dict[str, Any]:
    """Jit-compiled ``model.init(key, *model.example_inputs())``, compiled once per model config.

    Models are hashable and equal when their configs are, so re-initialising an equal model
    (another seed, a fresh ``UNet.from_variant(...)``) reuses the compiled initialisation.

    Example:
        >>> from diffax.models import MLP
        >>> sorted(init_variables(MLP.from_variant("tiny"), jax.random.key(0)))
        ['params']
    """
    return model.init(key, *model.example_inputs())


def _upsample(x: Array) -> Array:
    """Nearest-neighbour 2x upsampling of ``[B, H, W, C]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _downsample(x: Array) -> Array:
    """2x2 average pooling of ``[B, H, W, C]``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class ResnetBlock(nn.Module):
    """Pre-activation residual block of DDPM++ / NCSN++ with a time-embedding bias.

    ``h = conv(act(norm(x)))``, plus ``Dense(act(temb))`` broadcast over space; then
    ``h = conv_out(dropout(act(norm(h))))`` with ``conv_out`` initialised by
    ``default_init(init_scale)``. The skip path is a 1x1 conv when the channel count or the
    resolution changes. With ``resample`` UP/DOWN (BigGAN style) both paths are resampled
    (nearest / average pooling) right after the first normalisation. The output is
    ``(skip + h) / sqrt(2)`` with ``skip_rescale``, else ``skip + h``.

    Attributes:
        out_channels: output channels (``None``: same as the input).
        resample: :class:`Resample` inside the block.
        dropout: dropout rate, active only when ``train=True``.
        skip_rescale: divide the sum by ``sqrt(2)``.
        init_scale: scale of the last conv's initialiser (``0``: zeros).
        dtype: computation dtype (parameters stay float32).

    Example:
        >>> block = ResnetBlock(out_channels=16)
        >>> x, temb = jnp.zeros((2, 8, 8, 8)), jnp.zeros((2, 32))
        >>> params = jax.jit(block.init)(jax.random.key(0), x, temb)
        >>> jax.jit(block.apply)(params, x, temb).shape
        (2, 8, 8, 16)
    """

    out_channels: int | None = None
    resample: Resample = Resample.NONE
    dropout: float = 0.0
    skip_rescale: bool = True
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, temb: Array | None, *, train: bool = False) -> Array:
        in_ch = x.shape[-1]
        out_ch = self.out_channels or in_ch
        h = nn.swish(group_norm(x, dtype=self.dtype, name="norm_0"))
        if self.resample is Resample.UP:
            h, x = _upsample(h), _upsample(x)
        elif self.resample is Resample.DOWN:
            h, x = _downsample(h), _downsample(x)
        h = nn.Conv(out_ch, (3, 3), dtype=self.dtype, kernel_init=default_init(), name="conv_0")(h)
        if temb is not None:
            bias = nn.Dense(out_ch, dtype=self.dtype, kernel_init=default_init(), name="temb_proj")(
                nn.swish(temb)
            )
            h = h + bias[:, None, None, :]
        h = nn.swish(group_norm(h, dtype=self.dtype, name="norm_1"))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(
            out_ch, (3, 3), dtype=self.dtype, kernel_init=default_init(self.init_scale),
            name="conv_1",
        )(h)
        if in_ch != out_ch or self.resample is not Resample.NONE:
            x = nn.Conv(out_ch, (1, 1), dtype=self.dtype, kernel_init=default_init(), name="skip")(
                x
            )
        out = x + h
        if self.skip_rescale:
            out = out * _INV_SQRT2
        return out


class AttentionBlock(nn.Module):
    """Self-attention over the spatial positions of ``[B, H, W, C]``, as a residual block.

    GroupNorm, 1x1 projections to q, k, v, softmax attention over the ``H * W`` positions
    (``num_heads`` heads; one head as in DDPM), output projection initialised with
    ``default_init(init_scale)``, residual sum (rescaled by ``1/sqrt(2)`` with ``skip_rescale``).

    Example:
        >>> attn = AttentionBlock()
        >>> x = jnp.ones((2, 4, 4, 8))
        >>> params = jax.jit(attn.init)(jax.random.key(0), x)
        >>> jax.jit(attn.apply)(params, x).shape
        (2, 4, 4, 8)
    """

    num_heads: int = 1
    skip_rescale: bool = True
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, height, width, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide {c} channels")
        head_dim = c // self.num_heads
        h = group_norm(x, dtype=self.dtype, name="norm")
        qkv = nn.Dense(3 * c, dtype=self.dtype, kernel_init=default_init(), name="qkv")(h)
        qkv = qkv.reshape(b, height * width, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
        logits = logits * (1.0 / math.sqrt(head_dim))
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        h = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, height, width, c)
        h = nn.Dense(c, dtype=self.dtype, kernel_init=default_init(self.init_scale), name="out")(h)
        out = x + h
        if self.skip_rescale:
            out = out * _INV_SQRT2
        return out


class Downsample(nn.Module):
    """2x downsampling between DDPM-style levels: stride-2 3x3 conv, or average pooling.

    Example:
        >>> down = Downsample(with_conv=False)
        >>> down.apply({}, jnp.ones((1, 8, 8, 4))).shape
        (1, 4, 4, 4)
    """

    with_conv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.with_conv:
            return nn.Conv(
                x.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype, kernel_init=default_init(),
                name="conv",
            )(x)
        return _downsample(x)


class Upsample(nn.Module):
    """2x nearest-neighbour upsampling between DDPM-style levels, optionally followed by a conv.

    Example:
        >>> up = Upsample(with_conv=False)
        >>> up.apply({}, jnp.ones((1, 4, 4, 4))).shape
        (1, 8, 8, 4)
    """

    with_conv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = _upsample(x)
        if self.with_conv:
            x = nn.Conv(
                x.shape[-1], (3, 3), dtype=self.dtype, kernel_init=default_init(), name="conv"
            )(x)
        return x
