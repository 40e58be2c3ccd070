"""Inputs that must not corrupt a result silently: values a mask excludes, guidance weights that
are not finite real numbers, and a denoiser that returns NaN (issue #22, items 9 and 11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import guidance, inverse, samplers

P = diffax.VP()
X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
MASK = jnp.array([1.0, 0.0, 1.0])


def _D(x, t):
    return 0.5 * x


@pytest.mark.parametrize("method", ["replace", "repaint"])
def test_a_nan_where_the_mask_is_zero_never_enters_the_result(method):
    # The unobserved entries of x_known are ignored: NaN there gives the same numbers as any
    # finite filler (bitwise), not an all-NaN result (it did with mask*known + (1-mask)*x).
    kw = dict(method=method, num_steps=6)
    if method == "repaint":
        kw.update(jump_length=2, resample=2)
    key, x_init = jax.random.key(0), P.prior_sample(jax.random.key(1), X.shape)
    run = jax.jit(lambda known: diffax.inpaint(key, P, _D, x_init, known, MASK, **kw))
    out, ref = run(X.at[:, 1].set(jnp.nan)), run(X.at[:, 1].set(7.0))
    assert np.all(np.isfinite(out.x))
    np.testing.assert_array_equal(out.x, ref.x)
    np.testing.assert_array_equal(out.x[:, 0], X[:, 0])  # observed entries held exactly
    assert out.status.tolist() == [0] * 4


def test_x_known_must_be_finite_where_observed():
    with pytest.raises(ValueError, match="`x_known` has NaN or infinite entries where `mask`"):
        diffax.inpaint(jax.random.key(0), P, _D, X, X.at[2, 0].set(jnp.inf), MASK,
                       method="replace", num_steps=4)


def test_guidance_weights_must_be_finite_real_numbers():
    with pytest.raises(TypeError, match="classifier_free: `scale` must be a real number"):
        guidance.classifier_free(_D, _D, scale="abc")
    for bad in (float("nan"), float("inf"), jnp.array([1.0, jnp.nan])):
        with pytest.raises(ValueError, match="classifier_free: `scale` must be finite"):
            guidance.classifier_free(_D, _D, scale=bad)
    with pytest.raises(ValueError, match="classifier: `scale` must be finite"):
        guidance.classifier(P, _D, lambda x, t: x[:, 0], scale=float("nan"))
    # Negative and traced weights stay valid.
    guidance.classifier_free(_D, _D, scale=-1.0)
    jax.jit(lambda s: guidance.classifier_free(_D, _D, scale=s)(X, 0.5))(2.0)


@pytest.mark.parametrize("step_size, error", [(-1.0, ValueError), (float("nan"), ValueError),
                                              ("big", TypeError)])
def test_dps_step_size_is_checked(step_size, error):
    A = inverse.masking(MASK)
    with pytest.raises(error, match="dps: `step_size`"):
        inverse.dps(jax.random.key(0), P, _D, X, A(X), A, step_size=step_size, num_steps=4)


def test_a_nan_from_the_denoiser_is_reported_in_status():
    # Example 1's denoised value is NaN: its sample is NaN and says so; the others are fine.
    def D(x, t):
        bad = jnp.arange(x.shape[0])[:, None] == 1
        return jnp.where(bad, jnp.nan, 0.5 * x)

    @jax.jit
    def run(x):
        return samplers.sample(None, P, D, x, solver=samplers.Euler(), num_steps=4)

    res = run(X)
    assert res.status.tolist() == [0, samplers.STATUS_NONFINITE, 0, 0]
    assert np.all(np.isfinite(np.asarray(res.x)[[0, 2, 3]]))
    inp = diffax.inpaint(jax.random.key(0), P, D, X, X, MASK, method="replace", num_steps=4)
    assert inp.status.tolist() == [0, samplers.STATUS_NONFINITE, 0, 0]
