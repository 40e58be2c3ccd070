"""configs/digits_ldm.py through the training loop: stage 1 trains a tiny KL autoencoder and
measures its latent scale; stage 2 is built from that checkpoint (traced, not compiled: the
stage-2 train step is the ordinary UNet step, tested elsewhere)."""

import importlib.util
import json
import os
import shutil

import jax
import numpy as np
import pytest

from diffax import latent
from diffax.train import TrainState, build, evaluate, make_train_step, parallel
from diffax.train import latent as latent_train
from diffax.train.loop import train_and_evaluate
from diffax.train.options import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(variant):
    spec = importlib.util.spec_from_file_location(
        "config_digits_ldm", os.path.join(ROOT, "configs", "digits_ldm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.get_config(variant)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ldm_stage1")
    _, cfg = _config("autoencoder_tiny")
    result = train_and_evaluate(cfg, workdir)
    return workdir, cfg, result


def _stage2(workdir, **latent_overrides):
    _, cfg = _config("tiny")
    cfg.unlock()
    cfg.latent.workdir = str(workdir)
    for k, v in latent_overrides.items():
        cfg.latent[k] = v
    return cfg


def test_config_docstring_and_variants():
    module, cfg = _config("")
    first = module.__doc__.strip().splitlines()[0]
    assert first == "diffax train --config configs/digits_ldm.py --workdir /tmp/digits_ldm"
    assert cfg.latent.workdir == module.STAGE1_WORKDIR
    assert os.path.exists(os.path.join(ROOT, "experiments", "digits_ldm", "README.md"))
    for variant in ("autoencoder", "autoencoder_vq"):
        build.check_config(module.get_config(variant), num_devices=8)
    with pytest.raises(ValueError, match="unknown variant"):
        module.get_config("nope")


def test_vq_autoencoder_config_traces_a_train_step():
    module, _ = _config("")
    cfg = module.get_config("autoencoder_vq")
    cfg.unlock()
    cfg.model.variant = "tiny"
    exp = build.build_experiment(cfg)
    assert isinstance(exp.loss, latent.AutoencoderVQLoss) and exp.loss.commitment == 0.25
    state = jax.eval_shape(lambda k: TrainState.create(
        params=exp.model.init(k, *exp.model.example_inputs()), optimizer=exp.optimizer, key=k,
        ema_decays=exp.ema_decays), jax.random.key(0))
    assert state.params["params"]["codebook"].shape == (64, 2)  # the tiny variant's
    batch = {"x": jax.ShapeDtypeStruct((8, 16, 16, 1), np.float32)}
    step = make_train_step(exp.loss.bind(exp.train_apply_fn), exp.optimizer)
    _, metrics = jax.eval_shape(step, state, batch)
    assert metrics["loss"].shape == ()
    with pytest.raises(ValueError, match="autoencoder"):
        evaluate.sampling_program(exp, batch=8, mesh=parallel.make_mesh())


def test_stage1_writes_a_scale_that_makes_the_training_latents_unit_std(stage1):
    workdir, cfg, result = stage1
    assert result.step == 2 and os.path.isdir(workdir / "checkpoints" / "2")
    stored = json.loads((workdir / latent_train.SCALE_FILE).read_text())
    assert stored["step"] == 2 and stored["num_examples"] == 1497
    assert stored["latent_shape"] == [8, 8, 2]
    # Re-encode the training split (same parameters, same posterior draws): std * scale = 1.
    exp = build.build_experiment(cfg)
    params = result.state.sampling_params(use_ema=True)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 17)
    _, z = latent_train.encode_split(exp, params, "train", key=key)
    assert np.std(z.astype(np.float64)) * stored["scale_factor"] == pytest.approx(1.0, rel=1e-6)


