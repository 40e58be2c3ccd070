"""The NCSN++ / DDPM++ U-Net of score_sde (Song et al. 2021), as a Flax linen module.

Architecture (re-derived from "Score-Based Generative Modeling through Stochastic Differential
Equations", appendix H, and DDPM, Ho et al. 2020):

* ``t`` (any continuous noise-conditioning scalar, times ``time_scale``) is embedded with
  sinusoidal or Gaussian-Fourier features, then ``Dense(4 nf) -> swish -> Dense(4 nf)``; a class
  embedding (``num_classes + 1`` rows, the last one is the "null" label) is added for
  conditional models.
* A 3x3 input conv to ``nf`` channels, then for each level ``i`` (resolution
  ``image_size / 2**i``): ``num_res_blocks`` residual blocks with ``nf * ch_mult[i]`` channels,
  each followed by attention when the resolution is in ``attn_resolutions``; between levels a
  down-sampling step (a BigGAN residual block with average pooling inside, or a stride-2 conv
  for DDPM-style blocks).
* Middle: residual block, attention, residual block.
* Up path, mirrored: ``num_res_blocks + 1`` residual blocks per level, each taking the
  concatenation with a stored skip activation; attention once per level (after the blocks) at
  the attention resolutions; an up-sampling step between levels.
* GroupNorm, swish, and a 3x3 output conv initialised with ``default_init(init_scale)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax.models.layers import (
    AttentionBlock,
    BlockType,
    Downsample,
    Embedding,
    Resample,
    ResnetBlock,
    Upsample,
    default_init,
    float_dtype,
    group_norm,
    init_variables,
    int_tuple,
    parse_enum,
    positive_int,
    time_embedding,
)

Array = jax.Array

__all__ = ["VARIANTS", "UNet", "UNetConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Configuration of :class:`UNet` (names follow score_sde's ``config.model``).

    Attributes:
        image_size: input height and width (square inputs); must be divisible by
            ``2 ** (len(ch_mult) - 1)``.
        num_channels: input (and output) channels ``C``.
        nf: base number of feature channels.
        ch_mult: channel multiplier per resolution level; ``len(ch_mult)`` levels.
        num_res_blocks: residual blocks per level on the way down (``+ 1`` on the way up).
        attn_resolutions: resolutions (e.g. ``(16,)``) with self-attention; each must be one
            of ``image_size / 2**i``. The lowest resolution always has attention in the middle.
        num_heads: attention heads (1 in DDPM / score_sde).
        dropout: dropout rate inside residual blocks (only active with ``train=True``).
        resblock_type: ``"biggan"`` (resampling inside residual blocks) or ``"ddpm"``.
        resamp_with_conv: for ``"ddpm"`` blocks, use convs when resampling.
        embedding_type: ``"positional"`` (sinusoidal) or ``"fourier"`` (random features).
        fourier_scale: standard deviation of the Fourier frequencies.
        time_scale: ``t`` is multiplied by this before the embedding. Positional embeddings
            want inputs spanning about ``[0, 1000]`` (score_sde feeds ``999 t`` for VP), Fourier
            ones inputs of order one (``t`` in ``[0, 1]`` or ``log sigma``).
        skip_rescale: scale residual sums by ``1/sqrt(2)``.
        init_scale: initialiser scale of the last conv of every residual branch, of the
            attention output projections and of the output conv; ``0.0`` initialises them to
            zero (score_sde: ``default_init(0.)``, effectively zero).
        num_classes: number of classes for a class-conditional model (``None``: unconditional).
            Label ``num_classes`` is the "null" label (see :attr:`null_label`).
        dtype: computation dtype (e.g. ``"bfloat16"``); parameters are float32.

    Raises:
        ValueError: naming the field, for values the model cannot be built with.

    Example:
        >>> cfg = UNetConfig(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1,
        ...                  attn_resolutions=(4,))
        >>> cfg.resolutions
        (8, 4)
        >>> UNetConfig(image_size=8, ch_mult=(1, 2), attn_resolutions=(16,))
        Traceback (most recent call last):
        ...
        ValueError: attn_resolutions: 16 is not one of the model's resolutions (8, 4)
    """

    image_size: int = 32
    num_channels: int = 3
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 1
    dropout: float = 0.1
    resblock_type: BlockType = BlockType.BIGGAN
    resamp_with_conv: bool = True
    embedding_type: Embedding = Embedding.POSITIONAL
    fourier_scale: float = 16.0
    time_scale: float = 1.0
    skip_rescale: bool = True
    init_scale: float = 0.0
    num_classes: int | None = None
    dtype: Any = jnp.float32
    in_channels: int | None = None
    """Input channels when they differ from the output's ``num_channels`` (``None``:
    ``num_channels``); CLD feeds ``(x, v)`` with the channels concatenated, ``2 C``."""

    def __post_init__(self):
        setf = lambda name, value: object.__setattr__(self, name, value)
        if self.in_channels is not None:
            setf("in_channels", positive_int(self.in_channels, "in_channels"))
        setf("image_size", positive_int(self.image_size, "image_size"))
        setf("num_channels", positive_int(self.num_channels, "num_channels"))
        setf("nf", positive_int(self.nf, "nf"))
        setf("ch_mult", int_tuple(self.ch_mult, "ch_mult"))
        if not self.ch_mult:
            raise ValueError("ch_mult must not be empty: give one channel multiplier per level")
        setf("num_res_blocks", positive_int(self.num_res_blocks, "num_res_blocks"))
        setf("num_heads", positive_int(self.num_heads, "num_heads"))
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must be divisible by 2**(len(ch_mult) - 1) = "
                f"{factor} for ch_mult={self.ch_mult}"
            )
        setf("attn_resolutions", int_tuple(self.attn_resolutions, "attn_resolutions"))
        for res in self.attn_resolutions:
            if res not in self.resolutions:
                raise ValueError(
                    f"attn_resolutions: {res} is not one of the model's resolutions "
                    f"{self.resolutions}"
                )
        attn_channels = {self.nf * self.ch_mult[-1]} | {
            self.nf * m for m, r in zip(self.ch_mult, self.resolutions, strict=True)
            if r in self.attn_resolutions
        }
        for c in sorted(attn_channels):
            if c % self.num_heads:
                raise ValueError(
                    f"num_heads={self.num_heads} must divide the {c} channels of every level "
                    "with attention"
                )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        setf("resblock_type", parse_enum(BlockType, self.resblock_type, "resblock_type"))
        setf("embedding_type", parse_enum(Embedding, self.embedding_type, "embedding_type"))
        if not float(self.fourier_scale) > 0:
            raise ValueError(f"fourier_scale must be > 0; got {self.fourier_scale!r}")
        if not float(self.time_scale) > 0:
            raise ValueError(f"time_scale must be > 0; got {self.time_scale!r}")
        if not float(self.init_scale) >= 0:
            raise ValueError(f"init_scale must be >= 0; got {self.init_scale!r}")
        if self.num_classes is not None:
            setf("num_classes", positive_int(self.num_classes, "num_classes"))
        setf("dtype", float_dtype(self.dtype, "dtype"))

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Spatial size of each level, from the input resolution down."""
        return tuple(self.image_size // 2**i for i in range(len(self.ch_mult)))

    @property
    def null_label(self) -> int | None:
        """The label index meaning "unconditional" (``num_classes``), or ``None``."""
        return self.num_classes

    @property
    def emb_features(self) -> int:
        """Width of the time embedding, the size of the optional ``cond_emb`` input."""
        return 4 * self.nf

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one input."""
        return (self.image_size, self.image_size, self.in_channels or self.num_channels)


