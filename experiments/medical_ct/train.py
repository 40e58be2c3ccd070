"""Resumable, time-boxed training of the phantom denoiser of ``configs/tasks/phantom_ct.py``.

The task (``python -m diffax.tasks configs/tasks/phantom_ct.py``) trains in one go; on a shared
queue whose jobs last at most ~20 minutes this script trains the same model (``config.model``,
the same eps-prediction VP loss, optimizer, EMA and validation phantoms held out of the train
split as the task) in chunks, saving the whole train state (step, parameters, Adam state, EMA)
to ``WORKDIR/state.msgpack`` and the EMA parameters to ``WORKDIR/denoiser.msgpack`` (the file
the task writes, read back by ``--config.medical.denoiser_from``) after every chunk; a second
call with the same ``WORKDIR`` resumes at the saved step. ``--seconds`` stops before a chunk
would overrun the budget. ``--init_from`` starts a new run from another run's
``denoiser.msgpack`` (fresh optimizer, EMA starting at those parameters) instead of a fresh
initialisation. ``--eval`` prints the held-out denoising MSE of ``x0`` at fixed times on test
phantoms, next to the exact denoiser of the Gaussian fitted to the train split
(:func:`diffax.tasks.medical.gaussian_prior_denoiser`).

  python experiments/medical_ct/train.py --workdir /tmp/ct_prior --steps 600 --seconds 1080
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization


def _write(path: str, data: bytes) -> None:
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", default="configs/tasks/phantom_ct.py")
    p.add_argument("--variant", default="")
    p.add_argument("--steps", type=int, required=True, help="total optimizer steps of the run")
    p.add_argument("--seconds", type=float, default=1e9, help="wall-clock budget of this call")
    p.add_argument("--chunk", type=int, default=25, help="steps per jitted call / save")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--warmup_steps", type=int, default=None)
    p.add_argument("--init_from", default=None)
    p.add_argument("--eval", action="store_true", help="only the held-out denoising MSE")
    p.add_argument("--num_eval", type=int, default=256)
    args = p.parse_args()
    if not args.eval and not 1 <= args.chunk <= args.steps:
        p.error(f"--chunk ({args.chunk}) must be between 1 and --steps ({args.steps}): the run "
                f"trains whole chunks only, so nothing would be trained.")
    start = time.time()

    from diffax import models
    from diffax.tasks import denoising_loss
    from diffax.tasks.__main__ import load_config
    from diffax.tasks.examples import validation_split
    from diffax.tasks.medical import gaussian_prior_denoiser, phantoms
    from diffax.train import build, options
    from diffax.train.state import TrainState
    from diffax.train.step import make_optimizer, make_train_step

    opts = options.parse_task_config(
        load_config(f"{args.config}:{args.variant}" if args.variant else args.config))
    med, tr = opts.medical, opts.train
    process = build.build_process(opts.process)
    model = models.UNet.from_variant(opts.model.variant, **opts.model.model_kwargs())
    apply_fn = models.apply_fn(model)
    loss = denoising_loss(process)
    key_train, _ = jax.random.split(jax.random.key(opts.seed))
    key_init, key_fit = jax.random.split(key_train)
    template = model.init_params(key_init)
    os.makedirs(args.workdir, exist_ok=True)
    train = phantoms("train", size=med.size, data_dir=opts.data.data_dir)
    train, _ = validation_split(train, med.num_validation, seed=opts.data.validation_seed)

    if args.eval:
        with open(os.path.join(args.workdir, "denoiser.msgpack"), "rb") as f:
            params = serialization.from_bytes(template, f.read())
        x = jnp.asarray(phantoms("test", size=med.size, data_dir=opts.data.data_dir,
                                 max_examples=args.num_eval)["x"])
        dens = {"unet": jax.jit(loss.denoiser(apply_fn, params)),
                "gaussian": jax.jit(gaussian_prior_denoiser(train["x"], process))}
        out = {}
        for t in (0.02, 0.05, 0.1, 0.2, 0.4, 0.7):
            tt = jnp.full((x.shape[0],), t)
            a = jnp.reshape(process.alpha(tt), (-1, 1, 1, 1))
            s = jnp.reshape(process.sigma(tt), (-1, 1, 1, 1))
            xt = a * x + s * jax.random.normal(jax.random.key(7), x.shape)
            out[str(t)] = {k: float(jnp.mean(jnp.square(D(xt, tt) - x))) for k, D in dens.items()}
            print(f"t={t}: x0 MSE unet {out[str(t)]['unet']:.5f} "
                  f"gaussian {out[str(t)]['gaussian']:.5f}", flush=True)
        with open(os.path.join(args.workdir, "heldout_mse.json"), "w") as f:
            json.dump({"num_test": int(x.shape[0]), "mse_x0": out}, f, indent=1)
        return

    lr = tr.learning_rate if args.learning_rate is None else args.learning_rate
    warmup = tr.warmup_steps if args.warmup_steps is None else args.warmup_steps
    batch_size = tr.batch_size if args.batch_size is None else args.batch_size
    optimizer, _ = make_optimizer(learning_rate=lr, warmup_steps=warmup)
    step_fn = make_train_step(loss.bind(apply_fn), optimizer, ema_warmup=True)
    key_state, key_batch = jax.random.split(key_fit)
    init = template
    if args.init_from:
        with open(args.init_from, "rb") as f:
            init = serialization.from_bytes(template, f.read())
    state = TrainState.create(params=init, optimizer=optimizer, key=key_state,
                              ema_decays=(tr.ema_decay,))
    saved = os.path.join(args.workdir, "state.msgpack")
    fields = lambda s: {"step": s.step, "params": s.params, "opt_state": s.opt_state,
                        "ema": s.ema_params}
    if os.path.exists(saved):
        with open(saved, "rb") as f:
            restored = serialization.from_bytes(fields(state), f.read())
        state = state.replace(step=jnp.asarray(restored["step"], jnp.int32),
                              params=restored["params"], opt_state=restored["opt_state"],
                              ema_params=tuple(restored["ema"]))
        print(f"resumed at step {int(state.step)}", flush=True)
    data = jnp.asarray(train["x"])
    n = data.shape[0]

    def body(state, _):
        idx = jax.random.randint(jax.random.fold_in(key_batch, state.step), (batch_size,), 0, n)
        state, metrics = step_fn(state, {"x": data[idx]})
        return state, metrics["loss"]

    run = jax.jit(lambda state: jax.lax.scan(body, state, None, length=args.chunk))
    log = os.path.join(args.workdir, "train_log.jsonl")
    last = None
    if int(state.step) >= args.steps:
        print(f"nothing to do: the run in {args.workdir} is at step {int(state.step)}, "
              f"--steps is {args.steps}", flush=True)
        return
    if int(state.step) + args.chunk > args.steps:
        rest = args.steps - int(state.step)
        raise SystemExit(f"error: the run is at step {int(state.step)}, {rest} steps short of "
                         f"--steps {args.steps}, less than one --chunk ({args.chunk}): nothing "
                         f"would be trained; pass --chunk {rest} or less.")
    while int(state.step) + args.chunk <= args.steps:
        if last is not None and time.time() - start + 1.3 * last > args.seconds:
            print(f"stopping at step {int(state.step)}: budget", flush=True)
            break
        t0 = time.time()
        state, losses = run(state)
        losses = np.asarray(losses)
        last = time.time() - t0
        _write(saved, serialization.to_bytes(fields(state)))
        _write(os.path.join(args.workdir, "denoiser.msgpack"),
               serialization.to_bytes(state.sampling_params(use_ema=True)))
        row = {"step": int(state.step), "loss": float(losses.mean()), "seconds": round(last, 1),
               "lr": lr, "warmup": warmup, "batch_size": batch_size,
               "init_from": args.init_from}
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    else:
        if int(state.step) < args.steps:
            print(f"stopped at step {int(state.step)}: the remaining "
                  f"{args.steps - int(state.step)} steps are less than one --chunk "
                  f"({args.chunk})", flush=True)


if __name__ == "__main__":
    main()
