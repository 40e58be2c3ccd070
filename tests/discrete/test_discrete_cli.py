"""`diffax train | sample | eval` on the :tiny variants of the three discrete configs."""

import json
import os

import numpy as np
import pytest

from diffax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def m_table(wd):
    with open(os.path.join(wd, "eval", "metrics.json")) as f:
        return json.load(f)["table"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_tokens"))


@pytest.mark.parametrize("name, vocab, length", [("text8_masked", 27, 256),
                                                 ("text8_d3pm_absorbing", 27, 256),
                                                 ("digits_d3pm", 17, 64)])
def test_tiny_train_sample_eval(name, vocab, length, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("DIFFAX_DATA_DIR", data_dir)
    wd = str(tmp_path / name)
    cfg = os.path.join(ROOT, "configs", f"{name}.py")
    assert cli.main(["train", f"--config={cfg}:tiny", f"--workdir={wd}"]) == 0
    assert cli.main(["sample", f"--workdir={wd}"]) == 0
    npz = [f for f in os.listdir(os.path.join(wd, "samples")) if f.endswith(".npz")]
    out = np.load(os.path.join(wd, "samples", npz[0]))
    assert out["x"].dtype == np.int32 and out["x"].shape == (8, length)
    assert out["x"].min() >= 0 and out["x"].max() < vocab
    assert tuple(out["range"]) == (0.0, vocab - 1.0)
    if name == "digits_d3pm":  # the tokens drawn as 8x8 images
        assert any(f.endswith(".png") for f in os.listdir(os.path.join(wd, "samples")))
    assert cli.main(["likelihood", f"--workdir={wd}"]) == 2  # no ODE: points to `eval`
    assert "diffax eval" in capsys.readouterr().err
    assert cli.main(["eval", f"--workdir={wd}"]) == 0
    printed = capsys.readouterr().out
    assert "diffusion NELBO" in printed and "trigram, Kneser-Ney" in printed
    unit = "bits/pixel" if name == "digits_d3pm" else "bits/char"  # grey levels vs characters
    assert unit in m_table(wd) and unit in printed
    with open(os.path.join(wd, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert np.isfinite(m["nelbo"]["bits_per_token"]) and m["nelbo"]["bits_per_token"] > 0
    assert m["baselines"]["unigram"]["add_one"] < np.log2(vocab) + 1e-9
    assert m["samples"]["tokens_per_second"] > 0
    if name == "digits_d3pm":  # samples scored as images, like the digits models
        q = m["image_quality"]
        assert np.isfinite(q["fd_pca"]) and q["reference"]["untrained_model"] is not None
        assert q["sliced_wasserstein_units"] == "pixels in [0, 1]"
        assert "FD in PCA features" in printed
    else:
        assert "image_quality" not in m
    if name.startswith("text8"):
        with open(os.path.join(wd, "eval", "samples.txt")) as f:
            lines = f.read().splitlines()
        assert len(lines) == 8 and all(set(line) <= set("abcdefghijklmnopqrstuvwxyz ")
                                       and len(line) == length for line in lines)
