"""The task configs' schema (diffax.train.options.parse_task_config): parsed once, defaults
written once (the dataclass fields), bad keys named; the validation split of the examples."""

import dataclasses
import inspect
import os

import numpy as np
import pytest

from diffax.tasks import TASKS, inverse_problems, medical
from diffax.tasks.__main__ import load_config
from diffax.tasks.examples import _pipeline as pl
from diffax.train import in_memory, options

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs", "tasks")
NAMES = sorted(f[:-3] for f in os.listdir(CONFIGS) if f.endswith(".py"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variant", ["", ":tiny"])
def test_every_task_config_parses_once(name, variant):
    opts = options.parse_task_config(load_config(os.path.join(CONFIGS, name + ".py") + variant))
    assert opts.task in TASKS and set(opts.sections) == set(options.TASK_SECTIONS[opts.task])
    assert options.parse_task_config(opts) is opts  # a parsed config passes through


def test_fit_defaults_are_those_of_fit():
    signature = inspect.signature(in_memory.fit).parameters
    for f in dataclasses.fields(options.FitOptions):
        default = signature[f.name].default
        expected = dataclasses.MISSING if default is inspect.Parameter.empty else default
        assert f.default == expected, f.name


def test_choice_lists_agree_with_the_task_modules():
    fields = {f.name: f.metadata["check"] for f in dataclasses.fields(options.InverseOptions)}
    assert fields["masks"][1] == inverse_problems.MASKS
    fields = {f.name: f.metadata["check"] for f in dataclasses.fields(options.MedicalOptions)}
    assert fields["problem"][1] == medical.PROBLEMS and fields["methods"][1] == medical.METHODS
    assert fields["mask"][1] == medical.MASKS and fields["prior"][1] == medical.PRIORS


def test_full_configs_state_no_default_twice():
    """A full config's task section is its dataclass's defaults (written once, there)."""
    cfg = load_config(os.path.join(CONFIGS, "digits_sr.py"))
    assert cfg.sr.to_dict() == options.section_defaults(options.SROptions)
    opts = options.parse_task_config(cfg)
    assert opts.sr == options.SROptions() and opts.data.num_validation == 300


def _config(**changes):
    cfg = load_config(os.path.join(CONFIGS, "digits_sr.py:tiny")).to_dict()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section] = {**cfg[section], field: value}
        else:
            cfg[section] = value
    return cfg


@pytest.mark.parametrize("changes, key", [
    ({"sr__nope": 1}, "sr.nope"),
    ({"sr__num_samples": 0}, "sr.num_samples"),
    ({"sr__upsample": "sideways"}, "sr.upsample"),
    ({"train__learning_rate": -1.0}, "train.learning_rate"),
    ({"train__batch_size": 2.5}, "train.batch_size"),
    ({"data__num_validation": "many"}, "data.num_validation"),
    ({"model__width": 3}, "model.width"),
    ({"task": "nope"}, "task"),
    ({"seed": "0"}, "seed"),
    ({"anomaly": {}}, "anomaly"),
])
def test_bad_keys_are_named(changes, key):
    with pytest.raises(options.ConfigError) as e:
        options.parse_task_config(_config(**changes))
    assert e.value.key == key, (e.value.key, str(e.value))


def test_seg_times_take_one_set_or_candidates():
    cfg = load_config(os.path.join(CONFIGS, "digits_segmentation.py:tiny")).to_dict()
    for times, expected in (((0.05, 0.2), ((0.05, 0.2),)), (((0.05,), (0.1, 0.2)),
                                                            ((0.05,), (0.1, 0.2)))):
        cfg["seg"]["times"] = times
        assert options.parse_task_config(cfg).seg.times == expected
    cfg["seg"]["times"] = (0.0,)
    with pytest.raises(options.ConfigError, match="seg.times"):
        options.parse_task_config(cfg)


def test_validation_split_is_disjoint_fixed_and_complete():
    data = {"x": np.arange(50) * 10, "label": np.arange(50)}
    fit, val = pl.validation_split(data, 12, seed=3)
    assert len(val["label"]) == 12 and len(fit["label"]) == 38
    assert not set(fit["label"]) & set(val["label"])
    assert sorted(set(fit["label"]) | set(val["label"])) == list(range(50))
    assert np.array_equal(val["x"], val["label"] * 10)  # rows stay paired
    again = pl.validation_split(data, 12, seed=3)[1]
    assert np.array_equal(again["label"], val["label"])
    assert not np.array_equal(pl.validation_split(data, 12, seed=4)[1]["label"], val["label"])
    with pytest.raises(ValueError, match="num_validation"):
        pl.validation_split(data, 50)


def test_no_task_default_is_written_outside_the_options_module():
    """diffax/tasks and configs/tasks read no config key with a default of their own
    (``x.get("key", default)`` / ``x.get("key")`` on a config section): the options do."""
    import ast
    import pathlib

    root = pathlib.Path(CONFIGS).parent.parent
    found = []
    for path in [*(root / "diffax" / "tasks").glob("*.py"), *pathlib.Path(CONFIGS).glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("cfg", "config", "data_cfg", "eval_cfg")):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)
