"""The task configs' common sections (``configs/tasks/``): each section starts from the
defaults of its options dataclass (:mod:`diffax.train.options`, where every default is written
once); a config states only what its run changes.

Example:
  >>> cfg = base_config("anomaly", "tiny")
  >>> cfg.task, cfg.process.name, cfg.sample.solver
  ('anomaly', 'vp', 'ddim')
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from diffax.train import options

__all__ = ["base_config", "classifier_section", "task_section", "validation_keys",
           "medical_config"]

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
            "steps_per_call": 4 if tiny else 100,
            # None: the process's XLA flags (a test may set 3 to optimise a long run)
            "xla_optimization_level": ml_collections.FieldReference(None, field_type=int),
            # 1: the plain scan; = steps_per_call (a small one): no loop, a conv train step
            # ~19x faster on XLA's CPU backend (fit, tools/bench_scan.md)
            "unroll": 1}


def task_section(cls: type, **changes: Any) -> ml_collections.ConfigDict:
    """A config section holding the defaults of the options dataclass ``cls`` (e.g.
    :class:`diffax.train.options.SROptions`), with ``changes``.

    Example:
      >>> task_section(options.SROptions, num_samples=2).num_samples
      2
    """
    values = options.section_defaults(cls)
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"task_section: {cls.__name__} has no field(s) {unknown}.")
    return ml_collections.ConfigDict({**values, **changes})


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


def validation_keys(cfg: ml_collections.ConfigDict, tiny: bool, num_tiny: int) -> None:
    """Adds ``data.num_validation`` (``num_tiny`` digits for ``:tiny``) and
    ``data.validation_seed`` (their defaults otherwise) to a task config."""
    d = options.section_defaults(options.TaskDataOptions)
    cfg.data.num_validation = num_tiny if tiny else d["num_validation"]
    cfg.data.validation_seed = d["validation_seed"]


def medical_config(problem: str, variant: str, settings: tuple):
    """The unlocked config of ``configs/tasks/phantom_ct.py`` / ``phantom_mri.py``.

    Example:
      >>> medical_config("mri", "tiny", (4, 8)).medical.settings
      (4,)
    """
    cfg = base_config("medical", variant, num_steps=1200)
    tiny = variant == "tiny"
    cfg.model.kwargs.image_size = 32
    if not tiny:  # sized for a shared 2-core machine: ~25 minutes with the evaluation
        cfg.model.kwargs.ch_mult = (1, 2, 2)
        cfg.train.batch_size = 16
    section = task_section(
        options.MedicalOptions, problem=problem, settings=settings[:1] if tiny else settings,
        # per unit ||A||^2; measured on the Gaussian prior: CT best of {0.1, 1, 10} is 10
        dps_step_size=10.0 if problem == "ct" else 1.0,
        # candidates, chosen per setting on validation phantoms held out of the train split
        dps_step_sizes=None if tiny else ((1.0, 3.0, 10.0, 30.0) if problem == "ct"
                                          else (0.3, 1.0, 3.0, 10.0)))
    if tiny:
        section.update({"num_steps": 3, "num_samples": 1, "num_eval": 2})
    section.denoiser_from = ml_collections.FieldReference(None, field_type=str)
    if tiny:  # None (no choice) that a command line can still set
        section.dps_step_sizes = ml_collections.FieldReference(None, field_type=tuple)
    section.inverse_ridge = ml_collections.FieldReference(
        options.section_defaults(options.MedicalOptions)["inverse_ridge"], field_type=float)
    cfg.medical = section
    return cfg
