"""The ``diffax`` command: ``train | sample | likelihood | eval | demo | task``.

The only place in diffax that parses command-line flags (absl flags; the experiment config is
an ml_collections config file, ``--config=configs/X.py[:variant]``, whose keys are overridden
with ``--config.section.key=value``). Each command parses its flags and dispatches: the config
is checked once (:func:`diffax.train.options.parse_config`) and built once
(:func:`diffax.train.build.build_experiment`); training is :func:`diffax.train.loop.
train_and_evaluate`, evaluation :mod:`diffax.train.evaluate`.

::

    diffax train --config configs/toy2d_flow.py --workdir /tmp/toy [--config.train.num_steps=2000]
    diffax sample --workdir /tmp/toy [--config.sample.solver=heun --config.sample.num_steps=20]
    diffax likelihood --workdir /tmp/toy
    diffax eval --workdir /tmp/toy
    diffax demo --workdir /tmp/diffax-demo
    diffax task configs/tasks/digits_sr.py --workdir /tmp/sr

``sample``, ``likelihood`` and ``eval`` read the config stored with the latest checkpoint and
accept overrides of its ``sample.*``, ``eval.*``, ``seed`` and ``data.data_dir`` keys; what
they write: :mod:`diffax.train.evaluate`. Usage errors (a missing flag, an unknown config key,
a bad value, a dataset that is not prepared) print one line naming the key or argument and
exit with code 2 before anything is computed or written; faults found while running (a
corrupt checkpoint, a full disk, a NaN loss, a dead process) print one line, exit code 1.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from diffax.cli_help import TRAIN_FLAGS, command_help, usage
from diffax.train.demo import demo_config
from diffax.train.malloc import configure_malloc
from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS, ConfigError

__all__ = ["main", "entry_point", "run_command", "demo_config", "EVAL_DEFAULTS", "SAMPLE_DEFAULTS",
           "UsageError"]

# Keys `diffax sample | likelihood | eval` may override in a stored config.
_POST_TRAINING_KEYS = ("seed", "sample.", "eval.", "data.data_dir")


class UsageError(Exception):
    """A command-line error: printed as one line, exit code 2."""


def _one_line(error: BaseException | str) -> str:
    text = str(error)
    if isinstance(error, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1].encode().decode("unicode_escape")
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ============================================================================================
# Flags and configs.


def _override_keys(argv: Sequence[str]) -> list[str]:
    keys = []
    for arg in argv:
        m = re.match(r"^--?(no)?config\.([^=]+)", arg)
        if m:
            keys.append(m.group(2))
    return keys


def _check_override_key(config: Any, key: str) -> None:
    """Raises UsageError unless ``key`` (``a.b.c``) names an existing field of ``config``."""
    node, path = config, []
    for part in key.split("."):
        fields = list(node.keys()) if hasattr(node, "keys") else []
        if part not in fields:
            where = ".".join(path) or "the config"
            close = difflib.get_close_matches(part, [str(f) for f in fields], n=1)
            hint = f"; did you mean `{'.'.join([*path, close[0]])}`?" if close else (
                f"; known keys of `{where}`: {', '.join(sorted(map(str, fields)))}"
                if fields else "")
            raise UsageError(f"unknown config key `{key}` (--config.{key}){hint}")
        node = node[part]
        path.append(part)


def _parse_flags(command: str, argv: Sequence[str], define: Callable[[Any], None], *,
                 config_file: bool = False, config_dict: Any = None,
                 allowed_overrides: tuple[str, ...] | None = None) -> Any:
    """Parses ``argv`` with a fresh ``FlagValues``: ``define(fv)`` adds the command's flags."""
    from absl import flags
    from ml_collections import config_flags

    argv = list(argv)
    overrides = _override_keys(argv)
    if allowed_overrides is not None:
        for key in overrides:
            if not any(key == a or key.startswith(a) for a in allowed_overrides):
                allowed = ", ".join(f"--config.{a}*" if a.endswith(".") else f"--config.{a}"
                                    for a in allowed_overrides)
                raise UsageError(f"--config.{key} cannot change after training: `diffax "
                                 f"{command}` uses the config stored with the checkpoint and "
                                 f"accepts only {allowed}")
    if config_dict is not None and any(re.match(r"^--?config(=|$)", a) for a in argv):
        raise UsageError(f"--config: `diffax {command}` reads the config stored in "
                         "WORKDIR/checkpoints; override keys with --config.KEY=VALUE")
    if config_file and overrides and not any(re.match(r"^--?config(=|$)", a) for a in argv):
        raise UsageError(f"--config.{overrides[0]} given without --config=FILE")
    if config_file:
        for i, arg in enumerate(argv):
            m = re.match(r"^--?config(=(.*))?$", arg)
            if m:
                value = m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else "")
                path = value.split(":", 1)[0]
                if not path or not os.path.isfile(path):
                    raise UsageError(f"--config: no such config file {path!r}")

    def flag_values(with_overrides: bool):
        fv = flags.FlagValues()
        args = argv if with_overrides else [a for a in argv
                                            if not re.match(r"^--?(no)?config\.", a)]
        sys_argv = [f"diffax {command}", *args]
        if config_file:
            config_flags.DEFINE_config_file("config", None, "The experiment config: a Python "
                                            "file with get_config(), optionally `FILE:variant`.",
                                            flag_values=fv, lock_config=True, sys_argv=sys_argv)
        elif config_dict is not None:
            config_flags.DEFINE_config_dict("config", config_dict, "The experiment config.",
                                            flag_values=fv, lock_config=True, sys_argv=sys_argv)
        define(fv)
        return fv, sys_argv

    try:
        if overrides and (config_file or config_dict is not None):
            # First pass without overrides: the config, to name unknown keys clearly.
            fv, sys_argv = flag_values(False)
            fv(sys_argv)
            for key in overrides:
                _check_override_key(fv.config, key)
        fv, sys_argv = flag_values(True)
        rest = fv(sys_argv)
    except UsageError:
        raise
    except flags.Error as e:
        raise UsageError(_one_line(e)) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, SyntaxError) as e:
        raise UsageError(_one_line(e)) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument {rest[1]!r} (flags are --name=value)")
    return fv


