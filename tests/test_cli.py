"""The `diffax` command: an end-to-end run on toy 2-D data, and every usage error path."""

import json
import os

import numpy as np
import pytest

from diffax import cli, data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy2d_vp.py")


def snapshot(path):
    """Every file and directory under `path` with its size and mtime (None if absent)."""
    if not os.path.exists(path):
        return None
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.stat(full)
            out[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
    return out


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, argv, *, names, untouched=()):
    before = {p: snapshot(p) for p in untouched}
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"diffax {argv[0]}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    for p in untouched:
        assert snapshot(p) == before[p], f"{p} changed"
    return lines[0]


def prior_sliced_wasserstein(test_x, num, *, seed=0):
    from diffax.evaluation import metrics

    noise = np.random.default_rng(seed).normal(size=(num, 2))
    return metrics.sliced_wasserstein(noise, test_x)


def test_train_sample_likelihood_eval_end_to_end(tmp_path, capsys):
    wd = str(tmp_path / "run")
    code, out, err = run(capsys, "train", f"--config={TOY}:tiny", f"--workdir={wd}",
                         "--config.train.num_steps=500", "--config.seed=1")
    assert code == 0, err
    assert "step 500/500" in out
    assert sorted(os.listdir(os.path.join(wd, "checkpoints")), key=int)[-1] == "500"

    # A usage error after training leaves the workdir exactly as it was.
    assert_usage_error(capsys, ["sample", f"--workdir={wd}", "--config.model.variant=toy2d"],
                       names=["--config.model.variant"], untouched=[wd])
    assert_usage_error(capsys, ["sample", f"--workdir={wd}", "--config.sample.solver=nope"],
                       names=["sample.solver", "'nope'"], untouched=[wd])
    assert_usage_error(capsys, ["eval", f"--workdir={wd}", "--config.eval.num_samplez=3"],
                       names=["eval.num_samplez", "eval.num_samples"], untouched=[wd])

    code, out, err = run(capsys, "sample", f"--workdir={wd}", "--config.sample.solver=heun",
                         "--config.sample.num_steps=8", "--config.sample.num_samples=200")
    assert code == 0, err
    npz = [f for f in os.listdir(os.path.join(wd, "samples")) if f.endswith(".npz")]
    assert len(npz) == 1
    with np.load(os.path.join(wd, "samples", npz[0])) as f:
        x, value_range, nfe = f["x"], f["range"], int(f["nfe"])
    assert x.shape == (200, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert value_range.tolist() == [-np.inf, np.inf]
    assert nfe == 16  # Heun: 2 evaluations per step
    assert os.path.exists(os.path.join(wd, "samples", npz[0][:-4] + ".png"))

    code, out, err = run(capsys, "eval", f"--workdir={wd}", "--config.eval.num_samples=1000")
    assert code == 0, err
    with open(os.path.join(wd, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert m["step"] == 500 and m["samples"]["num"] == 1000 and m["samples"]["nfe"] == 100
    test_x = data.load_split("toy2d/eight_gaussians", split="test")["x"]
    # A fixed untrained baseline: samples of the prior N(0, I), about what the zero-initialised
    # network samples. Measured with seeds 0-2 (2 CPU cores): trained 0.25-0.26, the prior
    # 0.54, the untrained model 0.52-0.55, training examples 0.064 (the floor); the Fréchet
    # distance: trained 0.006-0.019, untrained 0.17-0.19.
    baseline = prior_sliced_wasserstein(test_x, 1000)
    assert m["sliced_wasserstein"] < 0.7 * baseline
    untrained = m["reference"]["untrained_model"]
    assert untrained["sliced_wasserstein"] == pytest.approx(baseline, rel=0.2)
    assert m["sliced_wasserstein"] < 0.7 * untrained["sliced_wasserstein"]
    assert m["fd_pca"] < 0.3 * untrained["fd_pca"]
    floor = m["reference"]["train_vs_held_out"]
    assert floor["sliced_wasserstein"] < m["sliced_wasserstein"]
    # The NLL in nats beats the prior's (measured: 3.14-3.15 against 3.9; the data's own
    # entropy is 2.14).
    nll = m["nll"]
    prior_nll = float(np.mean(0.5 * np.sum(test_x[:nll["num_examples"]] ** 2, axis=1)
                              + np.log(2 * np.pi)))
    assert nll["unit"] == "nats" and nll["num_failed"] == 0
    assert nll["value"] < prior_nll - 0.5
    assert m["nfe"]["likelihood_mean"] > 0
    with open(os.path.join(wd, "eval", "likelihood.json")) as f:
        assert json.load(f)["value"] == nll["value"]
    assert "FD in PCA features" in out and "NLL (nats)" in out


def test_usage_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    wd = str(tmp_path / "new")
    # Missing --workdir.
    assert_usage_error(capsys, ["train", f"--config={TOY}:tiny"], names=["--workdir"])
    assert_usage_error(capsys, ["sample"], names=["--workdir"])
    # A workdir that does not exist, or holds no checkpoint.
    assert_usage_error(capsys, ["sample", f"--workdir={wd}"], names=[wd], untouched=[wd])
    os.makedirs(os.path.join(wd, "checkpoints"))
    for command in ("sample", "likelihood", "eval"):
        assert_usage_error(capsys, [command, f"--workdir={wd}"], names=["no complete checkpoint"],
                           untouched=[wd])
    wd = str(tmp_path / "fresh")
    # Unknown config keys, in a section and at the top level, with a suggestion.
    line = assert_usage_error(capsys, ["train", f"--config={TOY}:tiny", f"--workdir={wd}",
                                       "--config.train.num_stepz=5"],
                              names=["train.num_stepz", "train.num_steps"], untouched=[wd])
    assert "did you mean" in line
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}", "--config.sed=1"],
                       names=["sed"], untouched=[wd])
    # Bad values: wrong type, unknown choice, impossible batch split.
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                "--config.train.num_steps=abc"],
                       names=["config.train.num_steps", "abc"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                "--config.train.num_steps=1.5"],
                       names=["config.train.num_steps"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                "--config.sample.solver=nope"],
                       names=["sample.solver", "'nope'"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                "--config.train.batch_size=12"],
                       names=["train.batch_size"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                "--config.data.name=toy2d/nope"],
                       names=["toy2d/nope"], untouched=[wd])
    # A missing config file, and an override without --config.
    assert_usage_error(capsys, ["train", "--config=configs/missing.py", f"--workdir={wd}"],
                       names=["configs/missing.py"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--workdir={wd}", "--config.seed=1"],
                       names=["--config"], untouched=[wd])
    # A TFDS dataset that is not prepared in the data directory.
    monkeypatch.setenv("DIFFAX_DATA_DIR", str(tmp_path / "empty_data_dir"))
    line = assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}",
                                       "--config.data.name=mnist"],
                              names=["mnist", "not prepared"], untouched=[wd])
    assert "tfds build mnist" in line
    # Unknown flags, stray arguments and commands.
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}", "--bogus=1"],
                       names=["bogus"], untouched=[wd])
    assert_usage_error(capsys, ["train", f"--config={TOY}", f"--workdir={wd}", "extra"],
                       names=["extra"], untouched=[wd])
    code, out, err = run(capsys, "trian")
    assert code == 2 and "did you mean `train`" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(wd)


