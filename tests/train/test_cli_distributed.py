"""`diffax train` as a multi-process job: two processes on localhost through the CLI, and the
errors of a process that cannot join."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffax import cli

from .._xla import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "configs/toy2d_flow.py:tiny"
STEPS = ["--config.train.num_steps=4", "--config.train.checkpoint_every=4",
         "--config.train.log_every=2", "--config.train.sample_every=4",
         "--config.sample.num_samples=64", "--config.sample.num_steps=2"]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               XLA_FLAGS=xla_flags(devices))
    env.pop("JAX_ENABLE_X64", None)
    return env


def _train(workdir, *extra, devices=8):
    return subprocess.Popen(
        [sys.executable, "-m", "diffax.cli", "train", f"--config={CONFIG}",
         f"--workdir={workdir}", *STEPS, *extra],
        cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=600):
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _params(workdir):
    trained, _ = cli._load("sample", [f"--workdir={workdir}"])
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(trained.state.params)}


def _written(workdir, pattern):
    return sorted(p.relative_to(workdir) for p in pathlib.Path(workdir).rglob(pattern))


@pytest.mark.slow  # three fresh processes and their compiles: ~40 s of CPU
def test_two_processes_through_the_cli_train_like_one(tmp_path):
    port = _free_port()
    two, one = tmp_path / "two", tmp_path / "one"
    procs = [_train(two, f"--coordinator_address=localhost:{port}", "--num_processes=2",
                    f"--process_id={i}", devices=4) for i in range(2)]
    procs.append(_train(one))
    outputs = _finish(procs)
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]

    # Same global batches (the data pipeline shards each global batch, not the dataset), so
    # the same parameters up to the order of the cross-process sums.
    got, want = _params(two), _params(one)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # Only process 0 wrote the event file and the sample grid (the other took part in both).
    assert len(_written(two, "events.out.tfevents.*")) == 1
    assert len(_written(two, "*.png")) == len(_written(one, "*.png")) == 1


def test_wrong_process_id_is_a_usage_error(tmp_path, capsys):
    code = cli.main(["train", f"--config={ROOT / 'configs' / 'toy2d_flow.py'}:tiny",
                     f"--workdir={tmp_path}", "--coordinator_address=localhost:1234",
                     "--num_processes=2", "--process_id=2"])
    assert code == 2
    assert "--process_id must be in [0, 2)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("flags, match", [
    (["--coordinator_address=localhost:1234"], "also needs --num_processes and --process_id"),
    (["--coordinator_address=nohost", "--num_processes=2", "--process_id=0"], "host:port"),
    (["--distributed", "--distributed_timeout=0"], "--distributed_timeout"),
])
def test_inconsistent_distributed_flags_are_named(tmp_path, capsys, flags, match):
    code = cli.main(["train", f"--config={ROOT / 'configs' / 'toy2d_flow.py'}:tiny",
                     f"--workdir={tmp_path}", *flags])
    assert code == 2 and match in capsys.readouterr().err


def test_unreachable_coordinator_fails_within_the_timeout(tmp_path):
    # Process 1 of 2, nobody at the coordinator's address: a clear error and exit 1, not a hang
    # (_finish's timeout turns a hang into a failure).
    p = _train(tmp_path, f"--coordinator_address=localhost:{_free_port()}",
               "--num_processes=2", "--process_id=1", "--distributed_timeout=5", devices=1)
    (_, err), = _finish([p], timeout=240)
    assert p.returncode == 1, err[-2000:]
    assert "could not join the multi-process job" in err and "process_id=1" in err
