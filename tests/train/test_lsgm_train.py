"""configs/digits_lsgm.py through the training loop: the tiny variant trains the encoder,
decoder and latent score model jointly (one compiled train step), its checkpoint restores into
the three parameter groups, and the sampling program decodes to data space (traced); bad
config values raise ConfigErrors naming the key before any compute."""

import importlib.util
import os

import jax
import numpy as np
import optax
import pytest

from diffax import lsgm
from diffax.train import build, evaluate, parallel
from diffax.train import lsgm as lsgm_train
from diffax.train.loop import train_and_evaluate
from diffax.train.options import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(variant="tiny"):
    spec = importlib.util.spec_from_file_location(
        "config_digits_lsgm", os.path.join(ROOT, "configs", "digits_lsgm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.get_config(variant)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lsgm")
    _, cfg = _config("tiny")
    return workdir, cfg, train_and_evaluate(cfg, workdir)


def test_config_docstring_and_variants():
    module, _ = _config("")
    first = module.__doc__.strip().splitlines()[0]
    assert first == "diffax train --config configs/digits_lsgm.py --workdir /tmp/digits_lsgm"
    assert os.path.exists(os.path.join(ROOT, "experiments", "digits_lsgm", "README.md"))
    for variant in ("", "uniform", "unweighted"):
        build.check_config(module.get_config(variant), num_devices=8)
    # lsgm.score_weighting maps to the typed objective (default: the joint ELBO, None).
    def weighting(variant, value=None):
        cfg = module.get_config(variant)
        if value is not None:
            cfg.unlock()
            cfg.lsgm.score_weighting = value
        return build.build_experiment(cfg).trainer.objective.score_weighting

    assert weighting("tiny") is None and weighting("tiny", "likelihood") is None
    assert isinstance(weighting("unweighted"), lsgm.UnweightedScore)
    assert isinstance(weighting("tiny", "reweighted"), lsgm.ReweightedScore)
    with pytest.raises(ValueError, match="unknown variant"):
        module.get_config("nope")


def test_tiny_variant_trains_jointly_and_restores(trained):
    workdir, cfg, result = trained
    assert result.step == 2 and os.path.isdir(workdir / "checkpoints" / "2")
    params = result.state.params
    assert set(params) == {"autoencoder", "score", "mixing_logits"}
    assert params["mixing_logits"].shape == (8, 8, 2)  # the tiny autoencoder's latents
    leaves = jax.tree.leaves(params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves)
    # The joint objective's gradient reaches every group: each group's own Adam moments
    # (optax.multi_transform keeps one state per group) are non-zero after two steps.
    exp = build.build_experiment(cfg)
    for group in ("autoencoder", "score"):
        inner = result.state.opt_state.inner_states[group]
        moments = [np.asarray(leaf) for leaf in jax.tree.leaves(inner)
                   if np.ndim(leaf) > 0 and np.issubdtype(np.asarray(leaf).dtype, np.floating)]
        assert moments and any(np.any(m != 0) for m in moments), group
    # The checkpoint restores into the same three groups (what `diffax sample` / resumption
    # read), bit for bit.
    restored = evaluate.restore(str(workdir), exp)
    assert restored.step == 2
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                        restored.state.params, params)
    assert all(jax.tree.leaves(same))
    # Sampling: latents by the mixed-score denoiser, decoded by the trained decoder (traced).
    run = evaluate.sampling_program(exp, batch=8, mesh=parallel.make_mesh())
    x, _ = jax.eval_shape(run, params, jax.random.key(0), None)
    assert x.shape == (8, 16, 16, 1)
    assert isinstance(exp.trainer.objective.time_sampler, lsgm.NormalImportanceTime)


def test_likelihood_command_reports_the_bound_in_bits_per_dim(trained, capsys):
    """`diffax likelihood` of the trained :tiny run: the LSGM bound (encoder draw, mixed-score
    PF-ODE, the trained decoder's std discretised to 8 bits, -log q), labelled a bound, whose
    bits/dim is the sum of its terms; the closed-form oracle is tests/test_lsgm_likelihood.py."""
    import json
    import math

    from diffax import cli

    workdir, cfg, _ = trained
    assert cli.main(["likelihood", f"--workdir={workdir}", "--config.eval.likelihood_examples=4",
                     "--config.eval.divergence=hutchinson", "--config.eval.rtol=0.01",
                     "--config.eval.atol=0.01"]) == 0
    assert "bits/dim (upper bound)" in capsys.readouterr().out
    out = json.loads((workdir / "eval" / "likelihood.json").read_text())
    terms = out["terms_bits_per_dim"]
    assert out["num_examples"] == 4 and out["num_failed"] == 0 and out["step"] == 2
    assert out["unit"] == "bits/dim (upper bound)" and "log q(u|x)" in out["bound"]
    assert out["value"] == pytest.approx(sum(terms.values()), rel=1e-6)  # float32 terms
    assert terms["log_det_scale"] == 0.0 and out["scale_factor"] == 1.0
    assert out["decoder"]["std"] == cfg.lsgm.decoder_std and out["latent_dims"] == 128
    # -log q(z|x) of a diagonal Gaussian draw: its entropy on average, finite and non-zero.
    assert math.isfinite(terms["posterior_logq"]) and terms["posterior_logq"] != 0.0


def test_optimiser_groups_follow_the_parameter_groups():
    params = {"autoencoder": {"w": np.ones(2)}, "score": {"w": np.ones(2)},
              "mixing_logits": np.ones(3)}
    assert lsgm_train.param_labels(params) == {
        "autoencoder": {"w": "autoencoder"}, "score": {"w": "score"},
        "mixing_logits": "score"}
    _, cfg = _config("tiny")
    exp = build.build_experiment(cfg)
    trainer = exp.trainer
    trainer = type(trainer)(**{**trainer.__dict__, "score_optimizer": optax.sgd(0.1),
                               "autoencoder_optimizer": optax.sgd(1.0)})
    grads = jax.tree.map(np.ones_like, params)
    updates, _ = trainer.optimizer.update(grads, trainer.optimizer.init(params), params)
    assert float(updates["autoencoder"]["w"][0]) == -1.0
    assert float(updates["score"]["w"][0]) == pytest.approx(-0.1)
    assert float(updates["mixing_logits"][0]) == pytest.approx(-0.1)


@pytest.mark.parametrize("key, value, match", [
    ("lsgm.decoder_std", 0.0, "lsgm.decoder_std"),
    ("lsgm.time_sampler", "sobol", "lsgm.time_sampler"),
    ("lsgm.score_weighting", "uniform", "lsgm.score_weighting"),
    ("lsgm.autoencoder_learning_rate", -1.0, "lsgm.autoencoder_learning_rate"),
    ("lsgm.autoencoder_kwargs", {"nope": 1}, "lsgm.autoencoder_kwargs"),
    ("lsgm.nope", 1, "lsgm.nope"),
    ("loss.prediction", "x0", "loss.prediction"),
    ("latent", {"workdir": "/tmp/ae"}, "latent"),
    ("model.kwargs.image_size", 16, "model.kwargs.image_size"),
])
def test_bad_input_names_the_key(key, value, match):
    _, cfg = _config("tiny")
    cfg.unlock()
    node = cfg
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError, match=match.replace(".", r"\.")) as e:
        build.build_experiment(cfg)
    assert e.value.key.startswith(match)
