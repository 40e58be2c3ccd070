"""Noise-conditional classifiers for classifier guidance (Dhariwal & Nichol 2021).

A classifier ``p(y | x_t, t)`` trained on noisy inputs ``x_t = alpha(t) x0 + sigma(t) eps`` at
random ``t`` is what classifier guidance differentiates: the guided score adds
``scale * grad_x log p(y | x_t, t)``. Here:

* :class:`NoisyClassifier`: the encoder half of :class:`diffax.models.UNet` (input conv,
  down path, middle block, all conditioned on the time embedding) followed by GroupNorm, swish,
  global average pooling and a linear layer to the class logits, as in Dhariwal & Nichol's
  guided-diffusion classifier (their attention pooling is replaced by average pooling).
* :class:`ClassifierLoss`: cross-entropy at times from any :class:`diffax.losses.TimeSampler`;
  ``loss.bind(apply_fn)`` is the ``loss_fn(params, key, batch)`` a train step takes.
* :func:`log_prob_fn`: ``log_prob(x, t) -> [B]``, the log-probability of given labels, the
  function ``diffax.guidance.classifier`` differentiates.
* :func:`accuracy`: the fraction of ``x`` classified as ``labels`` at a time ``t``.

Example:
  >>> import jax, jax.numpy as jnp, diffax
  >>> from diffax import models
  >>> from diffax.tasks import classifier as clf
  >>> model = clf.NoisyClassifier.from_variant("tiny", num_classes=3, num_channels=1)
  >>> params = model.init_params(jax.random.key(0))
  >>> apply_fn = models.apply_fn(model)
  >>> loss = clf.ClassifierLoss(process=diffax.VP())
  >>> batch = {"x": jnp.zeros((4, 8, 8, 1)), "label": jnp.array([0, 1, 2, 0])}
  >>> value, aux = loss.bind(apply_fn)(params, jax.random.key(1), batch)
  >>> value.shape, aux["t"].shape
  ((), (4,))
  >>> log_p = clf.log_prob_fn(apply_fn, params, diffax.VP(), jnp.array([0, 1, 2, 0]))
  >>> log_p(batch["x"], jnp.full((4,), 0.5)).shape
  (4,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffax._pytree import pytree_dataclass, static_field
from diffax.losses import NoiseInput, TimeInput, TimeSampler, UniformTime
from diffax.models.layers import (
    AttentionBlock,
    BlockType,
    Downsample,
    Resample,
    ResnetBlock,
    default_init,
    group_norm,
    init_variables,
    positive_int,
    time_embedding,
)
from diffax.models.unet import VARIANTS as UNET_VARIANTS
from diffax.models.unet import UNetConfig
from diffax.processes import Process, expand
from diffax.typing import ApplyFn, Array, PRNGKey, PyTree

__all__ = ["NoisyClassifier", "ClassifierLoss", "log_prob_fn", "accuracy"]

LogProbFn = Callable[[Array, Array], Array]


class NoisyClassifier(nn.Module):
    """Class logits ``[B, num_classes]`` of noisy images ``x`` ``[B, H, W, C]`` at ``t`` ``[B]``.

    The architecture is the encoder half of :class:`diffax.models.UNet` built from the same
    ``config`` (a :class:`diffax.models.UNetConfig`; its ``num_classes`` must be ``None``:
    the classifier is not label-conditioned), then GroupNorm, swish, global average pooling and
    ``Dense(num_classes)``. Called like the UNet: ``model.apply(params, x, t, train=False)``,
    so :func:`diffax.models.apply_fn` turns it into ``apply_fn(params, x, t)``.

    Attributes:
      config: the UNet config whose encoder is used.
      num_classes: number of classes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = NoisyClassifier.from_variant("tiny", num_classes=10)
      >>> params = model.init_params(jax.random.key(0))
      >>> model.apply(params, jnp.zeros((2, 8, 8, 3)), jnp.ones(2)).shape
      (2, 10)
    """

    config: UNetConfig
    num_classes: int

    def __post_init__(self):
        positive_int(self.num_classes, "num_classes")
        if self.config.num_classes is not None:
            raise ValueError("NoisyClassifier: `config.num_classes` must be None (the classifier "
                             "is not label-conditioned); give the classes as `num_classes`.")
        super().__post_init__()

    @classmethod
    def from_variant(cls, name: str, /, *, num_classes: int, **overrides: Any
                     ) -> NoisyClassifier:
        """The classifier on the encoder of ``diffax.models.UNET_VARIANTS[name]`` (+ overrides).

        Example:
          >>> NoisyClassifier.from_variant("digits", num_classes=10).config.num_channels
          1
        """
        if name not in UNET_VARIANTS:
            raise ValueError(f"unknown UNet variant {name!r}; known: {sorted(UNET_VARIANTS)}")
        return cls(dataclasses.replace(UNET_VARIANTS[name], **overrides), num_classes)

    @nn.nowrap
    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array]:
        """Zero inputs ``(x [B, H, W, C], t [B])`` of the configured shape."""
        x = jnp.zeros((batch_size, *self.config.input_shape), jnp.float32)
        return x, jnp.zeros((batch_size,), jnp.float32)

    @nn.nowrap
    def init_params(self, key: PRNGKey) -> dict[str, Any]:
        """``model.init`` on :meth:`example_inputs` (jit-compiled once per config)."""
        return init_variables(self, key)

    @nn.compact
    def __call__(self, x: Array, t: Array, *, train: bool = False) -> Array:
        cfg = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != cfg.input_shape:
            raise ValueError(f"NoisyClassifier: x must have shape [B, {cfg.image_size}, "
                             f"{cfg.image_size}, {cfg.num_channels}]; got {tuple(x.shape)}")
        t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
        if train and cfg.dropout > 0 and not self.has_rng("dropout"):
            raise ValueError('train=True with dropout > 0 needs rngs={"dropout": key}')
        dtype, emb_dim = cfg.dtype, 4 * cfg.nf
        emb = time_embedding(t * cfg.time_scale, cfg.nf, kind=cfg.embedding_type,
                             fourier_scale=cfg.fourier_scale)
        temb = nn.Dense(emb_dim, dtype=dtype, kernel_init=default_init(), name="temb_0")(emb)
        temb = nn.Dense(emb_dim, dtype=dtype, kernel_init=default_init(), name="temb_1")(
            nn.swish(temb))
        block = lambda name, **kw: ResnetBlock(
            dropout=cfg.dropout, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale,
            dtype=dtype, name=name, **kw)
        attention = lambda name: AttentionBlock(
            num_heads=cfg.num_heads, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale,
            dtype=dtype, name=name)
        h = nn.Conv(cfg.nf, (3, 3), dtype=dtype, kernel_init=default_init(), name="conv_in")(
            x.astype(dtype))
        for level, mult in enumerate(cfg.ch_mult):
            for i in range(cfg.num_res_blocks):
                h = block(f"down_{level}_block_{i}", out_channels=cfg.nf * mult)(
                    h, temb, train=train)
                if h.shape[1] in cfg.attn_resolutions:
                    h = attention(f"down_{level}_attn_{i}")(h)
            if level != len(cfg.ch_mult) - 1:
                if cfg.resblock_type is BlockType.BIGGAN:
                    h = block(f"down_{level}_resample", resample=Resample.DOWN)(
                        h, temb, train=train)
                else:
                    h = Downsample(with_conv=cfg.resamp_with_conv, dtype=dtype,
                                   name=f"down_{level}_resample")(h)
        h = block("mid_block_0")(h, temb, train=train)
        h = nn.swish(group_norm(h, dtype=dtype, name="norm_out"))
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=dtype, kernel_init=default_init(),
                        name="logits")(h).astype(jnp.float32)


def _noisy(process: Process, x0: Array, t: Array, eps: Array) -> Array:
    return expand(process.alpha(t), x0) * x0 + expand(process.sigma(t), x0) * eps


@pytree_dataclass
class ClassifierLoss:
    """Cross-entropy of a noise-conditional classifier on ``x_t = alpha x0 + sigma eps``.

    Args:
      process: the forward process of the diffusion model the classifier will guide.
      time_sampler: draws the training times (default uniform on ``[t_min, t_max]``).
      noise_input: what the classifier sees as its noise level; use the denoiser's convention
        (default: ``t`` itself).
      data_key: the batch entry holding the clean data ``[B, ...]``.
      label_key: the batch entry holding the integer labels ``[B]``.
      key_arg: keyword under which the network receives a PRNG key (dropout), or ``None``.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> loss = ClassifierLoss(process=diffax.VP())
      >>> apply_fn = lambda params, x, t: jnp.zeros((x.shape[0], 4))  # uniform over 4 classes
      >>> value, _ = loss(apply_fn, None, jax.random.key(0),
      ...                 {"x": jnp.ones((2, 3)), "label": jnp.array([0, 3])})
      >>> round(float(value), 4) == round(float(jnp.log(4.0)), 4)
      True
    """

    process: Process
    time_sampler: TimeSampler = dataclasses.field(default_factory=UniformTime)
    noise_input: NoiseInput = dataclasses.field(default_factory=TimeInput)
    data_key: str = static_field(default="x")
    label_key: str = static_field(default="label")
    key_arg: str | None = static_field(default=None)

    def __post_init__(self):
        for name, value, kind in (("process", self.process, Process),
                                  ("time_sampler", self.time_sampler, TimeSampler),
                                  ("noise_input", self.noise_input, NoiseInput)):
            if not isinstance(value, kind):
                raise ValueError(f"ClassifierLoss: `{name}` must be a {kind.__module__}."
                                 f"{kind.__name__}, got {value!r}.")

    def __call__(self, apply_fn: ApplyFn, params: PyTree, key: PRNGKey,
                 batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
        """``(mean cross-entropy, {"t": [B], "per_example": [B], "accuracy": []})``."""
        for k in (self.data_key, self.label_key):
            if k not in batch:
                raise ValueError(f"ClassifierLoss: the batch has no {k!r} entry; it has "
                                 f"{sorted(batch)}.")
        x0, label = jnp.asarray(batch[self.data_key]), jnp.asarray(batch[self.label_key])
        key_t, key_eps, key_net = jax.random.split(key, 3)
        t, correction = self.time_sampler.sample(key_t, self.process, x0.shape[0])
        x_t = _noisy(self.process, x0, t, jax.random.normal(key_eps, x0.shape, x0.dtype))
        kwargs = {} if self.key_arg is None else {self.key_arg: key_net}
        logits = apply_fn(params, x_t, self.noise_input(self.process, t), **kwargs)
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, label[:, None], axis=-1)[:, 0]
        acc = jnp.mean((jnp.argmax(logits, axis=-1) == label).astype(jnp.float32))
        return jnp.mean(correction * nll), {"t": t, "per_example": nll, "accuracy": acc}

    def bind(self, apply_fn: ApplyFn) -> Callable[[PyTree, PRNGKey, Any],
                                                 tuple[Array, dict[str, Array]]]:
        """``loss_fn(params, key, batch)`` for :func:`diffax.train.make_train_step`."""
        return lambda params, key, batch: self(apply_fn, params, key, batch)


def log_prob_fn(apply_fn: ApplyFn, params: PyTree, process: Process, labels: Array, *,
                noise_input: NoiseInput | None = None) -> LogProbFn:
    """``log_prob(x, t) -> [B]``: ``log p(labels | x_t = x, t)`` of a noise-conditional classifier.

    This is the function classifier guidance differentiates (``diffax.guidance.classifier``).

    Args:
      apply_fn: ``apply_fn(params, x, noise) -> logits [B, K]``.
      params: the classifier's parameters.
      process: the process the classifier was trained with.
      labels: ``[B]`` integer target classes.
      noise_input: the classifier's noise input (as in :class:`ClassifierLoss`; default ``t``).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> f = log_prob_fn(lambda p, x, t: jnp.zeros((x.shape[0], 2)), None, diffax.VP(),
      ...                 jnp.array([0, 1]))
      >>> [round(float(v), 4) for v in f(jnp.ones((2, 3)), 0.5)]
      [-0.6931, -0.6931]
    """
    noise_input = TimeInput() if noise_input is None else noise_input
    labels = jnp.asarray(labels)

    def log_prob(x: Array, t: Array) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.result_type(x.dtype, jnp.float32)),
                             (x.shape[0],))
        logits = apply_fn(params, x, noise_input(process, t))
        log_p = jax.nn.log_softmax(logits.astype(x.dtype), axis=-1)
        return jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]

    return log_prob


def accuracy(apply_fn: ApplyFn, params: PyTree, x: Array, labels: Array, t: Any, *,
             process: Process | None = None, noise_input: NoiseInput | None = None) -> float:
    """Fraction of ``x`` (already at time ``t``) that the classifier assigns to ``labels``.

    Example:
      >>> import jax.numpy as jnp
      >>> fn = lambda p, x, t: jnp.stack([x[:, 0], -x[:, 0]], axis=-1)
      >>> round(accuracy(fn, None, jnp.array([[1.0], [-1.0], [2.0]]), jnp.array([0, 1, 1]), 0.0), 4)
      0.6667
    """
    noise_input = TimeInput() if noise_input is None else noise_input
    x = jnp.asarray(x)
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
    logits = apply_fn(params, x, noise_input(process, t))
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(labels)))
