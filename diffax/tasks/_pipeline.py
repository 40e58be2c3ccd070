"""Shared steps of the task examples: config sections, digits arrays, a trained denoiser, PNGs.

The examples (``run(config, workdir)`` in each task module) read an ml_collections config at
the edge, like ``diffax train`` does, and reuse :mod:`diffax.train.build` for the process and
the solver, so the same config keys mean the same things.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from diffax.tasks._fit import FitResult, denoising_loss, fit
from diffax.typing import Array, PRNGKey

__all__ = ["section", "digits", "build_process", "build_solver", "train_denoiser",
           "train_options", "save_grid", "save_metrics", "unet"]

_TRAIN_KEYS = {"num_steps", "batch_size", "learning_rate", "warmup_steps", "ema_decay",
               "steps_per_call"}


def _log(step: int, loss: float) -> None:
    import sys
    import time

    print(f"[{time.strftime('%H:%M:%S')}] step {step}: loss {loss:.4f}", file=sys.stderr,
          flush=True)


def section(config: Any, name: str, allowed: Sequence[str] | None = None) -> dict[str, Any]:
    """``config[name]`` as a dict; unknown keys (when ``allowed`` is given) raise, naming them."""
    from diffax.train import build

    out = build.section(config, name)
    if allowed is not None:
        unknown = sorted(set(out) - set(allowed))
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)}"
                             f"; known keys of `{name}`: {', '.join(sorted(allowed))}.")
    return out


def train_options(config: Any, name: str = "train") -> dict[str, Any]:
    """The keyword arguments of :func:`diffax.tasks.fit` from ``config.<name>`` (with a log)."""
    return {**section(config, name, _TRAIN_KEYS), "log": _log}


def build_process(config: Any):
    """``config.process`` as a :class:`diffax.Process` (``diffax.train.build`` keys)."""
    from diffax.train import build

    return build.build_process(build.section(config, "process"))


def build_solver(config: Any, name: str = "sample") -> tuple[Any, int]:
    """``(solver, num_steps)`` of ``config.<name>`` (``diffax.train.build`` keys)."""
    from diffax.train import build

    return build.build_solver(build.section(config, name))


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


def unet(model_cfg: Mapping[str, Any], factory: Callable[..., Any], **fixed: Any):
    """``factory(variant, **kwargs, **fixed)`` from a ``{"variant", "kwargs"}`` section."""
    unknown = sorted(set(model_cfg) - {"variant", "kwargs"})
    if unknown:
        raise ValueError(f"unknown model config key(s) {unknown}; known: variant, kwargs.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in dict(model_cfg.get("kwargs") or {}).items()}
    return factory(model_cfg.get("variant", "digits"), **kwargs, **fixed)


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
