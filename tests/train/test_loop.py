"""train_and_evaluate: metrics, checkpoints, samples, exact resume, config errors (SIGTERM and
kills: test_faults.py)."""

import glob
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from diffax.train import Checkpointer, build, evaluate, parallel
from diffax.train._tensorboard import read_events
from diffax.train.loop import sample_grid_png, train_and_evaluate


def toy_config(data_dir, **train):
    cfg = ml_collections.ConfigDict({
        "seed": 0,
        "process": {"name": "rectified_flow"},
        "model": {"name": "mlp", "variant": "tiny"},
        "loss": {"weighting": "flow", "prediction": "velocity", "variates": "low_discrepancy"},
        "optim": {"learning_rate": 2e-3, "warmup_steps": 5, "ema_decays": (0.9, 0.99)},
        "train": {"num_steps": 20, "batch_size": 64, "checkpoint_every": 10,
                  "n_jitted_steps": 5, "log_every": 10, "sample_every": 20},
        "data": {"name": "toy2d/eight_gaussians", "data_dir": data_dir, "cache": False},
        "sample": {"solver": "heun", "num_steps": 8, "num_samples": 256},
        "eval": {},
    })
    cfg.train.update(train)
    return cfg


def _params(state):
    return jax.tree.map(np.asarray, state.params)


def test_metrics_checkpoints_samples_and_exact_resume(tmp_path, train_data_dir):
    exp = build.build_experiment(toy_config(train_data_dir))  # the resumed run builds its own
    full = train_and_evaluate(toy_config(train_data_dir), tmp_path / "full", experiment=exp)
    assert full.step == 20 and not full.preempted and full.restored_from is None
    events = [e for f in glob.glob(str(tmp_path / "full" / "events.out.tfevents.*"))
              for e in read_events(f)]
    scalars = {e["step"]: e["scalars"] for e in events if e["scalars"]}
    assert sorted(scalars) == [10, 20]
    assert set(scalars[20]) == {"loss", "grad_norm", "learning_rate", "steps_per_sec",
                                "examples_per_sec"}
    assert scalars[20]["learning_rate"] == pytest.approx(2e-3)
    assert scalars[20]["examples_per_sec"] == pytest.approx(64 * scalars[20]["steps_per_sec"])
    images = [e["images"]["samples"] for e in events if e["images"]]
    assert len(images) == 1 and images[0][3][:4] == b"\x89PNG"
    assert os.path.exists(tmp_path / "full" / "samples" / "step_00000020.png")
    # The grid is the sampling program of `diffax sample` (evaluate.sampling_program, the
    # very one the loop compiled for this experiment) run on the final EMA parameters with the
    # loop's sampling key: the same PNG, byte for byte.
    run = evaluate.sampling_program(exp, batch=256, mesh=parallel.make_mesh())
    assert run._cache_size() == 1
    x, nfe = run(full.state.sampling_params(), jax.random.split(jax.random.key(0), 3)[2], None)
    assert x.shape == (256, 2) and int(nfe) == 2 * 8  # Heun: two evaluations per step
    png = sample_grid_png(parallel.gather(x), value_range=(-1.0, 1.0))[0]
    assert png == (tmp_path / "full" / "samples" / "step_00000020.png").read_bytes()
    with Checkpointer(tmp_path / "full" / "checkpoints", save_every=10) as ckpt:
        assert ckpt.all_steps() == [10, 20]
        r = ckpt.restore(full.state)
    assert r.config == json.loads(toy_config(train_data_dir).to_json_best_effort(sort_keys=True))
    assert r.data_state is not None

    # A run stopped at step 10 (its checkpoint directory without step 20) resumed by a new
    # call continues exactly: the same parameters and EMA as the uninterrupted run.
    shutil.copytree(tmp_path / "full" / "checkpoints", tmp_path / "part" / "checkpoints")
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "20")
    resumed = train_and_evaluate(toy_config(train_data_dir), tmp_path / "part")
    assert resumed.restored_from == 10 and resumed.step == 20
    jax.tree.map(np.testing.assert_array_equal, _params(resumed.state), _params(full.state))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, resumed.state.ema()),
                 jax.tree.map(np.asarray, full.state.ema()))


def test_config_errors_name_the_key(tmp_path, train_data_dir):
    with pytest.raises(ValueError, match=r"`train.batch_size`=12 is not divisible"):
        train_and_evaluate(toy_config(train_data_dir, batch_size=12), tmp_path)
    with pytest.raises(ValueError, match=r"train.n_jitted_steps"):
        train_and_evaluate(toy_config(train_data_dir, checkpoint_every=7), tmp_path)
    cfg = toy_config(train_data_dir)
    cfg.loss.weighting = "l2"
    with pytest.raises(ValueError, match=r"config.loss.weighting='l2'"):
        train_and_evaluate(cfg, tmp_path)
    cfg = toy_config(train_data_dir)
    cfg.loss.wieghting = "eps"
    with pytest.raises(ValueError, match=r"loss.wieghting"):
        train_and_evaluate(cfg, tmp_path)
    assert not os.path.exists(tmp_path / "checkpoints")
