"""Every config in configs/: its command line, its keys, its model, and a few steps of `tiny`."""

import glob
import importlib.util
import os

import jax
import numpy as np
import pytest

from diffax import data, models
from diffax.train import build
from diffax.train.loop import train_and_evaluate
from diffax.train.options import EVAL_DEFAULTS, SAMPLE_DEFAULTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
NAMES = [os.path.splitext(os.path.basename(p))[0] for p in CONFIGS]

# The keys outside acceptance checks override on the command line (DESIGN.md).
OVERRIDDEN = ("seed", "data.name", "train.num_steps", "train.batch_size",
              "train.checkpoint_every", "sample.solver", "sample.num_steps",
              "sample.num_samples")

# Data each full config is meant for (the cifar10 ones cannot be prepared offline).
SHAPES = {"toy2d": (2,), "digits": (8, 8, 1), "cifar10": (32, 32, 3),
          "digits_stacked": (8, 8, 3),
          "pydoc_text": (256,), "digits_tokens": (64,)}
# Configs of discrete processes (token data): tests/discrete/test_discrete_cli.py trains,
# samples and evaluates their tiny variants through `diffax`.
DISCRETE = ("text8_masked", "text8_d3pm_absorbing", "digits_d3pm")
# Two-stage latent diffusion configs: stage 2 reads a stage-1 checkpoint, so they cannot be
# built alone; tests/train/test_latent_train.py runs both stages of their tiny variants.
LATENT = ("digits_ldm", "digits_lsgm", "digits_divae")  # tests/train/test_{lsgm,divae}_train.py


def load(name):
    spec = importlib.util.spec_from_file_location(f"config_{name}",
                                                  os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_info(name):
    shape = SHAPES[name.split("/")[0]]
    image = len(shape) == 3
    tokens = name in ("pydoc_text", "digits_tokens")
    return data.DataInfo(name=name, shape=shape,
                         dtype="uint8" if image else "int32" if tokens else "float32",
                         is_image=image, value_range=(0.0, 255.0) if image else None,
                         num_classes=10 if image else None, class_names=None, num_examples={},
                         x_key="image" if image else "x", label_key="label" if image else None)


def get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_the_expected_configs_exist():
    assert set(NAMES) >= {"toy2d_vp", "toy2d_flow", "digits_ddpm", "digits_edm",
                          "digits_vp_continuous", "digits_demo", "cifar10_ddpmpp_vp",
                          "cifar10_ncsnpp_ve", "cifar10_edm"}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in LATENT])
def test_docstring_command_keys_and_objects(name):
    module = load(name)
    first = module.__doc__.strip().splitlines()[0]
    if name == "digits_demo":
        assert first == "diffax demo --workdir /tmp/diffax-demo"
    else:
        assert first.startswith(f"diffax train --config configs/{name}.py --workdir "), first
    assert os.path.exists(os.path.join(ROOT, "experiments", name, "README.md"))
    for variant in ("", "tiny"):
        cfg = module.get_config(variant) if variant else module.get_config()
        assert cfg.is_locked
        for key in OVERRIDDEN:
            get(cfg, key)  # exists, so `--config.<key>=...` works
        assert set(cfg.sample) >= set(SAMPLE_DEFAULTS) - {"rtol", "atol", "order", "eta",
                                                           "snr", "churn"}
        assert set(cfg.eval) == set(EVAL_DEFAULTS)
        process = build.build_process(build.section(cfg, "process"))
        build.build_loss(build.section(cfg, "loss"), process)
        build.build_optimizer(build.section(cfg, "optim"), num_steps=cfg.train.num_steps)
        build.build_solver(build.section(cfg, "sample"))
        model, _ = build.build_model(build.section(cfg, "model"), fake_info(cfg.data.name),
                                     process)
        if cfg.data.name == "cifar10":
            assert model.config.image_size == 32
    with pytest.raises(ValueError, match="unknown variant"):
        module.get_config("nope")


@pytest.mark.parametrize("name, millions", [("cifar10_ddpmpp_vp", 61.8), ("cifar10_edm", 55.7)])
def test_paper_model_sizes(name, millions):
    # score_sde reports 62M parameters for DDPM++ cont.; EDM 55.7M for its DDPM++ (config F).
    cfg = load(name).get_config()
    model, _ = build.build_model(build.section(cfg, "model"), fake_info("cifar10"))
    assert models.count_params(model) / 1e6 == pytest.approx(millions, abs=0.1)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in LATENT])
