"""Sampling and NELBO with the exact denoiser of an enumerable joint (L = 3, K = 3), float64.

Sampling: a chi-square test of the sampled sequences against the joint (27 cells, fixed seed,
threshold the 0.999 quantile of chi2(26) = 54.05). With the exact denoiser the reverse step
of each token is exact; only the factorisation over tokens within one step errs, which is
O(1/num_steps) in total variation (two tokens changing in the same step), far below the
chi-square's resolution at these sample sizes. A one-step Masked sampler (every token drawn
at once from its marginal) must fail the same test: the test has power.

NELBO: for Masked the continuous-time bound with the exact denoiser is tight, so
``E_{x0 ~ p} nelbo(x0) = H``; for D3PM it is an upper bound, tight for a single token (no
factorisation) and strictly above ``H`` for sequences with few steps. Thresholds are 4
standard errors of independent repetitions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import discrete
from diffax.testing import EnumerableJoint

CHI2_999_DF26 = 54.05  # scipy.stats.chi2.ppf(0.999, 26)


@pytest.fixture(autouse=True)
def _x64(x64):
    yield


@pytest.fixture(scope="module")
def joint():
    rng = np.random.default_rng(0)
    return EnumerableJoint(rng.dirichlet(np.full(27, 0.7)).reshape(3, 3, 3))


def chi2(joint, x):
    idx = np.ravel_multi_index(tuple(np.asarray(x).T), (3, 3, 3))
    obs = np.bincount(idx, minlength=27).astype(np.float64)
    exp = joint.probs * len(idx)
    keep = exp > 0
    assert obs[~keep].sum() == 0, "sampled a sequence of probability zero"
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())


CASES = [  # D3PM: T = 1000 sampled in 250 strides of 4 steps (exact multi-step posteriors)
    ("masked", "ancestral", 250),
    ("masked", "tau_leaping", 250),
    ("uniform", "ancestral", 250),
    ("absorbing", "ancestral", 250),
    ("gaussian", "ancestral", 250),
]


def make(kind, T=1000):
    if kind == "masked":
        return discrete.Masked(vocab_size=3)
    return getattr(discrete.D3PM, kind)(vocab_size=3, num_steps=T)


@pytest.mark.parametrize("kind, method, steps", CASES)
def test_sample_reproduces_the_joint(joint, kind, method, steps):
    p = make(kind)
    D = joint.denoiser(p)
    run = jax.jit(lambda key: discrete.sample(key, p, D, shape=(5000, 3), num_steps=steps,
                                              method=method).x)
    x = run(jax.random.key(1))
    assert x.dtype == jnp.int32 and int(x.min()) >= 0 and int(x.max()) < 3
    stat = chi2(joint, x)
    assert stat < CHI2_999_DF26, stat


def test_one_step_masked_sampling_fails_the_test(joint):
    # All tokens unmasked at once from their marginals: the product of marginals, not the joint.
    p = make("masked")
    x = discrete.sample(jax.random.key(1), p, joint.denoiser(p), shape=(5000, 3),
                        num_steps=1).x
    assert chi2(joint, x) > 10 * CHI2_999_DF26


def repeated_expected_nelbo(joint, p, reps, **kw):
    """``sum_x0 p(x0) nelbo(x0)`` for ``reps`` independent keys."""
    seqs = jnp.asarray(joint.sequences)
    D = joint.denoiser(p)
    run = jax.jit(lambda key: discrete.nelbo(key, p, D, seqs, **kw))
    w = joint.probs
    return np.array([float(np.sum(w * np.asarray(run(jax.random.key(r))))) for r in range(reps)])


def test_masked_nelbo_equals_the_entropy(joint):
    vals = repeated_expected_nelbo(joint, make("masked"), 12, num_samples=400)
    mean, se = vals.mean(), vals.std(ddof=1) / np.sqrt(len(vals))
    H = joint.entropy()
    assert se < 0.01 * H  # the test resolves 1% of H
    assert abs(mean - H) < 4 * se, (mean, H, se)


def test_d3pm_nelbo_is_tight_for_one_token_and_an_upper_bound_for_sequences(joint):
    # One token: the reverse step is the exact posterior, so the bound is tight.
    single = EnumerableJoint(np.array([0.6, 0.3, 0.1]))
    p = make("absorbing", T=8)
    vals = repeated_expected_nelbo(single, p, 8, num_samples=64)
    mean, se = vals.mean(), vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(mean - single.entropy()) < 4 * se + 1e-9, (mean, single.entropy(), se)
    # Sequences with 3 steps: several tokens change in one step, so the factorised reverse
    # step is not exact: strictly above H.
    for kind in ("absorbing", "uniform"):
        vals = repeated_expected_nelbo(joint, make(kind, T=3), 8, num_samples=32)
        mean, se = vals.mean(), vals.std(ddof=1) / np.sqrt(len(vals))
        assert mean - joint.entropy() > 4 * se, (kind, mean, joint.entropy(), se)


def test_d3pm_nelbo_step_subset_is_unbiased(joint):
    p = make("uniform", T=8)
    full = repeated_expected_nelbo(joint, p, 8, num_samples=16)
    part = repeated_expected_nelbo(joint, p, 24, num_samples=16, steps=2)
    diff = full.mean() - part.mean()
    se = np.hypot(full.std(ddof=1) / np.sqrt(8), part.std(ddof=1) / np.sqrt(24))
    assert abs(diff) < 4 * se, (full.mean(), part.mean(), se)
