"""The help texts of the ``diffax`` command (:mod:`diffax.cli`): per command a summary, a
description (its usage line first) and its flags."""

from __future__ import annotations

from diffax.train.options import EVAL_DEFAULTS

__all__ = ["HELP", "TRAIN_FLAGS", "WORKDIR_HELP", "POST_HELP", "eval_keys_help", "usage",
           "command_help"]

HELP: dict[str, tuple[str, str, str]] = {}
"""command -> (summary, description, flags)."""

WORKDIR_HELP = ("  --workdir DIR            the run's directory (required)\n"
                "  --step N                 the checkpoint to use (default: the latest)\n")
POST_HELP = ("  --config.seed=S          another seed for sampling and probes\n"
             "  --config.data.data_dir=DIR  where the dataset is prepared, if it moved\n")


TRAIN_FLAGS: dict[str, tuple[str, object, str]] = {
    "distributed": ("bool", False, "Join a multi-process job: call "
                    "jax.distributed.initialize(), which finds the cluster by itself on Cloud "
                    "TPU, Slurm and Open MPI (already done when such a cluster is in the "
                    "environment, except on Cloud TPU VMs)."),
    "coordinator_address": ("string", None, "host:port of process 0's coordination "
                            "service, for clusters jax does not detect (needs --num_processes "
                            "and --process_id)."),
    "num_processes": ("integer", None, "Processes in the job (with --coordinator_address)."),
    "process_id": ("integer", None, "This process's index in [0, num_processes) "
                   "(with --coordinator_address)."),
    "distributed_timeout": ("integer", 300, "Seconds to wait for every process to join before "
                            "failing."),
    "restore_fallback": ("bool", False, "If the newest checkpoint is corrupt or was written by "
                         "an incompatible config, move it to checkpoints.corrupt/ and resume "
                         "from the newest good one (sets config.train.restore_fallback)."),
}
"""``diffax train``'s flags besides ``--config`` and ``--workdir``: name -> (absl kind,
default, help)."""


def eval_keys_help() -> str:
    """The ``--config.eval.*`` flags with their defaults."""
    return "".join(f"  --config.eval.{k}={v!r}\n".replace("'", "") for k, v in
                   EVAL_DEFAULTS.items()) + "     (defaults; the run's config may set others)\n"


HELP["train"] = (
    "train a model from a config (resumes from WORKDIR/checkpoints)",
    "diffax train --config configs/X.py[:variant] --workdir DIR [--config.KEY=VALUE ...]\n\n"
    "Trains with diffax.train.loop.train_and_evaluate and writes checkpoints, TensorBoard "
    "events and sample grids under DIR; run it again to resume. Every key of the config "
    "file can be overridden; keys and their defaults are documented in "
    "diffax/train/options.py.",
    "  --config FILE[:variant]  the experiment config, e.g. configs/toy2d_vp.py:tiny "
    "(required)\n"
    "  --workdir DIR            where everything is written (required)\n"
    "  --restore_fallback       resume from the newest good checkpoint if the newest is "
    "corrupt\n"
    "  --config.KEY=VALUE       e.g. --config.train.num_steps=2000 --config.seed=1 "
    "--config.data.name=toy2d/two_moons\n")
HELP["sample"] = (
    "draw samples from the latest checkpoint",
    "diffax sample --workdir DIR [--step N] [--config.sample.solver=heun "
    "--config.sample.num_steps=18 --config.sample.num_samples=64 ...]\n\n"
    "Writes DIR/samples/<tag>.npz (array `x` [N, ...] in the data's own range and layout: "
    "uint8 images in 0..255, or float vectors; `range`; `nfe`; `step`) and a PNG: an image "
    "grid, or for 2-D data a scatter plot over the test data's density. Uses the config "
    "stored with the checkpoint.",
    WORKDIR_HELP
    + "  --pretrained DIR             sample a local diffusers UNet2DModel folder (or a pipeline "
    "folder with unet/ and\n                               scheduler/) instead of a checkpoint: "
    "its scheduler_config.json gives the process,\n                               grid and "
    "solver (default: DDIMScheduler); writes samples/pretrained_*.npz\n"
    + "  --config.sample.solver=S     euler | heun | ddim | ddpm | euler_maruyama | "
    "reverse_diffusion | pc | edm_stochastic | adaptive\n"
    "                               | dpm_solver | dpm_solver_pp | unipc | deis | ipndm | lms\n"
    "                               (discrete processes: ancestral | tau_leaping)\n"
    "  --config.sample.num_steps=N  solver steps\n"
    "  --config.sample.schedule=S   default | time_uniform | quadratic | log_snr | karras "
    "(rho=X) | shift (shift=X),\n"
    "                               or a grid \"[t_max, ..., t_min]\" of num_steps + 1 times\n"
    "  --config.sample.num_samples=N\n"
    "  --config.sample.use_ema=BOOL, denoise_final=BOOL, order=K (0: the solver's own), "
    "method=M,\n    variant=V, corrector=BOOL, "
    "sde=BOOL, lower_order_final=BOOL, eta=X, snr=X, churn=X, rtol=X, atol=X\n"
    "  --config.eval.batch_size=N   samples per device call\n" + POST_HELP)
