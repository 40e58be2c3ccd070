"""configs/digits_ldm.py:autoencoder_gan_tiny through `diffax train`'s loop: the autoencoder
and its patch discriminator, both optimizers and the EMA checkpointed and an interrupted run
resumed bitwise; d_loss, g_loss and the adaptive weight logged; the latent scale measured on
the autoencoder's own variables; config errors naming the key."""

import glob
import os
import runpy
import shutil

import jax
import numpy as np
import pytest

from diffax import ddgan, patchgan
from diffax.train import Checkpointer, build
from diffax.train._tensorboard import read_events
from diffax.train.loop import train_and_evaluate
from diffax.train.options import ConfigError

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "configs", "digits_ldm.py")


def _config(variant="autoencoder_gan_tiny"):
    return runpy.run_path(CONFIG)["get_config"](variant)


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def test_trains_both_networks_logs_and_resumes_bitwise(tmp_path):
    exp = build.build_experiment(_config())
    assert isinstance(exp.trainer, patchgan.AutoencoderGANTrainer)
    assert exp.trainer.loss.d_loss is patchgan.hinge_d_loss
    full = train_and_evaluate(_config(), tmp_path / "full", experiment=exp)
    state = full.state
    assert full.step == 4 and set(state.params) == {"generator", "discriminator"}
    assert isinstance(state.opt_state, ddgan.GANOptState)
    with Checkpointer(tmp_path / "full" / "checkpoints", save_every=2) as ckpt:
        assert ckpt.all_steps() == [2, 4]
        restored = ckpt.restore(state).state
    for part in ("params", "opt_state", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, _host(getattr(restored, part)),
                     _host(getattr(state, part)))
    # Logged every step: the discriminator is off at step 1 (disc_start = 1), on after.
    (events,) = glob.glob(str(tmp_path / "full" / "events.out.tfevents.*"))
    logged = {e["step"]: e["scalars"] for e in read_events(events) if "d_loss" in e["scalars"]}
    assert sorted(logged) == [1, 2, 3, 4]
    assert [logged[s]["disc_factor"] for s in (1, 2)] == [0.0, 1.0]
    assert logged[1]["d_loss"] == 0.0 and logged[2]["d_loss"] > 0
    assert all(np.isfinite(logged[s][k]) and logged[s]["adaptive_weight"] > 0
               for s in logged for k in ("g_loss", "adaptive_weight"))
    # The scale was measured through the autoencoder alone (its variables, not the pair).
    assert os.path.isfile(tmp_path / "full" / "latent_scale.json")

    # Stopped after step 2, resumed by a new call: bitwise the uninterrupted run (the same
    # experiment object: the loop reuses its compiled programs).
    shutil.copytree(tmp_path / "full" / "checkpoints", tmp_path / "part" / "checkpoints")
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "4")
    resumed = train_and_evaluate(_config(), tmp_path / "part", experiment=exp)
    assert resumed.restored_from == 2 and resumed.step == 4
    for part in ("params", "opt_state", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, _host(getattr(resumed.state, part)),
                     _host(getattr(state, part)))


@pytest.mark.parametrize("change, key", [
    ({"disc_weight": -0.5}, "loss.disc_weight"),
    ({"disc_start": -1}, "loss.disc_start"),
    ({"disc_factor": -1.0}, "loss.disc_factor"),
    ({"disc_loss": "wasserstein"}, "loss.disc_loss"),
    ({"disc_layers": 0}, "loss.disc_layers"),
    ({"disc_learning_rate": 0.0}, "loss.disc_learning_rate"),
    ({"disc_weight": 0.0}, "loss.disc_start"),  # a disc key while the discriminator is off
])
def test_bad_discriminator_keys_name_the_key(change, key):
    cfg = _config()
    with cfg.unlocked():
        cfg.loss.update(change)
    with pytest.raises(ConfigError) as err:
        build.check_config(cfg, num_devices=1)
    assert err.value.key == key


def test_too_deep_for_the_images_and_keys_outside_an_autoencoder():
    cfg = _config()
    cfg.loss.disc_layers = 3  # 16 -> 8 -> 4 -> 2 -> a grid of side 0
    with pytest.raises(ConfigError, match="patch grid of side 0") as err:
        build.build_experiment(cfg)
    assert err.value.key == "loss.disc_layers"
    cfg = _config("tiny")  # stage 2: a denoising loss has no discriminator
    cfg.unlock()
    cfg.loss.disc_weight = 0.5
    with pytest.raises(ConfigError) as err:
        build.check_config(cfg, num_devices=1)
    assert "disc_weight" in str(err.value)
    for variant in ("autoencoder_gan", "autoencoder_vqgan"):  # both autoencoders take it
        build.check_config(_config(variant), num_devices=8)


def test_vq_autoencoder_against_the_discriminator_traces_a_train_step():
    """The VQ autoencoder takes the discriminator too (taming's VQGAN): its codebook usage
    metrics still come from `post_update` (traced, not compiled)."""
    from diffax.train import TrainState

    cfg = _config("autoencoder_vqgan")
    cfg.unlock()
    cfg.model.variant = "tiny"
    cfg.train.batch_size = 4
    exp = build.build_experiment(cfg)
    assert isinstance(exp.trainer.loss.autoencoder_loss, type(build.build_autoencoder_loss(
        exp.options.loss, "autoencoder_vq")))
    step = exp.trainer.train_step()

    def run(key, x):
        state = TrainState.create(params=exp.model.init(key, *exp.model.example_inputs()),
                                  optimizer=exp.optimizer, key=key, ema_decays=(0.9,))
        return step(state, {"x": x})

    state, metrics = jax.eval_shape(run, jax.random.key(0), np.zeros((4, 16, 16, 1), np.float32))
    assert state.params["generator"]["params"]["codebook"].shape == (64, 2)
    assert {"codebook_fraction_used", "d_loss", "g_loss", "adaptive_weight"} <= set(metrics)
