"""Fixtures of the training tests."""

import pytest


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory):
    """A session-wide TFDS data_dir with toy2d/eight_gaussians prepared once."""
    from diffax import data

    path = tmp_path_factory.mktemp("train_tfds_data")
    data.prepare("toy2d/eight_gaussians", data_dir=path)
    return str(path)
