"""Tests for diffax.losses: weightings, time samplers, parameterizations, unbiasedness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import losses
from diffax.parameterization import (
    as_denoiser,
    convert,
    edm_coefficients,
    edm_preconditioned,
    eps_from_denoiser,
)
from diffax.processes import expand
from diffax.testing import GaussianMixture

SD = 0.5  # sigma_data used with processes that do not carry one

PROCESSES = {
    "vp": diffax.VP(),
    "cosine": diffax.VP.cosine(),
    "ve": diffax.VE(),
    "edm": diffax.EDM(),
    "rf": diffax.RectifiedFlow(),
}


def _times(process, n=7):
    lo, hi = float(process.t_min), float(process.t_max)
    # Interior points, including ones near both ends.
    return jnp.asarray(lo + (hi - lo) * np.array([0.002, 0.05, 0.2, 0.4, 0.6, 0.8, 0.99])[:n])


def _eps_net(params, x, t):
    """An arbitrary smooth eps predictor (not the exact one)."""
    return params * jnp.tanh(x + expand(jnp.sin(3.0 * t), x)) + 0.1 * x


def _in_space(space, process):
    """The eps network above expressed as a network predicting `space` (same denoiser)."""
    D = as_denoiser(lambda x, t: _eps_net(0.7, x, t), process, prediction="eps")
    if space == "edm_f":
        def raw(params, x_in, c_noise):
            t = process.t_from_log_snr(-8.0 * c_noise)
            c = edm_coefficients(process, t, sigma_data=SD)
            x = x_in / expand(c.c_in, x_in)
            return (D(x, t) - expand(c.c_skip, x) * x) / expand(c.c_out, x)
        return raw, losses.EDMPrecond(sigma_data=SD)
    fn = lambda params, x, t: convert(D(x, t), process=process, x=x, t=t, source="x0",
                                      target=space)
    return fn, losses.Predict(prediction=space)


WEIGHTINGS = {
    "eps": losses.EpsMSE(),
    "x0": losses.X0MSE(),
    "v": losses.VMSE(),
    "score": losses.ScoreMSE(),
    "likelihood": losses.Likelihood(),
    "edm": losses.EDMWeighting(sigma_data=SD),
    "flow": losses.FlowMatching(),
}


def _documented_weight(name, p, t):
    a, s = p.alpha(t), p.sigma(t)
    return {
        "eps": jnp.ones_like(t),
        "x0": s**2 / a**2,
        "v": (a**2 + s**2) ** 2 / a**2,
        "score": jnp.ones_like(t),
        "likelihood": p.g2(t) / s**2,
        "edm": ((s / a) ** 2 + SD**2) / SD**2,
        "flow": (p.dsigma(t) - s * p.dalpha(t) / a) ** 2,
    }[name]


@pytest.mark.parametrize("pname", sorted(PROCESSES))
def test_each_weighting_has_its_documented_weight_for_every_output_space(x64, pname):
    """loss = w(t) ||eps_hat - eps||^2 with the documented w, whatever the network predicts."""
    p = PROCESSES[pname]
    t = _times(p)
    x0 = jax.random.normal(jax.random.key(0), (t.shape[0], 3, 2))
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    x_t = expand(p.alpha(t), x0) * x0 + expand(p.sigma(t), x0) * eps
    ref_eps_hat = _eps_net(0.7, x_t, t)
    mse = jnp.mean(jnp.square(ref_eps_hat - eps).reshape(t.shape[0], -1), -1)
    spaces = ("eps", "x0", "v", "score", "velocity", "edm_f")

    @jax.jit  # one program for every (space, weighting) pair: much faster than eager ops
    def compute(x0, t, eps, x_t):
        got, eps_hats = {}, {}
        for space in spaces:
            fn, par = _in_space(space, p)
            D = losses.DenoisingLoss(process=p, parameterization=par).denoiser(fn, None)
            eps_hats[space] = eps_from_denoiser(p, D)(x_t, t)
            for wname, weighting in WEIGHTINGS.items():
                loss = losses.DenoisingLoss(process=p, weighting=weighting,
                                            parameterization=par)
                got[space, wname] = loss.per_example(fn, None, x0, t, eps)
        weights = {w: (weighting.eps_weight(p, t), _documented_weight(w, p, t))
                   for w, weighting in WEIGHTINGS.items()}
        return got, eps_hats, weights

    got, eps_hats, weights = compute(x0, t, eps, x_t)
    for wname, (w, documented) in weights.items():
        np.testing.assert_allclose(w, documented, rtol=1e-10, err_msg=wname)
    for space in spaces:
        # The denoiser samplers see is the one the loss trains.
        np.testing.assert_allclose(eps_hats[space], ref_eps_hat, rtol=1e-7, atol=1e-8)
        for wname in WEIGHTINGS:
            np.testing.assert_allclose(got[space, wname], weights[wname][1] * mse, rtol=1e-7,
                                       err_msg=f"{pname}/{wname}/{space}")


def test_rectified_flow_weight_and_target():
    p = diffax.RectifiedFlow()
    t = jnp.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(losses.FlowMatching().eps_weight(p, t), 1 / (1 - t) ** 2,
                               rtol=1e-6)
    # The velocity network's target is eps - x0: a network returning it has zero loss.
    x0, eps = jnp.ones((3, 2)), jnp.full((3, 2), 2.0)
    loss = losses.DenoisingLoss(process=p, weighting=losses.FlowMatching(),
                                parameterization=losses.Predict(prediction="velocity"))
    zero = loss.per_example(lambda params, x, t: jnp.ones_like(x), None, x0, t, eps)
    np.testing.assert_array_equal(zero, 0.0)


def test_natural_pairs_are_plain_mse_in_the_network_space(x64):
    """EDM weighting + preconditioning is the unit-weight MSE of F, as in Karras et al."""
    p = diffax.EDM()
    t = jnp.array([0.01, 0.5, 3.0, 60.0])
    x0 = jax.random.normal(jax.random.key(0), (4, 5))
    eps = jax.random.normal(jax.random.key(1), (4, 5))
    net = lambda params, x_in, c_noise: 0.3 * x_in
    loss = losses.DenoisingLoss(process=p, weighting=losses.EDMWeighting(),
                                parameterization=losses.EDMPrecond())
    got = loss.per_example(net, None, x0, t, eps)
    y, n = x0, expand(t, x0) * eps
    sd = 0.5
    c_skip = sd**2 / (t**2 + sd**2)
    c_out = t * sd / jnp.sqrt(t**2 + sd**2)
    c_in = 1 / jnp.sqrt(t**2 + sd**2)
    F = net(None, expand(c_in, y) * (y + n), None)
    F_target = (y - expand(c_skip, y) * (y + n)) / expand(c_out, y)
    np.testing.assert_allclose(got, jnp.mean((F - F_target) ** 2, -1), rtol=1e-9)


# --------------------------------------------------------------------------------------------
# The exact denoiser is a stationary point and a minimum of every loss.

MIXTURE = GaussianMixture(means=jnp.array([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.0]]),
                          stds=jnp.array([0.3, 0.5, 0.2]), weights=jnp.array([0.3, 0.3, 0.4]))

NAMED_LOSSES = {
    "ddpm": losses.DenoisingLoss(
        process=diffax.DiscreteVP.linear(num_steps=50, beta_end=0.3),
        time_sampler=losses.DiscreteTime(),
        parameterization=losses.Predict(prediction="eps", noise_input=losses.IndexInput())),
    "score_sde_ve": losses.DenoisingLoss(
        process=diffax.VE(sigma_max=10.0), weighting=losses.ScoreMSE(),
        parameterization=losses.Predict(prediction="score")),
    "x0_vp": losses.DenoisingLoss(process=diffax.VP(), weighting=losses.X0MSE(),
                                  parameterization=losses.Predict(prediction="x0")),
    "v_cosine": losses.DenoisingLoss(
        process=diffax.VP.cosine(), weighting=losses.VMSE(),
        parameterization=losses.Predict(prediction="v", noise_input=losses.LogSNRInput())),
    "likelihood_is": losses.DenoisingLoss(
        process=diffax.VP(), weighting=losses.Likelihood(), reduce_mean=False,
        time_sampler=losses.ImportanceTime(), parameterization=losses.Predict(prediction="eps")),
    "edm": losses.DenoisingLoss(
        process=diffax.EDM(sigma_data=1.0), weighting=losses.EDMWeighting(),
        time_sampler=losses.LogNormalSigma(), parameterization=losses.EDMPrecond()),
    "flow": losses.DenoisingLoss(
        process=diffax.RectifiedFlow(), weighting=losses.FlowMatching(),
        time_sampler=losses.UniformTime(low_discrepancy=True),
        parameterization=losses.Predict(prediction="velocity")),
}


def _perturbed_exact_net(loss, bias=0.0):
    """apply_fn(theta, x, noise): the exact denoiser plus ``theta[0] + theta[1] x +
    theta[2] tanh(x)`` (plus ``bias``), expressed in the network's own output space."""
    p, par = loss.process, loss.parameterization
    exact = MIXTURE.denoiser(p)

    def D(theta, x, t):
        return exact(x, t) + theta[0] + theta[1] * x + theta[2] * jnp.tanh(x) + bias

    if isinstance(par, losses.EDMPrecond):
        sd = par.sigma_data_for(p)

        def raw(theta, x_in, c_noise):
            t = p.t_from_log_snr(-8.0 * c_noise)
            c = edm_coefficients(p, t, sigma_data=sd)
            x = x_in / expand(c.c_in, x_in)
            return (D(theta, x, t) - expand(c.c_skip, x) * x) / expand(c.c_out, x)
        return raw

    if isinstance(par.noise_input, losses.IndexInput):
        to_t = lambda n: p.time(n + 1)
    elif isinstance(par.noise_input, losses.LogSNRInput):
        to_t = p.t_from_log_snr
    else:
        to_t = lambda t: t

    def fn(theta, x, noise):
        t = to_t(noise)
        return convert(D(theta, x, t), process=p, x=x, t=t, source="x0",
                       target=par.prediction)
    return fn


