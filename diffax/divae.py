"""DiVAE: a VQ encoder with a diffusion decoder ``p(x | z_q)``.

Shi et al. (2022), "DiVAE: Photorealistic Images Synthesis with Denoising Diffusion Decoder",
replace the deterministic decoder of a VQ autoencoder by a conditional diffusion model on the
pixels. Here (re-derived, no code copied): the codes of a frozen autoencoder,
``z = scale_factor * E(x)`` (the quantised code of :class:`diffax.models.AutoencoderVQ`; any
:class:`diffax.latent.FrozenAutoencoder` works, a KL one gives its posterior mean), are
*embedded* at the data's resolution by nearest-neighbour upsampling (each code vector covers
its ``f x f`` pixel patch, ``f`` the autoencoder's downsampling factor), and a denoiser
``D(x, t, cond)`` on the pixels sees that embedding (:func:`diffax.models.UNet` with the
embedding concatenated to ``x_t`` on the channel axis: ``in_channels = C + latent_channels``).
Training is the ordinary denoising loss on the pixels with the embedding as a condition
(:class:`DiVAELoss`, encoder frozen); decoding a code is sampling the conditional diffusion
(:meth:`DiVAE.decode`, any solver), reconstructing ``x`` is decoding its code
(:meth:`DiVAE.reconstruct`).

The truth test (tests/test_divae.py): for data ``x = A embed(z) + s eps`` the exact conditional
denoiser is the Gaussian posterior mean, and :meth:`DiVAE.decode` with it reproduces
``N(A embed(z), s^2 I)`` to the Monte Carlo noise floor (float64).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.latent import _InnerLoss
from diffax.processes import Process
from diffax.typing import Array, PRNGKey, PyTree

__all__ = ["DiVAE", "DiVAELoss", "embed_codes"]


def embed_codes(z: Array, factor: int) -> Array:
    """Codes ``[B, h, w, c]`` at the data's resolution ``[B, f h, f w, c]``: nearest-neighbour
    upsampling (each code vector repeated over its ``f x f`` patch).

    Example:
      >>> import jax.numpy as jnp
      >>> embed_codes(jnp.arange(4.0).reshape(1, 2, 2, 1), 2)[0, :, :, 0].tolist()
      [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]]
    """
    z = jnp.asarray(z)
    if z.ndim != 4:
        raise ValueError(f"embed_codes: `z` must be codes [B, h, w, c], got shape {z.shape}.")
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"embed_codes: `factor` must be >= 1, got {factor}.")
    return jnp.repeat(jnp.repeat(z, factor, axis=1), factor, axis=2)


@pytree_dataclass
class DiVAE:
    """A frozen encoder's codes conditioning a diffusion model on the data.

    Args:
      autoencoder: a :class:`diffax.latent.FrozenAutoencoder` (or any object with
        ``encode``, ``data_shape`` ``(H, W, C)`` and ``latent_shape`` ``(h, w, c)`` with
        ``H = f h``, ``W = f w``).
      process: the diffusion process on the data (pixels).
      scale_factor: the codes are multiplied by it before they condition the model (the
        stage-1 ``latent_scale.json``: unit-variance conditions); a positive number.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> from diffax.latent import IdentityAutoencoder
      >>> dv = DiVAE(autoencoder=IdentityAutoencoder(shape=(4, 4, 1)), process=diffax.VP(),
      ...            scale_factor=1.0)
      >>> D = lambda x, t, cond: cond  # the exact denoiser of x = cond
      >>> res = dv.reconstruct(jax.random.key(0), D, jnp.ones((2, 4, 4, 1)),
      ...                      solver=diffax.samplers.DDIM(), num_steps=3)
      >>> res.x.shape, float(jnp.max(jnp.abs(res.x - 1.0))) < 0.05
      ((2, 4, 4, 1), True)
    """

    autoencoder: Any
    process: Process
    scale_factor: Any = 1.0

    def __post_init__(self):
        for name in ("encode", "data_shape", "latent_shape"):
            if not hasattr(self.autoencoder, name):
                raise TypeError(f"DiVAE: `autoencoder` must have encode, data_shape and "
                                f"latent_shape (diffax.latent.FrozenAutoencoder), got "
                                f"{self.autoencoder!r}.")
        if not isinstance(self.process, Process):
            raise TypeError(f"DiVAE: `process` must be a diffax process, got {self.process!r}.")
        data, lat = tuple(self.autoencoder.data_shape), tuple(self.autoencoder.latent_shape)
        if (len(data) != 3 or len(lat) != 3 or data[0] % lat[0] or data[1] % lat[1]
                or data[0] // lat[0] != data[1] // lat[1]):
            raise ValueError(f"DiVAE: `autoencoder` must map images [H, W, C] to codes "
                             f"[H / f, W / f, c]; got data {data} and latents {lat}.")
        v = concrete_value(self.scale_factor)
        if self.scale_factor is None or (
                v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) <= 0)):
            raise ValueError(f"DiVAE: `scale_factor` must be a positive number, got "
                             f"{self.scale_factor!r}.")

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.data_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.latent_shape)

    @property
    def factor(self) -> int:
        """The autoencoder's downsampling factor ``f``."""
        return self.data_shape[0] // self.latent_shape[0]

    @property
    def cond_shape(self) -> tuple[int, int, int]:
        """Shape of one embedded code: ``(H, W, latent_channels)``."""
        return (*self.data_shape[:2], self.latent_shape[-1])

    def _check(self, arr: Array, shape: tuple[int, ...], name: str) -> None:
        if tuple(jnp.shape(arr)[1:]) != tuple(shape):
            raise ValueError(f"DiVAE: `{name}` must have shape [B, {', '.join(map(str, shape))}]"
                             f", got {tuple(jnp.shape(arr))}.")

    def codes(self, x: Array) -> Array:
        """Data ``[B, H, W, C]`` -> scaled codes ``[B, h, w, c]`` (the frozen encoder)."""
        self._check(x, self.data_shape, "x")
        return self.scale_factor * self.autoencoder.encode(x)

    def embed(self, z: Array) -> Array:
        """Scaled codes ``[B, h, w, c]`` -> the condition ``[B, H, W, c]``."""
        self._check(z, self.latent_shape, "z")
        return embed_codes(z, self.factor)

    def condition(self, x: Array) -> Array:
        """The condition of data ``x``: ``embed(codes(x))``, without gradient."""
        return jax.lax.stop_gradient(self.embed(self.codes(x)))

    def decode(self, key: PRNGKey, denoiser: Callable[..., Array], cond: Array, *,
               x_init: Array | None = None, **sample_kwargs: Any) -> Any:
        """Samples ``p(x | cond)`` with :func:`diffax.sample`.

        Args:
          key: split in two: the prior draw (when ``x_init`` is ``None``) and the solver.
          denoiser: ``D(x, t, cond) -> E[x0 | x_t = x, cond]`` on the data.
          cond: conditions ``[B, H, W, c]`` (:meth:`embed` of scaled codes).
          x_init: the state at ``process.t_max`` ``[B, H, W, C]`` (default: a prior draw).
          **sample_kwargs: ``solver``, ``num_steps``, ``schedule``, ... of
            :func:`diffax.sample`.

        Returns:
          The solver's :class:`diffax.samplers.SampleResult` (``x`` ``[B, H, W, C]``).
        """
        from diffax import samplers

        self._check(cond, self.cond_shape, "cond")
        k_init, k_solve = jax.random.split(key)
        if x_init is None:
            x_init = self.process.prior_sample(k_init, (cond.shape[0], *self.data_shape))
        self._check(x_init, self.data_shape, "x_init")
        return samplers.sample(k_solve, self.process, lambda x, t: denoiser(x, t, cond),
                               x_init, **sample_kwargs)

    def reconstruct(self, key: PRNGKey, denoiser: Callable[..., Array], x: Array,
                    **sample_kwargs: Any) -> Any:
        """A sample of ``p(x' | z_q(x))``: :meth:`decode` of the condition of ``x``."""
        return self.decode(key, denoiser, self.condition(x), **sample_kwargs)

    def loss(self, inner: Any, *, cond_key: str = "cond") -> DiVAELoss:
        """``inner`` (a :class:`diffax.losses.DenoisingLoss` on the data whose ``cond_keys``
        hold ``cond_key``) with the condition of each batch (see :class:`DiVAELoss`)."""
        return DiVAELoss(divae=self, inner=inner, cond_key=cond_key)


