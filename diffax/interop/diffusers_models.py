"""Flax (linen) re-implementations of diffusers' ``UNet2DModel``, ``UNet2DConditionModel`` and
``AutoencoderKL``, in NHWC, with parameter trees named like diffusers' state dicts.

Every submodule is named after the attribute diffusers gives it (``down_blocks_0/resnets_1/
conv1``), so a state-dict key ``down_blocks.0.resnets.1.conv1.weight`` names exactly one leaf
here (see :mod:`diffax.interop.diffusers`, which does the renaming and the layout conversion).
The modules take typed specs (:class:`BlockSpec`, :class:`UNetSpec`, :class:`AutoencoderSpec`)
built once from ``config.json`` by :mod:`diffax.interop.diffusers`; they never read the config's
strings themselves.

Shapes: images ``[B, H, W, C]``, timesteps ``[B]`` (or a scalar) in the units the diffusers model
was trained with (DDPM's integer steps ``0 .. T-1``, or sigma for score-SDE ``fourier`` models),
cross-attention context ``[B, L, D]``.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "AutoencoderKL",
    "AutoencoderSpec",
    "BlockSpec",
    "BlockType",
    "DiffusersUNet",
    "TimeEmbedding",
    "UNetSpec",
]


class BlockType(enum.StrEnum):
    """The diffusers block classes supported, by their class name in ``config.json``."""

    DOWN = "DownBlock2D"
    ATTN_DOWN = "AttnDownBlock2D"
    SKIP_DOWN = "SkipDownBlock2D"
    ATTN_SKIP_DOWN = "AttnSkipDownBlock2D"
    CROSS_ATTN_DOWN = "CrossAttnDownBlock2D"
    DOWN_ENCODER = "DownEncoderBlock2D"
    UP = "UpBlock2D"
    ATTN_UP = "AttnUpBlock2D"
    SKIP_UP = "SkipUpBlock2D"
    ATTN_SKIP_UP = "AttnSkipUpBlock2D"
    CROSS_ATTN_UP = "CrossAttnUpBlock2D"
    UP_DECODER = "UpDecoderBlock2D"
    MID = "UNetMidBlock2D"
    CROSS_ATTN_MID = "UNetMidBlock2DCrossAttn"

    @property
    def spatial_attention(self) -> bool:
        return self in (BlockType.ATTN_DOWN, BlockType.ATTN_SKIP_DOWN, BlockType.ATTN_UP,
                        BlockType.ATTN_SKIP_UP, BlockType.MID)

    @property
    def cross_attention(self) -> bool:
        return self in (BlockType.CROSS_ATTN_DOWN, BlockType.CROSS_ATTN_UP,
                        BlockType.CROSS_ATTN_MID)

    @property
    def skip(self) -> bool:
        return self in (BlockType.SKIP_DOWN, BlockType.ATTN_SKIP_DOWN, BlockType.SKIP_UP,
                        BlockType.ATTN_SKIP_UP)


class TimeEmbedding(enum.StrEnum):
    """``time_embedding_type``: sinusoidal of the step, or Gaussian Fourier features of log t."""

    POSITIONAL = "positional"
    FOURIER = "fourier"


class Resampling(enum.StrEnum):
    """``downsample_type`` / ``upsample_type`` of the Attn blocks: a conv layer or a resnet."""

    CONV = "conv"
    RESNET = "resnet"


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One diffusers block with every constructor argument resolved (channels, groups, ...).

    ``groups=None`` means diffusers' ``min(channels // 4, 32)`` rule (skip blocks, and blocks
    built with ``norm_num_groups=None``). ``attention_head_dim`` is the head width of the
    spatial self-attention; ``heads``/``transformer_layers``/``cross_attention_dim`` describe
    the cross-attention transformers. ``temb=False`` builds resnets without a time projection
    (the autoencoder).
    """

    kind: BlockType
    in_channels: int
    out_channels: int
    num_layers: int
    prev_channels: int = 0
    resample: bool = False
    resample_type: Resampling = Resampling.CONV
    eps: float = 1e-5
    groups: int | None = 32
    attn_groups: int | None = 32
    output_scale_factor: float = 1.0
    scale_shift: bool = False
    downsample_padding: int = 1
    attention_head_dim: int = 1
    add_attention: bool = True
    heads: int = 1
    transformer_layers: tuple[int, ...] = (1,)
    cross_attention_dim: int = 0
    use_linear_projection: bool = False
    temb: bool = True