def test_help(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("train", "sample", "likelihood", "eval", "demo"):
        assert f"  {command}" in out
    assert run(capsys)[0] == 2
    for command in ("train", "sample", "likelihood", "eval", "demo"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: diffax {command} ") and "--workdir" in out


@pytest.mark.slow
def test_demo_tiny_writes_everything(tmp_path, capsys):
    # ~50-80 s on 2 CPU cores: a UNet compiled for training, sampling and the likelihood.
    wd = str(tmp_path / "demo")
    code, out, err = run(capsys, "demo", f"--workdir={wd}",
                         f"--config={os.path.join(ROOT, 'configs', 'digits_demo.py')}:tiny")
    assert code == 0, err
    (npz,) = [f for f in os.listdir(os.path.join(wd, "samples")) if f.endswith(".npz")]
    with np.load(os.path.join(wd, "samples", npz)) as f:
        assert f["x"].shape == (16, 8, 8, 1) and f["x"].dtype == np.uint8
        assert f["range"].tolist() == [0.0, 255.0]
    for name in (npz[:-4] + ".png", "test_data.png"):
        assert os.path.exists(os.path.join(wd, "samples", name))
    with open(os.path.join(wd, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert m["nll"]["unit"] == "bits/dim" and np.isfinite(m["nll"]["value"])
    assert m["samples"]["nfe"] == 8 and m["step"] == 4
    # (The demo's training is also tests/train/test_configs.py's check of the digits_demo config.)
    assert sorted(os.listdir(os.path.join(wd, "checkpoints")), key=int)[-1] == "4"
    assert "diffax demo: done in" in out and wd in out
