"""The digits example of :mod:`diffax.tasks.classifier`: a noise-conditional classifier and
classifier guidance.

``run(config, workdir)`` runs ``configs/tasks/digits_classifier.py`` (``diffax task CONFIG
--workdir DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax.processes import Process, expand
from diffax.tasks.classifier import ClassifierLoss, NoisyClassifier, accuracy, log_prob_fn
from diffax.typing import PRNGKey

__all__ = ["run", "train"]


def train(config: Any, data: Mapping[str, Any], key: PRNGKey, process: Process):
    """Trains the ``config.classifier`` classifier on ``data`` (``x``, ``label``).

    ``config``: the task config or its checked :class:`diffax.train.options.TaskOptions`.

    Returns:
      ``(apply_fn, fit result)``.
    """
    from diffax import models
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import fit, options

    section = options.parse_task_config(config).classifier
    model = pl.unet(section.model, NoisyClassifier.from_variant, num_classes=10)
    apply_fn = models.apply_fn(model)
    key_init, key_fit = jax.random.split(key)
    result = fit(ClassifierLoss(process=process).bind(apply_fn), model.init_params(key_init),
                 key_fit, {"x": data["x"], "label": data["label"]},
                 **pl.fit_kwargs(section.train))
    return apply_fn, result


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: a noise-conditional classifier, its accuracy against ``t``.

    Trains the classifier of ``config.classifier`` on the digits' train split with
    :class:`ClassifierLoss` and reports its test accuracy on ``x_t`` at each of
    ``config.eval.times``; then trains an unconditional denoiser (``config.model``,
    ``config.train``), samples ``config.guidance.samples_per_class`` digits of each class with
    ``diffax.guidance.classifier`` at each of ``config.guidance.scales``, and reports the
    fraction of samples an independent classifier (scikit-learn logistic regression on clean
    digits) assigns to the target class. ``config.guidance.prior = "gaussian"`` replaces the
    trained denoiser by :func:`diffax.tasks.medical.gaussian_prior_denoiser` of the train
    digits (the exact denoiser of a fitted Gaussian, no training: the tests' cheap prior of
    known quality). Writes ``workdir/guided.png`` (rows of up to 3
    samples per class for each scale, in order) and ``workdir/metrics.json``.
    """
    import os

    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    process = build.build_process(opts.process)
    train_data = pl.digits("train", data_dir=opts.data.data_dir)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    key = jax.random.key(opts.seed)
    key_clf, key_eval, key_rest = jax.random.split(key, 3)
    apply_fn, result = train(opts, train_data, key_clf, process)
    x0 = jnp.asarray(test["x"])
    metrics: dict[str, Any] = {"final_loss": float(np.mean(result.losses[-50:])),
                               "accuracy_vs_t": {}}
    for t in opts.eval.times:
        tt = jnp.full((x0.shape[0],), t, jnp.float32)
        eps = jax.random.normal(key_eval, x0.shape)
        x_t = expand(process.alpha(tt), x0) * x0 + expand(process.sigma(tt), x0) * eps
        metrics["accuracy_vs_t"][str(t)] = accuracy(apply_fn, result.params, x_t,
                                                    test["label"], t)
        metrics.setdefault("accuracy_vs_t_interval", {})[str(t)] = _wilson(
            metrics["accuracy_vs_t"][str(t)], x0.shape[0])
    metrics["guidance"] = _guided_samples(opts, process, apply_fn, result.params, train_data,
                                          test, key_rest, workdir)
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_metrics(workdir, metrics)
    return metrics


def _wilson(fraction: float, n: int) -> list[float]:
    """Wilson's 95% interval of a measured fraction of ``n`` trials."""
    from diffax.evaluation.intervals import wilson_interval

    return list(wilson_interval(int(round(fraction * n)), n))


def _guided_samples(opts, process, clf_apply_fn, clf_params, train_data, test, key, workdir):
    """Samples each class with classifier guidance at each scale; the judge's accuracy."""
    import os

    from diffax import guidance
    from diffax.evaluation.modes import fit_digit_classifier
    from diffax.samplers import sample
    from diffax.tasks.examples import _pipeline as pl
    from diffax.train import build

    cfg = opts.guidance
    solver, num_steps = build.build_solver(opts.sample)
    flat = lambda x: np.asarray(x).reshape(len(x), -1)
    judge = fit_digit_classifier(train_data["x"], train_data["label"])
    judge_test = float(judge.score(flat(test["x"]), test["label"]))
    key_train, key_sample = jax.random.split(key)
    denoiser, final_loss = pl.unconditional_denoiser(cfg.prior, key_train, process, opts,
                                                     train_data["x"])
    prior_metrics = ({"prior": "gaussian"} if final_loss is None
                     else {"denoiser_final_loss": final_loss})
    labels = jnp.repeat(jnp.arange(10), cfg.samples_per_class)
    log_prob = log_prob_fn(clf_apply_fn, clf_params, process, labels)
    x_init = process.prior_sample(jax.random.fold_in(key_sample, 0),
                                  (labels.shape[0], *train_data["x"].shape[1:]))

    @jax.jit
    def draw(scale):
        guided = guidance.classifier(process, denoiser, log_prob, scale=scale)
        return sample(key_sample, process, guided, x_init, solver=solver,
                      num_steps=num_steps).x

    out: dict[str, Any] = {"judge_test_accuracy": judge_test, "judge_accuracy": {},
                           "classifier_accuracy": {}, **prior_metrics}
    rows = []
    for scale in cfg.scales:
        x = jnp.clip(draw(jnp.asarray(scale, jnp.float32)), -1.0, 1.0)
        out["judge_accuracy"][str(scale)] = float(np.mean(judge.predict(flat(x)) ==
                                                          np.asarray(labels)))
        out["classifier_accuracy"][str(scale)] = accuracy(
            clf_apply_fn, clf_params, x, labels, float(process.t_min))
        for name in ("judge_accuracy", "classifier_accuracy"):
            out.setdefault(f"{name}_interval", {})[str(scale)] = _wilson(
                out[name][str(scale)], labels.shape[0])
        per = cfg.samples_per_class
        by_class = np.asarray(x).reshape(10, per, *x.shape[1:])
        rows += [by_class[:, j] for j in range(min(per, 3))]
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        pl.save_grid(os.path.join(workdir, "guided.png"), rows)
    return out
