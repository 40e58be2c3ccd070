"""pydoc_text and digits_tokens: normalisation, the 90/5/5 split by position, chunks, metadata."""

import sys

import numpy as np

from diffax import data


def test_pydoc_text_is_the_normalised_corpus_split_by_position(tmp_path):
    builder = data.prepare("pydoc_text", data_dir=tmp_path)
    text, digest = data.pydoc_corpus()
    meta = builder.info.metadata
    assert meta["corpus_sha256"] == digest and meta["python_version"] == sys.version.split()[0]
    assert set(text) <= set(data.TEXT_ALPHABET) and "  " not in text
    parts = data.corpus_splits(text)
    assert "".join(parts.values()) == text
    n = len(text)
    assert abs(len(parts["train"]) - 0.9 * n) <= 1 and abs(len(parts["validation"]) - 0.05 * n) <= 1
    for split, part in parts.items():
        x = data.load_split("pydoc_text", split=split, data_dir=tmp_path)["x"]
        assert x.dtype == np.int32 and x.shape == (len(part) // 256, 256)
        # Stored order is shuffled by TFDS: compare the multiset of chunks.
        want = sorted(part[i * 256:(i + 1) * 256] for i in range(len(part) // 256))
        assert sorted(data.decode_text(row) for row in x) == want


def test_digits_tokens_are_the_17_levels(tmp_path):
    from sklearn.datasets import load_digits

    out = data.load_split("digits_tokens", split="test", data_dir=tmp_path)
    idx = data.digits_split_indices()["test"]
    images = load_digits().images.reshape(-1, 64).astype(np.int32)
    assert out["x"].shape == (300, 64) and out["x"].max() <= 16
    assert sorted(map(tuple, out["x"])) == sorted(map(tuple, images[idx]))
