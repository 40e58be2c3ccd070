"""Base class of diffax's own TFDS builders: generated locally, nothing downloaded."""

from __future__ import annotations

import logging

import tensorflow_datasets as tfds

_log = logging.getLogger("diffax.data")


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A `GeneratorBasedBuilder` that needs no download; logs instead of printing to stdout."""

    def _log_download_bytes(self) -> None:
        _log.info("Preparing %s (generated locally, no download) in %s", self.name, self.data_dir)

    def _log_download_done(self) -> None:
        _log.info("Prepared %s in %s", self.name, self.data_dir)