def _gradient_z_scores(loss, apply_fn, num=4096):
    """Mean per-example gradient at theta = 0 over its standard error, per direction."""
    x0 = MIXTURE.sample_data(jax.random.key(0), num)
    per_example = jax.jit(lambda theta: loss(apply_fn, theta, jax.random.key(1), x0)[1][
        "per_example"])
    d = jax.jacfwd(per_example)(jnp.zeros(3))  # [num, 3]
    return np.asarray(jnp.mean(d, 0) / (jnp.std(d, 0) / np.sqrt(num))), per_example


@pytest.mark.parametrize("name", sorted(NAMED_LOSSES))
def test_exact_denoiser_is_the_minimum(x64, name):
    loss = NAMED_LOSSES[name]
    z, per_example = _gradient_z_scores(loss, _perturbed_exact_net(loss))
    # Stationary at theta = 0: each directional derivative is zero up to Monte Carlo error.
    assert np.all(np.abs(z) < 4.5), z
    # And the exact denoiser's loss is below that of perturbed denoisers (same noise draws).
    l0 = float(jnp.mean(per_example(jnp.zeros(3))))
    for theta in ([0.3, 0, 0], [0, -0.3, 0], [0, 0, 0.3]):
        assert float(jnp.mean(per_example(jnp.asarray(theta, float)))) > l0, theta


