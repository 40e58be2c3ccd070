"""Guidance transforms against the oracle: classifier-free and classifier guidance on
class-conditional mixtures, thresholding by hand, composition order."""

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import guidance
from diffax.testing import ClassConditionalMixture

PROCESSES = {"vp": diffax.VP(), "ve": diffax.VE(), "edm": diffax.EDM(),
             "rf": diffax.RectifiedFlow()}


def _ccm():
    return ClassConditionalMixture(
        means=jnp.array([[-1.5, 0.0, 0.5], [1.0, 1.0, -0.5], [0.5, -1.0, 1.0]]),
        stds=jnp.array([[0.3, 0.5, 0.2], [0.4, 0.2, 0.3], [0.6, 0.3, 0.4]]),
        class_weights=jnp.array([[0.7, 0.3, 0.0], [0.1, 0.2, 0.7]]),
        class_probs=jnp.array([0.4, 0.6]))


def _points(process, n=12):
    x = 1.5 * jax.random.normal(jax.random.key(0), (n, 3))
    lo, hi = float(process.t_min), float(process.t_max)
    t = lo + (hi - lo) * jnp.linspace(0.02, 0.95, n)
    return x, t


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_cfg_is_classifier_guidance_with_the_implicit_classifier(x64, name):
    """CFG with scale w equals classifier guidance of the unconditional denoiser with scale w
    and the exact noisy classifier log p(y | x_t); at w = 1 both are the exact conditional
    denoiser, at w = 0 the unconditional one."""
    p, ccm = PROCESSES[name], _ccm()
    x, t = _points(p)
    y = jnp.arange(x.shape[0]) % 2
    D_cond, D_uncond = ccm.denoiser(p, y), ccm.marginal().denoiser(p)
    log_prob = lambda x, t: ccm.log_prob_label(p, x, t, y)

    @jax.jit
    def both(w, x, t):
        cfg = guidance.classifier_free(D_cond, D_uncond, scale=w)(x, t)
        cg = guidance.classifier(p, D_uncond, log_prob, scale=w)(x, t)
        return cfg, cg

    for w in (0.0, 1.0, 2.5, 7.0):
        cfg, cg = both(w, x, t)
        np.testing.assert_allclose(cg, cfg, rtol=1e-9, atol=1e-9)
        expected = D_uncond(x, t) + w * (D_cond(x, t) - D_uncond(x, t))
        np.testing.assert_allclose(cfg, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both(1.0, x, t)[1], D_cond(x, t), rtol=1e-9, atol=1e-9)
    # Guidance matters here: the conditional and unconditional denoisers differ.
    assert float(jnp.max(jnp.abs(D_cond(x, t) - D_uncond(x, t)))) > 0.1


def test_classifier_guidance_is_finite_where_alpha_is_zero(x64):
    p, ccm = diffax.RectifiedFlow(), _ccm()
    x = jnp.ones((2, 3))
    D = guidance.classifier(p, ccm.marginal().denoiser(p),
                            lambda x, t: ccm.log_prob_label(p, x, t, 0), scale=3.0)
    np.testing.assert_allclose(D(x, 1.0), ccm.marginal().denoiser(p)(x, 1.0))


def test_cfg_interval_and_rescale(x64):
    D_cond = lambda x, t: 2.0 * x + 1.0
    D_uncond = lambda x, t: x
    x = jax.random.normal(jax.random.key(1), (4, 2, 3))
    t = jnp.array([0.1, 0.3, 0.7, 0.95])
    d_c, d_u = D_cond(x, t), D_uncond(x, t)
    guided = d_u + 4.0 * (d_c - d_u)
    out = guidance.classifier_free(D_cond, D_uncond, scale=4.0, interval=(0.2, 0.8))(x, t)
    np.testing.assert_allclose(out[1:3], guided[1:3], rtol=1e-12)
    np.testing.assert_allclose(out[::3], d_c[::3], rtol=1e-12)
    # Rescaling with phi = 1 matches each example's std to the conditional estimate's.
    full = guidance.classifier_free(D_cond, D_uncond, scale=4.0, rescale=1.0)(x, t)
    std = lambda a: np.std(np.asarray(a).reshape(4, -1), axis=1)
    np.testing.assert_allclose(std(full), std(d_c), rtol=1e-12)
    # Here d_c = 2x + 1 and guided = 5x + 4, so the ratio is 2/5 everywhere.
    np.testing.assert_allclose(full / guided, np.full(x.shape, 0.4), rtol=1e-12)
    half = guidance.classifier_free(D_cond, D_uncond, scale=4.0, rescale=0.5)(x, t)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * guided, rtol=1e-12)


