"""The docstring examples of diffax.data run (default data_dir pointed at the session's)."""

import doctest
import importlib

import pytest

MODULES = [
    "diffax.data",
    "diffax.data._datasets",
    "diffax.data._digits",
    "diffax.data._digits_stacked",
    "diffax.data._image_folder",
    "diffax.data._phantoms",
    "diffax.data._pipeline",
    "diffax.data._text",
    "diffax.data._toy2d",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module, data_dir, monkeypatch):
    monkeypatch.setenv("DIFFAX_DATA_DIR", str(data_dir))
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
