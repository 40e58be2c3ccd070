"""A PatchGAN discriminator (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks", section 3.2.2 and appendix 6.1.2), as taming-transformers (Esser et al.
2021) and LDM (Rombach et al. 2022) use it against their autoencoders' reconstructions.

Re-derived from the papers (no code copied): ``num_layers`` 4x4 convolutions with stride 2 and
padding 1 (``channels * min(2**i, 8)`` channels, leaky ReLU with slope 0.2), one 4x4 stride-1
convolution (``channels * min(2**num_layers, 8)``, leaky ReLU) and a 4x4 stride-1 convolution to
one channel: a grid of logits, one per image patch, instead of one logit per image. With
``num_layers = 3`` each logit sees a 70x70 patch (Isola's "70x70 PatchGAN").

Difference from the papers: no normalisation layers (Isola and taming put BatchNorm after every
convolution but the first and last). Batch statistics would couple every logit to the whole
batch and image (the receptive field below would no longer hold) and need a mutable
collection; the discriminators here are small.

Geometry (exact, tested): an ``H x W`` image gives ``[B, h, w, 1]`` logits with
``h = floor^num_layers(H) - 2`` (each stride-2 convolution maps ``n`` to ``floor(n / 2)``,
each stride-1 one subtracts 1) and each logit depends on a ``receptive_field x
receptive_field`` window, ``receptive_field = 9 * 2**num_layers - 2`` (walking back from a
logit: ``r = 1 -> 4 -> 7`` through the stride-1 convolutions, ``r -> 2 r + 2`` through each
stride-2 one: 16, 34, 70 for 1, 2, 3 layers).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax.models.layers import float_dtype, positive_int

Array = jax.Array

__all__ = ["PatchDiscriminator"]

_PAD = ((1, 1), (1, 1))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: ``apply(params, x [B, H, W, C]) -> logits [B, h, w, 1]``.

    Attributes:
      channels: channels of the first convolution (Isola: 64).
      num_layers: stride-2 convolutions (Isola: 3, a 70x70 receptive field).
      dtype: computation dtype (parameters are float32).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> d = PatchDiscriminator(channels=8, num_layers=2)
      >>> params = d.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
      >>> d.apply(params, jnp.zeros((3, 16, 16, 1))).shape, d.output_size(16), d.receptive_field
      ((3, 2, 2, 1), 2, 34)
    """

    channels: int = 64
    num_layers: int = 3
    dtype: Any = jnp.float32

    def __post_init__(self):
        positive_int(self.channels, "PatchDiscriminator: channels")
        positive_int(self.num_layers, "PatchDiscriminator: num_layers")
        float_dtype(self.dtype, "PatchDiscriminator: dtype")
        super().__post_init__()

    @property
    def receptive_field(self) -> int:
        """Side of the input window each logit depends on."""
        return 9 * 2 ** self.num_layers - 2

    def output_size(self, size: int) -> int:
        """Side of the logit grid of an input of side ``size`` (``< 1``: too small)."""
        for _ in range(self.num_layers):
            size //= 2
        return size - 2

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim != 4:
            raise ValueError(f"PatchDiscriminator: `x` must be [B, H, W, C], got shape "
                             f"{tuple(x.shape)}")
        small = min(x.shape[1], x.shape[2])
        if self.output_size(small) < 1:
            raise ValueError(f"PatchDiscriminator: images of side {small} are too small for "
                             f"num_layers={self.num_layers} (the logit grid would have side "
                             f"{self.output_size(small)}); use fewer layers")
        init = nn.initializers.normal(0.02)  # Isola et al.: weights from N(0, 0.02)
        h = x.astype(self.dtype)
        for i in range(self.num_layers):
            h = nn.Conv(self.channels * min(2 ** i, 8), (4, 4), strides=(2, 2), padding=_PAD,
                        dtype=self.dtype, kernel_init=init, name=f"conv_{i}")(h)
            h = nn.leaky_relu(h, 0.2)
        h = nn.Conv(self.channels * min(2 ** self.num_layers, 8), (4, 4), padding=_PAD,
                    dtype=self.dtype, kernel_init=init, name=f"conv_{self.num_layers}")(h)
        h = nn.leaky_relu(h, 0.2)
        return nn.Conv(1, (4, 4), padding=_PAD, dtype=self.dtype, kernel_init=init,
                       name="conv_out")(h)