def test_the_stationarity_check_has_power(x64):
    """A 0.1 error in the x0 target (here: in the network) is far outside the noise."""
    loss = NAMED_LOSSES["x0_vp"]
    z, _ = _gradient_z_scores(loss, _perturbed_exact_net(loss, bias=0.1))
    assert abs(z[0]) > 6, z  # measured: 10


# --------------------------------------------------------------------------------------------
# Importance sampling is unbiased.


def _gaussian_linear_objective(p, weight_fn, gain_fn, s, dim):
    """Quadrature of (1/(T - t0)) int w(t) E||eps_hat - eps||^2 dt for N(0, s^2) data and
    the linear denoiser D(x, t) = k(t) x."""
    t0, t1 = float(p.t_min), float(p.t_max)
    # Geometric grid near t_min where the integrand varies fastest, then trapezoid in float64.
    t = np.unique(np.concatenate([np.geomspace(t0, t1, 50_001), np.linspace(t0, t1, 20_001)]))
    tj = jnp.asarray(t)
    a, sg = np.asarray(p.alpha(tj)), np.asarray(p.sigma(tj))
    k = np.asarray(gain_fn(tj))
    e = dim * ((1 - a * k) ** 2 * a**2 * s**2 + a**2 * k**2 * sg**2) / sg**2
    f = np.asarray(weight_fn(tj)) * e
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(t)) / (t1 - t0))