def _define_workdir(fv: Any, *, step: bool = True) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, samples, metrics.",
                        flag_values=fv)
    if step:
        flags.DEFINE_integer("step", None, "Checkpoint step to use (default: the latest).",
                             flag_values=fv)


def _require_workdir(fv: Any) -> str:
    if not fv.workdir:
        raise UsageError("--workdir is required")
    return os.path.abspath(os.path.expanduser(fv.workdir))


def _validate(config: Any, *, training: bool, distributed: dict[str, Any] | None = None) -> Any:
    """Checks the config once, then builds the experiment once (no compute).

    Raises:
      UsageError: naming the config key.
    """
    from diffax import data
    from diffax.train import build, options, parallel

    for key in ("seed", "data", "train"):
        if config.get(key) is None:
            raise UsageError(f"config key `{key}` is required")
    try:
        num_devices = 1
        if training:
            opts = options.train_options(config)  # before jax starts: the heartbeat timeout
            parallel.initialize_distributed(heartbeat_timeout=opts.heartbeat_timeout,
                                            **(distributed or {}))
            import jax

            num_devices = jax.device_count()
        parsed = options.parse_config(config, num_devices=num_devices)
        # A TFDS dataset that is not prepared fails here, before anything is written.
        data.data_source(parsed.data.name, split=parsed.data.kwargs.get("split", "train"),
                         **parsed.data.source)
        return build.build_experiment(parsed)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise UsageError(_one_line(e)) from None


def _stored_config(workdir: str, step: int | None) -> tuple[Any, int]:
    """The config stored with checkpoint ``step`` (default latest), with sample/eval defaults."""
    import ml_collections

    from diffax.train import evaluate

    try:
        raw, step = evaluate.stored_config(workdir, step)
    except (FileNotFoundError, LookupError) as e:
        raise UsageError(_one_line(e)) from None
    raw["data"].setdefault("data_dir", "")  # a placeholder, so that it can be overridden
    return ml_collections.ConfigDict(raw), step