class UNet(nn.Module):
    """NCSN++ / DDPM++ score network; see the module docstring for the architecture.

    Call as ``model.apply(params, x, t, label=None, train=False, rngs={"dropout": key})`` with
    ``x`` ``[B, H, W, C]`` and ``t`` ``[B]`` (or a scalar, broadcast); the output has the shape
    and dtype of ``x``. What the output means (eps, x0, v, score) is up to the loss it is
    trained with.

    Attributes:
        config: a :class:`UNetConfig`.

    Example:
        >>> model = UNet.from_variant("tiny")
        >>> params = model.init_params(jax.random.key(0))
        >>> x, t = jnp.ones((2, 8, 8, 3)), jnp.array([0.1, 0.9])
        >>> jax.jit(model.apply)(params, x, t).shape
        (2, 8, 8, 3)
    """

    config: UNetConfig

    @classmethod
    def from_variant(cls, name: str, /, **overrides: Any) -> UNet:
        """Builds the model from ``VARIANTS[name]`` with fields replaced by ``overrides``.

        Example:
            >>> UNet.from_variant("tiny", num_classes=10).config.null_label
            10
        """
        if name not in VARIANTS:
            raise ValueError(f"unknown UNet variant {name!r}; known: {sorted(VARIANTS)}")
        return cls(dataclasses.replace(VARIANTS[name], **overrides))

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array]:
        """Zero inputs ``(x [B, H, W, C], t [B])`` of the configured shape.

        Example:
            >>> x, t = UNet.from_variant("tiny").example_inputs(2)
            >>> x.shape, t.shape
            ((2, 8, 8, 3), (2,))
        """
        x = jnp.zeros((batch_size, *self.config.input_shape), jnp.float32)
        return x, jnp.zeros((batch_size,), jnp.float32)

    @nn.nowrap
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs`: the variables dict ``{"params": ...}``.

        The initialisation is jit-compiled once per config (much faster than running
        ``model.init`` op by op); see :func:`diffax.models.layers.init_variables`.

        Example:
            >>> params = UNet.from_variant("tiny").init_params(jax.random.key(0))
            >>> sorted(params)
            ['params']
        """
        return init_variables(self, key)

    def _check_inputs(self, x: Array, t: Array, label: Array | None) -> None:
        cfg = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != cfg.input_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, cfg.input_shape))}] "
                f"(config image_size, num_channels or in_channels); got {tuple(x.shape)}"
            )
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}]; got {tuple(t.shape)}")
        if label is not None:
            if cfg.num_classes is None:
                raise ValueError("label given to a UNet with num_classes=None (unconditional)")
            if label.shape != (x.shape[0],) or not jnp.issubdtype(label.dtype, jnp.integer):
                raise ValueError(
                    f"label must be an integer array of shape [B] = [{x.shape[0]}]; got "
                    f"{label.dtype}{list(label.shape)}"
                )

    @nn.compact
    def __call__(
        self,
        x: Array,
        t: Array,
        *,
        label: Array | None = None,
        train: bool = False,
        cond_emb: Array | None = None,
    ) -> Array:
        """Evaluates the network.

        Args:
            x: ``[B, H, W, C]`` noisy inputs.
            t: ``[B]`` (or scalar) noise-conditioning input.
            label: optional ``[B]`` int labels in ``[0, num_classes]`` (``num_classes`` is the
                null label, used when ``label`` is ``None``); only for conditional models.
            train: enables dropout, which then needs a ``"dropout"`` rng.
            cond_emb: optional ``[B, E]`` conditioning vector added to the time embedding, with
                ``E`` = :attr:`emb_features` (a denoising diffusion GAN's mapped latent,
                :mod:`diffax.ddgan`); ``None`` leaves the network unchanged.

        Returns:
            ``[B, H, W, C]`` array with the dtype of ``x``.
        """
        cfg = self.config
        t = jnp.asarray(t)
        self._check_inputs(x, t, label)
        if train and cfg.dropout > 0 and not self.has_rng("dropout"):
            raise ValueError('train=True with dropout > 0 needs rngs={"dropout": key}')
        batch = x.shape[0]
        t = jnp.broadcast_to(t, (batch,))
        dtype = cfg.dtype
        emb_dim = 4 * cfg.nf

        # Noise-level (and class) embedding, shared by every residual block.
        emb = time_embedding(
            t * cfg.time_scale, cfg.nf, kind=cfg.embedding_type, fourier_scale=cfg.fourier_scale
        )
        temb = nn.Dense(emb_dim, dtype=dtype, kernel_init=default_init(), name="temb_0")(emb)
        temb = nn.Dense(emb_dim, dtype=dtype, kernel_init=default_init(), name="temb_1")(
            nn.swish(temb)
        )
        if cfg.num_classes is not None:
            if label is None:
                label = jnp.full((batch,), cfg.num_classes, jnp.int32)
            temb = temb + nn.Embed(
                cfg.num_classes + 1, emb_dim, dtype=dtype,
                embedding_init=nn.initializers.normal(1.0), name="label_emb",
            )(label)
        if cond_emb is not None:
            if cond_emb.shape != (batch, emb_dim):
                raise ValueError(f"cond_emb must have shape [B, emb_features] = [{batch}, "
                                 f"{emb_dim}]; got {tuple(cond_emb.shape)}")
            temb = temb + cond_emb.astype(dtype)

        block = lambda name, **kw: ResnetBlock(
            dropout=cfg.dropout, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale,
            dtype=dtype, name=name, **kw,
        )
        attention = lambda name: AttentionBlock(
            num_heads=cfg.num_heads, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale,
            dtype=dtype, name=name,
        )
        biggan = cfg.resblock_type is BlockType.BIGGAN
        num_levels = len(cfg.ch_mult)

        # Down path: store every activation for the skip connections.
        h = x.astype(dtype)
        h = nn.Conv(cfg.nf, (3, 3), dtype=dtype, kernel_init=default_init(), name="conv_in")(h)
        hs = [h]
        for level, mult in enumerate(cfg.ch_mult):
            for i in range(cfg.num_res_blocks):
                h = block(f"down_{level}_block_{i}", out_channels=cfg.nf * mult)(
                    h, temb, train=train
                )
                if h.shape[1] in cfg.attn_resolutions:
                    h = attention(f"down_{level}_attn_{i}")(h)
                hs.append(h)
            if level != num_levels - 1:
                if biggan:
                    h = block(f"down_{level}_resample", resample=Resample.DOWN)(
                        h, temb, train=train
                    )
                else:
                    h = Downsample(
                        with_conv=cfg.resamp_with_conv, dtype=dtype, name=f"down_{level}_resample"
                    )(h)
                hs.append(h)

        # Middle.
        h = block("mid_block_0")(h, temb, train=train)
        h = attention("mid_attn")(h)
        h = block("mid_block_1")(h, temb, train=train)

        # Up path.
        for level in reversed(range(num_levels)):
            for i in range(cfg.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = block(f"up_{level}_block_{i}", out_channels=cfg.nf * cfg.ch_mult[level])(
                    h, temb, train=train
                )
            if h.shape[1] in cfg.attn_resolutions:
                h = attention(f"up_{level}_attn")(h)
            if level != 0:
                if biggan:
                    h = block(f"up_{level}_resample", resample=Resample.UP)(h, temb, train=train)
                else:
                    h = Upsample(
                        with_conv=cfg.resamp_with_conv, dtype=dtype, name=f"up_{level}_resample"
                    )(h)
        assert not hs, "every skip activation must be consumed"

        h = nn.swish(group_norm(h, dtype=dtype, name="norm_out"))
        h = nn.Conv(
            cfg.num_channels, (3, 3), dtype=dtype, kernel_init=default_init(cfg.init_scale),
            name="conv_out",
        )(h)
        return h.astype(x.dtype)


VARIANTS: dict[str, UNetConfig] = {
    # Seconds to compile and run on CPU; for tests.
    "tiny": UNetConfig(
        image_size=8, num_channels=3, nf=16, ch_mult=(1, 2), num_res_blocks=1,
        attn_resolutions=(4,), dropout=0.1, resblock_type="biggan", embedding_type="fourier",
    ),
    # 8x8 grey digits (sklearn's load_digits); trains in minutes on CPU.
    "digits": UNetConfig(
        image_size=8, num_channels=1, nf=32, ch_mult=(1, 2), num_res_blocks=1,
        attn_resolutions=(4,), dropout=0.1, resblock_type="biggan", embedding_type="fourier",
    ),
    # 32x32x3, the cifar10 layout at about 1/9 of its size (7.0M parameters): a CPU runs a
    # training step in seconds. For training benchmarks.
    "mid": UNetConfig(
        image_size=32, num_channels=3, nf=64, ch_mult=(1, 2, 2), num_res_blocks=2,
        attn_resolutions=(16,), dropout=0.1, resblock_type="biggan", embedding_type="fourier",
    ),
    # DDPM++ cont. (VP / sub-VP) on CIFAR-10, score_sde configs/vp/cifar10_ddpmpp_continuous.py;
    # positional embedding of 999 t as score_sde feeds it for VP.
    "cifar10": UNetConfig(
        image_size=32, num_channels=3, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4,
        attn_resolutions=(16,), dropout=0.1, resblock_type="biggan", resamp_with_conv=True,
        embedding_type="positional", time_scale=999.0, skip_rescale=True, init_scale=0.0,
    ),
    # DDPM++ cont. (deep): the same with 8 residual blocks per level.
    "cifar10_deep": UNetConfig(
        image_size=32, num_channels=3, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=8,
        attn_resolutions=(16,), dropout=0.1, resblock_type="biggan", resamp_with_conv=True,
        embedding_type="positional", time_scale=999.0, skip_rescale=True, init_scale=0.0,
    ),
}
