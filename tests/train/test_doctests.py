"""The docstring examples of diffax.losses and diffax.train run (under the test conftest)."""

import doctest
import importlib

import pytest

MODULES = [
    "diffax.losses",
    "diffax.train.state",
    "diffax.train.step",
    "diffax.train.parallel",
    "diffax.train.checkpoint",
    "diffax.train.build",
    "diffax.train.loop",
    "diffax.train._tensorboard",
    "diffax.train.in_memory",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
    assert result.attempted > 0 and result.failed == 0