HELP["likelihood"] = (
    "held-out NLL through the probability-flow ODE",
    "diffax likelihood --workdir DIR [--step N] [--config.eval.likelihood_examples=1000 "
    "--config.eval.divergence=exact|hutchinson --config.eval.rtol=1e-5 ...]\n\n"
    "Reports bits/dim (8-bit images, uniformly dequantized) or nats per example (vectors) "
    "with its standard error and the mean NFE, and writes DIR/eval/likelihood.json.",
    WORKDIR_HELP + eval_keys_help() + POST_HELP)
HELP["eval"] = (
    "sample quality, NLL and NFE as JSON",
    "diffax eval --workdir DIR [--step N] [--config.eval.num_samples=1000 ...]\n\n"
    "Scores eval.num_samples samples against the held-out split: Fréchet distance in a "
    "whitened PCA feature space fitted on the training split, sliced Wasserstein distance, "
    "nearest-training-example distance; adds the NLL (eval.likelihood) and the NFE; writes "
    "DIR/eval/metrics.json. `reference` holds the same metrics for training examples (the "
    "floor) and for the untrained network (the baseline).",
    WORKDIR_HELP + "  --config.sample.*            the sampler, as for `diffax sample`\n"
    + eval_keys_help() + POST_HELP)
HELP["demo"] = (
    "the main job: train on 8x8 digits, sample, likelihood, metrics",
    "diffax demo --workdir DIR [--config configs/X.py] [--config.KEY=VALUE ...]\n\n"
    "Trains the default config (configs/digits_demo.py: EDM on scikit-learn's 8x8 digits, "
    "2000 steps; about 5-6 minutes on 2 CPU cores), then runs what `sample`, `likelihood` "
    "and `eval` run, and prints where everything was written with a table of metrics.",
    "  --workdir DIR            where everything is written (required)\n"
    "  --config FILE[:variant]  another config (default: the built-in digits demo)\n"
    "  --config.KEY=VALUE       e.g. --config.train.num_steps=4000\n")
HELP["task"] = (
    "run a downstream task's digits example (configs/tasks/)",
    "diffax task configs/tasks/NAME.py[:variant] --workdir DIR [--config.KEY=VALUE ...]\n\n"
    "Runs the `run(config, workdir)` of the diffax.tasks module the config's `task` names "
    "(classifier guidance, super-resolution, purification, anomaly detection, segmentation, "
    "inverse problems), writes figures and metrics.json under DIR and prints the metrics as "
    "JSON. `python -m diffax.tasks` is the same command.",
    "  CONFIG[:variant]         the task config, e.g. configs/tasks/digits_sr.py:tiny "
    "(required)\n"
    "  --workdir DIR            where everything is written (required)\n"
    "  --config.KEY=VALUE       e.g. --config.data.data_dir=/tmp/tfds\n")


def usage() -> str:
    """``diffax --help``: the commands and their summaries."""
    width = max(len(n) for n in HELP)
    lines = ["usage: diffax <command> [flags]", "", "Diffusion models in JAX: train, sample, "
             "score.", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (summary, _, _) in HELP.items()]
    lines += ["", "`diffax <command> --help` describes a command's flags. Errors in flags or "
              "config keys exit with code 2 before anything is computed or written."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    """``diffax NAME --help``: usage line, summary, description and flags."""
    import textwrap

    summary, description, flags_help = HELP[name]
    usage_line, _, details = description.partition("\n\n")
    body = textwrap.fill(details, 92)
    return f"usage: {usage_line}\n\n{summary}.\n\n{body}\n\nflags:\n{flags_help}"
