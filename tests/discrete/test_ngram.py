"""n-gram baselines against counting by hand, and Kneser-Ney's normalisation."""

import itertools

import numpy as np

from diffax.discrete import ngram


def test_add_one_bigram_equals_counting_by_hand():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 3, size=(5, 12))
    test = rng.integers(0, 3, size=(2, 7))
    pairs = [(a, b) for row in train for a, b in zip(row[:-1], row[1:], strict=True)]
    uni = list(train.ravel())
    logp = 0.0
    for row in test:
        logp += np.log((uni.count(row[0]) + 1) / (len(uni) + 3))  # first token: unigram
        for a, b in zip(row[:-1], row[1:], strict=True):
            logp += np.log((pairs.count((a, b)) + 1) / (sum(p[0] == a for p in pairs) + 3))
    want = -logp / test.size / np.log(2)
    got = ngram.ngram_bits_per_char(train, test, order=2, vocab_size=3)
    assert abs(got - want) < 1e-12


def test_kneser_ney_distributions_sum_to_one():
    # Score every continuation of every context: sum_x p(x | h) = 1 for each h.
    rng = np.random.default_rng(1)
    train = rng.integers(0, 3, size=(6, 20))
    for h in itertools.product(range(3), repeat=2):
        probs = [2.0 ** -(3 * ngram.ngram_bits_per_char(
            train, np.array([[*h, x]]), order=3, vocab_size=3, smoothing="kneser_ney"))
            for x in range(3)]
        # bits of the 3 tokens; divide out the (fixed) first two tokens' probabilities
        first = 2.0 ** -(2 * ngram.ngram_bits_per_char(train, np.array([h]), order=3,
                                                        vocab_size=3, smoothing="kneser_ney"))
        assert abs(sum(probs) / first - 1.0) < 1e-12
