"""LSGM's objective against closed forms, in float64.

Oracles (all Gaussian, so every expectation is closed-form):

* ``dsm_cross_entropy`` with the exact score of a Gaussian prior ``p_0 = N(m, diag v)`` has the
  expectation ``CE(q_eps || p_eps) - CE(q_T || p_T) + CE(q_T || pi)`` (``pi`` the process's
  prior; the last two differ only by the prior mismatch at ``t_max``, tiny for VP), computed
  from ``lsgm.gaussian_kl`` and Gaussian entropies. Threshold: 5 standard errors of the mean,
  the standard error measured from the same draws (a z-score bound, not a copied number).
* The importance-sampled estimator (``NormalImportanceTime``) has the same expectation and a
  variance lower than uniform ``t``'s by more than 5 standard errors of both sample
  variances (their standard errors from the fourth moments of the same draws).
* The mixed score with a zero residual (or ``m = 0``) is the exact score of ``N(0, I)``
  diffused, from ``diffax.testing.GaussianMixture``.
* The whole objective, for a linear-Gaussian encoder and decoder and the mixed score with
  zero residual (the exact ``N(0, I)`` prior), equals the closed-form negative ELBO within
  5 standard errors; the ``t_min`` cut-off bias is computed exactly and is far below that.

Each of these was checked to fail on a deliberately broken variant (the constant term
dropped, the importance weight set to 1, ``alpha^2 + sigma^2`` dropped from ``normal_eps``,
the entropy's sign flipped).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import losses, lsgm
from diffax.latent import DiagonalGaussian
from diffax.testing import GaussianMixture

N = 100_000  # Monte Carlo draws per estimate
Z = 5.0  # standard errors allowed


def _ce(mq, sq, mp, sp):
    """Closed-form CE(N(mq, sq) || N(mp, sp)) = KL + H (full covariances)."""
    h = 0.5 * jnp.linalg.slogdet(2 * jnp.pi * jnp.e * sq)[1]
    return lsgm.gaussian_kl(mq, sq, mp, sp) + h


_MQ, _SQ = np.array([0.5, -1.0, 0.2]), np.array([0.3, 0.05, 1.2]) ** 2  # q(z0 | x), diagonal
_MP, _VP = np.array([0.1, 0.3, -0.4]), np.array([0.8, 1.5, 0.6]) ** 2  # p(z0), diagonal


@jax.jit
def _target(process):
    mq, sq = jnp.asarray(_MQ), jnp.diag(jnp.asarray(_SQ))
    mp, sp = jnp.asarray(_MP), jnp.diag(jnp.asarray(_VP))
    lo, hi = process.t_min, process.t_max
    q = lambda t: lsgm.diffuse_gaussian(process, mq, sq, t)
    p = lambda t: lsgm.diffuse_gaussian(process, mp, sp, t)
    pi = (jnp.zeros(3), jnp.square(process.prior_std) * jnp.eye(3))
    return _ce(*q(lo), *p(lo)) - _ce(*q(hi), *p(hi)) + _ce(*q(hi), *pi)


def _estimates(process, time_sampler):
    mp, vp = jnp.asarray(_MP), jnp.asarray(_VP)

    def eps_fn(z, t):  # -sigma * grad log p_t, p_t = N(alpha m, alpha^2 v + sigma^2)
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return s * (z - a * mp[None]) / (a**2 * vp[None] + s**2)

    @jax.jit
    def run(key):
        k_z, k_ce = jax.random.split(key)
        z0 = jnp.asarray(_MQ)[None] + jnp.sqrt(jnp.asarray(_SQ))[None] * jax.random.normal(
            k_z, (N, 3))
        return lsgm.dsm_cross_entropy(k_ce, process, eps_fn, z0, time_sampler=time_sampler)[0]

    return np.asarray(run(jax.random.key(0)))


_PROCESSES = {"vp": diffax.VP(), "ve": diffax.VE(sigma_min=0.01, sigma_max=5.0)}


@pytest.fixture(scope="module")
def estimates():
    """Per process: the closed-form target and the uniform / importance-sampled draws."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        out = {}
        for name, process in _PROCESSES.items():
            out[name] = (float(_target(process)),
                         _estimates(process, losses.UniformTime()),
                         _estimates(process, lsgm.NormalImportanceTime()))
        return out
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize("name", list(_PROCESSES))
@pytest.mark.parametrize("sampler", ["uniform", "importance"])
def test_dsm_cross_entropy_equals_closed_form(estimates, name, sampler):
    target, uniform, importance = estimates[name]
    ce = uniform if sampler == "uniform" else importance
    se = ce.std(ddof=1) / math.sqrt(len(ce))
    assert abs(ce.mean() - target) < Z * se, (ce.mean(), target, se)
    if sampler == "importance":  # it resolves the answer (uniform t is too noisy to)
        assert Z * se < 0.1 * abs(target), (se, target)