@pytest.mark.parametrize("wname", ["likelihood", "eps"])
def test_importance_sampling_has_the_uniform_time_expectation(x64, wname):
    p, s, dim, n = diffax.VP(), 0.7, 2, 40_000
    weighting = {"likelihood": losses.Likelihood(), "eps": losses.EpsMSE()}[wname]

    def gain(t):  # exact posterior-mean gain, made 20% too large at high noise
        a, sg = p.alpha(t), p.sigma(t)
        return a * s**2 / (a**2 * s**2 + sg**2) * (1.0 + 0.2 * sg)

    apply_fn = lambda params, x, t: (x - expand(p.alpha(t) * gain(t), x) * x) / expand(
        p.sigma(t), x)  # the eps prediction of D(x, t) = gain(t) x
    exact = _gaussian_linear_objective(p, lambda t: weighting.eps_weight(p, t), gain, s, dim)
    x0 = s * jax.random.normal(jax.random.key(0), (n, dim))
    stats = {}
    for sname, sampler in {"uniform": losses.UniformTime(),
                           "importance": losses.ImportanceTime()}.items():
        loss = losses.DenoisingLoss(process=p, weighting=weighting, time_sampler=sampler,
                                    reduce_mean=False)
        per = jax.jit(loss.bind(apply_fn))(None, jax.random.key(2), x0)[1]["per_example"]
        mean, se = float(jnp.mean(per)), float(jnp.std(per) / np.sqrt(n))
        stats[sname] = (mean, se)
        assert abs(mean - exact) < 4 * se, (sname, mean, se, exact)
    if wname == "likelihood":
        # Importance sampling removes the variance due to t (measured: ~6x smaller SE).
        assert stats["importance"][1] < 0.5 * stats["uniform"][1], stats


def test_importance_times_likelihood_weight_is_constant(x64):
    p = diffax.VP()
    t, c = losses.ImportanceTime().sample(jax.random.key(0), p, 64)
    w = c * losses.Likelihood().eps_weight(p, t)
    const = (p.log_snr(p.t_min) - p.log_snr(p.t_max)) / (p.t_max - p.t_min)
    np.testing.assert_allclose(w, const, rtol=1e-8)


# --------------------------------------------------------------------------------------------
# Time samplers.


@pytest.mark.parametrize("sampler", [losses.UniformTime(low_discrepancy=True),
                                     losses.ImportanceTime(low_discrepancy=True),
                                     losses.LogNormalSigma(low_discrepancy=True)])
def test_low_discrepancy_puts_one_time_per_stratum(sampler):
    p, n = diffax.VP(), 16
    t, _ = sampler.sample(jax.random.key(3), p, n)
    # The variate each time came from (its CDF under the sampler) lies in its own stratum
    # [i/n, (i+1)/n).
    u_of_t = {
        losses.UniformTime: lambda t: (t - p.t_min) / (p.t_max - p.t_min),
        losses.ImportanceTime: lambda t: (p.log_snr(t) - p.log_snr(p.t_max))
        / (p.log_snr(p.t_min) - p.log_snr(p.t_max)),
        losses.LogNormalSigma: lambda t: jax.scipy.stats.norm.cdf(
            (-0.5 * p.log_snr(t) + 1.2) / 1.2),
    }[type(sampler)](t)
    np.testing.assert_array_equal(np.floor(np.sort(np.asarray(u_of_t)) * n + 1e-4),
                                  np.arange(n))


def test_antithetic_pairs():
    p = diffax.VP()
    t, _ = losses.UniformTime(antithetic=True).sample(jax.random.key(0), p, 8)
    np.testing.assert_allclose(t[:4] + t[4:], p.t_min + p.t_max, rtol=1e-6)
    u = losses.uniform_variates(jax.random.key(0), 7, antithetic=True)
    assert u.shape == (7,)


