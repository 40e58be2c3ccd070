"""Adversarial purification with a diffusion model (DiffPure, Nie et al. 2022).

Purification is SDEdit (Meng et al. 2022) applied before a classifier: the (perturbed) input is
noised to a moderate time ``t0`` and denoised with any solver, which washes out small
perturbations while keeping the class. Here:

* :func:`fgsm`: the fast gradient sign attack (Goodfellow et al. 2015) on a differentiable
  classifier, ``x + epsilon * sign(grad_x CE)``, clipped to the data range;
* purification itself is :func:`diffax.inverse.sdedit` (noise to ``t0``, denoise with any
  solver);
* :func:`run`: the digits example — a classifier's accuracy on clean, FGSM-attacked and
  Gaussian-noised test digits, before and after purification.

The attack here is not adaptive (it does not differentiate through the purifier), the usual
first check in DiffPure's tables; an adaptive attack (BPDA / full gradients) is stronger.

Example:
  >>> import jax, jax.numpy as jnp
  >>> logits_fn = lambda x: jnp.stack([x.sum((1, 2, 3)), -x.sum((1, 2, 3))], -1)
  >>> x_adv = fgsm(logits_fn, jnp.zeros((1, 2, 2, 1)), jnp.array([0]), epsilon=0.25)
  >>> x_adv[0, ..., 0].tolist()  # pushed against class 0
  [[-0.25, -0.25], [-0.25, -0.25]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from diffax.typing import Array, PRNGKey

__all__ = ["fgsm", "gaussian_perturbation", "run"]


def fgsm(logits_fn: Callable[[Array], Array], x: Array, labels: Array, *, epsilon: float,
         value_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """Fast gradient sign method: ``clip(x + epsilon * sign(grad_x CE(logits_fn(x), labels)))``.

    Args:
      logits_fn: ``logits_fn(x) -> [B, K]``, differentiable.
      x: inputs ``[B, ...]``.
      labels: ``[B]`` true labels.
      epsilon: the L-infinity budget (in the units of ``x``).
      value_range: the data range the result is clipped to.
    """
    if not float(epsilon) >= 0:
        raise ValueError(f"fgsm: `epsilon` must be >= 0, got {epsilon!r}.")

    def total_ce(x):
        log_p = jax.nn.log_softmax(logits_fn(x), axis=-1)
        return -jnp.sum(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    grad = jax.grad(total_ce)(x)
    return jnp.clip(x + epsilon * jnp.sign(grad), *value_range)


def gaussian_perturbation(key: PRNGKey, x: Array, *, std: float,
                          value_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """``clip(x + std * N(0, I))`` to ``value_range``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> gaussian_perturbation(jax.random.key(0), jnp.zeros((2, 3)), std=0.0).tolist()
      [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return jnp.clip(x + std * jax.random.normal(key, x.shape, x.dtype), *value_range)


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
    from diffax.tasks import _pipeline as pl
    from diffax.tasks import classifier as clf
    from diffax.train import build, options

    opts = options.parse_task_config(config)
    cfg = opts.purify
    process = build.build_process(opts.process)
    solver, num_steps = build.build_solver(opts.sample)
    train, val = pl.validation_split(pl.digits("train", data_dir=opts.data.data_dir),
                                     opts.data.num_validation, seed=opts.data.validation_seed)
    test = pl.digits("test", data_dir=opts.data.data_dir)
    key_clf, key_den, key_pert, key_pur = jax.random.split(jax.random.key(opts.seed), 4)
    clf_fn, clf_result = clf.train(opts, train, key_clf, process)
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
