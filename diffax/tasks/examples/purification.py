"""The digits example of :mod:`diffax.tasks.purification`: adversarial purification (DiffPure).

``run(config, workdir)`` runs ``configs/tasks/digits_purify.py`` (``diffax task CONFIG --workdir
DIR`` dispatches here through :func:`diffax.tasks.run`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diffax.tasks.purification import fgsm, gaussian_perturbation

__all__ = ["run"]


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The digits example: classifier accuracy before and after purification.

    ``config.data.num_validation`` train digits are held out (fixed-seed permutation,
    ``config.data.validation_seed``); a classifier (``config.classifier``,
    :class:`diffax.tasks.classifier.ClassifierLoss`) and an unconditional denoiser
    (``config.model``, ``config.train``) are trained on the rest. On the validation and the
    test split the inputs are perturbed by FGSM (``config.purify.fgsm_epsilon`` against the
    classifier at ``t_min``) and by Gaussian noise (``config.purify.noise_std``), and each
    version is purified from every ``config.purify.t0`` with ``config.sample``'s solver. The
    ``t0`` with the best purified FGSM accuracy on **validation** is chosen; the test
    accuracies are reported for every ``t0`` and, for the chosen one, with Wilson intervals
    (``"chosen"``). Writes ``workdir/purify.png`` (rows: clean, FGSM, purified FGSM, noisy,
    purified noisy, at the chosen ``t0``) and ``workdir/metrics.json``.
    """
    import os

    import numpy as np

    from diffax import inverse, models
    from diffax.evaluation.intervals import wilson_interval
    from diffax.tasks import classifier as clf
    from diffax.tasks.examples import _pipeline as pl
    from diffax.tasks.examples.classifier import train as train_classifier
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg = opts.purify
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    train, val = pl.validation_split(pl.digits("train", data_dir=opts.data.data_dir),
                                     opts.data.num_validation, seed=opts.data.validation_seed)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    key_clf, key_den, key_pert, key_pur = jax.random.split(jax.random.key(opts.seed), 4)
    clf_fn, clf_result = train_classifier(opts, train, key_clf, process)
    t_min = float(process.t_min)
    logits_fn = lambda x: clf_fn(clf_result.params, x, jnp.full((x.shape[0],), t_min))
    model = pl.unet(opts.model, models.UNet.from_variant)
    apply_fn = models.apply_fn(model)
    result, loss = pl.train_denoiser(key_den, process, model, apply_fn, {"x": train["x"]},
                                     pl.fit_kwargs(opts.train))
    denoiser = loss.denoiser(apply_fn, result.params)

    def perturbed(data, key):
        x, labels = jnp.asarray(data["x"]), jnp.asarray(data["label"])
        return {"clean": x,
                "fgsm": fgsm(logits_fn, x, labels, epsilon=cfg.fgsm_epsilon),
                "gaussian": gaussian_perturbation(key, x, std=cfg.noise_std)}

    def correct(data, x):
        """The number of inputs ``x`` the classifier labels as ``data["label"]``."""
        acc = clf.accuracy(clf_fn, clf_result.params, x, data["label"], t_min)
        return int(round(acc * len(data["label"])))

    inputs = perturbed(test, key_pert)
    val_inputs = perturbed(val, jax.random.fold_in(key_pert, 1))
    n_test = len(test["label"])
    acc = lambda x: clf.accuracy(clf_fn, clf_result.params, x, test["label"], t_min)
    metrics: dict[str, Any] = {"accuracy": {name: acc(v) for name, v in inputs.items()},
                               "purified": {}, "purified_validation": {},
                               "classifier_final_loss":
                               float(np.mean(clf_result.losses[-50:])),
                               "denoiser_final_loss": float(np.mean(result.losses[-50:])),
                               "num_test": n_test, "num_validation": len(val["label"]),
                               "num_train": len(train["label"])}
    metrics["accuracy_interval"] = {name: list(wilson_interval(correct(test, v), n_test))
                                    for name, v in inputs.items()}
    purified = {}
    for t0 in cfg.t0:
        pur = jax.jit(lambda k, v, t0=t0: inverse.sdedit(
            k, process, denoiser, v, t0=t0, solver=solver, num_steps=num_steps).x)
        metrics["purified"][str(t0)] = {}
        metrics["purified_validation"][str(t0)] = {}
        for name, v in inputs.items():
            out = jnp.clip(pur(key_pur, v), -1.0, 1.0)
            purified[(name, str(t0))] = out
            metrics["purified"][str(t0)][name] = acc(out)
        for name, v in val_inputs.items():
            out = jnp.clip(pur(jax.random.fold_in(key_pur, 1), v), -1.0, 1.0)
            metrics["purified_validation"][str(t0)][name] = clf.accuracy(
                clf_fn, clf_result.params, out, val["label"], t_min)
    on_val = {t0: v["fgsm"] for t0, v in metrics["purified_validation"].items()}
    best = max(on_val, key=on_val.get)  # the first of equal values
    metrics["chosen"] = {
        "t0": float(best), "validation_fgsm_accuracy": on_val[best],
        **{name: {"accuracy": metrics["purified"][best][name],
                  "interval": list(wilson_interval(correct(test, purified[(name, best)]),
                                                   n_test))} for name in inputs}}
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        n = 12
        x = inputs["clean"]
        rows = [x[:n], inputs["fgsm"][:n], purified[("fgsm", best)][:n],
                inputs["gaussian"][:n], purified[("gaussian", best)][:n]]
        pl.save_grid(os.path.join(workdir, "purify.png"), rows)
        pl.save_metrics(workdir, metrics)
    return metrics