def test_lognormal_sigma_distribution():
    n = 20_000
    for p in (diffax.EDM(), diffax.VP(beta_max=30.0)):
        t, c = losses.LogNormalSigma(mean=-1.2, std=1.2).sample(jax.random.key(0), p, n)
        log_sigma = -0.5 * p.log_snr(t)
        assert abs(float(jnp.mean(log_sigma)) + 1.2) < 4 * 1.2 / np.sqrt(n)
        assert abs(float(jnp.std(log_sigma)) - 1.2) < 0.03
        np.testing.assert_array_equal(c, 1.0)
    p = diffax.EDM(sigma_min=0.1, sigma_max=1.0)
    t, _ = losses.LogNormalSigma(truncate=True).sample(jax.random.key(1), p, n)
    assert float(t.min()) >= 0.1 and float(t.max()) <= 1.0
    # Truncation keeps the shape of the normal inside the bounds: its median is that of the
    # truncated normal.
    lo, hi = (np.log(0.1) + 1.2) / 1.2, (np.log(1.0) + 1.2) / 1.2
    from scipy.stats import norm
    median = -1.2 + 1.2 * norm.ppf(0.5 * (norm.cdf(lo) + norm.cdf(hi)))
    assert abs(float(jnp.median(jnp.log(t))) - median) < 0.02


def test_discrete_time_covers_every_step_once_with_low_discrepancy():
    p = diffax.DiscreteVP.linear(num_steps=32)
    t, _ = losses.DiscreteTime(low_discrepancy=True).sample(jax.random.key(0), p, 32)
    np.testing.assert_array_equal(np.sort(np.round(np.asarray(t) * 32)), np.arange(1, 33))