def _clean_config(config: Any) -> Any:
    """``data.data_dir=''`` (a placeholder so it can be overridden) means the default."""
    if config.get("data") is not None and config.data.get("data_dir", None) == "":
        config.unlock()
        del config.data["data_dir"]
        config.lock()
    return config


def _load(command: str, argv: Sequence[str]) -> tuple[Any, str]:
    """Parses ``--workdir``/``--step``/overrides, validates, restores the checkpoint."""
    from absl import flags

    from diffax.train import evaluate

    # --workdir and --step first (the stored config defines which --config.* flags exist).
    pre = flags.FlagValues()
    _define_workdir(pre)
    try:
        pre([f"diffax {command}", *[a for a in argv if not re.match(r"^--?(no)?config", a)]])
    except flags.Error as e:
        raise UsageError(_one_line(e)) from None
    workdir = _require_workdir(pre)
    config, step = _stored_config(workdir, pre.step)
    fv = _parse_flags(command, argv, _define_workdir, config_dict=config,
                      allowed_overrides=_POST_TRAINING_KEYS)
    exp = _validate(_clean_config(fv.config), training=False)
    _say(f"diffax {command}: restoring {workdir}/checkpoints/{step}")
    return evaluate.restore(workdir, exp, step=step), workdir


# ============================================================================================
# Commands.


def _define_train_flags(fv: Any) -> None:
    from absl import flags

    _define_workdir(fv, step=False)
    for name, (kind, default, text) in TRAIN_FLAGS.items():
        getattr(flags, f"DEFINE_{kind}")(name, default, text, flag_values=fv)


def _distributed_options(fv: Any) -> dict[str, Any]:
    """The keyword arguments for ``parallel.initialize_distributed`` from the train flags."""
    explicit = {k: fv[k].value for k in ("coordinator_address", "num_processes", "process_id")}
    given = [k for k, v in explicit.items() if v is not None]
    if fv.distributed_timeout < 1:
        raise UsageError(f"--distributed_timeout must be >= 1 second, got "
                         f"{fv.distributed_timeout}")
    if not given:
        return {"force": True, "initialization_timeout": fv.distributed_timeout} \
            if fv.distributed else {}
    missing = [k for k in explicit if explicit[k] is None]
    if missing:
        raise UsageError(f"--{', --'.join(given)} also need{'s' if len(given) == 1 else ''} "
                         f"--{' and --'.join(missing)}")
    if not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", explicit["coordinator_address"]):
        raise UsageError(f"--coordinator_address must be host:port, got "
                         f"{explicit['coordinator_address']!r}")
    if explicit["num_processes"] < 1:
        raise UsageError(f"--num_processes must be >= 1, got {explicit['num_processes']}")
    if not 0 <= explicit["process_id"] < explicit["num_processes"]:
        raise UsageError(f"--process_id must be in [0, {explicit['num_processes']}) "
                         f"(--num_processes), got {explicit['process_id']}")
    return dict(explicit, initialization_timeout=fv.distributed_timeout)


def _cmd_train(argv: Sequence[str]) -> int:
    fv = _parse_flags("train", argv, _define_train_flags, config_file=True)
    workdir = _require_workdir(fv)
    if fv.config is None:
        raise UsageError("--config is required (e.g. --config=configs/toy2d_flow.py)")
    config = fv.config
    if fv.restore_fallback:
        config.unlock()
        config.train.restore_fallback = True
        config.lock()
    exp = _validate(config, training=True, distributed=_distributed_options(fv))
    from diffax.train import loop

    _say(f"diffax train: {fv['config'].config_filename} -> {workdir}")
    result = loop.train_and_evaluate(config, workdir, experiment=exp)
    _say(f"diffax train: step {result.step}; checkpoints in {workdir}/checkpoints")
    return 0


def _cmd_sample(argv: Sequence[str]) -> int:
    if any(re.match(r"^--?pretrained(=|$)", a) for a in argv):
        return _cmd_sample_pretrained(argv)
    from diffax.train import evaluate

    trained, workdir = _load("sample", argv)
    out = evaluate.sample(trained, workdir)
    _say(f"diffax sample: {out['num_samples']} samples, NFE {out['nfe']} -> {out['npz']}"
         + (f", {out['png']}" if out["png"] else ""))
    return 0


