"""diffax._checks.check_int, the one integer-argument check (likelihood, inverse, the diffusers
scheduler reader, the data pipeline, fit, make_train_step, Checkpointer, check_batch_size):
what it accepts, and that every caller's message names the argument and the function."""

import doctest

import numpy as np
import pytest

import diffax
from diffax import _checks
from diffax._checks import check_int


def test_docstring_example():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(check_int, globs=vars(_checks).copy()):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("value", [1, 7, np.int32(2), np.int64(3)])
def test_integers_pass_and_come_back_as_int(value):
    out = check_int(value, name="n")
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, 2.5, "3", None, np.array(2)])
def test_strict_mode_refuses_non_integers_and_bools(value):
    with pytest.raises(ValueError, match=r"^f: `n` must be a positive integer, got "):
        check_int(value, name="n", where="f")


@pytest.mark.parametrize("value, ok", [(2.0, True), (np.array(3), True), (np.float32(4), True),
                                       (2.5, False), (True, False), ("2", False), (0.0, False)])
def test_integral_mode_takes_numbers_equal_to_an_integer(value, ok):
    if ok:
        assert check_int(value, name="n", integral=True) == int(value)
    else:
        with pytest.raises(ValueError, match="`n` must be a positive integer"):
            check_int(value, name="n", integral=True)


def test_minimum_none_and_wording():
    assert check_int(0, name="n", minimum=0) == 0
    assert check_int(None, name="n", allow_none=True) is None
    with pytest.raises(ValueError, match="`n` must be a non-negative integer, got -1"):
        check_int(-1, name="n", minimum=0)
    with pytest.raises(ValueError, match="`n` must be an integer >= 3 or None, got 2"):
        check_int(2, name="n", minimum=3, allow_none=True)


@pytest.mark.parametrize("call, message", [
    (lambda: diffax.inverse.RePaint(jump_length=True), "RePaint: `jump_length`"),
    (lambda: diffax.inverse.downsample(factor=0), "downsample: `factor`"),
    (lambda: diffax.train.fit(lambda p, k, b: 0.0, {}, None, {"x": np.ones(2)}, num_steps=1,
                              batch_size=2, steps_per_call=0), "fit: `steps_per_call`"),
])
def test_callers_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message + " must be a positive integer"):
        call()
