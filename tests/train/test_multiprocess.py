"""Two processes on localhost (jax.distributed, gloo CPU collectives, 4 devices each) train
like one process with 8 devices, and their checkpoint restores in a single process."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffax.train import Checkpointer

from .._xla import xla_flags
from . import toy
from .test_checkpoint import ROOT, _params_dict


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~20 s of CPU: two fresh Python processes + compiles
def test_two_processes_agree_with_one(tmp_path):
    import json

    port = _free_port()
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags(4)
    env["JAX_PLATFORMS"] = "cpu"
    workdir, out = str(tmp_path / "ckpt"), str(tmp_path / "params.npz")
    procs = []
    for i in range(2):
        args = {"total_steps": 3, "batch_size": 32, "workdir": workdir, "save_every": 3,
                "out": out, "coordinator": f"localhost:{port}", "num_processes": 2,
                "process_id": i}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.train.worker", "--json", json.dumps(args)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    got = np.load(out)
    assert int(got["__num_processes__"]) == 2 and int(got["__num_devices__"]) == 8

    # One process, 8 devices, the same global batches (process shards concatenated in order).
    step, state, _ = toy.setup("eps_vp")
    f = jax.jit(step)
    shards = [toy.MixtureIterator(16, shard=i) for i in range(2)]
    for _ in range(3):
        parts = [next(it)["x"] for it in shards]
        state, _ = f(state, {"x": np.concatenate(parts)})
    reference = _params_dict(state.params)
    for name, value in reference.items():
        # Collectives across processes may sum in another order: float32 tolerance.
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)

    # The 2-process checkpoint restores on this single process's 8 devices, bit for bit.
    with Checkpointer(workdir, save_every=3) as ckpt:
        _, template, _ = toy.setup("eps_vp")
        r = ckpt.restore(jax.device_put(template, jax.devices()[0]))
    assert r.step == 3 and r.data_state == {"position": 3}
    for name, value in _params_dict(r.state.params).items():
        np.testing.assert_array_equal(value, got[name], err_msg=name)