def _cmd_sample_pretrained(argv: Sequence[str]) -> int:
    """``diffax sample --pretrained DIR --workdir OUT``: a local diffusers UNet, no training."""
    import ml_collections
    from absl import flags

    from diffax.train import build, evaluate

    defaults = ml_collections.ConfigDict({
        "seed": 0, "eval": {"batch_size": 16},
        "sample": dict(SAMPLE_DEFAULTS, solver="ddim", num_steps=50, num_samples=16)})

    def define(fv):
        _define_workdir(fv, step=False)
        flags.DEFINE_string("pretrained", None, "A local diffusers folder: a UNet2DModel "
                            "model folder, or a pipeline folder holding unet/.", flag_values=fv)

    fv = _parse_flags("sample", argv, define, config_dict=defaults,
                      allowed_overrides=("seed", "sample.", "eval.batch_size"))
    workdir = _require_workdir(fv)
    cfg = dict(fv.config.sample)
    explicit = set(_override_keys(argv))
    try:
        solver, num_steps = build.build_solver(cfg)
        schedule = build.build_schedule(cfg)
        out = evaluate.sample_pretrained(
            fv.pretrained or "", workdir, seed=int(fv.config.seed), num_steps=num_steps,
            num_samples=int(cfg["num_samples"]), batch_size=int(fv.config.eval.batch_size),
            solver=solver if "sample.solver" in explicit else None,
            schedule=schedule if "sample.schedule" in explicit else None)
    except ValueError as e:
        raise UsageError(_one_line(e)) from None
    _say(f"diffax sample: {out['num_samples']} samples of {out['folder']} ({out['model']}; "
         f"{out['scheduler']} with {out['scheduler_config']}), NFE {out['nfe']} -> "
         f"{out['npz']}")
    return 0


def _cmd_likelihood(argv: Sequence[str]) -> int:
    from diffax.train import evaluate

    trained, workdir = _load("likelihood", argv)
    out = evaluate.likelihood(trained, workdir)
    _say(f"diffax likelihood: NLL {out['value']:.4f} ± {out['stderr']:.4f} {out['unit']} on "
         f"{out['num_examples']} {out['split']} examples (mean NFE {out['nfe']:.0f}) -> "
         f"{out['path']}")
    if "bits_per_dim" in out:  # CLD: the paper's bound on -log p(x0), in both units
        _say(f"diffax likelihood: CLD bound, {out['nats']['value']:.4f} nats/example = "
             f"{out['bits_per_dim']['value']:.4f} bits/dim (an upper bound on -log p(x0))")
    return 0


def _cmd_eval(argv: Sequence[str]) -> int:
    from diffax.train import evaluate

    trained, workdir = _load("eval", argv)
    out = evaluate.evaluate(trained, workdir)
    _say(evaluate.summary_table(out))
    _say(f"diffax eval: -> {out['path']}")
    return 0


def _cmd_demo(argv: Sequence[str]) -> int:
    has_file = any(re.match(r"^--?config(=|$)", a) for a in argv)
    define = lambda fv: _define_workdir(fv, step=False)  # noqa: E731
    if has_file:
        fv = _parse_flags("demo", argv, define, config_file=True)
    else:
        fv = _parse_flags("demo", argv, define, config_dict=demo_config())
    workdir = _require_workdir(fv)
    config = fv.config
    exp = _validate(config, training=True)
    from diffax.models import count_params
    from diffax.train import evaluate, loop, parallel

    o = exp.options
    _say(f"diffax demo: {o.data.name}, {o.process.name} process, "
         f"{type(exp.model).__name__} with {count_params(exp.model):,} parameters, "
         f"{o.train.num_steps} steps of batch {o.train.batch_size} -> {workdir}")
    t0 = time.perf_counter()
    result = loop.train_and_evaluate(config, workdir, experiment=exp)
    t_train = time.perf_counter() - t0
    out = evaluate.run_all(evaluate.Trained(exp=exp, state=result.state, step=result.step,
                                            mesh=parallel.make_mesh()), workdir)
    seconds = {"training": t_train, **out["seconds"]}
    _say("\n" + evaluate.summary_table(out["metrics"]) + "\n")
    _say(f"diffax demo: done in {sum(seconds.values()) / 60:.1f} min ("
         + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()) + ").")
    for name, paths in out["files"].items():
        _say(f"  {name + ':':<13}{paths[0]}" + "".join(f"\n{'':15}{p}" for p in paths[1:]))
    _say(f"  checkpoints: {os.path.join(workdir, 'checkpoints')}")
    _say(f"  TensorBoard: tensorboard --logdir {workdir}")
    return 0


