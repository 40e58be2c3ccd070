"""The docstring examples of diffax.models run as written."""

import doctest

import pytest

import diffax.models
from diffax.models import layers, mlp, nnx, transformer, unet


def _run(obj, module):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(obj, module=module, globs=vars(module).copy())
    attempted = 0
    for test in tests:
        result = runner.run(test)
        attempted += result.attempted
    assert attempted > 0, obj
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {obj}"


@pytest.mark.parametrize(
    "obj, module", [(nnx, nnx), (unet.UNetConfig, unet), (mlp.MLPConfig, mlp),
                    (transformer, transformer)],
    ids=["nnx", "UNetConfig", "MLPConfig", "transformer"],
)
def test_docstring_examples(obj, module):
    _run(obj, module)


# The other examples compile small models and layers: about 40 s of CPU together.
@pytest.mark.slow
@pytest.mark.parametrize(
    "obj, module",
    [(diffax.models, diffax.models), (layers, layers), (mlp.MLP, mlp), (unet.UNet, unet)],
    ids=["models", "layers", "MLP", "UNet"],
)
def test_docstring_examples_that_compile(obj, module):
    _run(obj, module)
