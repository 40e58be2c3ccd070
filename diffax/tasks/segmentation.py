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


def segmentation_metrics(pred: Any, target: Any, num_classes: int) -> dict[str, Any]:
    """Pixel accuracy, per-class IoU and mean IoU of integer label maps.

    IoU of class ``k`` is ``|pred = k and target = k| / |pred = k or target = k|`` (NaN for a
    class absent from both, left out of the mean).

    Example:
      >>> m = segmentation_metrics([[0, 1], [1, 1]], [[0, 1], [0, 1]], 2)
      >>> m["accuracy"], m["iou"], round(m["mean_iou"], 4)
      (0.75, [0.5, 0.6666666666666666], 0.5833)
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"segmentation_metrics: `pred` {pred.shape} and `target` "
                         f"{target.shape} differ.")
    ious = []
    for k in range(int(num_classes)):
        union = np.sum((pred == k) | (target == k))
        ious.append(float(np.sum((pred == k) & (target == k)) / union) if union else
                    float("nan"))
    return {"accuracy": float(np.mean(pred == target)), "iou": ious,
            "mean_iou": float(np.nanmean(ious))}


# --------------------------------------------------------------------------------------------
# The digits example.


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


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: a pixel classifier on UNet decoder features from a few images.

    Trains an unconditional denoiser (``config.model``, ``config.train``) on the train split,
    extracts :func:`unet_features` at ``config.seg.times`` and ``config.seg.blocks`` (indices
    into :func:`decoder_blocks`), trains a :class:`PixelClassifier` on
    ``config.seg.num_labelled`` labelled train images (:func:`part_labels`), and reports pixel
    accuracy and IoU on the test split — next to the same classifier on the raw pixel values
    in a 3x3 window (the baseline). Writes ``workdir/segmentation.png`` (rows: image, truth,
    prediction from features, prediction from pixels) and ``workdir/metrics.json``.
    """
    import os

    from diffax import models
    from diffax.tasks import _pipeline as pl
    from diffax.tasks._fit import fit

    cfg = pl.section(config, "seg", ("times", "blocks", "num_labelled", "hidden"))
    data_cfg = pl.section(config, "data", ("data_dir",))
    opts = pl.train_options(config)
    pixel_opts = pl.train_options(config, "pixel_train")
    process = pl.build_process(config)
    train = pl.digits("train", data_dir=data_cfg.get("data_dir"))
    test = pl.digits("test", data_dir=data_cfg.get("data_dir"))
    keys = jax.random.split(jax.random.key(int(config.seed)), 5)
    model = pl.unet(pl.section(config, "model"), models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    result, _ = pl.train_denoiser(keys[0], process, model, apply_fn, {"x": train["x"]}, opts)
    names = decoder_blocks(model.config)
    blocks = [names[i] for i in cfg["blocks"]]
    extract = jax.jit(lambda x: unet_features(model, result.params, x, process=process,
                                              times=tuple(cfg["times"]), blocks=blocks,
                                              key=keys[1]))
    labelled = train["x"][: int(cfg["num_labelled"])]
    if not len(labelled):
        raise ValueError("config.seg.num_labelled must be >= 1.")
    f_train, f_test = extract(jnp.asarray(labelled)), extract(jnp.asarray(test["x"]))
    windows = lambda x: jnp.concatenate(
        [jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
         [:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)], axis=-1)
    y_train, y_test = part_labels(labelled), part_labels(test["x"])
    metrics: dict[str, Any] = {"denoiser_final_loss": float(np.mean(result.losses[-50:])),
                               "num_labelled_images": int(len(labelled)),
                               "feature_dim": int(f_train.shape[-1])}
    preds = {}
    for name, (ftr, fte), key in (
            ("diffusion_features", (f_train, f_test), keys[2]),
            ("pixel_window", (windows(jnp.asarray(labelled)), windows(jnp.asarray(test["x"]))),
             keys[3])):
        mean = jnp.mean(ftr, axis=(0, 1, 2), keepdims=True)
        std = jnp.std(ftr, axis=(0, 1, 2), keepdims=True) + 1e-6
        norm = lambda f, mean=mean, std=std: (f - mean) / std
        clf = PixelClassifier(num_classes=3, hidden=tuple(cfg["hidden"]))
        key_init, key_fit = jax.random.split(key)
        params = clf.init(key_init, jnp.zeros((1, ftr.shape[-1])))
        data = {"f": norm(ftr).reshape(-1, ftr.shape[-1]), "label": y_train.reshape(-1)}
        fitted = fit(pixel_loss(clf), params, key_fit, data, **pixel_opts)
        pred = np.asarray(jnp.argmax(clf.apply(fitted.params, norm(fte)), axis=-1))
        preds[name] = pred
        parts = segmentation_metrics(pred, y_test, 3)
        stroke = segmentation_metrics(pred > 0, y_test > 0, 2)
        metrics[name] = {"parts": parts, "stroke_vs_background": stroke}
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        n = 12
        as_img = lambda lab: (lab[:n, ..., None].astype(np.float32) - 1.0)
        rows = [test["x"][:n], as_img(y_test), as_img(preds["diffusion_features"]),
                as_img(preds["pixel_window"])]
        pl.save_grid(os.path.join(workdir, "segmentation.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
