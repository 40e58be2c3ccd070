"""``sample.schedule = "shift"`` (issue #22, item 12): the config names every grid of the API
tour that a solver's sampling can take, including :class:`diffax.schedules.Shift` (SD3's shift,
factor ``sample.shift``), checked once (through ``diffax sample``: tests/train/test_options.py)."""

import pytest

from diffax import schedules
from diffax.train import build, options


def test_shift_is_a_config_schedule_with_its_factor():
    o = options.sample_options({"schedule": "shift", "shift": 2.0, "num_steps": 4})
    assert o.schedule == "shift" and o.shift == 2.0
    assert repr(build.build_schedule(o)) == repr(schedules.Shift(shift=2.0))
    assert repr(build.build_schedule({"schedule": "shift"})) == repr(schedules.Shift())  # 3
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(options.ConfigError) as e:
            options.sample_options({"schedule": "shift", "shift": bad})
        assert e.value.key == "sample.shift", str(e.value)
