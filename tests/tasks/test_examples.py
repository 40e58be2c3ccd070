"""Each task's digits example runs end to end on its tiny config (``python -m diffax.tasks``).

These compile and train tiny UNets (tens of seconds of CPU each): marked slow.
"""

import json
import os

import pytest

from diffax.tasks.__main__ import load_config, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "tasks")
NAMES = ("digits_anomaly", "digits_sr", "digits_classifier", "digits_purify",
         "digits_segmentation", "digits_inverse")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from diffax import data

    path = str(tmp_path_factory.mktemp("tfds"))
    data.prepare("digits", data_dir=path)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_config_docstring_names_its_command_and_readme(name):
    path = os.path.join(CONFIGS, f"{name}.py")
    first = open(path).read().split('"""')[1].strip().splitlines()[0]
    assert first.startswith(f"python -m diffax.tasks configs/tasks/{name}.py --workdir "), first
    for variant in ("", ":tiny"):
        cfg = load_config(path + variant)
        assert cfg.is_locked and cfg.task


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown config key"):
        main([os.path.join(CONFIGS, "digits_sr.py:tiny"), "--workdir", str(tmp_path),
              "--config.sr.nope=1"])


EXPECTED = {
    "digits_anomaly": ("anomaly.png", lambda m: 0.0 <= m["best"]["simplex"]["auroc"] <= 1.0
                       and set(m["baselines"]) == {"knn", "pca"} and m["num_draws"] == 2),
    "digits_sr": ("sr.png", lambda m: m["psnr"]["sample"] > 0),
    "digits_classifier": ("guided.png", lambda m: set(m["guidance"]["judge_accuracy"])
                          == {"0.0", "1.0"}),
    "digits_purify": ("purify.png", lambda m: set(m["purified"]["0.3"])
                      == {"clean", "fgsm", "gaussian"}),
    "digits_inverse": ("inverse.png", lambda m: set(m["inpainting"]["center"]) == {
        "repaint", "dps", "nearest_neighbour", "train_mean"} and "dps" in
        m["problems"]["downsample"]),
    "digits_segmentation": ("segmentation.png", lambda m: all(
        0.0 <= m["digit_class"][f]["accuracy"] <= 1
        for f in ("diffusion_features", "pixel_window", "pixel_window_global"))),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_runs_on_the_tiny_config(name, tmp_path, data_dir, capsys):
    workdir = str(tmp_path / name)
    assert main([os.path.join(CONFIGS, f"{name}.py:tiny"), "--workdir", workdir,
                 f"--config.data.data_dir={data_dir}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    figure, check = EXPECTED[name]
    assert os.path.getsize(os.path.join(workdir, figure)) > 0
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(printed))
    assert check(printed)
