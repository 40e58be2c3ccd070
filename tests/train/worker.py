"""A minimal checkpointed training run, used in-process and as a subprocess by the tests.

As a subprocess (``python -m tests.train.worker --json '{...}'``) it can join a
``jax.distributed`` cluster on localhost, kill itself with SIGKILL right after starting a
save (a crash during an asynchronous save), and write its final parameters to an ``.npz``.
"""

import argparse
import json
import os
import signal


def run(*, total_steps, batch_size=32, workdir=None, save_every=3, kill_at=None, seed=0,
        loss="eps_vp"):
    """Trains the toy network for ``total_steps`` steps on a mesh of every device.

    Resumes from ``workdir``'s latest checkpoint if there is one. Returns
    ``(state, restored_step)``.
    """
    import jax

    from diffax.train import (
        Checkpointer,
        compile_train_step,
        make_mesh,
        parallel,
        replicate,
        shard_batch,
    )

    from . import toy

    mesh = make_mesh()
    local_batch = parallel.check_batch_size(batch_size, mesh)
    step, state, _ = toy.setup(loss, seed=seed)
    state = replicate(state, mesh)
    it = toy.MixtureIterator(local_batch, seed=seed, shard=jax.process_index())
    ckpt = None if workdir is None else Checkpointer(workdir, save_every=save_every)
    restored_step = None
    if ckpt is not None and ckpt.latest_step() is not None:
        restored = ckpt.restore(state)
        state, restored_step = restored.state, restored.step
        it.set_state(restored.data_state)
        assert restored.config == {"seed": seed, "loss": loss}, restored.config
    f = compile_train_step(step, mesh)
    while int(state.step) < total_steps:
        state, _ = f(state, shard_batch(next(it), mesh))
        n = int(state.step)
        if ckpt is not None:
            ckpt.save(n, state, data_state=it.get_state(), config={"seed": seed, "loss": loss})
        if n == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no waiting for the save
    if ckpt is not None:
        ckpt.close()
    return state, restored_step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", required=True, help="keyword arguments of run() and more")
    args = json.loads(parser.parse_args().json)
    import jax

    jax.config.update("jax_numpy_rank_promotion", "raise")
    if "coordinator" in args:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=args.pop("coordinator"),
                                   num_processes=args.pop("num_processes"),
                                   process_id=args.pop("process_id"))
    out = args.pop("out", None)
    state, restored_step = run(**args)
    if out is not None and jax.process_index() == 0:
        import numpy as np

        leaves = jax.tree_util.tree_leaves_with_path(state.params)
        arrays = {jax.tree_util.keystr(k): np.asarray(v.addressable_data(0)) for k, v in leaves}
        arrays["__restored_step__"] = np.asarray(-1 if restored_step is None else restored_step)
        arrays["__num_devices__"] = np.asarray(jax.device_count())
        arrays["__num_processes__"] = np.asarray(jax.process_count())
        np.savez(out, **arrays)


if __name__ == "__main__":
    main()