@pytree_dataclass
class DiVAELoss(_InnerLoss):
    """The diffusion decoder's loss: ``inner`` on the batch's data with ``cond_key`` set to
    :meth:`DiVAE.condition` of the data (the encoder frozen); the key is passed on
    unchanged, so the times and noise are ``inner``'s.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> from diffax.latent import IdentityAutoencoder
      >>> dv = DiVAE(autoencoder=IdentityAutoencoder(shape=(2, 2, 1)), process=diffax.VP())
      >>> inner = diffax.losses.DenoisingLoss(process=diffax.VP(), cond_keys=("cond",),
      ...                                     parameterization=diffax.losses.Predict(
      ...                                         prediction="x0"))
      >>> f = lambda p, x, t, cond: cond  # predicts x0 = cond exactly
      >>> float(dv.loss(inner).bind(f)(None, jax.random.key(0), jnp.ones((3, 2, 2, 1)))[0])
      0.0
    """

    divae: DiVAE
    inner: Any
    cond_key: str = static_field(default="cond")

    def __post_init__(self):
        if self.cond_key not in tuple(getattr(self.inner, "cond_keys", ())):
            raise ValueError(f"DiVAELoss: `inner` must pass the condition to the network: its "
                             f"cond_keys {getattr(self.inner, 'cond_keys', None)!r} lack "
                             f"{self.cond_key!r}.")

    def __call__(self, apply_fn: Callable[..., Any], params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, Any]:
        data_key = getattr(self.inner, "data_key", "x")
        batch = dict(batch) if isinstance(batch, Mapping) else {data_key: batch}
        if data_key not in batch:
            raise ValueError(f"DiVAELoss: the batch has no {data_key!r} entry; it has "
                             f"{sorted(batch)}.")
        x = jnp.asarray(batch[data_key])
        batch[self.cond_key] = self.divae.condition(x).astype(x.dtype)
        return self.inner(apply_fn, params, key, batch)
