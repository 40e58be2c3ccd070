"""SSIM against its definition: constant images in closed form, a direct per-window loop."""

import numpy as np
import pytest

from diffax.evaluation import ssim


def test_constant_images_have_the_closed_form_luminance_term():
    """Constant a vs b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b, L = 0.3, 0.7, 1.0
    c1 = (0.01 * L) ** 2
    got = ssim(np.full((1, 12, 12, 1), a), np.full((1, 12, 12, 1), b), data_range=L)
    np.testing.assert_allclose(got, (2 * a * b + c1) / (a * a + b * b + c1), rtol=1e-12)


def test_matches_a_direct_loop_over_windows():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(2, 13, 14, 2)), rng.uniform(size=(2, 13, 14, 2))
    size, sigma, L = 5, 1.2, 1.0
    g = np.exp(-0.5 * ((np.arange(size) - 2) / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    want = np.zeros(2)
    for bi in range(2):
        vals = []
        for i in range(13 - size + 1):
            for j in range(14 - size + 1):
                for c in range(2):
                    px, py = x[bi, i:i + size, j:j + size, c], y[bi, i:i + size, j:j + size, c]
                    mx, my = (w * px).sum(), (w * py).sum()
                    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                    cov = (w * (px - mx) * (py - my)).sum()
                    vals.append((2 * mx * my + c1) * (2 * cov + c2)
                                / ((mx * mx + my * my + c1) * (vx + vy + c2)))
        want[bi] = np.mean(vals)
    got = ssim(x, y, data_range=L, window_size=size, sigma=sigma)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`x` .* `reference` .* differ"):
        ssim(np.zeros((1, 8, 8)), np.zeros((1, 8, 9)), data_range=1.0)
    with pytest.raises(ValueError, match="`window_size`"):
        ssim(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), data_range=1.0)
    with pytest.raises(ValueError, match="`data_range`"):
        ssim(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), data_range=0.0)


def test_docstring_example():
    import doctest

    from diffax.evaluation import metrics

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(metrics.ssim, module=metrics, globs=vars(metrics).copy()):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
