"""A bidirectional transformer denoiser with adaLN-Zero time conditioning (DiT), shared by
text and images.

* Tokens (``vocab_size`` set): ``x`` int ``[B, L]`` -> token embedding + learned positions ->
  ``depth`` blocks -> logits ``[B, L, num_outputs]`` (a discrete denoiser's network, see
  :func:`diffax.discrete.as_denoiser`).
* Images (``vocab_size=None``): ``x`` ``[B, H, W, C]`` -> ``patch_size`` patches -> linear
  embedding + learned positions -> blocks -> linear -> unpatchified ``[B, H, W, C]`` (a DiT,
  Peebles & Xie 2023, usable with the Gaussian processes as ``model.name = "dit"``).

Each block is pre-LN self-attention and MLP, whose LayerNorms have no parameters of their own
but a shift and scale, and whose residual branches a gate, all regressed from the time (and
label) embedding by a zero-initialised Dense (adaLN-Zero): every block starts as the identity
and the output layer starts at zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax.models.layers import float_dtype, init_variables, positive_int, sinusoidal_embedding

Array = jax.Array

__all__ = ["Transformer", "TransformerConfig", "VARIANTS"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Configuration of :class:`Transformer`.

    Attributes:
        vocab_size: input states of a token model (including a mask state); ``None`` for
            images.
        num_outputs: logits per token (default ``vocab_size``); token models only.
        max_len: the longest token sequence (learned position table); token models only.
        image_size: ``H = W`` of image models.
        num_channels: ``C`` of image models.
        patch_size: patch side of image models (divides ``image_size``).
        width: residual stream width.
        depth: number of blocks.
        num_heads: attention heads (divide ``width``).
        mlp_ratio: hidden width of the MLPs over ``width``.
        time_scale: ``t`` is multiplied by this before the sinusoidal embedding.
        distance_bias: add ``-slope_h * |i - j|`` to the attention logits of head ``h``
            (ALiBi's slopes ``2^(-8 (h + 1) / num_heads)``, symmetric for bidirectional
            attention; Press et al. 2022) on top of the learned positions: every head starts
            local, which a character model needs early.
        zero_init: adaLN-Zero (DiT): residual gates and the output layer start at zero, so
            the network starts as the zero map. ``False``: gates start at one and the output
            layer at a small random matrix (a plain pre-LN transformer at step 0), which
            learns faster in short runs.
        conv_kernel: token models only: ``k > 0`` (odd) adds, after the embedding and before
            the first block, a residual depthwise convolution over the sequence (kernel ``k``,
            zero padding) of the normalised stream (the depthwise part of Conformer's
            convolution module, Gulati et al. 2020): local, direction-aware context from the
            first step, which a character model otherwise learns slowly through attention.
            ``0``: none.
        dropout: dropout rate on the residual branches (``train=True`` only).
        num_classes: classes of a conditional model (``None``: unconditional); label
            ``num_classes`` is the null label.
        dtype: computation dtype; parameters are float32.

    Example:
        >>> TransformerConfig(vocab_size=28, num_outputs=27, max_len=256).num_outputs
        27
        >>> TransformerConfig(width=30, num_heads=4)
        Traceback (most recent call last):
        ...
        ValueError: num_heads=4 must divide width=30
    """

    vocab_size: int | None = None
    num_outputs: int | None = None
    max_len: int = 256
    image_size: int = 8
    num_channels: int = 1
    patch_size: int = 2
    width: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    time_scale: float = 1000.0
    distance_bias: bool = False
    zero_init: bool = True
    conv_kernel: int = 0
    dropout: float = 0.0
    num_classes: int | None = None
    dtype: Any = jnp.float32

    def __post_init__(self):
        setf = lambda name, value: object.__setattr__(self, name, value)
        for f in ("max_len", "image_size", "num_channels", "patch_size", "width", "depth",
                  "num_heads", "mlp_ratio"):
            setf(f, positive_int(getattr(self, f), f))
        for f in ("vocab_size", "num_classes"):
            if getattr(self, f) is not None:
                setf(f, positive_int(getattr(self, f), f))
        if self.vocab_size is not None:
            setf("num_outputs", positive_int(self.num_outputs or self.vocab_size,
                                             "num_outputs"))
        elif self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide "
                             f"image_size={self.image_size}")
        if isinstance(self.conv_kernel, bool) or not isinstance(self.conv_kernel, int) or (
                self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0)):
            raise ValueError(f"conv_kernel must be 0 or an odd positive int; got "
                             f"{self.conv_kernel!r}")
        if self.conv_kernel and self.vocab_size is None:
            raise ValueError("conv_kernel is for token models (vocab_size set); got an image "
                             "model")
        if self.width % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide width={self.width}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not float(self.time_scale) > 0:
            raise ValueError(f"time_scale must be > 0; got {self.time_scale!r}")
        setf("dtype", float_dtype(self.dtype, "dtype"))

    @property
    def null_label(self) -> int | None:
        """The label index meaning "unconditional" (``num_classes``), or ``None``."""
        return self.num_classes

    @property
    def num_positions(self) -> int:
        """Sequence length of the position table (tokens, or patches)."""
        if self.vocab_size is not None:
            return self.max_len
        return (self.image_size // self.patch_size) ** 2


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class _DistanceBiasedAttention(nn.Module):
    """Bidirectional multi-head self-attention with ALiBi's symmetric distance penalty."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        b, n, _ = x.shape
        heads, dh = cfg.num_heads, cfg.width // cfg.num_heads
        qkv = nn.DenseGeneral((3, heads, dh), dtype=cfg.dtype, name="qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]            # [B, N, H, Dh]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(dh, cfg.dtype))
        slopes = 2.0 ** (-8.0 * jnp.arange(1, heads + 1) / heads)
        dist = jnp.abs(jnp.arange(n)[:, None] - jnp.arange(n)[None, :])
        logits = logits - (slopes[:, None, None] * dist[None]).astype(logits.dtype)[None]
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(cfg.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return nn.DenseGeneral(cfg.width, axis=(-2, -1), dtype=cfg.dtype, name="out")(out)


class _DepthwiseConv(nn.Module):
    """Depthwise convolution over the sequence axis with zero padding, as ``k`` shifted
    multiply-adds (much cheaper on CPU than a grouped ``lax.conv`` and its gradient)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        k, n = cfg.conv_kernel, x.shape[1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=0, out_axis=()),
                            (k, cfg.width))
        bias = self.param("bias", nn.initializers.zeros, (cfg.width,))
        pad = jnp.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
        kernel, bias = kernel.astype(cfg.dtype)[:, None, None, :], bias.astype(cfg.dtype)
        out = sum(pad[:, j:j + n] * kernel[j] for j in range(k))
        return out + bias[None, None, :]