@pytest.mark.parametrize("name", list(_PROCESSES))
def test_importance_sampling_lowers_the_variance(estimates, name):
    _, uniform, importance = estimates[name]

    def var_and_se(a):  # the sample variance and its standard error, sqrt((m4 - var^2) / n)
        d = a - a.mean()
        var = np.mean(d**2)
        return var, math.sqrt((np.mean(d**4) - var**2) / len(a))

    (vi, si), (vu, su) = var_and_se(importance), var_and_se(uniform)
    assert vi + Z * si < vu - Z * su, ((vi, si), (vu, su))


def test_importance_density_is_normalised_and_matches_its_cdf(x64):
    """``r(t) = H'(t) / (H(T) - H(eps))``: the correction ``q/r`` averages to 1 under ``r``
    (E_r[q/r] = 1), and the drawn times follow the closed-form CDF (KS distance)."""
    p = diffax.VP(t_min=1e-5)
    t, c = jax.jit(lambda k: lsgm.NormalImportanceTime().sample(k, p, N))(jax.random.key(1))
    t, c = np.asarray(t), np.asarray(c)
    assert abs(c.mean() - 1.0) < Z * c.std() / math.sqrt(len(c))
    h = lambda s: np.asarray(lsgm.NormalImportanceTime.log_ratio(p, jnp.asarray(s)))
    cdf = (h(np.sort(t)) - h(p.t_min)) / (h(p.t_max) - h(p.t_min))
    ks = np.max(np.abs(cdf - (np.arange(1, len(t) + 1) - 0.5) / len(t)))
    assert ks < 1.63 / math.sqrt(len(t))  # the 1% critical value of the KS statistic


@pytest.mark.parametrize("process", [diffax.VP(), diffax.VE(sigma_min=0.01, sigma_max=5.0),
                                     diffax.SubVP(), diffax.EDM()],
                         ids=["vp", "ve", "subvp", "edm"])
