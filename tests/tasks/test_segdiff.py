"""diffax.tasks.segdiff: SegDiff's sample-average-threshold against an exact conditional
oracle, its network conditioned on the image, label channels, Dice, bad input."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.tasks import segdiff as sd

# --- the oracle: a joint over (image, mask) whose conditional p(mask | image) is a mixture ---
#
# Component k has mask N(c_k, s^2 I) and an image whose likelihood gives the posterior
# weights w_k(image); p(mask | image) = sum_k w_k N(c_k, s^2 I), so for the noised mask
# m_t = alpha m + sigma eps the exact E[m | m_t, image] is the mixture posterior mean below.
# With s small every exact sample of the mask sits at one c_k, so the average of S samples,
# thresholded / argmaxed, is a vote among S draws of k ~ w(image): its distribution is known.


def _mixture_denoiser(process, centres, s, weights):
    """E[m0 | m_t] for m0 ~ sum_k weights[b, k] N(centres[k], s^2 I), per example b."""
    c = jnp.asarray(centres)                       # [K, *event]
    logw = jnp.log(jnp.asarray(weights))           # [B, K]

    def D(x, t):
        a = process.alpha(t).reshape(-1, 1)
        sig = process.sigma(t).reshape(-1, 1)
        v = a * a * s * s + sig * sig              # [B, 1]
        xf = x.reshape(x.shape[0], 1, -1)          # [B, 1, d]
        cf = c.reshape(1, c.shape[0], -1)          # [1, K, d]
        r = jax.nn.softmax(logw - jnp.sum((xf - a[..., None] * cf) ** 2, -1) / (2 * v), -1)
        post = cf + (a * s * s / v)[..., None] * (xf - a[..., None] * cf)   # [B, K, d]
        return jnp.sum(r[..., None] * post, axis=1).reshape(x.shape)

    return D


def _vote_probs(w, num_samples):
    """P(label = k) of the argmax of the mean of ``num_samples`` one-hot draws from ``w``
    (an exact tie among the leaders is broken uniformly: the noise is symmetric)."""
    k = len(w)
    out = np.zeros(k)
    for draws in itertools.product(range(k), repeat=num_samples):
        counts = np.bincount(draws, minlength=k)
        p = np.prod([w[d] for d in draws])
        leaders = np.flatnonzero(counts == counts.max())
        out[leaders] += p / len(leaders)
    return out


@pytest.mark.parametrize("num_classes, num_samples", [(2, 1), (2, 3), (3, 3)])
def test_segment_is_the_vote_of_exact_conditional_samples(x64, num_classes, num_samples):
    process = diffax.VP()
    b, shape_hw = 1500, (2, 2)
    rng = np.random.default_rng(0)
    c = sd.mask_channels(num_classes)
    # component k: every pixel of the mask is class k (channels of mask_to_channels)
    centres = np.stack([np.asarray(sd.mask_to_channels(np.full((1, *shape_hw), k), num_classes)
                                   )[0] for k in range(num_classes)])
    weights = rng.dirichlet(np.ones(num_classes), size=b)       # w(image) of b images
    D = _mixture_denoiser(process, centres, 0.05, weights)
    res = jax.jit(lambda key: sd.segment(
        key, process, D, (b, *shape_hw, c), num_classes=num_classes, num_samples=num_samples,
        solver=diffax.samplers.DDPM(), num_steps=200))(jax.random.key(1))
    labels = np.asarray(res.labels)
    assert res.samples.shape == (num_samples, b, *shape_hw, c)
    assert labels.shape == (b, *shape_hw)
    if num_classes == 2:  # one component per sample, no ties (S odd): one label per image
        assert np.all(labels == labels[:, :1, :1])
    bayes = weights.argmax(1)
    # per image, the fraction of its pixels with the Bayes label (a three-way tie of 3 draws is
    # broken per pixel by the samples' noise)
    agree = np.mean(labels == bayes[:, None, None], axis=(1, 2))
    p_agree = np.array([_vote_probs(w, num_samples)[k] for w, k in zip(weights, bayes)])
    # independent images, each agreement in [0, 1] with mean p: variance <= p (1 - p); 4 std
    tol = 4 * math.sqrt(np.sum(p_agree * (1 - p_agree))) / b
    assert abs(agree.mean() - p_agree.mean()) < tol, (agree.mean(), p_agree.mean(), tol)
    # wrong conditioning (the weights of other images, or none) agrees far less often
    assert p_agree.mean() - _vote_probs(weights.mean(0), 1).max() > 5 * tol


def test_mask_channels_round_trip_and_errors():
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 4, (2, 3, 3)))
    for k in (2, 4):
        lab = labels % k
        x = sd.mask_to_channels(lab, k)
        assert x.shape == (2, 3, 3, sd.mask_channels(k))
        assert set(np.unique(np.asarray(x)).tolist()) <= {-1.0, 1.0}
        np.testing.assert_array_equal(sd.channels_to_mask(x, k), lab)
    with pytest.raises(ValueError, match="`labels` must lie in 0..1"):
        sd.mask_to_channels(labels, 2)
    with pytest.raises(ValueError, match="`labels` must be integer label maps"):
        sd.mask_to_channels(jnp.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="`num_classes`"):
        sd.mask_to_channels(labels, 1)
    with pytest.raises(ValueError, match=r"`x` must be \[B, H, W, 4\]"):
        sd.channels_to_mask(jnp.zeros((2, 3, 3, 1)), 4)
    with pytest.raises(ValueError, match="num_samples"):
        sd.segment(jax.random.key(0), diffax.VP(), lambda x, t: x, (1, 2, 2, 1), num_classes=2,
                   num_samples=0, solver=diffax.samplers.DDIM(), num_steps=2)
    with pytest.raises(ValueError, match="`shape`"):
        sd.segment(jax.random.key(0), diffax.VP(), lambda x, t: x, (1, 2, 2, 3), num_classes=2,
                   num_samples=1, solver=diffax.samplers.DDIM(), num_steps=2)


def test_dice_against_counts():
    pred = np.array([[0, 1, 2, 2], [1, 1, 0, 0]])
    target = np.array([[0, 1, 2, 0], [1, 2, 0, 0]])
    d = sd.dice(pred, target, 4)
    # class 0: P 3, T 4, both 3; class 1: P 3, T 2, both 2; class 2: P 2, T 2, both 1
    np.testing.assert_allclose(d["per_class"][:3], [6 / 7, 4 / 5, 2 / 4])
    assert math.isnan(d["per_class"][3])
    np.testing.assert_allclose(d["mean_foreground_dice"], (4 / 5 + 2 / 4) / 2)
    with pytest.raises(ValueError, match="`pred` has shape"):
        sd.dice(pred[:1], target, 4)


def test_segdiff_unet_errors_name_the_argument():
    with pytest.raises(ValueError, match="cond_channels"):
        sd.SegDiffUNet.from_variant("tiny", cond_channels=0)
    with pytest.raises(ValueError, match="unknown UNet variant"):
        sd.SegDiffUNet.from_variant("nope")
    model = sd.SegDiffUNet.from_variant("tiny", num_channels=1, nf=8, ch_mult=(1,),
                                        attn_resolutions=(), encoder_blocks=0)
    x, t, cond = model.example_inputs(2)
    params = jax.eval_shape(model.init, jax.random.key(0), x, t, cond)
    with pytest.raises(ValueError, match="`cond` must have shape"):
        jax.eval_shape(model.apply, params, x, t, jnp.zeros((2, 8, 8, 2)))
    with pytest.raises(ValueError, match="`cond`"):
        jax.eval_shape(model.apply, params, x, t)


@pytest.fixture(scope="module")
def trained_sign_model():
    """A tiny SegDiff trained to segment the positive pixels of 4x4 noise images (the mask is
    a function of the image, so a model that reads the image can get it right), 150 steps."""
    from diffax.tasks import denoising_loss
    from diffax.train import fit

    x = np.asarray(jax.random.normal(jax.random.key(0), (1064, 4, 4, 1)))
    mask = (x[..., 0] > 0).astype(np.int32)
    model = sd.SegDiffUNet.from_variant("tiny", image_size=4, num_channels=1, nf=8,
                                        ch_mult=(1,), attn_resolutions=(), dropout=0.0,
                                        encoder_blocks=1)
    fn = sd.apply_fn(model)
    loss = denoising_loss(diffax.VP(), cond_keys=("cond",))
    init = model.init_params(jax.random.key(0))
    result = fit(loss.bind(fn), init, jax.random.key(1),
                 {"x": sd.mask_to_channels(mask[:1000], 2), "cond": x[:1000]}, num_steps=100,
                 batch_size=32, learning_rate=3e-3, ema_decay=0.0, steps_per_call=100)
    held = {"x": x[1000:], "mask": mask[1000:]}
    return fn, loss, init, result.params, held


def test_trained_segdiff_uses_the_image_and_beats_the_untrained_model(trained_sign_model):
    fn, loss, init, params, held = trained_sign_model
    process = diffax.VP()
    target = sd.mask_to_channels(held["mask"], 2)
    # x0 error of the denoiser (clipped to the mask's range) at t in [0.3, 0.5] (alpha from
    # 0.63 to 0.28): the noisy mask alone leaves the sign of many pixels in doubt, the image
    # settles it
    t = jnp.linspace(0.3, 0.5, 64)
    eps = jax.random.normal(jax.random.key(2), target.shape)
    x_t = (process.alpha(t)[:, None, None, None] * target
           + process.sigma(t)[:, None, None, None] * eps)
    err = jax.jit(lambda p, cond: jnp.mean(jnp.square(
        jnp.clip(loss.denoiser(fn, p, cond=cond)(x_t, t), -1, 1) - target)))
    right, shuffled, untrained = (float(err(params, held["x"])),
                                  float(err(params, held["x"][::-1])),  # another image's
                                  float(err(init, held["x"])))
    # measured: 0.54 with the right image, 1.13 with another image's (confidently wrong), 1.04
    # untrained (its zero output layer makes it x_t / alpha, clipped)
    assert right < 0.7 * min(shuffled, untrained), (right, shuffled, untrained)

    seg = jax.jit(lambda p, key: sd.segment(
        key, process, loss.denoiser(fn, p, cond=held["x"]), target.shape, num_classes=2,
        num_samples=3, solver=diffax.samplers.DDIM(), num_steps=10).samples)
    dice = lambda s: sd.dice(np.asarray(sd.channels_to_mask(s, 2)), held["mask"],
                             2)["mean_foreground_dice"]
    trained = seg(params, jax.random.key(3))
    samples_untrained = seg(init, jax.random.key(3))
    # measured: 0.748 (one sample), 0.774 (mean of 3) vs 0.507 untrained (chance: ~0.5). A
    # pixel right with probability p > 1/2 in each sample is right more often in the vote of 3
    # (the oracle test above checks that law exactly), so the mean of 3 must beat one sample.
    one, mean3 = dice(trained[0]), dice(trained.mean(0))
    assert one > 0.65 and dice(samples_untrained[0]) < 0.6, (one, dice(samples_untrained[0]))
    assert mean3 > one, (mean3, one)


@pytest.mark.parametrize("obj", [sd.mask_channels, sd.mask_to_channels, sd.channels_to_mask,
                                 sd.dice])
def test_docstring_examples(obj):
    import doctest

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(obj, module=sd, globs=vars(sd).copy())
    assert sum(runner.run(t).attempted for t in tests) > 0
    assert runner.failures == 0


def test_example_scores_docstring_and_identical_labels():
    import doctest

    from diffax.tasks.examples import segdiff as example

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(example.scores, module=example,
                                         globs=vars(example).copy())
    assert sum(runner.run(t).attempted for t in tests) > 0 and runner.failures == 0
    # a prediction equal to the truth scores 1 everywhere; against another method's labels its
    # paired Dice gain is the (deterministic) difference of the two Dice values
    target = np.random.default_rng(0).integers(0, 3, (6, 5, 5))
    worse = np.where(target == 2, 1, target)
    s = example.scores(target, target, 3, versus=worse)
    assert s["mean_foreground_dice"] == 1.0 and s["mean_iou"] == 1.0 and s["accuracy"] == 1.0
    gain = 1.0 - example.scores(worse, target, 3)["mean_foreground_dice"]
    lo, hi = s["dice_gain_interval"]
    assert lo <= gain <= hi and hi > 0.0
