"""configs/digits_divae.py through the training loop: stage 1 trains a tiny VQ autoencoder whose
codebook follows EMA updates (no gradient), stage 2 trains the DiVAE diffusion decoder on its
codes; `diffax sample` / `eval` decode held-out codes; bad input names the key."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import divae, latent
from diffax.train import build, evaluate
from diffax.train.loop import train_and_evaluate
from diffax.train.options import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(variant):
    spec = importlib.util.spec_from_file_location(
        "config_digits_divae", os.path.join(ROOT, "configs", "digits_divae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.get_config(variant)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("divae_stage1")
    _, cfg = _config("autoencoder_tiny")
    return workdir, cfg, train_and_evaluate(cfg, workdir)


def _stage2(workdir, **changes):
    _, cfg = _config("tiny")
    cfg.unlock()
    cfg.latent.workdir = str(workdir)
    for key, value in changes.items():
        section, name = key.split(".")
        cfg[section][name] = value
    return cfg


def test_ema_codebook_update_of_a_training_run_is_the_ema_formula(stage1):
    """The run's second update against the EMA formula by hand (float64 numpy): the
    checkpointed parameters of step 1 (``vq_ema`` statistics included) encode the second batch
    of the same data iterator; the result must be the step-2 codebook and statistics. Usage is
    logged."""
    workdir, cfg, result = stage1
    exp = build.build_experiment(cfg)
    assert isinstance(exp.loss.ema, latent.CodebookEMA) and exp.loss.ema.decay == 0.9
    params = result.state.params
    assert result.step == 2 and sorted(params) == ["params", "vq_ema"]
    before = evaluate.restore(str(workdir), exp, step=1).state.params
    batches = build.build_data_iterator(cfg.data, seed=cfg.seed, batch_size=16)
    next(batches)
    out = jax.jit(exp.model.apply)(before, next(batches)["x"])
    z = np.asarray(out["z_e"], np.float64).reshape(-1, 2)
    idx = np.asarray(out["indices"]).reshape(-1)
    n_k = np.bincount(idx, minlength=64)
    stats = {k: np.asarray(v, np.float64) for k, v in before["vq_ema"].items()}
    counts = 0.9 * stats["counts"] + 0.1 * n_k
    sums = 0.9 * stats["sums"] + 0.1 * np.stack([z[idx == k].sum(0) for k in range(64)])
    total = counts.sum()
    want = sums / ((counts + 1e-5) / (total + 64e-5) * total)[:, None]
    np.testing.assert_allclose(np.asarray(params["params"]["codebook"]), want, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(params["vq_ema"]["counts"]), counts, rtol=1e-6)
    assert not np.allclose(want, np.asarray(before["params"]["codebook"]))
    events = "".join(open(os.path.join(workdir, f), "rb").read().decode("latin-1")
                     for f in os.listdir(workdir) if "tfevents" in f)
    assert "codebook_fraction_used" in events and "codebook_perplexity" in events


def test_ema_loss_sends_no_gradient_to_the_codebook():
    """A stand-in network whose code is the codebook's nearest codeword: with ``ema`` the
    loss's gradient to the codebook is exactly zero; without it (the codebook term) it is not."""
    x = jax.random.normal(jax.random.key(0), (4, 3, 2))

    def fn(p, x, key=None):
        z_e = p["w"] * x
        z_q, idx = latent.quantize(z_e, p["codebook"])
        z_st = z_e + jax.lax.stop_gradient(z_q - z_e)
        return {"recon": 2.0 * z_st, "z_e": z_e, "z_q": z_q, "indices": idx}

    params = {"w": jnp.array(0.7), "codebook": jax.random.normal(jax.random.key(1), (5, 2))}
    grad = lambda ema: jax.grad(lambda p: latent.AutoencoderVQLoss(ema=ema).bind(fn)(
        p, jax.random.key(0), x)[0])(params)
    with_ema, without = jax.jit(lambda: (grad(latent.CodebookEMA()), grad(None)))()
    assert float(jnp.max(jnp.abs(with_ema["codebook"]))) == 0.0
    assert float(jnp.max(jnp.abs(without["codebook"]))) > 0
    assert float(jnp.abs(with_ema["w"])) > 0 and float(jnp.abs(without["w"])) > 0
    with pytest.raises(ValueError, match="`decay`"):
        latent.CodebookEMA(decay=1.0)


def test_divae_tiny_trains_samples_and_evaluates(stage1, tmp_path):
    workdir, _, _ = stage1
    cfg = _stage2(workdir)
    exp = build.build_experiment(cfg)  # restores the stage-1 checkpoint (vq_ema included)
    result = train_and_evaluate(cfg, tmp_path, experiment=exp)
    assert result.step == 2
    assert isinstance(exp.divae, divae.DiVAE) and exp.divae.cond_shape == (16, 16, 2)
    assert exp.model.config.in_channels == 3 and exp.model.config.num_channels == 1
    trained = evaluate.restore(str(tmp_path), exp)  # what resuming restores
    assert trained.step == 2
    out = evaluate.sample(trained, str(tmp_path))
    with np.load(out["npz"]) as f:
        assert f["x"].shape == f["original"].shape == f["vq_decoder"].shape == (16, 16, 16, 1)
        assert f["x"].dtype == np.uint8
    m = evaluate.evaluate(trained, str(tmp_path))
    assert m["data"]["num_reconstructed"] == 16
    assert set(m["psnr_db"]) == {"divae", "vq_decoder"}
    d8 = m["digits_8x8"]
    assert set(d8["fd_pca"]) == {"divae", "vq_decoder", "originals", "training_digits_floor"}
    assert d8["digit_score"]["originals"] == 1.0  # the 8x8 round trip keeps every label
    assert "| divae |" in m["table"]
    with pytest.raises(ConfigError, match="latent.role"):
        evaluate.likelihood(trained, str(tmp_path))
    with pytest.raises(ValueError, match="DiVAE"):
        evaluate.sampling_program(exp, batch=8, mesh=trained.mesh)


def test_config_docstring_and_variants():
    module, cfg = _config("")
    first = module.__doc__.strip().splitlines()[0]
    assert first == "diffax train --config configs/digits_divae.py --workdir /tmp/digits_divae"
    assert cfg.latent.workdir == module.STAGE1_WORKDIR and cfg.latent.role == "decoder"
    assert os.path.exists(os.path.join(ROOT, "experiments", "digits_divae", "README.md"))
    build.check_config(module.get_config("autoencoder"), num_devices=8)
    with pytest.raises(ValueError, match="unknown variant"):
        module.get_config("nope")


def test_bad_input_names_the_key(stage1):
    workdir, _, _ = stage1
    for key, changes in (("latent.role", {"latent.role": "posterior"}),
                         ("model.name", {"model.name": "mlp", "model.variant": "tiny"}),
                         ("train.sample_every", {"train.sample_every": 1})):
        with pytest.raises(ConfigError, match=key) as e:
            build.build_experiment(_stage2(workdir, **changes))
        assert e.value.key == key
    _, ae = _config("autoencoder_tiny")
    ae.unlock()
    ae.loss.codebook_update = "kmeans"
    with pytest.raises(ConfigError, match="codebook_update") as e:
        build.check_config(ae, num_devices=8)
    ae.loss.codebook_update = "ema"
    ae.model.kwargs.codebook_ema = False
    with pytest.raises(ConfigError, match="codebook_ema") as e:
        build.build_experiment(ae)
    assert e.value.key == "model.kwargs.codebook_ema"
