"""Token datasets built locally: a text8-style character corpus from Python's own
``pydoc_data.topics``, and the 8x8 digits as 17-level tokens.

``pydoc_text``: the help texts shipped with every CPython (``pydoc_data.topics.topics``, in
sorted key order), normalised like text8 (lower case; every run of characters outside
``[a-z]`` becomes one space) to the 27 characters ``a..z`` (ids 0..25) and space (26), split
by position 90/5/5 into train/validation/test, each cut into non-overlapping sequences of
``TEXT_SEQ_LEN = 256`` characters (the remainder dropped). The text differs between Python
versions, so the dataset info records the corpus's SHA-256 and the Python version.

``digits_tokens``: scikit-learn's 8x8 digits (values 0..16) as 64 tokens in raster order, with
the same train/test split as ``digits``.
"""

from __future__ import annotations

import hashlib
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._digits import digits_split_indices
from diffax.data._local import LocalBuilder

__all__ = ["TEXT_ALPHABET", "TEXT_SEQ_LEN", "PydocText", "DigitsTokens", "normalize_text",
           "encode_text", "decode_text", "pydoc_corpus", "corpus_splits"]

TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz "
TEXT_SEQ_LEN = 256
_SPLIT_FRACTIONS = (("train", 0.90), ("validation", 0.05), ("test", 0.05))


def normalize_text(text: str) -> str:
    """text8-style normalisation: lower case, runs of non-letters -> one space.

    Example:
      >>> normalize_text("Hello, World!  42 times\\n")
      'hello world times '
    """
    return re.sub(r"[^a-z]+", " ", text.lower())


def encode_text(text: str) -> np.ndarray:
    """Characters of :data:`TEXT_ALPHABET` -> int32 ids.

    Example:
      >>> encode_text("ab z").tolist()
      [0, 1, 26, 25]
    """
    lookup = {c: i for i, c in enumerate(TEXT_ALPHABET)}
    try:
        return np.fromiter((lookup[c] for c in text), np.int32, len(text))
    except KeyError as e:
        raise ValueError(f"encode_text: character {e.args[0]!r} is not in [a-z ].") from None


def decode_text(ids) -> str:
    """int ids -> text (ids outside 0..26 become ``_``).

    Example:
      >>> decode_text([7, 8, 26, 27])
      'hi _'
    """
    return "".join(TEXT_ALPHABET[i] if 0 <= i < len(TEXT_ALPHABET) else "_"
                   for i in np.asarray(ids).tolist())


def pydoc_corpus() -> tuple[str, str]:
    """``(normalised text, sha256 hex)`` of this Python's ``pydoc_data.topics``."""
    from pydoc_data import topics

    raw = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    text = normalize_text(raw).strip()
    return text, hashlib.sha256(text.encode()).hexdigest()


def corpus_splits(text: str) -> dict[str, str]:
    """The 90/5/5 split of ``text`` by position (train first).

    Example:
      >>> {k: len(v) for k, v in corpus_splits("x" * 100).items()}
      {'train': 90, 'validation': 5, 'test': 5}
    """
    out, start = {}, 0
    for i, (name, frac) in enumerate(_SPLIT_FRACTIONS):
        end = len(text) if i == len(_SPLIT_FRACTIONS) - 1 else start + int(len(text) * frac)
        out[name] = text[start:end]
        start = end
    return out


class PydocText(LocalBuilder, skip_registration=True):
    """TFDS builder ``pydoc_text``: see the module docstring. Feature ``x``: int32 ``[256]``."""

    name = "pydoc_text"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        _, digest = pydoc_corpus()
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Python's pydoc_data.topics normalised text8-style to [a-z ] (a=0 .. z=25, "
                f"space=26), split 90/5/5 by position, sequences of {TEXT_SEQ_LEN} characters."),
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(TEXT_SEQ_LEN,), dtype=np.int32),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            metadata=tfds.core.MetadataDict(
                corpus_sha256=digest, python_version=sys.version.split()[0],
                alphabet=TEXT_ALPHABET, seq_len=TEXT_SEQ_LEN),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        text, _ = pydoc_corpus()
        return {name: self._generate_examples(part)
                for name, part in corpus_splits(text).items()}

    def _generate_examples(self, part: str):
        ids = encode_text(part)
        for i in range(len(ids) // TEXT_SEQ_LEN):
            yield i, {"x": ids[i * TEXT_SEQ_LEN:(i + 1) * TEXT_SEQ_LEN], "index": i}


class DigitsTokens(LocalBuilder, skip_registration=True):
    """TFDS builder ``digits_tokens``: 8x8 digits as 64 tokens with 17 levels (0..16)."""

    name = "digits_tokens"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn's 8x8 digits, values 0..16 as 64 tokens (raster order).",
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(64,), dtype=np.int32),
                "label": tfds.features.ClassLabel(num_classes=10),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            metadata=tfds.core.MetadataDict(num_levels=17),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(idx)
                for split, idx in digits_split_indices().items()}

    def _generate_examples(self, indices):
        from sklearn.datasets import load_digits

        data = load_digits()
        for i in indices:
            yield int(i), {"x": data.images[i].reshape(64).astype(np.int32),
                           "label": int(data.target[i]), "index": int(i)}