class _Block(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, h: Array, c: Array, train: bool) -> Array:
        cfg = self.config
        gate_bias = 0.0 if cfg.zero_init else 1.0
        bias = jnp.zeros((6, cfg.width)).at[jnp.array([2, 5])].set(gate_bias).reshape(-1)
        mods = nn.Dense(6 * cfg.width, dtype=cfg.dtype, kernel_init=nn.initializers.zeros,
                        bias_init=lambda *_: bias, name="adaln")(nn.silu(c))
        sa, ca, ga, sm, cm, gm = jnp.split(mods, 6, axis=-1)
        norm = lambda name: nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False,
                                         dtype=cfg.dtype, name=name)
        a = _modulate(norm("norm_attn")(h), sa, ca)
        if cfg.distance_bias:
            a = _DistanceBiasedAttention(cfg, name="attn")(a)
        else:
            a = nn.MultiHeadDotProductAttention(num_heads=cfg.num_heads, dtype=cfg.dtype,
                                                name="attn")(a, a)
        a = nn.Dropout(cfg.dropout, deterministic=not train)(a)
        h = h + ga[:, None, :] * a
        m = _modulate(norm("norm_mlp")(h), sm, cm)
        m = nn.Dense(cfg.mlp_ratio * cfg.width, dtype=cfg.dtype, name="mlp_0")(m)
        m = nn.Dense(cfg.width, dtype=cfg.dtype, name="mlp_1")(nn.gelu(m))
        m = nn.Dropout(cfg.dropout, deterministic=not train)(m)
        return h + gm[:, None, :] * m


