"""Fixtures of the data tests: one data_dir per session with the small builders prepared."""

import pytest

from diffax import data


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A session-wide data_dir holding `digits` and `toy2d/two_moons`, prepared once."""
    path = tmp_path_factory.mktemp("tfds_data")
    data.prepare("digits", data_dir=path)
    data.prepare("toy2d/two_moons", data_dir=path)
    return path
