"""Per-image reconstruction metrics of the phantom example and their intervals."""

import doctest

import jax.numpy as jnp
import numpy as np

from diffax.tasks import medical
from diffax.tasks.examples import medical as example


def test_per_image_metrics_docstring_runs():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(medical.per_image_metrics, globs=vars(medical)):
        runner.run(test)
    assert runner.failures == 0


def test_per_image_metrics_closed_form_and_means():
    # A constant offset e on an image in [-1, 1] has MSE e^2: PSNR = 10 log10(4 / e^2);
    # clipping first: an offset pushing past 1 counts only up to 1.
    x = jnp.zeros((3, 16, 16, 1))
    offsets = jnp.array([0.1, 0.5, 3.0])
    m = medical.per_image_metrics(x + offsets[:, None, None, None], x)
    want = 10 * np.log10(4.0 / np.array([0.1, 0.5, 1.0]) ** 2)
    np.testing.assert_allclose(np.asarray(m["psnr"]), want, atol=1e-4)
    assert m["ssim"].shape == (3,)
    mean = medical.reconstruction_metrics(x + offsets[:, None, None, None], x)
    assert mean["psnr"] == float(jnp.mean(m["psnr"])) and mean["ssim"] == float(np.mean(m["ssim"]))


def test_scored_keeps_the_means_and_brackets_them():
    rng = np.random.default_rng(0)
    ref = jnp.asarray(rng.uniform(-1, 1, (12, 16, 16, 1)), jnp.float32)
    noisy = ref + jnp.asarray(rng.normal(0, 0.1, ref.shape), jnp.float32)
    worse = ref + jnp.asarray(rng.normal(0, 0.3, ref.shape), jnp.float32)
    base = example._scored(worse, ref)
    s = example._scored(noisy, ref, versus=base)
    assert {k: s[k] for k in ("psnr", "ssim")} == medical.reconstruction_metrics(noisy, ref)
    lo, hi = s["psnr_interval"]
    assert lo <= s["psnr"] <= hi and lo < hi
    # noise 0.1 vs 0.3 everywhere: PSNR gain ~ 20 log10(3) = 9.5 dB on every image (a little
    # less where clipping to [-1, 1] trims the larger noise)
    lo, hi = s["psnr_gain_interval"]
    assert 8.0 < lo <= hi < 10.0
    assert len(s["per_image"]["psnr"]) == 12
