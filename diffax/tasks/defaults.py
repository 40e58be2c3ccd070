"""Config sections shared by the task configs in ``configs/tasks/`` (their common defaults).

Example:
  >>> cfg = base_config("anomaly", "tiny")
  >>> cfg.task, cfg.process.name, cfg.sample.solver
  ('anomaly', 'vp', 'ddim')
"""

from __future__ import annotations

import ml_collections

__all__ = ["base_config", "classifier_section"]

VARIANTS = ("", "tiny")


def _check(variant: str) -> bool:
    if variant not in VARIANTS:
        raise ValueError(f"configs/tasks: unknown variant {variant!r}; '' or 'tiny'.")
    return variant == "tiny"


def _unet(tiny: bool) -> dict:
    return {"variant": "digits",
            "kwargs": {"nf": 8 if tiny else 16, "ch_mult": (1,) if tiny else (1, 2),
                       "num_res_blocks": 1,
                       "attn_resolutions": (), "dropout": 0.0}}


def _train(tiny: bool, num_steps: int) -> dict:
    return {"num_steps": 4 if tiny else num_steps, "batch_size": 8 if tiny else 32,
            "learning_rate": 2e-3, "warmup_steps": 0 if tiny else 100, "ema_decay": 0.999,
            "steps_per_call": 4 if tiny else 100}


def base_config(task: str, variant: str = "", *, num_steps: int = 500
                ) -> ml_collections.ConfigDict:
    """``seed``, ``task``, a VP process, a small digits UNet, its training and DDIM sampling.

    ``variant`` ``"tiny"`` shrinks everything to seconds (for tests). The caller adds its
    task's section and locks the config.
    """
    tiny = _check(variant)
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.task = task
    cfg.process = ml_collections.ConfigDict({"name": "vp", "beta_min": 0.1, "beta_max": 20.0})
    cfg.model = ml_collections.ConfigDict(_unet(tiny))
    cfg.train = ml_collections.ConfigDict(_train(tiny, num_steps))
    cfg.sample = ml_collections.ConfigDict({"solver": "ddim", "num_steps": 3 if tiny else 10})
    cfg.data = ml_collections.ConfigDict(
        {"data_dir": ml_collections.FieldReference(None, field_type=str)})
    return cfg


def classifier_section(variant: str = "", *, num_steps: int = 400
                       ) -> ml_collections.ConfigDict:
    """``config.classifier``: the encoder of the same small UNet, and its training."""
    tiny = _check(variant)
    return ml_collections.ConfigDict({"model": _unet(tiny), "train": _train(tiny, num_steps)})
