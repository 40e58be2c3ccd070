"""The TPU pod launcher (experiments/tpu_pod/launch.py): golden dry run, worker counts, errors."""

import importlib.util
import os
import pathlib

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tpu_launch",
                                               _ROOT / "experiments" / "tpu_pod" / "launch.py")
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

V4_32 = ["--tpu", "my-v4-32", "--zone", "us-central2-b", "--accelerator_type", "v4-32",
         "--config", "configs/cifar10_ddpmpp_vp.py", "--workdir", "gs://my-bucket/cifar10_ddpmpp_vp",
         "--jax_version", "0.10.2", "--dry-run", "--", "--config.train.batch_size=512"]


def test_dry_run_v4_32_matches_golden(capsys):
    assert launch.main(V4_32) == 0
    out = capsys.readouterr().out.replace(str(_ROOT), "<repo>")
    golden = (pathlib.Path(__file__).parent / "golden_tpu_v4_32.txt").read_text()
    assert out == golden
    train = [line for line in out.splitlines() if "diffax.cli train" in line]
    assert [f"--worker={i}" in line for i, line in enumerate(train)] == [True] * 4
    assert all("--distributed" in line and "--config.train.batch_size=512" in line
               for line in train)


@pytest.mark.parametrize("accel, workers", [("v2-8", 1), ("v3-32", 4), ("v4-8", 1),
                                            ("v4-32", 4), ("v5p-128", 16), ("v5litepod-8", 1),
                                            ("v5litepod-16", 4), ("v6e-256", 64)])
def test_num_workers(accel, workers):
    assert launch.num_workers(accel) == workers


@pytest.mark.parametrize("change, message", [
    ({"--accelerator_type": "v4-30"}, "multiple of 8"),
    ({"--accelerator_type": "tpu-32"}, "--accelerator_type"),
    ({"--workdir": "/tmp/run"}, "shared storage"),
    ({"--config": "configs/nope.py"}, "--config"),
])
def test_bad_arguments_exit_2_naming_the_flag(capsys, change, message):
    argv = list(V4_32)
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = value
    assert launch.main(argv) == 2
    assert message in capsys.readouterr().err


def test_only_config_overrides_pass_through(capsys):
    assert launch.main(V4_32[:-1] + ["--workdir=/elsewhere"]) == 2
    assert "only config overrides" in capsys.readouterr().err


def test_skip_install_runs_only_package_and_train(capsys):
    assert launch.main(V4_32[:-2] + ["--skip_install", "--"]) == 0
    out = capsys.readouterr().out
    assert "# copy" not in out and "# install" not in out and out.count("--worker=") == 4
    assert os.path.basename(launch._TARBALL) in out
