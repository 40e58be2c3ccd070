"""Fault injection: kills, SIGTERM, NaNs, corrupt checkpoints, bad configs, full disks, a dead
process of a multi-process job, and no code execution when loading a checkpoint.

Each test injects the fault for real (subprocesses and signals, hand-corrupted files,
monkeypatched writes) and checks that nothing was lost. The subprocess tests run the
``diffax train`` command on the tiny MLP configs.
"""

import errno
import glob
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from diffax import cli
from diffax.train import Checkpointer, TrainState, build, loop
from diffax.train._tensorboard import read_events
from diffax.train.checkpoint import (
    CheckpointWarning,
    CheckpointWriteError,
    CorruptCheckpointError,
    NonFiniteStateError,
    find_partial_saves,
)

from .._xla import xla_flags
from . import toy
from .test_checkpoint import ROOT
from .test_loop import toy_config

TOY_VP = os.path.join(ROOT, "configs", "toy2d_vp.py")


def _tree_equal(a, b):
    """Bitwise equality of two trees of arrays: the raw bytes of every shard of every leaf
    (so NaN payloads and the sign of zero count, and no shard goes unchecked), with equal
    dtypes, shapes and shard placement; PRNG keys compared as their key data."""
    def shards(x):
        if isinstance(x, jax.Array):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x = jax.random.key_data(x)
            return [(str(s.device), str(s.index), np.asarray(s.data))
                    for s in sorted(x.addressable_shards, key=lambda s: s.device.id)]
        return [("host", "", np.asarray(x))]

    la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb, strict=True):
        sx, sy = shards(x), shards(y)
        assert [(d, i, v.dtype, v.shape) for d, i, v in sx] == \
            [(d, i, v.dtype, v.shape) for d, i, v in sy], jax.tree_util.keystr(path)
        for (device, index, u), (_, _, v) in zip(sx, sy, strict=True):
            assert u.tobytes() == v.tobytes(), (jax.tree_util.keystr(path), device, index)


def test_tree_equal_compares_raw_bytes_of_every_shard():
    # Value equality (the helper's old form) passes each of these pairs; bytes do not.
    nan2 = np.frombuffer(np.array(0x7FC00001, np.uint32).tobytes(), np.float32)[0]
    pairs = [(jnp.array([0.0, 1.0]), jnp.array([-0.0, 1.0])),
             (jnp.array([np.nan], jnp.float32), jnp.array([nan2], jnp.float32))]
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x = jnp.arange(16.0)
    pairs.append((jax.device_put(x, sharded), jax.device_put(x.at[13].set(-1.0), sharded)))
    for u, v in pairs:
        _tree_equal({"w": u}, {"w": u})
        with pytest.raises(AssertionError):
            _tree_equal({"w": u}, {"w": v})


def _small_state(ema=(0.9,), width=4):
    return TrainState.create(params={"w": jnp.arange(width, dtype=jnp.float32),
                                     "b": jnp.zeros(2)},
                             optimizer=optax.adam(1e-3), key=jax.random.key(0), ema_decays=ema)


