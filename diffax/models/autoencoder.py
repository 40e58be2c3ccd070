"""Convolutional autoencoders for latent diffusion: LDM's ``AutoencoderKL`` and a VQ autoencoder.

Architecture (re-derived from Rombach et al. 2022, appendix G, and their ``Encoder``/``Decoder``
description; no code copied): a 3x3 input conv to ``nf`` channels; per level ``i``
``num_res_blocks`` residual blocks with ``nf * ch_mult[i]`` channels (DDPM++'s
:class:`~diffax.models.layers.ResnetBlock` without a time embedding), a stride-2 conv between
levels (so the downsampling factor is ``f = 2 ** (len(ch_mult) - 1)``: 2, 4, 8 for 2, 3, 4
levels); a middle of residual block, optional self-attention, residual block; GroupNorm,
swish and a 3x3 conv to the latent channels. The decoder mirrors it (``num_res_blocks + 1``
blocks per level, nearest-neighbour upsampling followed by a 3x3 conv).

* :class:`AutoencoderKL`: the encoder outputs ``2 * latent_channels`` channels, a 1x1
  ``quant_conv`` splits them into the mean and log-variance of a diagonal Gaussian
  ``q(z | x)`` (:class:`diffax.latent.DiagonalGaussian`); a 1x1 ``post_quant_conv`` precedes
  the decoder.
* :class:`AutoencoderVQ`: the encoder outputs ``latent_channels`` channels ``z_e``; each
  spatial vector is replaced by its nearest codeword of a learned ``[codebook_size,
  latent_channels]`` codebook (:func:`diffax.latent.quantize`) with the straight-through
  estimator ``z_e + sg(z_q - z_e)`` into the decoder.

Both are called as ``model.apply(params, x, key=None)`` and return a dict of outputs (see each
class); ``method="encode_latent"`` and ``method="decode"`` give the latent and the decoder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax.models.layers import (
    AttentionBlock,
    Downsample,
    ResnetBlock,
    Upsample,
    default_init,
    float_dtype,
    group_norm,
    init_variables,
    int_tuple,
    positive_int,
)

Array = jax.Array

__all__ = ["AUTOENCODER_VARIANTS", "AutoencoderConfig", "AutoencoderKL", "AutoencoderVQ"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AutoencoderConfig:
    """Configuration of :class:`AutoencoderKL` and :class:`AutoencoderVQ`.

    Attributes:
        image_size: input height and width (square); divisible by the factor ``f``.
        num_channels: image channels ``C``.
        nf: base number of feature channels.
        ch_mult: channel multiplier per level; ``f = 2 ** (len(ch_mult) - 1)``.
        num_res_blocks: residual blocks per level in the encoder (``+ 1`` in the decoder).
        latent_channels: channels of the latent ``z`` (LDM's ``z_channels`` / ``embed_dim``).
        mid_attention: self-attention in the middle of encoder and decoder (LDM: yes).
        codebook_size: codewords ``K`` of the VQ autoencoder (unused by the KL one).
        codebook_ema: the VQ autoencoder keeps EMA statistics of its codebook (``counts``
            ``[K]``, ``sums`` ``[K, latent_channels]``) in a ``vq_ema`` variable collection,
            for :class:`diffax.latent.CodebookEMA` (unused by the KL one).
        dtype: computation dtype; parameters are float32.

    Raises:
        ValueError: naming the field.

    Example:
        >>> cfg = AutoencoderConfig(image_size=16, ch_mult=(1, 2, 2), latent_channels=3)
        >>> cfg.factor, cfg.latent_shape
        (4, (4, 4, 3))
    """

    image_size: int = 16
    num_channels: int = 1
    nf: int = 32
    ch_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    latent_channels: int = 2
    mid_attention: bool = False
    codebook_size: int = 64
    codebook_ema: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self):
        setf = lambda name, value: object.__setattr__(self, name, value)
        for name in ("image_size", "num_channels", "nf", "num_res_blocks", "latent_channels",
                     "codebook_size"):
            setf(name, positive_int(getattr(self, name), name))
        setf("ch_mult", int_tuple(self.ch_mult, "ch_mult"))
        if not self.ch_mult:
            raise ValueError("ch_mult must not be empty: give one channel multiplier per level")
        if self.image_size % self.factor:
            raise ValueError(f"image_size={self.image_size} must be divisible by the "
                             f"downsampling factor f = 2**(len(ch_mult) - 1) = {self.factor}")
        setf("mid_attention", bool(self.mid_attention))
        setf("codebook_ema", bool(self.codebook_ema))
        setf("dtype", float_dtype(self.dtype, "dtype"))

    @property
    def factor(self) -> int:
        """The downsampling factor ``f``."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.num_channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.image_size // self.factor
        return (s, s, self.latent_channels)


class _Encoder(nn.Module):
    config: AutoencoderConfig
    out_channels: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg, dt = self.config, self.config.dtype
        h = nn.Conv(cfg.nf, (3, 3), dtype=dt, kernel_init=default_init(), name="conv_in")(x)
        for i, mult in enumerate(cfg.ch_mult):
            for j in range(cfg.num_res_blocks):
                h = ResnetBlock(out_channels=cfg.nf * mult, skip_rescale=False, dtype=dt,
                                name=f"down_{i}_block_{j}")(h, None)
            if i != len(cfg.ch_mult) - 1:
                h = Downsample(with_conv=True, dtype=dt, name=f"down_{i}_resample")(h)
        h = ResnetBlock(skip_rescale=False, dtype=dt, name="mid_block_1")(h, None)
        if cfg.mid_attention:
            h = AttentionBlock(skip_rescale=False, dtype=dt, name="mid_attn")(h)
        h = ResnetBlock(skip_rescale=False, dtype=dt, name="mid_block_2")(h, None)
        h = nn.swish(group_norm(h, dtype=dt, name="norm_out"))
        return nn.Conv(self.out_channels, (3, 3), dtype=dt, kernel_init=default_init(),
                       name="conv_out")(h)


class _Decoder(nn.Module):
    config: AutoencoderConfig

    @nn.compact
    def __call__(self, z: Array) -> Array:
        cfg, dt = self.config, self.config.dtype
        h = nn.Conv(cfg.nf * cfg.ch_mult[-1], (3, 3), dtype=dt, kernel_init=default_init(),
                    name="conv_in")(z)
        h = ResnetBlock(skip_rescale=False, dtype=dt, name="mid_block_1")(h, None)
        if cfg.mid_attention:
            h = AttentionBlock(skip_rescale=False, dtype=dt, name="mid_attn")(h)
        h = ResnetBlock(skip_rescale=False, dtype=dt, name="mid_block_2")(h, None)
        for i in reversed(range(len(cfg.ch_mult))):
            for j in range(cfg.num_res_blocks + 1):
                h = ResnetBlock(out_channels=cfg.nf * cfg.ch_mult[i], skip_rescale=False,
                                dtype=dt, name=f"up_{i}_block_{j}")(h, None)
            if i != 0:
                h = Upsample(with_conv=True, dtype=dt, name=f"up_{i}_resample")(h)
        h = nn.swish(group_norm(h, dtype=dt, name="norm_out"))
        return nn.Conv(cfg.num_channels, (3, 3), dtype=dt, kernel_init=default_init(),
                       name="conv_out")(h)


class _Autoencoder(nn.Module):
    """Shared pieces: variants, example inputs, initialisation, input checks."""

    config: AutoencoderConfig

    @classmethod
    def from_variant(cls, name: str, /, **overrides: Any) -> _Autoencoder:
        """Builds the model from ``AUTOENCODER_VARIANTS[name]`` with fields replaced."""
        if name not in AUTOENCODER_VARIANTS:
            raise ValueError(f"unknown autoencoder variant {name!r}; known: "
                             f"{sorted(AUTOENCODER_VARIANTS)}")
        return cls(dataclasses.replace(AUTOENCODER_VARIANTS[name], **overrides))

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array]:
        """Zero images ``(x [B, H, W, C],)``."""
        return (jnp.zeros((batch_size, *self.config.input_shape), jnp.float32),)

    @nn.nowrap
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs` (jit-compiled once per config)."""
        return init_variables(self, key)

    @nn.nowrap
    def _check(self, arr: Array, shape: tuple[int, ...], name: str) -> None:
        if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(shape):
            raise ValueError(f"{type(self).__name__}: `{name}` must have shape "
                             f"[B, {', '.join(map(str, shape))}], got {tuple(arr.shape)}")


class AutoencoderKL(_Autoencoder):
    """LDM's KL-regularised autoencoder (see the module docstring).

    ``apply(params, x, key=None)`` returns ``{"recon", "mean", "logvar"}``: the decoding of a
    posterior sample (of the mean when ``key`` is ``None``) and the posterior's parameters.

    Example:
        >>> model = AutoencoderKL.from_variant("tiny")
        >>> params = model.init_params(jax.random.key(0))
        >>> out = model.apply(params, jnp.zeros((2, 16, 16, 1)), key=jax.random.key(1))
        >>> out["recon"].shape, out["mean"].shape
        ((2, 16, 16, 1), (2, 8, 8, 2))
    """

    def setup(self):
        cfg = self.config
        self.encoder = _Encoder(cfg, 2 * cfg.latent_channels)
        self.quant_conv = nn.Conv(2 * cfg.latent_channels, (1, 1), dtype=cfg.dtype,
                                  kernel_init=default_init())
        self.post_quant_conv = nn.Conv(cfg.latent_channels, (1, 1), dtype=cfg.dtype,
                                       kernel_init=default_init())
        self.decoder = _Decoder(cfg)

    def posterior(self, x: Array) -> tuple[Array, Array]:
        """``(mean, logvar)`` of ``q(z | x)``, each ``[B, *latent_shape]``."""
        self._check(x, self.config.input_shape, "x")
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, logvar

    def encode_latent(self, x: Array, *, key: jax.Array | None = None) -> Array:
        """The posterior mean, or a posterior sample when ``key`` is given."""
        from diffax.latent import DiagonalGaussian

        mean, logvar = self.posterior(x)
        if key is None:
            return mean
        return DiagonalGaussian(mean=mean, logvar=logvar).sample(key)

    def decode(self, z: Array) -> Array:
        self._check(z, self.config.latent_shape, "z")
        return self.decoder(self.post_quant_conv(z))

    def __call__(self, x: Array, *, key: jax.Array | None = None) -> dict[str, Array]:
        from diffax.latent import DiagonalGaussian

        mean, logvar = self.posterior(x)
        z = mean if key is None else DiagonalGaussian(mean=mean, logvar=logvar).sample(key)
        return {"recon": self.decode(z), "mean": mean, "logvar": logvar}


class AutoencoderVQ(_Autoencoder):
    """A VQ autoencoder (van den Oord et al. 2017) with LDM's encoder and decoder.

    ``apply(params, x, key=None)`` returns ``{"recon", "z_e", "z_q", "indices"}``: the decoding
    of the straight-through code, the encoder output, its quantisation and the code indices
    ``[B, h, w]``. ``key`` is unused (the model is deterministic).

    Example:
        >>> model = AutoencoderVQ.from_variant("tiny")
        >>> params = model.init_params(jax.random.key(0))
        >>> out = model.apply(params, jnp.zeros((2, 16, 16, 1)))
        >>> out["z_q"].shape, out["indices"].shape, params["params"]["codebook"].shape
        ((2, 8, 8, 2), (2, 8, 8), (64, 2))
    """

    def setup(self):
        cfg = self.config
        self.encoder = _Encoder(cfg, cfg.latent_channels)
        k = cfg.codebook_size
        # VQ-VAE's initialisation: uniform in [-1/K, 1/K].
        self.codebook = self.param(
            "codebook", lambda key, shape: jax.random.uniform(key, shape, jnp.float32,
                                                              -1.0 / k, 1.0 / k),
            (k, cfg.latent_channels))
        if cfg.codebook_ema:  # VQEMAState.create(codebook): one count per codeword
            self.ema_counts = self.variable("vq_ema", "counts",
                                            lambda: jnp.ones((k,), jnp.float32))
            self.ema_sums = self.variable("vq_ema", "sums",
                                          lambda: jnp.asarray(self.codebook, jnp.float32))
        self.decoder = _Decoder(cfg)

    def encode_raw(self, x: Array) -> Array:
        """The encoder output ``z_e`` before quantisation."""
        self._check(x, self.config.input_shape, "x")
        return self.encoder(x)

    def quantize(self, z: Array) -> tuple[Array, Array]:
        """``(z_q, indices)`` of :func:`diffax.latent.quantize` with this codebook."""
        from diffax.latent import quantize

        return quantize(z, self.codebook)

    def encode_latent(self, x: Array, *, key: jax.Array | None = None) -> Array:
        """The quantised code ``z_q`` (``key`` unused)."""
        del key
        return self.quantize(self.encode_raw(x))[0]

    def decode(self, z: Array) -> Array:
        self._check(z, self.config.latent_shape, "z")
        return self.decoder(z)

    def __call__(self, x: Array, *, key: jax.Array | None = None) -> dict[str, Array]:
        del key
        z_e = self.encode_raw(x)
        z_q, indices = self.quantize(z_e)
        z_st = z_e + jax.lax.stop_gradient(z_q - z_e)
        return {"recon": self.decode(z_st), "z_e": z_e, "z_q": z_q, "indices": indices}


AUTOENCODER_VARIANTS: dict[str, AutoencoderConfig] = {
    "tiny": AutoencoderConfig(image_size=16, num_channels=1, nf=8, ch_mult=(1, 2),
                              num_res_blocks=1, latent_channels=2, codebook_size=64),
    "digits": AutoencoderConfig(image_size=16, num_channels=1, nf=32, ch_mult=(1, 2),
                                num_res_blocks=1, latent_channels=2, codebook_size=256),
}
"""Named configs: ``tiny`` (tests) and ``digits`` (16x16 digits, f = 2, 8x8x2 latents)."""
