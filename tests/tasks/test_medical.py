"""The phantom CT/MRI example: configs, operators of a setting, and a tiny end-to-end run."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from diffax.tasks import medical
from diffax.tasks.__main__ import load_config, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "tasks")


@pytest.mark.parametrize("name", ["phantom_ct", "phantom_mri"])
def test_config_docstring_names_its_command_and_readme(name):
    path = os.path.join(CONFIGS, f"{name}.py")
    doc = open(path).read().split('"""')[1].strip()
    assert doc.splitlines()[0] == (f"python -m diffax.tasks configs/tasks/{name}.py --workdir "
                                   f"/tmp/{name}")
    readme = "experiments/medical_ct" if name == "phantom_ct" else "experiments/medical_mri"
    assert readme in doc and os.path.exists(os.path.join(ROOT, readme, "README.md"))
    for variant in ("", ":tiny"):
        cfg = load_config(path + variant)
        assert cfg.is_locked and cfg.task == "medical"


def test_operator_for_each_problem_and_bad_keys():
    ct = medical.operator_for("ct", 8, size=32)
    assert ct.angles.shape == (8,) and len(ct.full_angles) == 180
    mri = medical.operator_for("mri", 4, size=32, mask="random")
    assert mri.mask.shape == (32, 32) and 0.24 <= mri.mask.mean() <= 0.26
    with pytest.raises(ValueError, match="config.medical.problem"):
        medical.operator_for("pet", 4, size=32)
    with pytest.raises(ValueError, match="config.medical.mask"):
        medical.operator_for("mri", 4, size=32, mask="radial")
    m = medical.reconstruction_metrics(jnp.full((1, 16, 16, 1), 0.5), jnp.zeros((1, 16, 16, 1)))
    assert m["psnr"] == pytest.approx(10 * np.log10(4 / 0.25), abs=1e-4)


@pytest.mark.slow
def test_ct_example_runs_on_the_tiny_config(tmp_path, capsys):
    workdir = str(tmp_path / "ct")
    data_dir = str(tmp_path / "tfds")
    assert main([os.path.join(CONFIGS, "phantom_ct.py:tiny"), "--workdir", workdir,
                 f"--config.data.data_dir={data_dir}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert os.path.getsize(os.path.join(workdir, "medical.png")) > 0
    assert os.path.exists(os.path.join(workdir, "denoiser.msgpack"))
    setting = printed["settings"]["4"]
    assert set(setting) == {"baseline", "consistency", "dps", "operator_norm_squared"}
    assert all(np.isfinite(setting[m]["sample"]["psnr"]) for m in ("consistency", "dps"))
    # The MRI config reuses the saved denoiser instead of training.
    assert main([os.path.join(CONFIGS, "phantom_mri.py:tiny"), "--workdir", workdir + "_mri",
                 f"--config.data.data_dir={data_dir}", "--config.medical.methods=('consistency',)",
                 f"--config.medical.denoiser_from={workdir}/denoiser.msgpack"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "final_loss" not in printed and set(printed["settings"]["4"]) == {
        "baseline", "consistency", "sampled_fraction", "operator_norm_squared"}
    # DPS's step chosen on validation phantoms held out of the train split: the candidate of
    # the best validation PSNR is the one used on the test phantoms (issue #22).
    assert main([os.path.join(CONFIGS, "phantom_mri.py:tiny"), "--workdir", workdir + "_val",
                 f"--config.data.data_dir={data_dir}", "--config.medical.methods=('dps',)",
                 "--config.medical.dps_step_sizes=(0.01, 1.0)", "--config.medical.num_validation=2",
                 f"--config.medical.denoiser_from={workdir}/denoiser.msgpack"]) == 0
    printed = json.loads(capsys.readouterr().out)
    dps = printed["settings"]["4"]["dps"]
    scores = dps["validation_psnr"]
    assert printed["num_validation"] == 2 and set(scores) == {"0.01", "1.0"}
    assert scores["0.01"] != scores["1.0"] and str(dps["step_size"]) == max(scores, key=scores.get)