def test_stage2_reads_the_checkpoint_and_decodes_samples(stage1):
    workdir, _, _ = stage1
    cfg = _stage2(workdir)
    exp = build.build_experiment(cfg)
    assert isinstance(exp.latent, latent.Latent)
    assert exp.latent.latent_shape == (8, 8, 2) and exp.data_info.shape == (16, 16, 1)
    assert exp.model.config.image_size == 8 and exp.model.config.num_channels == 2
    scale = json.loads((workdir / latent_train.SCALE_FILE).read_text())["scale_factor"]
    assert float(exp.latent.scale_factor) == scale
    state = jax.eval_shape(lambda k: TrainState.create(
        params=exp.model.init(k, *exp.model.example_inputs()), optimizer=exp.optimizer, key=k,
        ema_decays=exp.ema_decays), jax.random.key(0))
    batch = {"x": jax.ShapeDtypeStruct((16, 16, 16, 1), np.float32)}
    step = make_train_step(exp.loss.bind(exp.train_apply_fn), exp.optimizer)
    _, metrics = jax.eval_shape(step, state, batch)
    assert metrics["loss"].shape == ()
    run = evaluate.sampling_program(exp, batch=8, mesh=parallel.make_mesh())
    x, _ = jax.eval_shape(run, state.params, jax.random.key(0), None)
    assert x.shape == (8, 16, 16, 1)  # decoded to data space


def test_stage2_bad_input_names_the_key(stage1, tmp_path):
    workdir, _, _ = stage1
    with pytest.raises(ConfigError, match="latent.autoencoder") as e:
        build.build_experiment(_stage2(workdir, autoencoder="autoencoder_vq"))
    assert e.value.key == "latent.autoencoder"
    with pytest.raises(ConfigError, match="no checkpoints") as e:
        build.build_experiment(_stage2(tmp_path))
    assert e.value.key == "latent.workdir"
    cfg = _stage2(workdir)
    cfg.model.kwargs.image_size = 16
    with pytest.raises(ConfigError, match=r"latent shape \(8, 8, 2\)") as e:
        build.build_experiment(cfg)
    assert e.value.key == "model.kwargs.image_size"
    with pytest.raises(ConfigError, match="latent.step") as e:
        build.build_experiment(_stage2(workdir, step=7))
    # A copy of the run without its latent_scale.json: the missing scale is named.
    copy = tmp_path / "no_scale"
    shutil.copytree(workdir, copy)
    os.remove(copy / latent_train.SCALE_FILE)
    with pytest.raises(ConfigError, match="latent_scale.json") as e:
        build.build_experiment(_stage2(copy))
    assert e.value.key == "latent.workdir"
    assert build.build_experiment(_stage2(copy, scale_factor=0.5)).latent.scale_factor == 0.5
    # An autoencoder config takes no process, and its loss has its own keys.
    _, ae = _config("autoencoder_tiny")
    ae.unlock()
    ae.loss.weighting = "eps"
    with pytest.raises(ConfigError, match="loss.weighting") as e:
        build.check_config(ae, num_devices=8)
    del ae.loss["weighting"]
    ae.process = {"name": "vp"}
    with pytest.raises(ConfigError, match="config.process does not apply") as e:
        build.check_config(ae, num_devices=8)


def test_stage2_likelihood_is_latent_nll_plus_decoder_term_in_bits_per_dim(stage1, tmp_path):
    """`diffax likelihood` of a stage-2 run (untrained UNet: the bookkeeping is what is
    checked): the reported bits/dim is the sum of its terms, the scale's term is the closed
    form -D log s / (N ln 2), and with KL posterior samples it is labelled a bound."""
    import math

    workdir, _, _ = stage1
    cfg = _stage2(workdir)
    cfg.eval.update({"likelihood_examples": 4, "divergence": "hutchinson", "rtol": 1e-2,
                     "atol": 1e-2})
    exp = build.build_experiment(cfg)
    state = jax.jit(lambda k: TrainState.create(
        params=exp.model.init(k, *exp.model.example_inputs()), optimizer=exp.optimizer, key=k,
        ema_decays=exp.ema_decays))(jax.random.key(0))
    trained = evaluate.Trained(exp=exp, state=state, step=0, mesh=parallel.make_mesh())
    out = evaluate.likelihood(trained, str(tmp_path))
    terms = out["terms_bits_per_dim"]
    assert out["num_examples"] == 4 and out["num_failed"] == 0
    assert out["value"] == pytest.approx(sum(terms.values()), rel=1e-6)  # float32 terms
    scale = float(exp.latent.scale_factor)
    assert terms["log_det_scale"] == pytest.approx(-128 * math.log(scale) / (256 * math.log(2)))
    assert out["unit"] == "bits/dim (upper bound)" and out["decoder"]["std"] > 0
    assert json.loads((tmp_path / "eval" / "likelihood.json").read_text())["value"] == out["value"]
