"""Checkpoints: round trip, retention, 8 -> 1 devices (kills mid-save: test_faults.py)."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from diffax import samplers
from diffax.train import Checkpointer, make_mesh, parallel

from . import toy, worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _params_dict(params):
    return {jax.tree_util.keystr(k): np.asarray(v.addressable_data(0))
            for k, v in jax.tree_util.tree_leaves_with_path(params)}


def test_round_trip_and_retention(tmp_path):
    _, state, _ = toy.setup("eps_vp")
    config = ml_collections.ConfigDict({"seed": 3, "train": {"batch_size": 8}})
    with Checkpointer(tmp_path, save_every=2, keep_last=2, keep_every=4) as ckpt:
        saved = [ckpt.save(s, state.replace(step=state.step + s), data_state=b"\x00grain\xff",
                           config=config) for s in range(1, 11)]
        ckpt.wait_until_finished()
        assert saved == [s % 2 == 0 for s in range(1, 11)]
        assert ckpt.save(11, state, force=True)
        ckpt.wait_until_finished()
        # keep-last-2 plus every multiple of 4.
        assert ckpt.all_steps() == [4, 8, 10, 11]
        r = ckpt.restore(state, step=8)
        assert r.step == 8 and int(r.state.step) == 8
        assert r.data_state == b"\x00grain\xff"
        assert ml_collections.ConfigDict(r.config) == config
        assert toy.tree_max_abs_diff(r.state.params, state.params) == 0
        assert r.state.key.dtype == state.key.dtype  # typed PRNG keys survive
        assert ckpt.restore(state).step == 11
        with pytest.raises(FileNotFoundError, match="step 5"):
            ckpt.restore(state, step=5)
        with pytest.raises(ValueError, match="data_state"):
            ckpt.save(12, state, data_state=object(), force=True)
    # Nothing in the directory is a pickle.
    for dirpath, _, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                assert fh.read(2) != b"\x80\x04", os.path.join(dirpath, f)


def test_restore_an_8_device_checkpoint_on_1_device_and_sample(tmp_path):
    state8, _ = worker.run(total_steps=2, workdir=str(tmp_path), save_every=2)
    assert len(jax.tree.leaves(state8.params)[0].sharding.device_set) == 8
    mesh1 = make_mesh(1)
    _, template, _ = toy.setup("eps_vp")
    with Checkpointer(tmp_path, save_every=2) as ckpt:
        r = ckpt.restore(parallel.abstract_like(template, mesh1))
    leaves = jax.tree.leaves(r.state)
    assert all(leaf.sharding.device_set == {jax.devices()[0]} for leaf in leaves)
    assert toy.tree_max_abs_diff(r.state.params, state8.params) == 0
    assert r.data_state == {"position": 2}
    loss = toy.NAMED_LOSSES["eps_vp"]
    D = loss.denoiser(toy.apply_fn, r.state.ema())
    x_init = jax.device_put(loss.process.prior_sample(jax.random.key(0), (16, 2)),
                            jax.devices()[0])
    x = samplers.sample(None, loss.process, D, x_init, solver=samplers.Euler(), num_steps=8).x
    assert x.shape == (16, 2) and bool(np.isfinite(np.asarray(x)).all())
    assert x.sharding.device_set == {jax.devices()[0]}