@dataclasses.dataclass(frozen=True)
class UNetSpec:
    """A ``UNet2DModel`` or ``UNet2DConditionModel`` with its blocks resolved."""

    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    down: tuple[BlockSpec, ...]
    mid: BlockSpec | None
    up: tuple[BlockSpec, ...]
    time_embedding: TimeEmbedding = TimeEmbedding.POSITIONAL
    time_embed_dim: int = 0
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    center_input_sample: bool = False
    out_groups: int | None = 32
    norm_eps: float = 1e-5
    num_class_embeds: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    divide_by_time: bool = False


@dataclasses.dataclass(frozen=True)
class AutoencoderSpec:
    """An ``AutoencoderKL`` with its encoder and decoder blocks resolved."""

    in_channels: int
    out_channels: int
    latent_channels: int
    block_out_channels: tuple[int, ...]
    down: tuple[BlockSpec, ...]
    up: tuple[BlockSpec, ...]
    mid: BlockSpec
    groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True


# --------------------------------------------------------------------------------------------
# Layers


def _groups(groups: int | None, channels: int) -> int:
    return min(channels // 4, 32) if groups is None else groups


def _group_norm(x: Array, groups: int, eps: float, name: str) -> Array:
    # Two-pass variance, as torch's GroupNorm; the fast E[x^2] - E[x]^2 loses digits.
    return nn.GroupNorm(num_groups=groups, epsilon=eps, use_fast_variance=False, name=name)(x)


def _conv(x: Array, features: int, kernel: int, name: str, *, stride: int = 1,
          padding: int | tuple[tuple[int, int], tuple[int, int]] | None = None,
          use_bias: bool = True) -> Array:
    if padding is None:
        padding = (kernel - 1) // 2
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding,
                   use_bias=use_bias, name=name)(x)


def _silu(x: Array) -> Array:
    return x * jax.nn.sigmoid(x)


def _fir_kernel(gain: float) -> np.ndarray:
    k = np.asarray((1.0, 3.0, 3.0, 1.0))
    k2 = np.outer(k, k)
    return (k2 / k2.sum() * gain).astype(np.float32)


def _depthwise(x: Array, kernel: np.ndarray, *, pad: tuple[int, int], up: int = 1,
               down: int = 1) -> Array:
    """diffusers' ``upfirdn2d_native`` on ``[B, H, W, C]``: zero-insert, pad, filter, stride."""
    c = x.shape[-1]
    k = jnp.asarray(np.flip(kernel, (0, 1)).copy(), x.dtype)
    w = jnp.tile(k[:, :, None, None], (1, 1, 1, c))  # HWIO with feature_group_count = C
    # Zero insertion leaves up - 1 zeros after every sample (also after the last one).
    padding = ((pad[0], pad[1] + up - 1), (pad[0], pad[1] + up - 1))
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(down, down), padding=padding, lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def fir_upsample(x: Array) -> Array:
    """diffusers' ``upsample_2d`` with the (1, 3, 3, 1) kernel, factor 2, on ``[B, H, W, C]``.

    Example:
        >>> y = fir_upsample(jnp.ones((1, 4, 4, 2)))
        >>> y.shape, float(y[0, 2, 2, 0])  # the kernel preserves a constant away from borders
        ((1, 8, 8, 2), 1.0)
    """
    return _depthwise(x, _fir_kernel(4.0), pad=(2, 1), up=2)


def fir_downsample(x: Array) -> Array:
    """diffusers' ``downsample_2d`` with the (1, 3, 3, 1) kernel, factor 2, on ``[B, H, W, C]``.

    Example:
        >>> y = fir_downsample(jnp.ones((1, 8, 8, 2)))
        >>> y.shape, float(y[0, 2, 2, 0])
        ((1, 4, 4, 2), 1.0)
    """
    return _depthwise(x, _fir_kernel(1.0), pad=(1, 1), down=2)