def _biggest_file(directory):
    files = [f for f in glob.glob(os.path.join(directory, "**"), recursive=True)
             if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


# ============================================================================================
# Kill -9 (at a random moment and in the middle of a save) and SIGTERM during `diffax train`:
# bitwise resume.


def _env(data_dir, **extra):
    env = dict(os.environ)
    env.update({"XLA_FLAGS": xla_flags(8), "JAX_PLATFORMS": "cpu", "DIFFAX_DATA_DIR": data_dir,
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class _Proc:
    """A `diffax train` subprocess whose output lines are collected by reader threads."""

    def __init__(self, args, env):
        self.p = subprocess.Popen([sys.executable, "-m", "diffax.cli", "train", *args],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                        for s, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, buf):
        for line in stream:
            buf.append(line)

    def last_step(self):
        steps = [int(line.split()[1].split("/")[0]) for line in list(self.out)
                 if line.startswith("step ")]
        return max(steps, default=-1)

    def wait_for_step(self, above, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.last_step() > above:
                return True
            if self.p.poll() is not None:
                return False
            time.sleep(0.01)
        raise AssertionError(f"no step above {above} in {timeout} s:\n{''.join(self.err)[-3000:]}")

    def finish(self, timeout=240):
        try:
            self.p.wait(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        for t in self.threads:
            t.join(timeout=10)
        return self.p.returncode, "".join(self.out), "".join(self.err)


def _step_dirs(ckdir):
    return [int(n) for n in os.listdir(ckdir) if n.isdigit()] if os.path.isdir(ckdir) else []


def _complete_steps_restore(ckdir, target, tmp_root):
    """Every complete checkpoint in `ckdir` restores (checked on a copy, so that partial saves
    stay for the next run to report)."""
    copy = os.path.join(tmp_root, f"copy-{time.monotonic_ns()}")
    shutil.copytree(ckdir, copy, ignore=shutil.ignore_patterns("*.orbax-checkpoint-tmp*"))
    with Checkpointer(copy, save_every=1) as ckpt:
        steps = ckpt.all_steps()
        for s in steps:
            assert ckpt.restore(target, step=s).step == s
    shutil.rmtree(copy)
    return steps


@pytest.mark.slow  # 4 `diffax train` processes and one run in-process: ~1 min of CPU
def test_kill9_twice_and_sigterm_then_resume_equals_uninterrupted_run(
        tmp_path, train_data_dir, monkeypatch):
    num_steps = 20
    monkeypatch.setenv("DIFFAX_DATA_DIR", train_data_dir)
    # The uninterrupted run, in this process (same devices, same program).
    code = cli.main(["train", f"--config={TOY_VP}:tiny", f"--workdir={tmp_path / 'ref'}",
                     f"--config.train.num_steps={num_steps}", "--config.train.batch_size=64",
                     "--config.train.checkpoint_every=1000", "--config.train.log_every=1000"])
    assert code == 0
    with Checkpointer(tmp_path / "ref" / "checkpoints", save_every=1) as ckpt:
        assert ckpt.all_steps() == [num_steps]
        template = _abstract_state(ckpt.directory, num_steps)
        reference = ckpt.restore(template).state

    workdir = str(tmp_path / "run")
    ckdir = os.path.join(workdir, "checkpoints")
    args = [f"--config={TOY_VP}:tiny", f"--workdir={workdir}",
            f"--config.train.num_steps={num_steps}", "--config.train.batch_size=64",
            "--config.train.checkpoint_every=1", "--config.train.log_every=1"]
    # The restarts load the programs the first process compiled (the same programs: this
    # saves compile time, not work that the test checks).
    env = _env(train_data_dir, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    rng = np.random.default_rng(8)
    done, partial_found, pending = 0, [], []
    # kill -9 at a random moment, kill -9 as soon as a save is under way, SIGTERM, a last run.
    last = 3
    for round_ in range(last + 1):
        proc = _Proc(args, env)
        if round_ == last:
            code, out, err = proc.finish()
            assert code == 0, err[-3000:]
        else:
            assert proc.wait_for_step(done), f"run {round_} ended early: {proc.finish()}"
            # Progress first: a checkpoint newer than the last one is complete on disk.
            deadline = time.time() + 120
            while max(_step_dirs(ckdir), default=0) <= done and proc.p.poll() is None:
                assert time.time() < deadline, "no new checkpoint"
                time.sleep(0.005)
            if round_ == 2:
                proc.p.send_signal(signal.SIGTERM)
            else:
                if round_ == 1:
                    deadline = time.time() + 60
                    while not find_partial_saves(ckdir) and time.time() < deadline:
                        time.sleep(0.001)
                else:
                    time.sleep(rng.uniform(0.0, 0.4))
                proc.p.send_signal(signal.SIGKILL)
            code, out, err = proc.finish()
        if done:
            assert f"Resumed from {ckdir} at step {done}." in out, out[-2000:]
        # The partial saves the previous kill left are named in a warning and removed.
        for name in pending:
            assert name in err and "partial checkpoint save" in err, (name, err[-3000:])
        if round_ == last:
            break
        if round_ == 2:
            assert code == 0, err[-3000:]
            stopped = int(re.search(r"SIGTERM: saved a checkpoint at step (\d+) and stopped",
                                    out).group(1))
            assert done < stopped < num_steps
        else:
            assert code == -signal.SIGKILL, (code, err[-3000:])
        pending = [os.path.basename(p) for p in find_partial_saves(ckdir)]
        partial_found += pending
        # No checkpoint directory is left that fails to restore.
        steps = _complete_steps_restore(ckdir, template, str(tmp_path))
        assert max(steps, default=0) >= done
        done = max(steps, default=0)
        if round_ == 2:
            assert done == stopped
    assert partial_found, "no kill landed during an asynchronous save"

    with Checkpointer(ckdir, save_every=1) as ckpt:
        assert ckpt.latest_step() == num_steps
        final = ckpt.restore(template).state
    _tree_equal(final, reference)
    assert find_partial_saves(ckdir) == []


def _abstract_state(directory, step):
    """A restore target for a checkpoint of configs/toy2d_vp.py (from its stored config)."""
    from diffax.train import parallel

    with Checkpointer(directory, save_every=1) as ckpt:
        config = ml_collections.ConfigDict(ckpt.stored_config(step))
    exp = build.build_experiment(config)

    def create():
        key = jax.random.key(0)
        return TrainState.create(params=exp.model.init(key, *exp.model.example_inputs()),
                                 optimizer=exp.optimizer, key=key, ema_decays=exp.ema_decays)

    return parallel.abstract_like(jax.eval_shape(create), parallel.make_mesh())


# ============================================================================================
# Non-finite loss or gradients.


def test_train_step_skips_a_nonfinite_update_in_graph():
    step, state, _ = toy.setup("eps_vp", ema_decays=(0.9,))
    f = jax.jit(step)
    good = toy.global_batch(0, 16)
    bad = {"x": good["x"].copy()}
    bad["x"][3, 1] = np.nan
    new, m = f(state, bad)
    assert int(m["nonfinite"]) == 1 and int(m["nonfinite_step"]) == 1
    assert not np.isfinite(float(m["loss"]))
    assert int(new.step) == 1  # the batch is consumed, the update is not applied
    _tree_equal((new.params, new.opt_state, new.ema_params),
                (state.params, state.opt_state, state.ema_params))
    new, m = f(new, good)
    assert int(m["nonfinite"]) == 0 and int(m["nonfinite_step"]) == -1
    new, _ = f(new, good)  # (the first update has a zero learning rate: warmup)
    assert toy.tree_max_abs_diff(new.params, state.params) > 0
    # (n_steps > 1, where counts add up and the first bad update is named, runs in the loop
    # test below: n_jitted_steps=5.)


class _NaNAt:
    """Wraps a data iterator and puts a NaN into batch number `index` (0-based)."""

    def __init__(self, it, index):
        self.it, self.index, self.count = it, index, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = dict(next(self.it))
        if self.count == self.index:
            batch["x"] = np.array(batch["x"], copy=True)
            batch["x"][0, 0] = np.nan
        self.count += 1
        return batch

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def test_nonfinite_policies_error_and_skip(tmp_path, train_data_dir, monkeypatch):
    real = build.build_data_iterator
    monkeypatch.setattr(build, "build_data_iterator",
                        lambda *a, **k: _NaNAt(real(*a, **k), index=12))
    # Default policy "error": stops naming the update (13) and the last good checkpoint (10).
    cfg = toy_config(train_data_dir, sample_every=0)
    workdir = tmp_path / "error"
    with pytest.raises(loop.NonFiniteLossError, match=r"at step 13 .*checkpoints/10\b") as e:
        loop.train_and_evaluate(cfg, workdir)
    assert e.value.step == 13
    assert e.value.last_checkpoint == str(workdir / "checkpoints" / "10")
    with Checkpointer(workdir / "checkpoints", save_every=10) as ckpt:
        assert ckpt.all_steps() == [10]  # nothing at or after the bad step
    # "skip": the run goes on, the skipped update is counted in the metrics, nothing is NaN.
    cfg = toy_config(train_data_dir, sample_every=0, nonfinite="skip")
    result = loop.train_and_evaluate(cfg, tmp_path / "skip")
    assert result.step == 20
    events = [e for f in glob.glob(str(tmp_path / "skip" / "events.out.tfevents.*"))
              for e in read_events(f)]
    skipped = {e["step"]: e["scalars"]["skipped_updates"] for e in events if e["scalars"]}
    assert skipped == {10: 0.0, 20: 1.0}
    with Checkpointer(tmp_path / "skip" / "checkpoints", save_every=10) as ckpt:
        r = ckpt.restore(result.state)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(r.state.params))


def test_a_state_with_nan_is_never_checkpointed(tmp_path):
    state = _small_state()
    bad = state.replace(params={"w": state.params["w"].at[2].set(jnp.inf),
                                "b": state.params["b"]})
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(1, state)
        with pytest.raises(NonFiniteStateError, match=r"step 2 .*\['w'\]"):
            ckpt.save(2, bad)
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [1]
    assert sorted(os.listdir(tmp_path)) == ["1"]


# ============================================================================================
# Corrupt checkpoints: truncated files, another tree structure, an incompatible config.


def test_corrupt_checkpoints_are_refused_or_skipped_when_asked(tmp_path):
    state = _small_state()
    d = tmp_path / "ck"
    with Checkpointer(d, save_every=1) as ckpt:
        for s in (1, 2, 3):
            ckpt.save(s, state.replace(step=state.step + s), data_state={"pos": s})
    # A truncated array file in the newest checkpoint.
    victim = _biggest_file(d / "3" / "state" / "d")
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    with Checkpointer(d, save_every=1) as ckpt:
        with pytest.raises(CorruptCheckpointError, match=r"checkpoint .*/ck/3 cannot be "
                           r"restored.*restore_fallback") as e:
            ckpt.restore_latest(state)
        assert e.value.step == 3 and os.path.isdir(d / "3")  # nothing moved without asking
        with pytest.warns(CheckpointWarning, match=r"ck/3 cannot be restored.*moved it to"):
            r = ckpt.restore_latest(state, fallback=True)
        assert r.step == 2 and r.data_state == {"pos": 2}
        _tree_equal(r.state.params, state.params)
        assert ckpt.all_steps() == [1, 2]
        ckpt.save(3, state.replace(step=state.step + 3), force=True)  # the step is free again
    assert os.listdir(str(d) + ".corrupt")[0].startswith("3-")
    # Another tree structure (a second EMA) and other shapes are refused, naming the path.
    with Checkpointer(d, save_every=1) as ckpt:
        with pytest.raises(CorruptCheckpointError, match=r"ck/3 cannot be restored.*ema"):
            ckpt.restore(_small_state(ema=(0.9, 0.99)))
        with pytest.raises(CorruptCheckpointError, match=r"ck/3 cannot be restored.*shape"):
            ckpt.restore(_small_state(width=5))
        # A missing item file.
        os.remove(d / "3" / "data" / "metadata")
        with pytest.raises(CorruptCheckpointError, match=r"ck/3 cannot be restored"):
            ckpt.restore(state)


def test_training_refuses_a_corrupt_or_incompatible_checkpoint_and_falls_back_on_request(
        tmp_path, train_data_dir, capsys):
    cfg = toy_config(train_data_dir, sample_every=0)
    full = loop.train_and_evaluate(cfg, tmp_path / "run")
    ck = tmp_path / "run" / "checkpoints"
    victim = _biggest_file(ck / "20" / "state" / "d")
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 3)
    with pytest.raises(CorruptCheckpointError, match=r"run/checkpoints/20 cannot be restored"):
        loop.train_and_evaluate(cfg, tmp_path / "run")
    assert os.path.isdir(ck / "20")
    # `diffax sample` on it: one line naming the checkpoint, exit code 1.
    capsys.readouterr()
    assert cli.main(["sample", f"--workdir={tmp_path / 'run'}"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"diffax sample: error: checkpoint {ck / '20'} cannot be restored")
    assert "--step" in line
    # An incompatible config is refused by name, even with a good checkpoint.
    other = toy_config(train_data_dir, sample_every=0, num_steps=30)
    other.model.variant = "toy2d"
    shutil.copytree(ck, tmp_path / "other" / "checkpoints",
                    ignore=shutil.ignore_patterns("20"))
    with pytest.raises(CorruptCheckpointError, match=r"incompatible config: model.variant "
                       r"\(stored 'tiny', now 'toy2d'\)"):
        loop.train_and_evaluate(other, tmp_path / "other")
    # And for each other section the README names: process, loss, data.name. Nothing is
    # written or moved (the refusal comes before any training).
    for key, value, stored in [("process.t_max", 0.99, None), ("loss.variates", "iid",
                                                               "'low_discrepancy'"),
                               ("data.name", "toy2d/two_moons", "'toy2d/eight_gaussians'")]:
        other = toy_config(train_data_dir, sample_every=0, num_steps=30)
        section, name = key.split(".")
        other[section][name] = value
        match = re.escape(f"checkpoints/10 was written by an incompatible config: {key} "
                          f"(stored {stored}, now {value!r})")
        with pytest.raises(CorruptCheckpointError, match=match):
            loop.train_and_evaluate(other, tmp_path / "other")
    assert sorted(os.listdir(tmp_path / "other" / "checkpoints")) == ["10"]
    # Asked to fall back: the corrupt checkpoint is set aside and training resumes from the
    # previous one, ending exactly where the uninterrupted run ended.
    cfg = toy_config(train_data_dir, sample_every=0, restore_fallback=True)
    with pytest.warns(CheckpointWarning, match=r"checkpoints/20 cannot be restored"):
        resumed = loop.train_and_evaluate(cfg, tmp_path / "run")
    assert resumed.restored_from == 10 and resumed.step == 20
    _tree_equal(resumed.state, full.state)


# ============================================================================================
# Config validation: exit code 2 naming the key, before any compute or write.

_CONFIG_FILE = '''
import ml_collections


def get_config():
    return ml_collections.ConfigDict({
        "seed": 0,
        "process": {"name": "vp", "t_min": 1e-3, "t_max": 1.0},
        "model": {"name": "mlp", "variant": "tiny"},
        "loss": {"weighting": "eps"},
        "optim": {"learning_rate": 1e-3},
        "train": {"num_steps": 4, "batch_size": 16, "checkpoint_every": 2,
                  "nonfinite": "error"},
        "data": {"name": "toy2d/eight_gaussians"},
        "sample": {"solver": "euler", "num_steps": 4, "order": 2},
        "eval": {},
    })
'''


@pytest.mark.parametrize("override, names", [
    ("--config.optim.learning_rate=-0.001", ["optim.learning_rate", "-0.001"]),
    ("--config.optim.learning_rate=abc", ["optim.learning_rate", "abc"]),
    ("--config.train.batch_size=12", ["train.batch_size", "12", "8"]),
    ("--config.sample.order=7", ["sample.order", "7", "[1, 3]"]),
    ("--config.process.t_min=1.5", ["process.t_min", "process.t_max"]),
    ("--config.train.nonfinite=ignore", ["train.nonfinite", "'ignore'"]),
    ("--config.optim.b2=1.0", ["optim.b2"]),
    ("--config.train.num_stepz=3", ["train.num_stepz"]),
])
def test_bad_configs_exit_2_naming_the_key_before_any_work(tmp_path, capsys, override, names):
    path = tmp_path / "cfg.py"
    path.write_text(_CONFIG_FILE)
    workdir = tmp_path / "wd"
    code = cli.main(["train", f"--config={path}", f"--workdir={workdir}", override])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    (line,) = err.strip().splitlines()
    assert line.startswith("diffax train: error: ")
    for name in names:
        assert name in line, (name, line)
    assert not workdir.exists()


def test_check_config_names_the_key_for_python_configs():
    def cfg(**changes):
        c = {"seed": 0, "process": {"name": "vp"}, "model": {"name": "mlp"},
             "train": {"num_steps": 4, "batch_size": 16, "checkpoint_every": 2},
             "data": {"name": "toy2d/eight_gaussians"}}
        for key, value in changes.items():
            section, _, name = key.partition("__")
            if name:
                c[section] = dict(c.get(section, {}), **{name: value})
            else:
                c[section] = value
        return c

    assert build.check_config(cfg(), num_devices=8).num_steps == 4
    cases = {
        "train.batch_size": cfg(train__batch_size="16"),
        "seed": cfg(seed=1.5),
        "trian": cfg(trian={}),
        "optim.ema_decays[1]": cfg(optim__ema_decays=(0.9, 1.0)),
        "optim.grad_clip": cfg(optim__grad_clip=0.0),
        "model.variant": cfg(model__variant="huge"),
        "sample.solver": cfg(sample__solver="rk99"),
        "sample.num_steps": cfg(sample__num_steps=0),
        "train.keep_last": cfg(train__keep_last=0),
        "train.num_steps": cfg(train__n_jitted_steps=3),
        "process": cfg(process__sigma_min=-1.0, process__name="ve"),
        "loss.time_scale": cfg(loss__time_scale=-2.0),
        "data.name": cfg(data={"name": ""}),
        "train.restore_fallback": cfg(train__restore_fallback="yes"),
    }
    for key, config in cases.items():
        with pytest.raises(build.ConfigError) as e:
            build.check_config(config, num_devices=8)
        assert e.value.key == key and key.split("[")[0] in str(e.value), (key, str(e.value))


# ============================================================================================
# Disk full and unwritable directories.


def test_disk_full_during_a_save_is_a_clear_error_and_keeps_earlier_checkpoints(
        tmp_path, monkeypatch):
    from etils import epath

    state = _small_state()
    d = tmp_path / "ck"
    ckpt = Checkpointer(d, save_every=1)
    ckpt.save(1, state, data_state={"pos": 1})
    ckpt.save(2, state.replace(step=state.step + 2), data_state={"pos": 2})
    ckpt.wait_until_finished()
    path_cls = type(epath.Path(str(d)))

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(path_cls, "write_text", full)
    with pytest.raises(CheckpointWriteError, match=r"checkpoint of step 3 to .*/ck failed: "
                       r"OSError: \[Errno 28\] No space left.*intact \(steps \[1, 2\]\)"):
        ckpt.save(3, state.replace(step=state.step + 3), data_state={"pos": 3})
        ckpt.wait_until_finished()
    try:  # the disk stays full until the manager is released: its threads can finish nothing
        ckpt.close()
    except CheckpointWriteError:
        pass
    monkeypatch.undo()
    with pytest.warns(CheckpointWarning, match=r"3\.orbax-checkpoint-tmp"):
        ckpt = Checkpointer(d, save_every=1)
    with ckpt:
        assert ckpt.all_steps() == [1, 2]
        r = ckpt.restore(state)
        assert r.step == 2 and r.data_state == {"pos": 2}
        _tree_equal(r.state.params, state.params)


def test_an_unwritable_workdir_fails_before_any_compute(tmp_path, train_data_dir, capsys,
                                                         monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DIFFAX_DATA_DIR", train_data_dir)
    code = cli.main(["train", f"--config={TOY_VP}:tiny", f"--workdir={blocker / 'run'}"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    (line,) = err.strip().splitlines()
    assert line.startswith("diffax train: error: checkpoint directory ")
    assert str(blocker / "run" / "checkpoints") in line and "not writable" in line
    assert blocker.read_text() == "not a directory"


# ============================================================================================
# Loading a checkpoint runs no code from it.


def test_restoring_never_unpickles(tmp_path, monkeypatch):
    state = _small_state()
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(1, state, data_state=b"\x80\x04bytes", config={"seed": 0})

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    import _pickle

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(_pickle, name, forbidden)
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        r = ckpt.restore(state)
        assert ckpt.stored_config() == {"seed": 0}
    assert r.data_state == b"\x80\x04bytes"
    _tree_equal(r.state, state)
    # And no file holds a pickle stream (protocol 2+ starts with b"\x80" and a version byte).
    for dirpath, _, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                head = fh.read(2)
            assert not (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"), f


# ============================================================================================
# Two processes: kill one, the other fails fast with a clear error.


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


_WITH_HEARTBEAT = """
import importlib.util

spec = importlib.util.spec_from_file_location("toy2d_vp", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def get_config():
    cfg = module.get_config("tiny")
    cfg.unlock()
    cfg.train.heartbeat_timeout = 60
    cfg.lock()
    return cfg
"""


@pytest.mark.slow  # two `diffax train` processes: ~30 s of CPU
def test_killing_one_of_two_processes_makes_the_other_fail_fast(tmp_path, train_data_dir):
    port = _free_port()
    workdir = str(tmp_path / "run")
    config = tmp_path / "toy_hb.py"
    config.write_text(_WITH_HEARTBEAT.format(path=TOY_VP))
    args = [f"--config={config}", f"--workdir={workdir}",
            "--config.train.num_steps=100000", "--config.train.batch_size=64",
            "--config.train.checkpoint_every=100000", "--config.train.log_every=1",
            "--config.train.heartbeat_timeout=10"]
    procs = []
    for i in range(2):
        # XLA's own bound on a CPU (gloo) collective: a survivor waiting in one fails after 5 s.
        flags = xla_flags(4, "--xla_cpu_collective_timeout_seconds=5")
        env = _env(train_data_dir, XLA_FLAGS=flags,
                   JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
        procs.append(_Proc(args, env))
    try:
        assert procs[0].wait_for_step(2), procs[0].finish(timeout=5)[2][-3000:]
        procs[1].p.send_signal(signal.SIGKILL)
        # A hang fails the test through this timeout; how fast it fails is not asserted.
        code, out, err = procs[0].finish(timeout=120)
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
    # The collective fails (closed connection or the 5 s timeout) before the coordination
    # service's heartbeat check (60 s here) would stop the process: one line, exit code 1.
    assert code == 1, (code, err[-3000:])
    line = err.strip().splitlines()[-1]
    assert line.startswith("diffax train: error: process 0 of 2: a cross-process operation "
                           "failed near step "), err[-3000:]
    assert "another process died" in line and workdir in line


# ============================================================================================
# Bad input to the public functions: errors at trace time that name the argument.


def test_sample_and_log_likelihood_name_bad_arguments():
    import diffax

    p = diffax.VP()
    gm = diffax.testing.GaussianMixture(means=jnp.array([[1.0, -1.0]]), stds=jnp.array([0.5]),
                                        weights=jnp.array([1.0]))
    D = gm.denoiser(p)
    x = np.zeros((3, 2), np.float32)
    nan = x.copy()
    nan[1, 0] = np.nan
    two_keys = jax.random.split(jax.random.key(0))
    euler = diffax.samplers.Euler()
    cases = [
        (lambda: diffax.sample(None, p, D, nan, solver=euler, num_steps=2),
         r"`x_init` has NaN or infinite entries in 1 of 3 examples \(first: index 1\)"),
        (lambda: diffax.sample(two_keys, p, D, x, solver=euler, num_steps=2),
         r"`key` must be a single PRNG key"),
        (lambda: diffax.sample(None, p, D, x, solver=euler, num_steps=2, denoise_final="yes"),
         r"`denoise_final` must be True or False"),
        (lambda: diffax.sample(None, p, D, x.astype(np.int32), solver=euler, num_steps=2),
         r"`x_init` must be a floating-point array"),
        (lambda: diffax.sample(None, p, D, np.zeros((3, 5), np.float32), solver=euler,
                               num_steps=2), r"`x_init` of shape \(3, 5\)"),
        (lambda: diffax.log_likelihood(two_keys, p, D, x, divergence="hutchinson"),
         r"log_likelihood: `key` must be a single PRNG key"),
        (lambda: diffax.log_likelihood(None, p, "D", x), r"log_likelihood: `denoiser`"),
        (lambda: diffax.log_likelihood(None, p, D, nan),
         r"log_likelihood: `x` has NaN or infinite entries in 1 of 3"),
        (lambda: diffax.log_likelihood(None, p, D, x, rtol=-1.0),
         r"log_likelihood: `rtol` must be a positive number"),
    ]
    for fn, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            fn()


def test_restore_fallback_flag_of_diffax_train(tmp_path, train_data_dir, capsys, monkeypatch):
    seen = {}

    def fake_train(config, workdir, **kwargs):  # kwargs: the CLI passes its built experiment
        seen["fallback"] = config.train.restore_fallback
        raise CorruptCheckpointError("checkpoint X cannot be restored (stand-in)")

    monkeypatch.setenv("DIFFAX_DATA_DIR", train_data_dir)
    monkeypatch.setattr(loop, "train_and_evaluate", fake_train)
    code = cli.main(["train", f"--config={TOY_VP}:tiny", f"--workdir={tmp_path}",
                     "--restore_fallback"])
    assert code == 1 and seen == {"fallback": True}
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "diffax train: error: checkpoint X cannot be restored (stand-in)")
    assert cli.main(["train", "--help"]) == 0
    assert "--restore_fallback" in capsys.readouterr().out
