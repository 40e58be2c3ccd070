"""diffax.train.options: one schema, each default written once; `sample.schedule` as a grid
through `diffax sample`; the solvers' default orders."""

import ast
import dataclasses
import os
import pathlib

import numpy as np
import pytest

import diffax
from diffax import cli, samplers, schedules
from diffax.train import build, demo, options

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TOY = os.path.join(ROOT, "configs", "toy2d_vp.py")


def _defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def test_the_configs_defaults_are_the_options_defaults():
    """SAMPLE_DEFAULTS / EVAL_DEFAULTS are the dataclass defaults (one object everywhere) and
    an empty section parses to the dataclass defaults."""
    sample = _defaults(options.SampleOptions)
    assert options.SAMPLE_DEFAULTS == {k: sample[k] for k in options.SAMPLE_DEFAULTS}
    assert options.EVAL_DEFAULTS == _defaults(options.EvalOptions)
    for module in (cli, demo):
        assert module.SAMPLE_DEFAULTS is options.SAMPLE_DEFAULTS
        assert module.EVAL_DEFAULTS is options.EVAL_DEFAULTS
    assert options.sample_options({}) == options.SampleOptions()
    assert options.eval_options({}) == options.EvalOptions()
    assert options.loss_options({}) == options.LossOptions()
    assert options.optim_options({}) == options.OptimOptions()
    assert options.sample_options(options.SAMPLE_DEFAULTS) == dataclasses.replace(
        options.SampleOptions(), explicit=frozenset(options.SAMPLE_DEFAULTS))


def test_no_default_is_written_outside_the_options_module():
    """Outside options.py, diffax/train and the CLI read no config key with a default of their
    own (``section.get("key", default)``) and define no ``*_DEFAULTS`` table."""
    found = []
    for path in [*(ROOT / "diffax" / "train").glob("*.py"), ROOT / "diffax" / "cli.py",
                 *(ROOT / "configs").glob("*.py")]:
        if path.name == "options.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and len(node.args) == 2
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("cfg", "config")):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [f"{path.name}:{node.lineno}: {t.id}" for t in targets
                          if isinstance(t, ast.Name) and t.id.endswith("_DEFAULTS")]
    assert not found, "\n".join(found)


def test_building_with_no_options_equals_building_with_the_stated_defaults():
    """An empty section and the section written out with the options' defaults build the same
    objects (the builders have no defaults of their own)."""
    process = diffax.VP()
    stated = {k: v for k, v in dataclasses.asdict(options.LossOptions()).items()
              if v is not None and k not in ("lognormal_mean", "lognormal_std", "truncate")}
    assert repr(build.build_loss({}, process)) == repr(build.build_loss(stated, process))
    assert repr(build.build_solver({})) == repr(build.build_solver(options.SAMPLE_DEFAULTS))
    assert build.build_schedule({}) is build.build_schedule(options.SAMPLE_DEFAULTS) is None


@pytest.mark.parametrize("name,cls", [("ipndm", samplers.IPNDM), ("deis", samplers.DEIS),
                                      ("lms", samplers.LMS), ("dpm_solver", samplers.DPMSolver),
                                      ("dpm_solver_pp", samplers.DPMSolverPP),
                                      ("unipc", samplers.UniPC)])
def test_a_solver_without_sample_order_gets_the_librarys_order(name, cls):
    """One default order per solver, the library's (iPNDM 4, DEIS 3, LMS 4, others 2): from an
    empty section and from a config written with SAMPLE_DEFAULTS."""
    expected = cls().order
    assert {"ipndm": 4, "deis": 3, "lms": 4}.get(name, 2) == expected
    assert build.build_solver({"solver": name})[0].order == expected
    cfg = dict(options.SAMPLE_DEFAULTS, solver=name)
    assert build.build_solver(cfg)[0].order == expected
    assert build.build_solver(dict(cfg, order=1))[0].order == 1


@pytest.mark.parametrize("value,words", [
    ([1.0, 0.5], ["sample.schedule", "2 times", "3"]),
    ([1.0, 0.6, 0.7], ["sample.schedule", "decreasing"]),
    ([1.0, "a", 0.001], ["sample.t", "'a'"]),
    ("[1.0, 0.5", ["sample.schedule", "neither"]),
    ("cosine", ["sample.schedule", "'cosine'"]),
])
def test_a_bad_schedule_grid_names_the_key(value, words):
    with pytest.raises(options.ConfigError) as e:
        options.sample_options({"schedule": value, "num_steps": 2})
    for word in words:
        assert word in str(e.value), (word, str(e.value))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("toy") / "run")
    code = cli.main(["train", f"--config={TOY}:tiny", f"--workdir={wd}",
                     "--config.train.num_steps=4", "--config.train.checkpoint_every=4",
                     "--config.train.batch_size=32", "--config.train.log_every=4",
                     "--config.optim.warmup_steps=0"])
    assert code == 0
    return wd


def _sample(capsys, wd, *overrides):
    code = cli.main(["sample", f"--workdir={wd}", "--config.sample.solver=euler",
                     "--config.sample.num_steps=3", "--config.sample.num_samples=8",
                     *overrides])
    out, err = capsys.readouterr()
    assert code == 0, err
    (npz,) = [f for f in os.listdir(os.path.join(wd, "samples")) if f.endswith(".npz")]
    path = os.path.join(wd, "samples", npz)
    with np.load(path) as f:
        x = f["x"]
    os.remove(path)
    return x


def test_diffax_sample_takes_an_explicit_grid(trained, capsys):
    """`--config.sample.schedule="[...]"` samples on exactly that grid: the grid of
    TimeUniform written out as a list gives TimeUniform's samples bit for bit, and another
    grid gives other samples."""
    grid = np.asarray(schedules.TimeUniform()(diffax.VP(), 3)).tolist()
    named = _sample(capsys, trained, "--config.sample.schedule=time_uniform")
    listed = _sample(capsys, trained, f"--config.sample.schedule={grid}")
    np.testing.assert_array_equal(listed, named)
    other = _sample(capsys, trained, "--config.sample.schedule=[1.0, 0.1, 0.01, 0.001]")
    assert not np.allclose(other, named)
    code = cli.main(["sample", f"--workdir={trained}", "--config.sample.num_steps=3",
                     "--config.sample.schedule=[1.0, 0.5, 0.001]"])
    err = capsys.readouterr().err
    assert code == 2 and "sample.schedule" in err and "needs 4" in err, err


def test_diffax_sample_takes_the_shift_schedule(trained, capsys):
    """`--config.sample.schedule=shift` (issue #22 item 12) samples on schedules.Shift's grid:
    the same grid written out as a list gives the same samples bit for bit. (``sample.shift``,
    like ``rho``, is set in a config's ``sample`` section: tests/train/test_sample_shift.py.)"""
    grid = np.asarray(schedules.Shift()(diffax.VP(), 3)).tolist()  # shift 3, the default
    named = _sample(capsys, trained, "--config.sample.schedule=shift")
    np.testing.assert_array_equal(named, _sample(capsys, trained,
                                                 f"--config.sample.schedule={grid}"))
