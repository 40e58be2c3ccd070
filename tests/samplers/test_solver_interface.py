"""The solver-writing helpers public in diffax.samplers (used by diffax.inverse's solvers): their
docstring examples run as written with the package's public names."""

import doctest

import pytest

from diffax import samplers


@pytest.mark.parametrize("fn", [samplers.call, samplers.one_minus_snr_ratio,
                                samplers.mark_nonfinite, samplers.check_inputs])
def test_docstring_examples(fn):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    public = {name: getattr(samplers, name) for name in samplers.__all__}
    for test in doctest.DocTestFinder().find(fn, fn.__name__, globs=public):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