def test_tiny_variant_traces_a_train_step_and_the_sampler(name):
    # Abstract evaluation (no compilation): the config's process, loss, model, optimizer, data
    # and solver fit together. The slow test below runs real steps.
    from diffax import samplers
    from diffax.train import TrainState, make_train_step

    cfg = load(name).get_config("tiny")
    exp = build.build_experiment(cfg)
    state = jax.eval_shape(lambda k: TrainState.create(
        params=exp.model.init(k, *exp.model.example_inputs()), optimizer=exp.optimizer, key=k,
        ema_decays=exp.ema_decays), jax.random.key(0))
    discrete = name in DISCRETE
    batch = {"x": jax.ShapeDtypeStruct((cfg.train.batch_size, *exp.data_info.shape),
                                       np.int32 if discrete else np.float32)}
    if exp.data_info.num_classes:
        batch["label"] = jax.ShapeDtypeStruct((cfg.train.batch_size,), np.int32)
    if exp.trainer is not None:  # a denoising diffusion GAN (diffax.ddgan): its own update
        step = exp.trainer.train_step(learning_rate=exp.schedule, ema_warmup=exp.ema_warmup)
    else:
        step = make_train_step(exp.loss.bind(exp.train_apply_fn), exp.optimizer,
                               learning_rate=exp.schedule, ema_warmup=exp.ema_warmup)
    new_state, metrics = jax.eval_shape(step, state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert metrics["loss"].shape == ()
    if discrete:
        from diffax import discrete as dsc

        sample = lambda params: dsc.sample(
            jax.random.key(0), exp.process, exp.loss.denoiser(exp.apply_fn, params),
            shape=(4, *exp.data_info.shape), num_steps=exp.sample_steps, method=exp.solver).x
        assert jax.eval_shape(sample, state.params).shape == (4, *exp.data_info.shape)
        return
    x_init = jax.ShapeDtypeStruct((4, *exp.data_info.shape), np.float32)
    state_init = x_init if exp.process.scalar_coefficients else (x_init, x_init)  # CLD: (x, v)
    denoiser = exp.denoiser if exp.trainer is not None else (  # DDGAN: the generator
        lambda params: exp.loss.denoiser(exp.apply_fn, params))
    sample = lambda params, x: jax.tree.leaves(samplers.sample(
        jax.random.key(0), exp.process, denoiser(params), x,
        solver=exp.solver, num_steps=exp.sample_steps,
        denoise_final=bool(cfg.sample.denoise_final)).x)[0]
    assert jax.eval_shape(sample, state.params, state_init).shape == x_init.shape


# digits_demo is left out: tests/test_cli.py::test_demo_tiny_writes_everything trains the same
# config (4 steps through `diffax demo`) and checks its checkpoint and outputs. digits_cld is
# left out to keep the CLD tests within their CPU budget (35 s here): the test above traces its
# train step and sampler, and toy2d_cld runs the same CLD loss, loop and sampler for real.
# digits_ddgan and toy2d_ddgan likewise (the DDGAN budget): traced above; and
# tests/train/test_ddgan_train.py trains, resumes and samples toy2d_ddgan's tiny variant.
# The DDGAN comparison's configs (digits_stacked_ddgan, and the diffusion baselines
# digits_ddgan_vp, digits_stacked_vp: the UNet loss and loop of digits_ddpm) likewise.
DDGAN_DIGITS = ("digits_ddgan", "digits_stacked_ddgan", "digits_ddgan_vp", "digits_stacked_vp")


@pytest.mark.parametrize("name", [
    n if n.startswith("toy2d") else pytest.param(n, marks=pytest.mark.slow)
    for n in NAMES if n not in ("digits_demo", "digits_cld", "toy2d_ddgan") + DDGAN_DIGITS
    and n not in DISCRETE + LATENT])
def test_tiny_variant_trains_two_steps(name, tmp_path):
    # The MLP configs take ~8 s; the UNet ones 15-30 s each on 2 CPU cores (compilation on 8
    # simulated devices), so they are marked slow.
    cfg = load(name).get_config("tiny")
    cfg.train.num_steps = 2
    cfg.train.checkpoint_every = 2
    cfg.train.log_every = 1
    cfg.train.n_jitted_steps = 1
    result = train_and_evaluate(cfg, tmp_path)
    assert result.step == 2 and not result.preempted
    leaves = jax.tree.leaves(result.state.params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves)
    assert os.path.isdir(tmp_path / "checkpoints" / "2")