def _cmd_task(argv: Sequence[str]) -> int:
    import json

    from diffax import tasks

    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        raise UsageError("the task's config file is required: diffax task "
                         "configs/tasks/NAME.py[:variant] --workdir DIR")
    fv = _parse_flags("task", [f"--config={argv[0]}", *argv[1:]],
                      lambda fv: _define_workdir(fv, step=False), config_file=True)
    workdir = _require_workdir(fv)
    from diffax.train import options

    opts = options.parse_task_config(fv.config)  # checked once, before any compute
    json.dump(tasks.run(opts, workdir), sys.stdout, indent=2, default=float)
    _say("")
    return 0


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "train": _cmd_train, "sample": _cmd_sample, "likelihood": _cmd_likelihood,
    "eval": _cmd_eval, "demo": _cmd_demo, "task": _cmd_task}


def run_command(name: str, argv: Sequence[str]) -> int:
    """Runs command ``name`` with its flags ``argv``; usage errors raise :class:`UsageError`."""
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    try:
        return _COMMANDS[name](argv)
    except ConfigError as e:
        raise UsageError(_one_line(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``diffax <command> [flags]``; returns the exit code (2 for usage errors).

    Example:
      >>> main(["--help"])  # doctest: +ELLIPSIS
      usage: diffax <command> [flags]
      ...
      0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _say(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in _COMMANDS:
        close = difflib.get_close_matches(name, list(_COMMANDS), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        sys.stderr.write(f"diffax: error: unknown command {name!r}{hint} (commands: "
                         f"{', '.join(_COMMANDS)})\n")
        return 2
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in rest):
        _say(command_help(name))
        return 0
    try:
        return run_command(name, rest)
    except (UsageError, ConfigError) as e:
        sys.stderr.write(f"diffax {name}: error: {_one_line(e)}\n")
        return 2
    except Exception as e:
        from diffax.train.checkpoint import CheckpointError
        from diffax.train.loop import CollectiveError, TrainingError
        from diffax.train.parallel import DistributedInitError

        if not isinstance(e, CheckpointError | TrainingError | DistributedInitError):
            raise
        # A fault diffax detected and explained: one line, exit code 1.
        sys.stderr.write(f"diffax {name}: error: {_one_line(e)}\n")
        if isinstance(e, CollectiveError | DistributedInitError):
            # jax's shutdown would wait for the dead process at a barrier: leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1


def entry_point() -> None:
    """The ``diffax`` console script and ``python -m diffax.cli``: exits with :func:`main`'s code.

    First, while this process has no jax backend (and so none of XLA:CPU's threads) yet, it
    sets glibc's malloc for XLA:CPU (:func:`diffax.train.malloc.configure_malloc`; off with
    ``DIFFAX_MALLOC=default``, or off by itself on an accelerator). :func:`main` called from
    Python leaves the allocator alone: mallopt in a process whose backend is already running
    (a notebook, a test worker) is not what the setting was measured for. A bad
    ``DIFFAX_MALLOC`` is a one-line error with exit code 2.

    Example (a shell)::

        DIFFAX_MALLOC=default diffax train --config configs/toy2d_flow.py --workdir /tmp/toy
    """
    try:
        configure_malloc()
    except ConfigError as e:
        sys.stderr.write(f"diffax: error: {_one_line(e)}\n")
        sys.exit(2)
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
