"""`diffax train | sample | likelihood | eval` on configs/toy2d_cld.py:tiny (CLD's state
``(x, v)``): one tiny training shared by the tests (module-scoped workdir)."""

import json
import math
import os

import jax
import numpy as np
import pytest

from diffax import cld, cli, data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "toy2d_cld.py")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("cld_cli") / "run")
    # Half the tiny variant's 300 steps (CPU budget): still far from the untrained network.
    assert cli.main(["train", f"--config={CONFIG}:tiny", f"--workdir={wd}",
                     "--config.train.num_steps=150"]) == 0
    return wd


def test_sample(workdir, capsys):
    code, out, err = run(capsys, "sample", f"--workdir={workdir}",
                         "--config.sample.num_samples=100")
    assert code == 0, err
    npz = [f for f in os.listdir(os.path.join(workdir, "samples")) if f.endswith(".npz")]
    with np.load(os.path.join(workdir, "samples", npz[0])) as f:
        x, nfe = f["x"], int(f["nfe"])
    # The data part x of the state (x, v), in the data's own layout; SSCS: 1 NFE per step.
    assert x.shape == (100, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert nfe == 20


def test_likelihood_is_the_papers_bound(workdir, capsys):
    code, out, err = run(capsys, "likelihood", f"--workdir={workdir}",
                         "--config.eval.likelihood_examples=8")
    assert code == 0, err
    assert "CLD bound" in out and "bits/dim" in out
    with open(os.path.join(workdir, "eval", "likelihood.json")) as f:
        r = json.load(f)
    assert r["unit"] == "nats" and r["num_examples"] == 8 and r["num_failed"] == 0
    assert "upper bound on -log p(x0)" in r["bound"] and r["nfe"] > 0
    # The two units of the same number: 2 data dimensions.
    assert r["nats"]["value"] == r["value"]
    assert r["bits_per_dim"]["value"] == pytest.approx(r["value"] / (2 * math.log(2)),
                                                       rel=1e-12)
    # The number is diffax.cld.data_log_likelihood_bound of the restored EMA network on the
    # first 8 test points, with the command's key (seed 0, tag 7, batch 0) and tolerances
    # (rtol = atol = 1e-5): equal up to float32 round-off through the adaptive ODE solve in a
    # different compiled program (measured relative difference 1e-5; at rtol = atol = 1e-3 it is
    # 1e-2, the solver's own error). A wrong quantity, e.g. log p(x, v) without the velocity's
    # -log N(v; 0, gamma M), would be off by nats.
    from diffax.train import build, evaluate

    raw, _ = evaluate.stored_config(workdir)
    trained = evaluate.restore(workdir, build.build_experiment(raw))
    x = np.asarray(data.load_split("toy2d/eight_gaussians", split="test")["x"][:8], np.float32)
    key = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 7), 0))[1]
    exp = trained.exp
    bound = jax.jit(lambda params, x: cld.data_log_likelihood_bound(
        key, exp.process, exp.denoiser(params), x, rtol=1e-5, atol=1e-5))(
        trained.state.sampling_params(use_ema=True), x)
    np.testing.assert_allclose(-float(np.mean(bound)), r["value"], rtol=1e-4)
    # (No comparison with the prior: after the tiny config's 300 steps of eps-weighted HSM the
    # bound was measured at 3.76 nats on these 8 points, above the N(0, I) prior's 3.66.)
    assert np.isfinite(r["value"])


def test_eval_scores_samples(workdir, capsys):
    code, out, err = run(capsys, "eval", f"--workdir={workdir}",
                         "--config.eval.num_samples=128", "--config.eval.likelihood=False")
    assert code == 0, err
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert m["samples"]["num"] == 128 and m["samples"]["nfe"] == 20
    assert m["samples"]["num_finite"] == 128
    # Measured (300 steps, 200 samples): sliced W2 0.25 (training points 0.19, untrained 11.2),
    # FD in PCA features 0.019 (training points 0.017, untrained 126).
    untrained = m["reference"]["untrained_model"]
    assert m["sliced_wasserstein"] < 0.1 * untrained["sliced_wasserstein"]
    assert m["fd_pca"] < 0.1 * untrained["fd_pca"]
    assert m["reference"]["train_vs_held_out"]["sliced_wasserstein"] < m["sliced_wasserstein"]
    assert "FD in PCA features" in out
