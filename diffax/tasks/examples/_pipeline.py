"""Shared steps of the task examples: digits arrays, a validation split, a trained denoiser,
PNGs.

The examples (``run(config, workdir)`` in each module of :mod:`diffax.tasks.examples`) read
their config only through :func:`diffax.train.options.parse_task_config` (checked once, typed
sections) and build the process and the solver with :mod:`diffax.train.build`, so the same keys
mean the same things as in ``diffax train``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from diffax.tasks import denoising_loss
from diffax.tasks.examples import validation_split
from diffax.train import FitResult, fit
from diffax.typing import Array, PRNGKey

__all__ = ["digits", "validation_split", "train_denoiser", "fit_kwargs", "save_grid",
           "save_metrics", "unet", "unconditional_denoiser"]


def _log(step: int, loss: float) -> None:
    import sys
    import time

    print(f"[{time.strftime('%H:%M:%S')}] step {step}: loss {loss:.4f}", file=sys.stderr,
          flush=True)


def fit_kwargs(options: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`diffax.tasks.fit` from a checked
    :class:`diffax.train.options.FitOptions` (with a log line per call)."""
    return {**options.to_dict(), "log": _log}


def digits(split: str, *, classes: Sequence[int] | None = None,
           data_dir: str | None = None) -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits of ``split`` in ``[-1, 1]``: ``{"x": [N, 8, 8, 1], "label"}``.

    ``classes`` keeps only those labels.
    """
    from diffax.data import load_split

    out = load_split("digits", split=split, data_dir=data_dir, value_range=(-1.0, 1.0))
    out = {"x": np.asarray(out["x"], np.float32), "label": np.asarray(out["label"], np.int32)}
    if classes is not None:
        keep = np.isin(out["label"], np.asarray(classes))
        out = {k: v[keep] for k, v in out.items()}
    return out


def unet(options: Any, factory: Callable[..., Any], **fixed: Any):
    """``factory(variant, **kwargs, **fixed)`` from a checked
    :class:`diffax.train.options.TaskModelOptions`."""
    return factory(options.variant, **options.model_kwargs(), **fixed)


def train_denoiser(key: PRNGKey, process: Any, model: Any, apply_fn: Callable[..., Array],
                   data: Mapping[str, Any], options: Mapping[str, Any], *,
                   cond_keys: tuple[str, ...] = (), loss_fn: Callable | None = None
                   ) -> tuple[FitResult, Any]:
    """Trains an eps-prediction denoiser; returns ``(fit result, the DenoisingLoss)``."""
    loss = denoising_loss(process, cond_keys=cond_keys)
    key_init, key_fit = jax.random.split(key)
    params = model.init_params(key_init)
    fn = loss.bind(apply_fn) if loss_fn is None else loss_fn
    return fit(fn, params, key_fit, data, **dict(options)), loss


def unconditional_denoiser(prior: str, key: PRNGKey, process: Any, opts: Any,
                           x_train: Any) -> tuple[Callable[[Array, Array], Array], float | None]:
    """``(denoiser, final training loss)`` of an example's unconditional denoiser.

    ``prior`` ``"unet"``: a UNet of ``opts.model`` trained on ``x_train`` by
    :func:`train_denoiser` with ``opts.train`` and key ``key``; ``"gaussian"``: the exact
    denoiser of a Gaussian fitted to ``x_train``
    (:func:`diffax.tasks.medical.gaussian_prior_denoiser`; no training, loss None), the tests'
    cheap prior of known quality.
    """
    if prior == "gaussian":
        from diffax.tasks.medical import gaussian_prior_denoiser

        return gaussian_prior_denoiser(x_train, process), None
    from diffax import models

    model = unet(opts.model, models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    result, loss = train_denoiser(key, process, model, apply_fn, {"x": x_train},
                                  fit_kwargs(opts.train))
    return loss.denoiser(apply_fn, result.params), float(np.mean(result.losses[-50:]))


def save_grid(path: str, rows: Sequence[Array], *, scale: int = 4) -> str:
    """Writes rows of images ``[N, H, W, C]`` in ``[-1, 1]`` as one PNG grid (one row each)."""
    from diffax.evaluation import plots

    images = np.concatenate([np.asarray(r, np.float32) for r in rows], axis=0)
    grid = plots.image_grid(images, value_range=(-1.0, 1.0), num_cols=len(rows[0]),
                            scale=scale)
    return plots.write_png(path, grid)


def save_metrics(workdir: str | None, metrics: Mapping[str, Any]) -> None:
    """Writes ``workdir/metrics.json`` (nothing when ``workdir`` is None)."""
    if workdir is None:
        return
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True, default=float)
