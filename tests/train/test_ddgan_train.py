"""A denoising diffusion GAN trained by `diffax train`'s loop (configs/toy2d_ddgan.py:tiny):
both networks and both optimizers checkpointed, an interrupted run resumed bitwise, sampling
through the `diffax sample` program, config errors naming the key."""

import importlib.util
import os
import shutil

import jax
import numpy as np
import pytest

from diffax import ddgan
from diffax.train import Checkpointer, build, evaluate, parallel
from diffax.train.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(data_dir):
    spec = importlib.util.spec_from_file_location(
        "config_toy2d_ddgan", os.path.join(ROOT, "configs", "toy2d_ddgan.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config("tiny")
    with cfg.unlocked():
        cfg.data.data_dir = data_dir
        cfg.data.cache = False
    cfg.train.update({"num_steps": 4, "checkpoint_every": 2, "n_jitted_steps": 2,
                      "log_every": 2})
    return cfg


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def test_trains_checkpoints_both_networks_and_resumes_bitwise(tmp_path, train_data_dir):
    exp = build.build_experiment(config(train_data_dir))
    assert isinstance(exp.trainer, ddgan.DDGANTrainer)
    full = train_and_evaluate(config(train_data_dir), tmp_path / "full", experiment=exp)
    assert full.step == 4
    state = full.state
    assert set(state.params) == {"generator", "discriminator"}
    assert isinstance(state.opt_state, ddgan.GANOptState)
    with Checkpointer(tmp_path / "full" / "checkpoints", save_every=2) as ckpt:
        assert ckpt.all_steps() == [2, 4]
        restored = ckpt.restore(state).state
    # The checkpoint holds both networks, both optimizers' states and the EMA, exactly.
    jax.tree.map(np.testing.assert_array_equal, _host(restored.params), _host(state.params))
    jax.tree.map(np.testing.assert_array_equal, _host(restored.opt_state),
                 _host(state.opt_state))
    jax.tree.map(np.testing.assert_array_equal, _host(restored.ema_params),
                 _host(state.ema_params))

    # Stopped after step 2 and resumed by a new call: bitwise the uninterrupted run. (The same
    # experiment object: the loop reuses its compiled programs, so one compile per test.)
    shutil.copytree(tmp_path / "full" / "checkpoints", tmp_path / "part" / "checkpoints")
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "4")
    resumed = train_and_evaluate(config(train_data_dir), tmp_path / "part", experiment=exp)
    assert resumed.restored_from == 2 and resumed.step == 4
    for part in ("params", "opt_state", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, _host(getattr(resumed.state, part)),
                     _host(getattr(state, part)))

    # `diffax sample`'s program: T = 4 generator calls, samples finite and 2-D.
    run = evaluate.sampling_program(exp, batch=64, mesh=parallel.make_mesh())
    x, nfe = run(state.sampling_params(), jax.random.key(0), None)
    assert x.shape == (64, 2) and int(nfe) == 4 and np.isfinite(np.asarray(x)).all()


@pytest.mark.parametrize("change, key", [
    ({"process": {"name": "vp"}}, "process.name"),
    ({"sample": {"solver": "heun"}}, "sample.solver"),
    ({"sample": {"num_steps": 3}}, "sample.num_steps"),
    ({"gan": {"latent_dim": 0}}, "gan.latent_dim"),
    ({"gan": {"d_ch_mult": ()}}, "gan.d_ch_mult"),
    ({"gan": {"generator_lr": 1.0}}, "gan.generator_lr"),
    ({"gan": None, "sample": {"solver": "ddgan"}}, "sample.solver"),
])
def test_config_errors_name_the_key(change, key):
    cfg = config("/nonexistent").to_dict()
    for section, value in change.items():
        if value is None:
            del cfg[section]
        elif section == "process":
            cfg[section] = value
        else:
            cfg[section].update(value)
    with pytest.raises(build.ConfigError) as e:
        build.check_config(cfg, num_devices=8)
    assert e.value.key == key
