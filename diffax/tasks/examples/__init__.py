"""The digits (and phantom) examples of :mod:`diffax.tasks`: one module per task, each with
``run(config, workdir) -> metrics``.

They are programs, not library code: each reads its config (``configs/tasks/*.py``) once through
:func:`diffax.train.options.parse_task_config`, trains with :func:`diffax.train.fit`, and calls
the algorithms of the library module of the same name (:mod:`diffax.tasks.anomaly`, ...).
``diffax task CONFIG --workdir DIR`` runs one through :func:`diffax.tasks.run`, which imports
``diffax.tasks.examples.<config.task>``; the shared steps (digits arrays, the validation split,
the denoiser's training, PNGs, ``metrics.json``) are in ``_pipeline``.
"""
