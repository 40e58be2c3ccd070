"""A time-embedded residual MLP for low-dimensional data (toy 2-D sets, tabular data).

``x [B, D]`` goes through ``Dense(width)``, ``depth`` pre-norm residual blocks
(``LayerNorm -> swish -> Dense -> + Dense(swish(temb)) -> LayerNorm -> swish -> dropout ->
Dense``, the last Dense initialised with ``default_init(init_scale)``) and a final
``LayerNorm -> swish -> Dense(D)``. The embedding of ``t`` (sinusoidal or Fourier, then two
Dense layers) plus an optional class embedding conditions every block.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax.models.layers import (
    Embedding,
    default_init,
    float_dtype,
    init_variables,
    parse_enum,
    positive_int,
    time_embedding,
)

Array = jax.Array

__all__ = ["MLP", "VARIANTS", "MLPConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """Configuration of :class:`MLP`.

    Attributes:
        dim: data dimension ``D``.
        width: hidden width of the residual stream.
        depth: number of residual blocks.
        emb_dim: size of the ``t`` embedding features (Fourier: ``emb_dim`` frequencies).
        embedding_type: ``"fourier"`` (random features) or ``"positional"`` (sinusoidal).
        fourier_scale: standard deviation of the Fourier frequencies.
        time_scale: ``t`` is multiplied by this before the embedding (positional embeddings
            want inputs spanning about ``[0, 1000]``, Fourier ones inputs of order one).
        dropout: dropout rate inside blocks (only active with ``train=True``).
        init_scale: initialiser scale of the last layer of each block and of the output
            layer (``0.0``: zeros, so the network starts as the zero function).
        num_classes: number of classes for a conditional model (``None``: unconditional);
            label ``num_classes`` is the "null" label.
        dtype: computation dtype; parameters are float32.

    Raises:
        ValueError: naming the field, for invalid values.

    Example:
        >>> MLPConfig(dim=2, width=64, depth=2).width
        64
        >>> MLPConfig(dim=0)
        Traceback (most recent call last):
        ...
        ValueError: dim must be an integer >= 1; got 0
    """

    dim: int = 2
    width: int = 128
    depth: int = 3
    emb_dim: int = 64
    embedding_type: Embedding = Embedding.FOURIER
    fourier_scale: float = 16.0
    time_scale: float = 1.0
    dropout: float = 0.0
    init_scale: float = 0.0
    num_classes: int | None = None
    dtype: Any = jnp.float32
    in_dim: int | None = None
    """Input width when it differs from the output's ``dim`` (``None``: ``dim``); CLD feeds
    ``(x, v)`` with the channels concatenated, ``in_dim = 2 dim``."""

    def __post_init__(self):
        setf = lambda name, value: object.__setattr__(self, name, value)
        for field in ("dim", "width", "depth", "emb_dim"):
            setf(field, positive_int(getattr(self, field), field))
        if self.in_dim is not None:
            setf("in_dim", positive_int(self.in_dim, "in_dim"))
        setf("embedding_type", parse_enum(Embedding, self.embedding_type, "embedding_type"))
        if not float(self.fourier_scale) > 0:
            raise ValueError(f"fourier_scale must be > 0; got {self.fourier_scale!r}")
        if not float(self.time_scale) > 0:
            raise ValueError(f"time_scale must be > 0; got {self.time_scale!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not float(self.init_scale) >= 0:
            raise ValueError(f"init_scale must be >= 0; got {self.init_scale!r}")
        if self.num_classes is not None:
            setf("num_classes", positive_int(self.num_classes, "num_classes"))
        setf("dtype", float_dtype(self.dtype, "dtype"))

    @property
    def null_label(self) -> int | None:
        """The label index meaning "unconditional" (``num_classes``), or ``None``."""
        return self.num_classes

    @property
    def emb_features(self) -> int:
        """Width of the time embedding, the size of the optional ``cond_emb`` input."""
        return self.width


class MLP(nn.Module):
    """Residual MLP score network for ``[B, D]`` data; see the module docstring.

    Call as ``model.apply(params, x, t, label=None, train=False, rngs={"dropout": key})``; the
    output has the shape and dtype of ``x``.

    Attributes:
        config: an :class:`MLPConfig`.

    Example:
        >>> model = MLP.from_variant("tiny")
        >>> params = model.init_params(jax.random.key(0))
        >>> jax.jit(model.apply)(params, jnp.ones((5, 2)), jnp.full((5,), 0.5)).shape
        (5, 2)
    """

    config: MLPConfig

    @classmethod
    def from_variant(cls, name: str, /, **overrides: Any) -> MLP:
        """Builds the model from ``VARIANTS[name]`` with fields replaced by ``overrides``.

        Example:
            >>> MLP.from_variant("toy2d", dim=3).config.dim
            3
        """
        if name not in VARIANTS:
            raise ValueError(f"unknown MLP variant {name!r}; known: {sorted(VARIANTS)}")
        return cls(dataclasses.replace(VARIANTS[name], **overrides))

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array]:
        """Zero inputs ``(x [B, D], t [B])``.

        Example:
            >>> [a.shape for a in MLP.from_variant("tiny").example_inputs(3)]
            [(3, 2), (3,)]
        """
        return (
            jnp.zeros((batch_size, self.config.in_dim or self.config.dim), jnp.float32),
            jnp.zeros((batch_size,), jnp.float32),
        )

    @nn.nowrap
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs`: the variables dict ``{"params": ...}``.

        The initialisation is jit-compiled once per config (much faster than running
        ``model.init`` op by op); see :func:`diffax.models.layers.init_variables`.

        Example:
            >>> sorted(MLP.from_variant("tiny").init_params(jax.random.key(0)))
            ['params']
        """
        return init_variables(self, key)

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
            x: ``[B, D]`` noisy inputs.
            t: ``[B]`` (or scalar) noise-conditioning input.
            label: optional ``[B]`` int labels in ``[0, num_classes]`` (``num_classes`` is the
                null label, used when ``label`` is ``None``); only for conditional models.
            train: enables dropout, which then needs a ``"dropout"`` rng.
            cond_emb: optional ``[B, E]`` conditioning vector added to the time embedding, with
                ``E`` = :attr:`emb_features` (a denoising diffusion GAN's mapped latent,
                :mod:`diffax.ddgan`); ``None`` leaves the network unchanged.

        Returns:
            ``[B, D]`` array with the dtype of ``x``.
        """
        cfg = self.config
        t = jnp.asarray(t)
        if x.ndim != 2 or x.shape[1] != (cfg.in_dim or cfg.dim):
            raise ValueError(f"x must have shape [B, {cfg.in_dim or cfg.dim}] (config "
                             f"{'in_dim' if cfg.in_dim else 'dim'}); got {x.shape}")
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}]; got {tuple(t.shape)}")
        if label is not None:
            if cfg.num_classes is None:
                raise ValueError("label given to an MLP with num_classes=None (unconditional)")
            if label.shape != (x.shape[0],) or not jnp.issubdtype(label.dtype, jnp.integer):
                raise ValueError(
                    f"label must be an integer array of shape [B] = [{x.shape[0]}]; got "
                    f"{label.dtype}{list(label.shape)}"
                )
        if train and cfg.dropout > 0 and not self.has_rng("dropout"):
            raise ValueError('train=True with dropout > 0 needs rngs={"dropout": key}')
        batch = x.shape[0]
        t = jnp.broadcast_to(t, (batch,))
        dtype = cfg.dtype
        dense = lambda features, name, scale=1.0: nn.Dense(
            features, dtype=dtype, kernel_init=default_init(scale), name=name
        )
        norm = lambda name: nn.LayerNorm(epsilon=1e-6, dtype=dtype, name=name)

        emb = time_embedding(
            t * cfg.time_scale, cfg.emb_dim, kind=cfg.embedding_type,
            fourier_scale=cfg.fourier_scale,
        )
        temb = dense(cfg.width, "temb_0")(emb)
        temb = dense(cfg.width, "temb_1")(nn.swish(temb))
        if cfg.num_classes is not None:
            if label is None:
                label = jnp.full((batch,), cfg.num_classes, jnp.int32)
            temb = temb + nn.Embed(
                cfg.num_classes + 1, cfg.width, dtype=dtype,
                embedding_init=nn.initializers.normal(1.0), name="label_emb",
            )(label)
        if cond_emb is not None:
            if cond_emb.shape != (batch, cfg.width):
                raise ValueError(f"cond_emb must have shape [B, emb_features] = [{batch}, "
                                 f"{cfg.width}]; got {tuple(cond_emb.shape)}")
            temb = temb + cond_emb.astype(dtype)

        h = dense(cfg.width, "dense_in")(x.astype(dtype))
        for i in range(cfg.depth):
            r = dense(cfg.width, f"block_{i}_dense_0")(nn.swish(norm(f"block_{i}_norm_0")(h)))
            r = r + dense(cfg.width, f"block_{i}_temb")(nn.swish(temb))
            r = nn.swish(norm(f"block_{i}_norm_1")(r))
            r = nn.Dropout(cfg.dropout, deterministic=not train)(r)
            h = h + dense(cfg.width, f"block_{i}_dense_1", cfg.init_scale)(r)
        h = nn.swish(norm("norm_out")(h))
        return dense(cfg.dim, "dense_out", cfg.init_scale)(h).astype(x.dtype)


VARIANTS: dict[str, MLPConfig] = {
    # For tests: compiles in about a second.
    "tiny": MLPConfig(dim=2, width=32, depth=2, emb_dim=16),
    # Toy 2-D distributions (mixtures, two moons, swiss roll).
    "toy2d": MLPConfig(dim=2, width=128, depth=3, emb_dim=64),
    # Tabular data: override ``dim`` with the number of columns.
    "tabular": MLPConfig(dim=16, width=256, depth=4, emb_dim=64, dropout=0.1),
}