def test_ddpm_loss_matches_ho_et_al():
    """DiscreteTime + IndexInput + EpsMSE is L_simple written with alphas_cumprod."""
    T = 20
    p = diffax.DiscreteVP.linear(num_steps=T, beta_end=0.2)
    loss = losses.DenoisingLoss(
        process=p, time_sampler=losses.DiscreteTime(),
        parameterization=losses.Predict(prediction="eps", noise_input=losses.IndexInput()))
    seen = {}

    def net(params, x, n):
        seen["n"] = n
        return x * params + expand(n.astype(x.dtype), x) / T

    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    value, aux = loss(net, 0.3, jax.random.key(1), x0)
    n = np.round(np.asarray(aux["t"]) * T).astype(int)  # 1..T
    np.testing.assert_array_equal(seen["n"], n - 1)
    assert seen["n"].dtype == jnp.int32
    # Recreate eps from the same key split as the loss (documented: split(key, 3)[1]).
    eps = jax.random.normal(jax.random.split(jax.random.key(1), 3)[1], x0.shape)
    abar = np.cumprod(1 - np.asarray(p.betas))[n - 1][:, None]
    x_n = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps
    ref = np.mean((x_n * 0.3 + (n - 1)[:, None] / T - eps) ** 2)
    np.testing.assert_allclose(value, ref, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Conditioning, keys, jit and errors.


def test_labels_keys_and_jit():
    p = diffax.VP()
    seen = {}

    def net(params, x, t, *, label, key):
        seen["label"], seen["key"] = label, key
        return params * x + expand(label.astype(x.dtype), x)

    loss = losses.DenoisingLoss(process=p, key_arg="key")
    batch = {"x": jnp.ones((4, 2)), "label": jnp.arange(4), "extra": jnp.zeros(4)}
    eager, _ = loss(net, 0.5, jax.random.key(0), batch)
    np.testing.assert_array_equal(seen["label"], jnp.arange(4))
    jitted, _ = jax.jit(loss.bind(net))(0.5, jax.random.key(0), batch)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
    g = jax.grad(lambda q: loss(net, q, jax.random.key(0), batch)[0])(0.5)
    assert np.isfinite(float(g))
    # The loss is a pytree: passing it through jit does not recompile for new numbers.
    f = jax.jit(lambda loss, q: loss(net, q, jax.random.key(0), batch)[0])
    f(loss, 0.5)
    f(losses.DenoisingLoss(process=diffax.VP(beta_max=10.0), key_arg="key"), 0.5)
    assert f._cache_size() == 1


def test_denoiser_matches_the_core_wrappers():
    p = diffax.EDM()
    net = lambda params, x, c: params * jnp.sin(x) + expand(c, x)
    x, t = jax.random.normal(jax.random.key(0), (3, 2)), jnp.array([0.1, 1.0, 10.0])
    D = losses.DenoisingLoss(process=p, parameterization=losses.EDMPrecond()).denoiser(net, 2.0)
    ref = edm_preconditioned(lambda xi, c: net(2.0, xi, c), p)
    np.testing.assert_array_equal(D(x, t), ref(x, t))
    par = losses.EDMPrecond(noise_input=losses.TimeInput())
    D = losses.DenoisingLoss(process=p, parameterization=par).denoiser(net, 2.0)
    ref = edm_preconditioned(lambda xi, s: net(2.0, xi, s), p, noise_conditioning=lambda s: s)
    np.testing.assert_array_equal(D(x, t), ref(x, t))
    par = losses.Predict(prediction="v", noise_input=losses.TimeInput(scale=999.0))
    D = losses.DenoisingLoss(process=p, parameterization=par).denoiser(net, 2.0)
    ref = as_denoiser(lambda xi, s: net(2.0, xi, 999.0 * s), p, prediction="v")
    np.testing.assert_array_equal(D(x, t), ref(x, t))


def test_errors_name_the_argument():
    vp = diffax.VP()
    x = jnp.ones((4, 2))
    net = lambda params, x, t: x
    with pytest.raises(ValueError, match="time_sampler"):
        losses.DenoisingLoss(process=vp, time_sampler=losses.DiscreteTime())(
            net, None, jax.random.key(0), x)
    with pytest.raises(ValueError, match="noise_input"):
        par = losses.Predict(noise_input=losses.IndexInput())
        losses.DenoisingLoss(process=vp, parameterization=par)(net, None, jax.random.key(0), x)
    with pytest.raises(ValueError, match="sigma_data"):
        losses.DenoisingLoss(process=vp, weighting=losses.EDMWeighting())(
            net, None, jax.random.key(0), x)
    with pytest.raises(ValueError, match="prediction"):
        losses.Predict(prediction="noise")
    with pytest.raises(ValueError, match="low_discrepancy"):
        losses.UniformTime(low_discrepancy=True, antithetic=True)
    with pytest.raises(ValueError, match="weighting"):
        losses.DenoisingLoss(process=vp, weighting="eps")
    with pytest.raises(ValueError, match="'x'"):
        losses.DenoisingLoss(process=vp)(net, None, jax.random.key(0), {"image": x})
    with pytest.raises(ValueError, match="shape"):
        losses.DenoisingLoss(process=vp)(lambda params, x, t: x[:, :1], None,
                                         jax.random.key(0), x)


@pytest.mark.parametrize("key,batch,words", [
    (None, np.ones((4, 2), np.float32), ["`key`", "None"]),
    ("split", np.ones((4, 2), np.float32), ["`key`", "single PRNG key"]),
    ("key", np.ones((0, 2), np.float32), ["non-empty batch", "(0, 2)"]),
    ("key", np.ones((4,), np.float32), ["non-empty batch", "(4,)"]),
    ("key", np.where(np.arange(8).reshape(4, 2) == 5, np.nan, 1.0).astype(np.float32),
     ["NaN or infinite", "1 of 4", "index 2"]),
    ("key", {"x": np.ones((4, 2), np.float32), "label": np.zeros((3,), np.int32)},
     ["'label'", "one row per example (4)", "(3,)"]),
    ("key", {"x": np.ones((4, 2), np.float32), "label": np.zeros((4,), np.float32)},
     ["'label'", "integer class indices", "float32"]),
])
def test_bad_batches_and_keys_are_named(key, batch, words):
    key = {"key": jax.random.key(0), "split": jax.random.split(jax.random.key(0)),
           None: None}[key]
    loss_fn = losses.DenoisingLoss(process=diffax.VP()).bind(lambda p, x, t, **c: p * x)
    with pytest.raises(ValueError) as info:
        loss_fn(1.0, key, batch)
    for word in words:
        assert word in str(info.value)
    # The same batch, fixed, gives a finite loss (the check rejects only the bad part).
    value, _ = loss_fn(1.0, jax.random.key(0), np.ones((4, 2), np.float32))
    assert np.isfinite(float(value))
