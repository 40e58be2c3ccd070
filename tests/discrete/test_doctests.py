"""The docstring examples of diffax.discrete and testing.EnumerableJoint run as written."""

import doctest
import importlib

import pytest

MODULES = ["diffax.discrete", "diffax.discrete.processes", "diffax.discrete.denoiser",
           "diffax.discrete.sampling", "diffax.discrete.losses", "diffax.discrete.likelihood",
           "diffax.discrete.ngram", "diffax.discrete.evaluation"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_enumerable_joint_example():
    from diffax import testing

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(testing.EnumerableJoint, module=testing,
                            globs=vars(testing).copy()):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