def _nearest_up(x: Array) -> Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _avg_pool(x: Array) -> Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


#: Attention logits per block of queries (floats): big softmax inputs are computed a block of
#: queries at a time so they stay in cache (XLA:CPU, 1024 tokens x 8 heads: ~10x faster).
_LOGITS_BLOCK = 2 ** 19


def _attention(q: Array, k: Array, v: Array, heads: int, *,
               block: int | None = None) -> Array:
    """Scaled dot-product attention on ``[B, L, heads * D]`` (torch SDPA's 1/sqrt(D) scale).

    Queries go in blocks of ``block`` (default: as many as keep ``B * heads * block * Lk``
    logits under ``_LOGITS_BLOCK``; a divisor of ``Lq``), one block after the other.
    """
    b, lq, inner = q.shape
    lk = k.shape[1]
    d = inner // heads
    q = q.reshape(b, lq, heads, d)
    k = k.reshape(b, lk, heads, d)
    v = v.reshape(b, lk, heads, d)

    def attend(qb):
        logits = jnp.einsum("bqhd,bkhd->bhqk", qb, k) * (1.0 / math.sqrt(d))
        w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", w, v)

    if block is None:
        block = lq
        while block > 1 and b * heads * block * lk > _LOGITS_BLOCK and block % 2 == 0:
            block //= 2
    if block >= lq or lq % block:
        return attend(q).reshape(b, lq, inner)
    qb = jnp.moveaxis(q.reshape(b, lq // block, block, heads, d), 1, 0)
    out = jax.lax.map(attend, qb)
    return jnp.moveaxis(out, 0, 1).reshape(b, lq, inner)


class Resample(enum.Enum):
    NONE = enum.auto()
    UP = enum.auto()
    DOWN = enum.auto()
    FIR_UP = enum.auto()
    FIR_DOWN = enum.auto()


class ResnetBlock2D(nn.Module):
    """diffusers' ``ResnetBlock2D`` (pre-norm, SiLU, optional up/down and scale-shift)."""

    out_channels: int
    groups: int
    groups_out: int
    eps: float
    output_scale_factor: float = 1.0
    scale_shift: bool = False
    resample: Resample = Resample.NONE
    use_in_shortcut: bool | None = None
    temb: bool = True

    @nn.compact
    def __call__(self, x: Array, temb: Array | None) -> Array:
        h = _silu(_group_norm(x, self.groups, self.eps, "norm1"))
        resample = {Resample.UP: _nearest_up, Resample.DOWN: _avg_pool,
                    Resample.FIR_UP: fir_upsample, Resample.FIR_DOWN: fir_downsample,
                    Resample.NONE: None}[self.resample]
        if resample is not None:
            x, h = resample(x), resample(h)
        h = _conv(h, self.out_channels, 3, "conv1")
        if self.temb:
            proj = 2 * self.out_channels if self.scale_shift else self.out_channels
            e = nn.Dense(proj, name="time_emb_proj")(_silu(temb))[:, None, None, :]
        if self.temb and not self.scale_shift:
            h = h + e
        h = _group_norm(h, self.groups_out, self.eps, "norm2")
        if self.temb and self.scale_shift:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = h * (1.0 + scale) + shift
        h = _conv(_silu(h), self.out_channels, 3, "conv2")
        shortcut = self.use_in_shortcut
        if shortcut is None:
            shortcut = x.shape[-1] != self.out_channels
        if shortcut:
            x = _conv(x, self.out_channels, 1, "conv_shortcut")
        return (x + h) / self.output_scale_factor


class SpatialAttention(nn.Module):
    """diffusers' ``Attention`` on an image: group norm, multi-head self-attention, residual."""

    head_dim: int
    groups: int | None
    eps: float
    rescale_output_factor: float = 1.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, hh, ww, c = x.shape
        if c % self.head_dim:
            raise ValueError(f"attention: channels {c} are not a multiple of attention_head_dim "
                             f"{self.head_dim}")
        h = x if self.groups is None else _group_norm(x, self.groups, self.eps, "group_norm")
        h = h.reshape(b, hh * ww, c)
        q = nn.Dense(c, name="to_q")(h)
        k = nn.Dense(c, name="to_k")(h)
        v = nn.Dense(c, name="to_v")(h)
        o = nn.Dense(c, name="to_out_0")(_attention(q, k, v, c // self.head_dim))
        return (o.reshape(b, hh, ww, c) + x) / self.rescale_output_factor


class CrossAttention(nn.Module):
    """diffusers' ``Attention`` on tokens, as used in ``BasicTransformerBlock`` (no q/k/v bias)."""

    heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None) -> Array:
        inner = self.heads * self.head_dim
        context = x if context is None else context
        q = nn.Dense(inner, use_bias=False, name="to_q")(x)
        k = nn.Dense(inner, use_bias=False, name="to_k")(context)
        v = nn.Dense(inner, use_bias=False, name="to_v")(context)
        return nn.Dense(x.shape[-1], name="to_out_0")(_attention(q, k, v, self.heads))


class _GEGLU(nn.Module):
    @nn.compact
    def __call__(self, x: Array) -> Array:
        h, gate = jnp.split(nn.Dense(8 * x.shape[-1], name="proj")(x), 2, axis=-1)
        return h * jax.nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
    """GEGLU feed-forward: ``net.0.proj`` (to 2 x 4 dim), exact-erf GELU gate, ``net.2``."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return nn.Dense(x.shape[-1], name="net_2")(_GEGLU(name="net_0")(x))


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention and GEGLU feed-forward, each pre-LayerNorm + residual."""

    heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x: Array, context: Array) -> Array:
        def ln(name):
            return nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)

        x = CrossAttention(self.heads, self.head_dim, name="attn1")(ln("norm1")(x)) + x
        x = CrossAttention(self.heads, self.head_dim, name="attn2")(ln("norm2")(x), context) + x
        return FeedForward(name="ff")(ln("norm3")(x)) + x


class Transformer2D(nn.Module):
    """diffusers' ``Transformer2DModel`` on continuous input (group norm, proj in/out)."""

    heads: int
    head_dim: int
    layers: int
    groups: int
    use_linear_projection: bool

    @nn.compact
    def __call__(self, x: Array, context: Array) -> Array:
        if context is None:
            raise ValueError("a cross-attention UNet needs `context` ([B, L, D] encoder states)")
        b, hh, ww, c = x.shape
        inner = self.heads * self.head_dim
        h = _group_norm(x, self.groups, 1e-6, "norm")
        if self.use_linear_projection:
            h = nn.Dense(inner, name="proj_in")(h.reshape(b, hh * ww, c))
        else:
            h = _conv(h, inner, 1, "proj_in").reshape(b, hh * ww, inner)
        for i in range(self.layers):
            h = BasicTransformerBlock(self.heads, self.head_dim,
                                      name=f"transformer_blocks_{i}")(h, context)
        if self.use_linear_projection:
            h = nn.Dense(c, name="proj_out")(h).reshape(b, hh, ww, c)
        else:
            h = _conv(h.reshape(b, hh, ww, inner), c, 1, "proj_out")
        return h + x


# --------------------------------------------------------------------------------------------
# Blocks


def _resnet(spec: BlockSpec, out: int, name: str, *, groups: int | None = None,
            groups_out: int | None = None, in_channels: int, **kwargs) -> ResnetBlock2D:
    g = _groups(spec.groups if groups is None else groups, in_channels)
    g_out = _groups(spec.groups if groups_out is None else groups_out, out)
    if groups is not None and groups_out is None:
        g_out = g
    return ResnetBlock2D(out_channels=out, groups=g, groups_out=g_out, eps=spec.eps,
                         output_scale_factor=spec.output_scale_factor,
                         scale_shift=spec.scale_shift, temb=spec.temb, name=name, **kwargs)


def _attn(spec: BlockSpec, x: Array, context: Array | None, i: int, *,
          groups: int | None = None) -> Array:
    if spec.kind.cross_attention:
        c = x.shape[-1]
        return Transformer2D(spec.heads, c // spec.heads, spec.transformer_layers[i],
                             _groups(spec.groups, c), spec.use_linear_projection,
                             name=f"attentions_{i}")(x, context)
    return SpatialAttention(spec.attention_head_dim, groups if groups is not None
                            else spec.attn_groups, spec.eps, spec.output_scale_factor,
                            name=f"attentions_{i}")(x)


class DownBlock(nn.Module):
    """``DownBlock2D``, ``AttnDownBlock2D``, ``CrossAttnDownBlock2D``, ``DownEncoderBlock2D``
    and the score-SDE ``SkipDownBlock2D`` / ``AttnSkipDownBlock2D``.

    Returns ``(h, skip_outputs, skip_sample)``.
    """

    spec: BlockSpec

    @nn.compact
    def __call__(self, x, temb, context=None, skip_sample=None):
        s = self.spec
        outputs = []
        for i in range(s.num_layers):
            cin = s.in_channels if i == 0 else s.out_channels
            if s.kind.skip:
                res = _resnet(s, s.out_channels, f"resnets_{i}", in_channels=cin,
                              groups=min(cin // 4, 32), groups_out=min(s.out_channels // 4, 32))
            else:
                res = _resnet(s, s.out_channels, f"resnets_{i}", in_channels=cin)
            x = res(x, temb)
            if s.kind.spatial_attention or s.kind.cross_attention:
                x = _attn(s, x, context, i, groups=32 if s.kind.skip else None)
            outputs.append(x)
        if s.resample and s.kind.skip:
            c = s.out_channels
            x = _resnet(s, c, "resnet_down", in_channels=c, groups=min(c // 4, 32),
                        resample=Resample.FIR_DOWN, use_in_shortcut=True)(x, temb)
            skip_sample = fir_downsample(skip_sample)
            x = _conv(skip_sample, c, 1, "skip_conv") + x
            outputs.append(x)
        elif s.resample and s.resample_type is Resampling.RESNET:
            x = _resnet(s, s.out_channels, "downsamplers_0", in_channels=s.out_channels,
                        resample=Resample.DOWN)(x, temb)
            outputs.append(x)
        elif s.resample:
            p = s.downsample_padding
            pad = ((0, 1), (0, 1)) if p == 0 else p
            x = _Downsample(s.out_channels, pad, name="downsamplers_0")(x)
            outputs.append(x)
        return x, tuple(outputs), skip_sample


class _Downsample(nn.Module):
    features: int
    padding: object

    @nn.compact
    def __call__(self, x):
        return _conv(x, self.features, 3, "conv", stride=2, padding=self.padding)


class _Upsample(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return _conv(_nearest_up(x), self.features, 3, "conv")


class UpBlock(nn.Module):
    """``UpBlock2D``, ``AttnUpBlock2D``, ``CrossAttnUpBlock2D``, ``UpDecoderBlock2D`` and the
    score-SDE ``SkipUpBlock2D`` / ``AttnSkipUpBlock2D``. Returns ``(h, skip_sample)``."""

    spec: BlockSpec

    @nn.compact
    def __call__(self, x, residuals, temb, context=None, skip_sample=None):
        s = self.spec
        residuals = list(residuals)
        decoder = s.kind is BlockType.UP_DECODER
        for i in range(s.num_layers):
            if decoder:
                cin = s.in_channels if i == 0 else s.out_channels
                res_ch = 0
            else:
                res_ch = s.in_channels if i == s.num_layers - 1 else s.out_channels
                cin = s.prev_channels if i == 0 else s.out_channels
                x = jnp.concatenate([x, residuals.pop()], axis=-1)
            if s.kind is BlockType.SKIP_UP:
                res = _resnet(s, s.out_channels, f"resnets_{i}", in_channels=cin + res_ch,
                              groups=min((cin + res_ch) // 4, 32),
                              groups_out=min(s.out_channels // 4, 32))
            elif s.kind is BlockType.ATTN_SKIP_UP:
                # diffusers computes min(resnet_in_channels + res_skip_channels // 4, 32) here.
                res = _resnet(s, s.out_channels, f"resnets_{i}", in_channels=cin + res_ch,
                              groups=min(cin + res_ch // 4, 32),
                              groups_out=min(s.out_channels // 4, 32))
            else:
                res = _resnet(s, s.out_channels, f"resnets_{i}", in_channels=cin + res_ch)
            x = res(x, temb)
            if (s.kind.spatial_attention and not s.kind.skip) or s.kind.cross_attention:
                x = _attn(s, x, context, i)
        if s.kind is BlockType.ATTN_SKIP_UP:
            x = _attn(s, x, context, 0, groups=32)
        if s.kind.skip:
            c = s.out_channels
            skip_sample = 0.0 if skip_sample is None else fir_upsample(skip_sample)
            if s.resample:
                g = min(c // 4, 32)
                h = _silu(_group_norm(x, g, s.eps, "skip_norm"))
                skip_sample = skip_sample + _conv(h, 3, 3, "skip_conv")
                x = _resnet(s, c, "resnet_up", in_channels=c, groups=g, groups_out=g,
                            resample=Resample.FIR_UP, use_in_shortcut=True)(x, temb)
        elif s.resample and s.resample_type is Resampling.RESNET:
            x = _resnet(s, s.out_channels, "upsamplers_0", in_channels=s.out_channels,
                        resample=Resample.UP)(x, temb)
        elif s.resample:
            x = _Upsample(s.out_channels, name="upsamplers_0")(x)
        return x, skip_sample


class MidBlock(nn.Module):
    """``UNetMidBlock2D`` (spatial attention, optional) and ``UNetMidBlock2DCrossAttn``."""

    spec: BlockSpec

    @nn.compact
    def __call__(self, x, temb, context=None):
        s = self.spec
        c = s.in_channels
        x = _resnet(s, c, "resnets_0", in_channels=c)(x, temb)
        for i in range(s.num_layers):
            if s.add_attention:
                x = _attn(s, x, context, i)
            x = _resnet(s, c, f"resnets_{i + 1}", in_channels=c)(x, temb)
        return x


# --------------------------------------------------------------------------------------------
# Networks


def sinusoidal(t: Array, dim: int, *, flip_sin_to_cos: bool, shift: float) -> Array:
    """diffusers' ``get_timestep_embedding`` (frequencies rounded once from float64).

    Example:
        >>> e = sinusoidal(jnp.array([0.0]), 4, flip_sin_to_cos=True, shift=0.0)
        >>> e.tolist()  # [cos, cos, sin, sin] at t = 0
        [[1.0, 1.0, 0.0, 0.0]]
    """
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / (half - shift))
    arg = t.astype(jnp.float32)[:, None] * jnp.asarray(freqs, jnp.float32)[None, :]
    sin, cos = jnp.sin(arg), jnp.cos(arg)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class _FourierProjection(nn.Module):
    size: int

    @nn.compact
    def __call__(self, t: Array) -> Array:
        w = self.param("weight", nn.initializers.normal(16.0), (self.size,))
        proj = jnp.log(t)[:, None] * w[None, :] * (2.0 * np.pi)
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class _TimestepEmbedding(nn.Module):
    dim: int

    @nn.compact
    def __call__(self, e: Array) -> Array:
        return nn.Dense(self.dim, name="linear_2")(_silu(nn.Dense(self.dim, name="linear_1")(e)))


class DiffusersUNet(nn.Module):
    """``UNet2DModel`` / ``UNet2DConditionModel``: ``model.apply(params, x, t, context=None,
    label=None)`` with ``x`` ``[B, H, W, C]`` and ``t`` in the model's own timestep units."""

    spec: UNetSpec

    @nn.compact
    def __call__(self, x: Array, t: Array, context: Array | None = None,
                 label: Array | None = None) -> Array:
        s = self.spec
        if x.ndim != 4 or x.shape[-1] != s.in_channels:
            raise ValueError(f"x must be [B, H, W, {s.in_channels}]; got shape {x.shape}")
        factor = 2 ** sum(b.resample for b in s.down)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"x: height and width must be multiples of {factor}; got "
                             f"{x.shape[1:3]}")
        batch = x.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t).reshape(-1), (batch,))
        if s.center_input_sample:
            x = 2.0 * x - 1.0
        c0 = s.block_out_channels[0]
        if s.time_embedding is TimeEmbedding.FOURIER:
            e = _FourierProjection(c0, name="time_proj")(t.astype(jnp.float32))
        else:
            e = sinusoidal(t, c0, flip_sin_to_cos=s.flip_sin_to_cos, shift=s.freq_shift)
        temb = _TimestepEmbedding(s.time_embed_dim, name="time_embedding")(e.astype(x.dtype))
        if s.num_class_embeds is not None:
            if label is None:
                raise ValueError("this model is class-conditional: pass `label` ([B] ints)")
            temb = temb + nn.Embed(s.num_class_embeds, s.time_embed_dim,
                                   name="class_embedding")(label)
        skip_sample = x
        h = _conv(x, c0, s.conv_in_kernel, "conv_in")
        residuals = [h]
        for i, spec in enumerate(s.down):
            h, outs, skip_sample = DownBlock(spec, name=f"down_blocks_{i}")(
                h, temb, context, skip_sample)
            residuals.extend(outs)
        if s.mid is not None:
            h = MidBlock(s.mid, name="mid_block")(h, temb, context)
        skip_sample = None
        for i, spec in enumerate(s.up):
            n = spec.num_layers
            h, skip_sample = UpBlock(spec, name=f"up_blocks_{i}")(
                h, residuals[-n:], temb, context, skip_sample)
            residuals = residuals[:-n]
        if s.out_groups != 0:
            h = _silu(_group_norm(h, _groups(s.out_groups, c0), s.norm_eps, "conv_norm_out"))
        h = _conv(h, s.out_channels, s.conv_out_kernel, "conv_out")
        if skip_sample is not None:
            h = h + skip_sample
        if s.divide_by_time:
            h = h / t.astype(h.dtype)[:, None, None, None]
        return h


class _Coder(nn.Module):
    """The autoencoder's ``Encoder`` (``decode=False``) or ``Decoder``."""

    spec: AutoencoderSpec
    decode: bool

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s = self.spec
        chans = s.block_out_channels
        if not self.decode:
            h = _conv(x, chans[0], 3, "conv_in")
            for i, spec in enumerate(s.down):
                h, _, _ = DownBlock(spec, name=f"down_blocks_{i}")(h, None)
            h = MidBlock(s.mid, name="mid_block")(h, None)
            out, c = 2 * s.latent_channels, chans[-1]
        else:
            h = _conv(x, chans[-1], 3, "conv_in")
            h = MidBlock(s.mid, name="mid_block")(h, None)
            for i, spec in enumerate(s.up):
                h, _ = UpBlock(spec, name=f"up_blocks_{i}")(h, (), None)
            out, c = s.out_channels, chans[0]
        h = _silu(_group_norm(h, _groups(s.groups, c), 1e-6, "conv_norm_out"))
        return _conv(h, out, 3, "conv_out")


class AutoencoderKL(nn.Module):
    """diffusers' ``AutoencoderKL``: ``encode(x) -> (mean, logvar)``, ``decode(z) -> x``.

    ``apply(params, x)`` (``__call__``) reconstructs ``x`` through the posterior mean.
    Latents for diffusion are ``scaling_factor * z`` (the factor is kept in the loaded object).
    """

    spec: AutoencoderSpec

    def setup(self):
        s = self.spec
        self.encoder = _Coder(s, False)
        self.decoder = _Coder(s, True)
        if s.use_quant_conv:
            self.quant_conv = nn.Conv(2 * s.latent_channels, (1, 1), padding=0)
        if s.use_post_quant_conv:
            self.post_quant_conv = nn.Conv(s.latent_channels, (1, 1), padding=0)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """``[B, H, W, C]`` in [-1, 1] -> posterior ``(mean, logvar)``, each ``[B, h, w, z]``."""
        h = self.encoder(x)
        if self.spec.use_quant_conv:
            h = self.quant_conv(h)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z: Array) -> Array:
        """Latent ``[B, h, w, z]`` (unscaled) -> image ``[B, H, W, C]``."""
        if self.spec.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def __call__(self, x: Array) -> Array:
        return self.decode(self.encode(x)[0])