def test_dynamic_threshold_by_hand(x64):
    x0 = jnp.array([[-4.0, 1.0, 2.0, 3.0], [0.1, -0.2, 0.3, 0.5]])
    D = lambda x, t: x
    # |x0| of row 0 sorted: 1, 2, 3, 4. The 0.9 quantile interpolates at position
    # 0.9 * 3 = 2.7: s = 3 + 0.7 * (4 - 3) = 3.7. Row 1's quantile is below 1, so s = 1.
    out = guidance.dynamic_threshold(D, quantile=0.9)(x0, 0.5)
    np.testing.assert_allclose(out[0], [-1.0, 1 / 3.7, 2 / 3.7, 3 / 3.7], rtol=1e-12)
    np.testing.assert_allclose(out[1], x0[1], rtol=1e-12)
    # The median of row 0 is 2.5: clip to [-2.5, 2.5] and divide.
    out = guidance.dynamic_threshold(D, quantile=0.5)(x0, 0.5)
    np.testing.assert_allclose(out[0], [-1.0, 0.4, 0.8, 1.0], rtol=1e-12)
    # Image-shaped estimates: one threshold per example, over all its entries.
    img = jnp.stack([x0[0].reshape(2, 2, 1), 2 * x0[0].reshape(2, 2, 1)])
    out = guidance.dynamic_threshold(D, quantile=0.5)(img, 0.5)
    np.testing.assert_allclose(out[0].ravel(), [-1.0, 0.4, 0.8, 1.0], rtol=1e-12)
    np.testing.assert_allclose(out[1].ravel(), [-1.0, 0.4, 0.8, 1.0], rtol=1e-12)


def test_clip_and_composition_order(x64):
    D = lambda x, t: x
    x = jnp.array([[3.0, 0.5, -2.0, 1.5]])
    clip_half = functools.partial(guidance.clip, lo=-0.5, hi=0.5)
    threshold = functools.partial(guidance.dynamic_threshold, quantile=1.0)
    # Clip first: the maximum |x0| is then 0.5 < 1, so thresholding changes nothing.
    first = guidance.chain(clip_half, threshold)(D)(x, 0.5)
    np.testing.assert_allclose(first, [[0.5, 0.5, -0.5, 0.5]])
    # Threshold first: divide by the maximum 3, then clip.
    second = guidance.chain(threshold, clip_half)(D)(x, 0.5)
    np.testing.assert_allclose(second, [[0.5, 0.5 / 3, -0.5, 0.5]])
    np.testing.assert_allclose(second, clip_half(threshold(D))(x, 0.5))
    # CFG then clipping is not clipping then CFG.
    Dc, Du = (lambda x, t: x + 1.0), (lambda x, t: x)
    cfg_then_clip = guidance.clip(guidance.classifier_free(Dc, Du, scale=3.0))(x, 0.5)
    np.testing.assert_allclose(cfg_then_clip, [[1.0, 1.0, 1.0, 1.0]])
    clip_then_cfg = guidance.classifier_free(guidance.clip(Dc), guidance.clip(Du),
                                             scale=3.0)(x, 0.5)
    np.testing.assert_allclose(clip_then_cfg, [[1.0, 2.0, -1.0, 1.0]])


def test_transforms_run_under_jit_in_a_sampler(x64):
    p, ccm = diffax.VP(), _ccm()
    Dg = guidance.dynamic_threshold(
        guidance.classifier_free(ccm.denoiser(p, 1), ccm.marginal().denoiser(p), scale=2.0,
                                 interval=(0.1, 0.9), rescale=0.3), quantile=0.99)
    x_init = p.prior_sample(jax.random.key(0), (8, 3), jnp.float64)
    run = jax.jit(lambda x: diffax.sample(None, p, Dg, x, solver=diffax.samplers.Euler(),
                                          num_steps=8).x)
    out = run(x_init)
    assert out.shape == (8, 3) and bool(jnp.all(jnp.isfinite(out)))


def test_bad_arguments_are_named():
    D = lambda x, t: x
    with pytest.raises(ValueError, match="`rescale`"):
        guidance.classifier_free(D, D, scale=2.0, rescale=1.5)
    with pytest.raises(ValueError, match="`interval`"):
        guidance.classifier_free(D, D, scale=2.0, interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="`D_uncond`"):
        guidance.classifier_free(D, None, scale=2.0)
    with pytest.raises(ValueError, match="`quantile`"):
        guidance.dynamic_threshold(D, quantile=0.0)
    with pytest.raises(ValueError, match="`lo`"):
        guidance.clip(D, lo=1.0, hi=-1.0)
    with pytest.raises(ValueError, match="`process`"):
        guidance.classifier(None, D, lambda x, t: x[:, 0], scale=1.0)
    bad = guidance.classifier(diffax.VP(), D, lambda x, t: x, scale=1.0)
    with pytest.raises(ValueError, match="`log_prob_fn`"):
        bad(jnp.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="chain"):
        guidance.chain(guidance.clip, None)


def test_docstring_examples():
    result = doctest.testmod(guidance, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