def test_mixed_score_with_zero_residual_is_the_normal_score(process, x64):
    key = jax.random.key(2)
    z = 2.0 * jax.random.normal(key, (5, 2, 2, 3))
    t = jnp.linspace(float(process.t_min) + 0.01, float(process.t_max), 5)
    normal = GaussianMixture(means=jnp.zeros((1, 2, 2, 3)), stds=jnp.ones(1),
                             weights=jnp.ones(1))
    logits = jax.random.normal(jax.random.fold_in(key, 1), (2, 2, 3))
    anything = jax.random.normal(jax.random.fold_in(key, 2), z.shape)
    never = jnp.full((2, 2, 3), -jnp.inf)  # m = 0

    @jax.jit
    def run(z, t):
        sigma = process.sigma(t)[:, None, None, None]
        zero_residual = lsgm.mixed_eps(process, z, t, lsgm.normal_eps(process, z, t), logits)
        D = lsgm.mixed_denoiser(process, lambda zz, tt: anything, never)
        return {"exact": normal.score(process, z, t),
                "zero_residual": -zero_residual / sigma,  # eps_theta = eps_N, any m
                "m0": -lsgm.mixed_eps(process, z, t, anything, never) / sigma,  # any network
                "half": lsgm.mixed_eps(process, z, t, anything, jnp.zeros((2, 2, 3))),
                "half_want": 0.5 * (lsgm.normal_eps(process, z, t) + anything),
                "D": D(z, t), "D_want": normal.posterior_mean(process, z, t)}

    r = run(z, t)
    for name in ("zero_residual", "m0"):
        np.testing.assert_allclose(r[name], r["exact"], rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(r["half"], r["half_want"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["D"], r["D_want"], rtol=1e-10, atol=1e-10)


def test_objective_of_a_linear_gaussian_model_is_the_negative_elbo(x64):
    """Encoder q(z|x) = N(A x + b, diag s^2), decoder N(x; W z + c, std^2 I), prior N(0, I)
    (the mixed score with zero residual): -ELBO = E||x - W z - c||^2 / (2 std^2) + D_x log(std
    sqrt(2 pi)) + KL(q || N(0, I)), all closed-form."""
    rng = np.random.default_rng(3)
    dx, dz = 4, 2
    a, b = rng.standard_normal((dz, dx)), rng.standard_normal(dz)
    w, c = rng.standard_normal((dx, dz)), rng.standard_normal(dx)
    logvar = np.log(np.array([0.2, 0.6]) ** 2)
    x = rng.standard_normal(dx)
    std = 0.5
    process = diffax.VP(t_min=1e-5)
    obj = lsgm.LSGMObjective(process=process, time_sampler=lsgm.NormalImportanceTime(),
                             reconstruction=lsgm.GaussianReconstruction(std=std))
    mean = a @ x + b
    logits = jnp.asarray(rng.standard_normal(dz))

    @jax.jit
    def run(key):
        xb = jnp.broadcast_to(jnp.asarray(x), (N, dx))
        q = DiagonalGaussian(mean=xb @ a.T + b[None], logvar=jnp.broadcast_to(logvar, (N, dz)))
        eps_fn = lambda z, t: lsgm.mixed_eps(process, z, t, lsgm.normal_eps(process, z, t),
                                             logits)
        return obj(key, xb, posterior=q, decode=lambda z: z @ w.T + c[None], eps_fn=eps_fn)[0]

    nelbo = np.asarray(run(jax.random.key(4)))
    var = np.exp(logvar)
    rec = ((np.sum((x - w @ mean - c) ** 2) + np.trace(w @ np.diag(var) @ w.T)) / (2 * std**2)
           + dx * math.log(std * math.sqrt(2 * math.pi)))
    kl = 0.5 * np.sum(mean**2 + var - 1.0 - logvar)
    exact = rec + kl
    # The estimator targets CE(q_eps || p_eps) (- the prior mismatch at t_max); its gap to
    # CE(q_0 || p_0) is closed-form and must be far below the Monte Carlo threshold.
    q0 = (jnp.asarray(mean), jnp.diag(jnp.asarray(var)))
    p0 = (jnp.zeros(dz), jnp.eye(dz))
    diffuse = lambda m, t: lsgm.diffuse_gaussian(process, *m, t)
    pi = (jnp.zeros(dz), jnp.square(process.prior_std) * jnp.eye(dz))
    bias = float(jax.jit(lambda: (
        _ce(*diffuse(q0, process.t_min), *diffuse(p0, process.t_min)) - _ce(*q0, *p0)
        - _ce(*diffuse(q0, process.t_max), *diffuse(p0, process.t_max))
        + _ce(*diffuse(q0, process.t_max), *pi)))())
    se = nelbo.std(ddof=1) / math.sqrt(N)
    assert abs(bias) < 0.1 * se, (bias, se)
    assert abs(nelbo.mean() - exact) < Z * se, (nelbo.mean(), exact, se)


def test_bad_input_names_the_argument():
    p = diffax.VP()
    with pytest.raises(ValueError, match="mixing_logits"):
        lsgm.mixed_eps(p, jnp.ones((2, 3)), 0.5, jnp.ones((2, 3)), jnp.ones((2,)))
    with pytest.raises(ValueError, match="network_eps"):
        lsgm.mixed_eps(p, jnp.ones((2, 3)), 0.5, jnp.ones((2, 4)), jnp.ones((3,)))
    with pytest.raises(TypeError, match="time_sampler"):
        lsgm.LSGMObjective(process=p, time_sampler="importance")
    with pytest.raises(TypeError, match="process"):
        lsgm.LSGMObjective(process=diffax.CLD())
    with pytest.raises(ValueError, match="kl_weight"):
        lsgm.LSGMObjective(process=p, kl_weight=-1.0)
    with pytest.raises(ValueError, match="std"):
        lsgm.GaussianReconstruction(std=0.0)
    with pytest.raises(ValueError, match="z0"):
        lsgm.dsm_cross_entropy(jax.random.key(0), p, lambda z, t: z, jnp.ones(3))