class Transformer(nn.Module):
    """Bidirectional adaLN-Zero transformer; see the module docstring.

    Call as ``model.apply(params, x, t, label=None, train=False)``.

    Attributes:
        config: a :class:`TransformerConfig`.

    Example:
        >>> model = Transformer.from_variant("tiny", vocab_size=5, num_outputs=4, max_len=6)
        >>> params = model.init_params(jax.random.key(0))
        >>> model.apply(params, jnp.zeros((2, 6), jnp.int32), jnp.ones(2)).shape
        (2, 6, 4)
        >>> dit = Transformer.from_variant("tiny", image_size=8, patch_size=2)
        >>> dit.apply(dit.init_params(jax.random.key(0)), jnp.ones((2, 8, 8, 1)),
        ...           jnp.ones(2)).shape
        (2, 8, 8, 1)
    """

    config: TransformerConfig

    @classmethod
    def from_variant(cls, name: str, /, **overrides: Any) -> Transformer:
        """Builds the model from ``VARIANTS[name]`` with fields replaced by ``overrides``."""
        if name not in VARIANTS:
            raise ValueError(f"unknown Transformer variant {name!r}; known: {sorted(VARIANTS)}")
        return cls(dataclasses.replace(VARIANTS[name], **overrides))

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array]:
        """Zero inputs: ``(tokens [B, max_len], t [B])`` or ``(images [B, H, W, C], t [B])``."""
        cfg = self.config
        t = jnp.zeros((batch_size,), jnp.float32)
        if cfg.vocab_size is not None:
            return jnp.zeros((batch_size, cfg.max_len), jnp.int32), t
        return jnp.zeros((batch_size, cfg.image_size, cfg.image_size, cfg.num_channels),
                         jnp.float32), t

    @nn.nowrap
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs` (jit-compiled once per config)."""
        return init_variables(self, key)

    @nn.compact
    def __call__(self, x: Array, t: Array, *, label: Array | None = None,
                 train: bool = False) -> Array:
        """Logits ``[B, L, num_outputs]`` for tokens, or ``[B, H, W, C]`` for images."""
        cfg = self.config
        batch = x.shape[0]
        t = jnp.asarray(t)
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != batch):
            raise ValueError(f"t must have shape [B] = [{batch}]; got {tuple(t.shape)}")
        t = jnp.broadcast_to(t, (batch,))
        if train and cfg.dropout > 0 and not self.has_rng("dropout"):
            raise ValueError('train=True with dropout > 0 needs rngs={"dropout": key}')
        p = cfg.patch_size
        if cfg.vocab_size is not None:
            if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
                raise ValueError(f"x must be int tokens [B, L]; got {x.dtype}{list(x.shape)}")
            if x.shape[1] > cfg.max_len:
                raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={cfg.max_len}")
            h = nn.Embed(cfg.vocab_size, cfg.width, dtype=cfg.dtype,
                         embedding_init=nn.initializers.normal(0.02), name="embed")(x)
        else:
            want = (cfg.image_size, cfg.image_size, cfg.num_channels)
            if x.ndim != 4 or x.shape[1:] != want:
                raise ValueError(f"x must have shape [B, {', '.join(map(str, want))}]; got "
                                 f"{list(x.shape)}")
            n = cfg.image_size // p
            h = x.astype(cfg.dtype).reshape(batch, n, p, n, p, cfg.num_channels)
            h = h.transpose(0, 1, 3, 2, 4, 5).reshape(batch, n * n, p * p * cfg.num_channels)
            h = nn.Dense(cfg.width, dtype=cfg.dtype, name="patch_embed")(h)
        length = h.shape[1]
        pos = self.param("pos_embed", nn.initializers.normal(0.02),
                         (cfg.num_positions, cfg.width))
        h = h + pos[:length].astype(cfg.dtype)[None]
        if cfg.conv_kernel:
            h = h + _DepthwiseConv(cfg, name="conv")(nn.LayerNorm(
                epsilon=1e-6, use_bias=False, use_scale=False, dtype=cfg.dtype,
                name="norm_conv")(h))

        c = sinusoidal_embedding(t * cfg.time_scale, cfg.width)
        c = nn.Dense(cfg.width, dtype=cfg.dtype, name="temb_0")(c)
        c = nn.Dense(cfg.width, dtype=cfg.dtype, name="temb_1")(nn.silu(c))
        if cfg.num_classes is not None:
            if label is None:
                label = jnp.full((batch,), cfg.num_classes, jnp.int32)
            c = c + nn.Embed(cfg.num_classes + 1, cfg.width, dtype=cfg.dtype,
                             name="label_emb")(label)
        elif label is not None:
            raise ValueError("label given to a Transformer with num_classes=None")
        for i in range(cfg.depth):
            h = _Block(cfg, name=f"block_{i}")(h, c, train)
        shift, scale = jnp.split(nn.Dense(2 * cfg.width, dtype=cfg.dtype,
                                          kernel_init=nn.initializers.zeros,
                                          name="adaln_out")(nn.silu(c)), 2, axis=-1)
        h = _modulate(nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False,
                                   dtype=cfg.dtype, name="norm_out")(h), shift, scale)
        out_init = nn.initializers.zeros if cfg.zero_init else nn.initializers.normal(0.02)
        if cfg.vocab_size is not None:
            return nn.Dense(cfg.num_outputs, dtype=cfg.dtype, kernel_init=out_init,
                            name="logits")(h).astype(jnp.float32)
        out = nn.Dense(p * p * cfg.num_channels, dtype=cfg.dtype,
                       kernel_init=out_init, name="unpatch")(h)
        n = cfg.image_size // p
        out = out.reshape(batch, n, n, p, p, cfg.num_channels).transpose(0, 1, 3, 2, 4, 5)
        return out.reshape(batch, n * p, n * p, cfg.num_channels).astype(x.dtype)


VARIANTS: dict[str, TransformerConfig] = {
    # For tests: compiles in a second or two.
    "tiny": TransformerConfig(width=32, depth=2, num_heads=2, mlp_ratio=2),
    # Character-level models on 2 shared CPU cores (the text8_* configs).
    "small": TransformerConfig(width=128, depth=4, num_heads=4, mlp_ratio=4,
                               distance_bias=True, zero_init=False),
    # DiT-S/2-like width for images or longer runs on an accelerator.
    "base": TransformerConfig(width=384, depth=12, num_heads=6, mlp_ratio=4),
}
