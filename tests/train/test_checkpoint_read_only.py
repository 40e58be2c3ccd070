"""Checkpointer.open_read_only (what `diffax sample | likelihood | eval` restore through):
the same state as a writable Checkpointer restores, and nothing in the directory changes."""

import os

import jax
import numpy as np
import pytest

from diffax.train import Checkpointer, CheckpointWriteError


def _snapshot(path):
    return {os.path.relpath(os.path.join(r, n), path): os.stat(os.path.join(r, n)).st_mtime_ns
            for r, dirs, files in os.walk(path) for n in dirs + files}


def test_read_only_restores_what_was_saved_and_writes_nothing(tmp_path):
    state = {"w": jax.numpy.arange(6.0).reshape(2, 3), "step": jax.numpy.int32(3)}
    with Checkpointer(tmp_path, save_every=1, async_save=False) as ckpt:
        ckpt.save(3, state, config={"seed": 1})
    before = _snapshot(tmp_path)
    with Checkpointer.open_read_only(tmp_path) as ckpt:
        assert ckpt.all_steps() == [3] and ckpt.stored_config() == {"seed": 1}
        restored = ckpt.restore(state)
        with pytest.raises(CheckpointWriteError, match="read-only"):
            ckpt.save(4, state, force=True)
    assert restored.step == 3
    np.testing.assert_array_equal(np.asarray(restored.state["w"]), np.asarray(state["w"]))
    assert _snapshot(tmp_path) == before
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        Checkpointer.open_read_only(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
