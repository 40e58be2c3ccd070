"""Label-efficient segmentation from diffusion features (Baranchuk et al. 2022).

The activations of a trained denoising UNet's decoder, computed on ``x_t`` for a clean image
``x`` noised to a few times ``t``, are rich per-pixel features: upsampled to the image size
and concatenated, a small pixel classifier (an MLP applied to each pixel's feature vector)
trained on a handful of labelled images segments the rest. Here:

* :func:`decoder_blocks`: the names of a :class:`diffax.models.UNet`'s up-path blocks;
* :func:`unet_features`: those activations via Flax's ``capture_intermediates`` (no change to
  the model), at chosen times and blocks, upsampled (bilinear) to ``[B, H, W, F]``;
* :class:`PixelClassifier` and :func:`pixel_loss`: an MLP over feature vectors and its
  cross-entropy, trained with :func:`diffax.tasks.fit`;
* :func:`segmentation_metrics`: pixel accuracy and per-class / mean intersection over union.

Example:
  >>> import jax, jax.numpy as jnp, diffax
  >>> from diffax.models import UNet
  >>> model = UNet.from_variant("tiny", num_channels=1)
  >>> params = model.init_params(jax.random.key(0))
  >>> feats = unet_features(model, params, jnp.zeros((2, 8, 8, 1)), process=diffax.VP(),
  ...                       times=(0.1, 0.3), blocks=decoder_blocks(model.config)[:2],
  ...                       key=jax.random.key(1))
  >>> feats.shape  # 2 times x (32 + 32) channels of the two lowest-resolution blocks
  (2, 8, 8, 128)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from diffax.evaluation.metrics import (  # re-exported: it moved there
    segmentation_metrics,
)
from diffax.losses import NoiseInput, TimeInput
from diffax.models.unet import UNetConfig
from diffax.processes import Process, expand
from diffax.typing import Array, PRNGKey, PyTree

__all__ = [
    "decoder_blocks",
    "unet_features",
    "PixelClassifier",
    "pixel_loss",
    "segmentation_metrics",
    "part_labels",
    "class_labels",
    "pixel_baselines",
]


def decoder_blocks(config: UNetConfig) -> list[str]:
    """Names of the up-path residual blocks of a UNet, from the lowest resolution up.

    Example:
      >>> from diffax.models import UNET_VARIANTS
      >>> decoder_blocks(UNET_VARIANTS["tiny"])
      ['up_1_block_0', 'up_1_block_1', 'up_0_block_0', 'up_0_block_1']
    """
    return [f"up_{level}_block_{i}" for level in reversed(range(len(config.ch_mult)))
            for i in range(config.num_res_blocks + 1)]


def unet_features(model: nn.Module, params: PyTree, x: Array, *, process: Process,
                  times: Sequence[float], blocks: Sequence[str], key: PRNGKey,
                  noise_input: NoiseInput | None = None, method: str = "linear") -> Array:
    """Decoder activations of ``model`` on ``x`` noised to each of ``times``, per pixel.

    For each ``t``: ``x_t = alpha(t) x + sigma(t) eps`` (one ``eps`` for all times, as
    Baranchuk et al. fix the noise), ``model.apply(params, x_t, noise_input(t))`` with the
    outputs of the modules named in ``blocks`` captured (``capture_intermediates``), each
    resized to ``H x W`` (``jax.image.resize`` with ``method``) and concatenated over blocks
    and then times.

    Args:
      model: a Flax module called as ``model(x, t)`` whose submodules include ``blocks``
        (at any depth: the last path component is matched), e.g. :class:`diffax.models.UNet`.
      params: its variables.
      x: clean images ``[B, H, W, C]``.
      process: the process the model was trained with.
      times: the noise times.
      blocks: module names (e.g. from :func:`decoder_blocks`).
      key: PRNG key of ``eps``.
      noise_input: the network's noise input (default ``t`` itself).
      method: the resize method.

    Returns:
      features ``[B, H, W, F]``.
    """
    noise_input = TimeInput() if noise_input is None else noise_input
    blocks = tuple(blocks)
    if not blocks or not len(times):
        raise ValueError("unet_features: give at least one of `times` and of `blocks`.")
    x = jnp.asarray(x)
    b, h, w, _ = x.shape
    eps = jax.random.normal(key, x.shape, x.dtype)
    wanted = lambda mdl, method_name: method_name == "__call__" and mdl.name in blocks
    features = []
    for t in times:
        tt = jnp.full((b,), t, x.dtype)
        x_t = expand(process.alpha(tt), x) * x + expand(process.sigma(tt), x) * eps
        _, state = model.apply(params, x_t, noise_input(process, tt),
                               capture_intermediates=wanted, mutable=["intermediates"])
        found = {path[-2]: value[0] for path, value in
                 traverse_util.flatten_dict(state.get("intermediates", {})).items()}
        missing = [name for name in blocks if name not in found]
        if missing:
            raise ValueError(f"unet_features: no module named {missing} in the model; "
                             "`blocks` must name submodules (see decoder_blocks).")
        for name in blocks:
            act = found[name]
            features.append(jax.image.resize(act, (b, h, w, act.shape[-1]), method=method))
    return jnp.concatenate(features, axis=-1)


class PixelClassifier(nn.Module):
    """An MLP mapping feature vectors ``[..., F]`` to class logits ``[..., num_classes]``.

    Attributes:
      num_classes: classes.
      hidden: widths of the hidden layers (ReLU).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = PixelClassifier(num_classes=2, hidden=(8,))
      >>> params = m.init(jax.random.key(0), jnp.zeros((1, 4)))
      >>> m.apply(params, jnp.zeros((3, 5, 4))).shape
      (3, 5, 2)
    """

    num_classes: int
    hidden: tuple[int, ...] = (64, 64)

    @nn.compact
    def __call__(self, f: Array) -> Array:
        h = f
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"dense_{i}")(h))
        return nn.Dense(self.num_classes, name="logits")(h)


def pixel_loss(model: PixelClassifier):
    """``loss_fn(params, key, batch)``: mean cross-entropy of ``batch["f"]`` vs ``batch["label"]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = PixelClassifier(num_classes=2, hidden=())
      >>> params = jax.tree.map(jnp.zeros_like, m.init(jax.random.key(0), jnp.zeros((1, 3))))
      >>> value, _ = pixel_loss(m)(params, None, {"f": jnp.ones((4, 3)),
      ...                                       "label": jnp.array([0, 1, 1, 0])})
      >>> round(float(value), 4) == round(float(jnp.log(2.0)), 4)
      True
    """

    def loss_fn(params, key, batch):
        logits = model.apply(params, batch["f"])
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, batch["label"][..., None], axis=-1)[..., 0]
        return jnp.mean(nll), {}

    return loss_fn


# --------------------------------------------------------------------------------------------
# Labels and baselines of the digits example (diffax.tasks.examples.segmentation).


def part_labels(x: Any, *, threshold: float = 0.0) -> np.ndarray:
    """Synthetic part labels of digit images ``[B, H, W, 1]``: 0 background, 1 stroke edge,
    2 stroke interior.

    A pixel is stroke when its value exceeds ``threshold``; a stroke pixel is *edge* when one
    of its four neighbours (outside the image counts as background) is background. The labels
    depend on the neighbourhood, not on the pixel's value alone.

    Example:
      >>> x = -np.ones((1, 4, 4, 1)); x[0, :3, :3] = 1.0
      >>> part_labels(x)[0].tolist()
      [[1, 1, 1, 0], [1, 2, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    """
    stroke = np.asarray(x)[..., 0] > threshold
    padded = np.pad(stroke, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    inner = (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2]
             & padded[:, 1:-1, 2:])
    return np.where(stroke, np.where(inner, 2, 1), 0).astype(np.int32)


def class_labels(x: Any, labels: Any, *, threshold: float = 0.0) -> np.ndarray:
    """Semantic labels of digit images ``[B, H, W, 1]``: 0 background, ``1 + class`` on the
    stroke (value above ``threshold``) of an image of class ``labels[b]``.

    No neighbourhood of a pixel decides these labels: a stroke of a 1 and of a 7 can look the
    same up close; the class is a property of the whole digit.

    Example:
      >>> x = -np.ones((2, 2, 2, 1)); x[:, 0, 0] = 1.0
      >>> class_labels(x, [3, 9])[:, 0].tolist()
      [[4, 0], [10, 0]]
    """
    stroke = np.asarray(x)[..., 0] > threshold
    labels = np.asarray(labels).reshape(-1, 1, 1)
    if labels.shape[0] != stroke.shape[0]:
        raise ValueError(f"class_labels: {labels.shape[0]} labels for {stroke.shape[0]} images.")
    return np.where(stroke, 1 + labels, 0).astype(np.int32)


def pixel_baselines(x: Array) -> dict[str, Array]:
    """Per-pixel features without a diffusion model, the baselines of the digits example.

    ``"pixel_window"``: the 3x3 window of raw values around each pixel (outside the image
    counts as background, -1); ``"pixel_window_global"``: that window, the whole image's raw
    values and the pixel's coordinates (so a pixel classifier can use global context).

    Example:
      >>> f = pixel_baselines(jnp.zeros((2, 8, 8, 1)))
      >>> f["pixel_window"].shape, f["pixel_window_global"].shape
      ((2, 8, 8, 9), (2, 8, 8, 75))
    """
    x = jnp.asarray(x)
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    window = jnp.concatenate([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)],
                             axis=-1)
    whole = jnp.broadcast_to(x.reshape(b, 1, 1, h * w * c), (b, h, w, h * w * c))
    rows, cols = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w),
                              indexing="ij")
    coords = jnp.broadcast_to(jnp.stack([rows, cols], -1).astype(x.dtype), (b, h, w, 2))
    return {"pixel_window": window,
            "pixel_window_global": jnp.concatenate([window, whole, coords], axis=-1)}
