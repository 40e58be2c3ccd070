"""The README's reliability clauses, each tested as stated there (issue #22, item 8): an
unreachable coordinator fails within ``--distributed_timeout``; a full disk during a save is a
one-line error with exit code 1 from ``diffax train``; an update whose loss is finite but whose
gradient is NaN is skipped. (The incompatible-checkpoint refusal for ``process``, ``loss`` and
``data.name`` is in test_faults.py, next to ``model.variant``'s.)"""

import errno
import os
import types
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

from diffax import cli
from diffax.train import TrainState, make_train_step, parallel
from diffax.train.checkpoint import Checkpointer

from .test_checkpoint import ROOT
from .test_faults import _tree_equal

TOY_VP = os.path.join(ROOT, "configs", "toy2d_vp.py")


class _VirtualClock:
    """Stands in for ``time`` and ``socket`` in diffax.train.parallel: a connection attempt
    that nobody answers takes its whole timeout (the worst case), and no real time passes."""

    def __init__(self):
        self.now = 0.0
        self.time = types.SimpleNamespace(monotonic=lambda: self.now, sleep=self._sleep)
        self.socket = types.SimpleNamespace(create_connection=self._connect)

    def _sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds

    def _connect(self, address, timeout):
        self.now += timeout
        raise TimeoutError("timed out")


class _Exited(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


@pytest.mark.parametrize("timeout", [1, 7])
def test_unreachable_coordinator_gives_up_within_distributed_timeout(
        tmp_path, capsys, monkeypatch, timeout):
    # Through `diffax train`: exit 1 with one line, and the wait (on a virtual clock, with every
    # connection attempt taking its full timeout) is at most --distributed_timeout. It could
    # exceed it by a 2 s attempt and a 0.5 s pause before attempts were cut to the time left.
    clock = _VirtualClock()
    monkeypatch.setattr(parallel, "time", clock.time)
    monkeypatch.setattr(parallel, "socket", clock.socket)

    def exit_(code):  # the CLI leaves with os._exit here (jax's shutdown would wait)
        raise _Exited(code)

    monkeypatch.setattr(os, "_exit", exit_)
    # (catch_warnings: the CLI's warning filters must not outlive the test.)
    with pytest.raises(_Exited) as exited, warnings.catch_warnings():
        cli.main(["train", f"--config={TOY_VP}:tiny", f"--workdir={tmp_path / 'run'}",
                  "--coordinator_address=localhost:1", "--num_processes=2",
                  "--process_id=1", f"--distributed_timeout={timeout}"])
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("diffax train: error: could not join the multi-process job")
    assert f"for {timeout} s" in line and "process_id=1" in line
    assert timeout - 0.5 <= clock.now <= timeout, clock.now
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_disk_full_during_a_save_is_one_line_and_exit_1_from_diffax_train(
        tmp_path, train_data_dir, capsys, monkeypatch):
    # The first checkpoint's files cannot be written (ENOSPC): `diffax train` prints one line
    # naming the step and the directory and exits with code 1.
    from etils import epath

    monkeypatch.setenv("DIFFAX_DATA_DIR", train_data_dir)
    workdir = tmp_path / "run"
    path_cls = type(epath.Path(str(tmp_path)))
    real = path_cls.write_text

    def full(self, *args, **kwargs):
        if "orbax-checkpoint-tmp" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(path_cls, "write_text", full)
    with warnings.catch_warnings():  # the CLI's warning filters must not outlive the test
        code = cli.main(["train", f"--config={TOY_VP}:tiny", f"--workdir={workdir}",
                         "--config.train.num_steps=2", "--config.train.batch_size=16",
                         "--config.train.checkpoint_every=1", "--config.train.log_every=100",
                         "--config.train.sample_every=0"])
    out, err = capsys.readouterr()
    assert code == 1, (out[-2000:], err[-2000:])
    (line,) = err.strip().splitlines()
    ckdir = workdir / "checkpoints"
    assert line.startswith(f"diffax train: error: writing the checkpoint of step 1 to {ckdir} "
                           "failed: OSError: [Errno 28] No space left on device"), line
    assert "intact (steps [])" in line
    monkeypatch.undo()
    with Checkpointer(ckdir, save_every=1) as ckpt:  # nothing half-written is taken as a step
        assert ckpt.all_steps() == []


def test_a_nan_gradient_with_a_finite_loss_skips_the_update():
    # sqrt(|w0 - w0|) is 0 (the loss stays finite) but its derivative is inf * 0 = NaN.
    def loss(params, key, batch):
        w = params["w"]
        fit = jnp.mean(jnp.square(batch["x"] @ w - 1.0))
        return fit + jnp.sqrt(jnp.abs(w[0] - w[0])), None

    opt = optax.adam(1e-2)
    state = TrainState.create(params={"w": jnp.arange(3, dtype=jnp.float32)}, optimizer=opt,
                              key=jax.random.key(0), ema_decays=(0.9,))
    new, m = jax.jit(make_train_step(loss, opt))(state, {"x": jnp.ones((4, 3))})
    assert jnp.isfinite(m["loss"]) and not jnp.isfinite(m["grad_norm"])
    assert int(m["nonfinite"]) == 1 and int(m["nonfinite_step"]) == 1
    assert int(new.step) == 1
    _tree_equal((new.params, new.opt_state, new.ema_params),
                (state.params, state.opt_state, state.ema_params))
