"""Forward processes: marginals, SDE coefficients, log-SNR inverse, prior, pytree behaviour."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.processes import Process

PROCESSES = {
    "VP": lambda: diffax.VP(beta_min=0.1, beta_max=20.0),
    "VP.cosine": lambda: diffax.VP.cosine(),
    "SubVP": lambda: diffax.SubVP(beta_min=0.1, beta_max=20.0),
    "VE": lambda: diffax.VE(sigma_min=0.01, sigma_max=50.0),
    "EDM": lambda: diffax.EDM(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5),
    "RectifiedFlow": lambda: diffax.RectifiedFlow(),
    "DiscreteVP.linear": lambda: diffax.DiscreteVP.linear(num_steps=1000),
    "DiscreteVP.cosine": lambda: diffax.DiscreteVP.cosine(num_steps=100),
}
process_names = pytest.mark.parametrize("name", list(PROCESSES))


def _times(p, n=9):
    # Interior times, including ones near both ends of the range.
    lo, hi = float(p.t_min), float(p.t_max)
    u = jnp.concatenate([jnp.array([0.0, 1e-3]), jnp.linspace(0.05, 0.95, n - 4),
                         jnp.array([0.999, 1.0])])
    return lo + (hi - lo) * u


@process_names
def test_marginal_sample_moments_match_alpha_sigma(x64, name):
    p = PROCESSES[name]()
    n = 200_000
    x0 = jnp.full((n, 1), 0.7)
    for t in _times(p, 5)[1:-1]:
        xt = jax.jit(p.marginal_sample)(jax.random.key(1), x0, jnp.full((n,), t))
        a, s = float(p.alpha(t)), float(p.sigma(t))
        # Tolerances are 5 standard errors of the Monte-Carlo estimates.
        assert abs(float(xt.mean()) - 0.7 * a) < 5 * s / math.sqrt(n)
        assert abs(float(xt.std()) - s) < 5 * s / math.sqrt(2 * n)


@process_names
def test_variance_ode_holds_by_autodiff(x64, name):
    """d sigma^2/dt = 2 f sigma^2 + g^2: the SDE's coefficients reproduce the marginal."""
    p = PROCESSES[name]()
    t = _times(p)[1:-1]
    dvar = jax.vmap(jax.grad(lambda s: jnp.square(p.sigma(s))))(t)
    rhs = 2 * p.f(t) * jnp.square(p.sigma(t)) + p.g2(t)
    np.testing.assert_allclose(dvar, rhs, rtol=1e-8, atol=1e-10)
    # and d alpha/dt = f alpha
    dalpha = jax.vmap(jax.grad(lambda s: p.alpha(s)))(t)
    np.testing.assert_allclose(dalpha, p.f(t) * p.alpha(t), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(p.dalpha(t), dalpha, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(p.dsigma(t), jax.vmap(jax.grad(p.sigma))(t), rtol=1e-10)


@process_names
def test_closed_forms_equal_generic_derivations(x64, name):
    """Overridden f, g2, log_snr and t_from_log_snr agree with the base class's generic ones."""
    p = PROCESSES[name]()
    t = _times(p)[1:-1]
    np.testing.assert_allclose(p.f(t), Process.f(p, t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.g2(t), Process.g2(p, t), rtol=1e-8)
    np.testing.assert_allclose(
        p.log_snr(t), 2 * (jnp.log(p.alpha(t)) - jnp.log(p.sigma(t))), rtol=1e-9, atol=1e-9)
    lam = p.log_snr(t)
    np.testing.assert_allclose(Process._t_from_log_snr(p, lam), t, rtol=1e-9, atol=1e-12)


@process_names
def test_t_from_log_snr_inverts_log_snr(x64, name):
    p = PROCESSES[name]()
    t = _times(p, 33)
    lam = p.log_snr(t)
    assert bool(jnp.all(jnp.diff(lam) < 0)), "log_snr must decrease with t"
    np.testing.assert_allclose(p.t_from_log_snr(lam), t, rtol=1e-10, atol=1e-12)


def test_t_from_log_snr_inverts_in_float32():
    for name, make in PROCESSES.items():
        p = make()
        t = _times(p, 17).astype(jnp.float32)
        back = p.t_from_log_snr(p.log_snr(t))
        span = float(p.t_max) - float(p.t_min)
        assert float(jnp.max(jnp.abs(back - t))) < 2e-3 * span, name


@process_names
def test_prior_logp_is_consistent_with_prior_sample(x64, name):
    p = PROCESSES[name]()
    # E[-log p(x)] over prior samples is the Gaussian's entropy, D/2 log(2 pi e sigma^2).
    d, n = 3, 100_000
    x = p.prior_sample(jax.random.key(0), (n, d))
    assert x.shape == (n, d)
    s = float(p.prior_std)
    entropy = 0.5 * d * math.log(2 * math.pi * math.e * s**2)
    nll = -p.prior_logp(x)
    assert abs(float(nll.mean()) - entropy) < 5 * float(nll.std()) / math.sqrt(n)
    # and the density integrates to one (1-D quadrature over +-10 std)
    grid = jnp.linspace(-10 * s, 10 * s, 20_001)[:, None]
    mass = jnp.trapezoid(jnp.exp(p.prior_logp(grid)), grid[:, 0])
    assert abs(float(mass) - 1.0) < 1e-8


def test_known_values(x64):
    vp = diffax.VP(beta_min=0.1, beta_max=20.0)
    t = 0.37
    log_alpha = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1  # score_sde's marginal_prob
    np.testing.assert_allclose(vp.alpha(t), math.exp(log_alpha), rtol=1e-13)
    np.testing.assert_allclose(vp.sigma(t), math.sqrt(1 - math.exp(2 * log_alpha)), rtol=1e-13)
    np.testing.assert_allclose(vp.g2(t), 0.1 + t * 19.9, rtol=1e-13)
    sub = diffax.SubVP()
    np.testing.assert_allclose(sub.sigma(t), 1 - math.exp(2 * log_alpha), rtol=1e-13)
    np.testing.assert_allclose(sub.g2(t), (0.1 + t * 19.9) * (1 - math.exp(4 * log_alpha)),
                               rtol=1e-12)
    ve = diffax.VE(sigma_min=0.01, sigma_max=50.0)
    np.testing.assert_allclose(ve.sigma(t), 0.01 * 5000.0**t, rtol=1e-13)
    np.testing.assert_allclose(ve.g2(t), (0.01 * 5000.0**t) ** 2 * 2 * math.log(5000.0),
                               rtol=1e-12)
    edm = diffax.EDM()
    assert float(edm.t_min) == 0.002 and float(edm.t_max) == 80.0
    np.testing.assert_allclose(edm.g2(3.0), 6.0)
    rf = diffax.RectifiedFlow()
    assert float(rf.alpha(1.0)) == 0.0 and float(rf.sigma(1.0)) == 1.0
    cos = diffax.VP.cosine()
    s = 0.008
    ref = math.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)
    np.testing.assert_allclose(cos.alpha(t), ref, rtol=1e-13)


def test_discrete_vp_matches_ddpm_on_its_grid(x64):
    p = diffax.DiscreteVP.linear(num_steps=1000, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)
    n = np.array([1, 2, 10, 500, 999, 1000])
    np.testing.assert_allclose(p.alpha(n / 1000), np.sqrt(abar[n - 1]), rtol=1e-12)
    np.testing.assert_allclose(p.sigma(n / 1000), np.sqrt(1 - abar[n - 1]), rtol=1e-10)
    np.testing.assert_allclose(p.alphas_cumprod, abar, rtol=1e-12)
    assert p.index(p.time(n)).tolist() == (n - 1).tolist()
    # Between grid points log alpha is linear, so alpha stays between its neighbours.
    mid = p.alpha((n[:-1] + 0.5) / 1000)
    assert bool(jnp.all((mid < np.sqrt(abar[n[:-1] - 1])) & (mid > np.sqrt(abar[n[:-1]]))))


def test_generic_posterior_is_ddpm_discrete_posterior(x64):
    p = diffax.DiscreteVP.linear(num_steps=50)
    key = jax.random.key(3)
    x_n, x0 = jax.random.normal(key, (2, 6, 3))
    for n in [2, 7, 50]:
        mean_ref, std_ref = p.discrete_posterior(x_n, x0, jnp.full((6,), n))
        mean, std = p.posterior(x_n, x0, t=p.time(n), s=p.time(n - 1))
        np.testing.assert_allclose(mean, mean_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(jnp.broadcast_to(std, x_n.shape),
                                   jnp.broadcast_to(std_ref, x_n.shape), rtol=1e-10)


@process_names
def test_posterior_matches_gaussian_conditioning(x64, name):
    """q(x_s | x_t, x0) from the joint Gaussian of (x_s, x_t) given x0, computed directly."""
    p = PROCESSES[name]()
    t_grid = _times(p)
    t, s = t_grid[6], t_grid[3]
    a_t, a_s, s_t, s_s = (float(v) for v in (p.alpha(t), p.alpha(s), p.sigma(t), p.sigma(s)))
    a_ts = a_t / a_s
    var_ts = s_t**2 - a_ts**2 * s_s**2
    x_t, x0 = jnp.array([[0.3, -1.2]]), jnp.array([[0.5, 0.1]])
    cov = np.array([[s_s**2, a_ts * s_s**2], [a_ts * s_s**2, s_t**2]])
    mean_ref = a_s * x0 + cov[0, 1] / cov[1, 1] * (x_t - a_t * x0)
    std_ref = math.sqrt(cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1])
    mean, std = p.posterior(x_t, x0, t=t, s=s)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-9)
    np.testing.assert_allclose(float(std.reshape(-1)[0]), std_ref, rtol=1e-9)
    assert var_ts > 0


def test_posterior_is_finite_where_alpha_is_zero(x64):
    p = diffax.RectifiedFlow()
    x_t, x0 = jnp.ones((2, 3)), jnp.full((2, 3), 0.5)
    mean, std = p.posterior(x_t, x0, t=1.0, s=0.5)
    # at t = t_max, x_t is pure noise: the posterior is the marginal q(x_s | x0)
    np.testing.assert_allclose(mean, 0.5 * x0)
    np.testing.assert_allclose(std.reshape(-1)[0], 0.5)


@process_names
def test_new_numbers_do_not_recompile(name):
    make = PROCESSES[name]
    p1 = make()
    leaves, treedef = jax.tree_util.tree_flatten(p1)
    p2 = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) * 0.9 for v in leaves])
    traces = []

    @jax.jit
    def f(p, t):
        traces.append(1)
        return p.alpha(t) * p.sigma(t) + p.g2(t) + p.t_from_log_snr(p.log_snr(t))

    t = jnp.asarray(0.5 * (float(p1.t_min) + float(p1.t_max)), jnp.float32)
    f(p1, t)
    f(p2, t)
    f(make(), t)
    assert len(traces) == 1


def test_grad_with_respect_to_process_numbers(x64):
    def loss(p):
        return jnp.sum(p.sigma(jnp.array([0.2, 0.7])) ** 2 + p.log_snr(0.4))

    for p, field in [(diffax.VE(), "sigma_max"), (diffax.VP(), "beta_max"),
                     (diffax.SubVP(), "beta_min"), (diffax.EDM(), "sigma_max")]:
        g = jax.grad(loss)(p)
        assert type(g) is type(p)
        h = 1e-6
        v = float(getattr(p, field))
        fd = (loss(p.replace(**{field: v + h})) - loss(p.replace(**{field: v - h}))) / (2 * h)
        np.testing.assert_allclose(getattr(g, field), fd, rtol=1e-6)


class _CustomVP(Process):
    """A user-defined process with only alpha and sigma: exercises the generic derivations."""

    _domain = (0.0, math.inf)

    def _log_alpha(self, t):
        return -0.25 * jnp.square(t) * 19.9 - 0.05 * t

    def _log_sigma(self, t):
        return 0.5 * jnp.log(-jnp.expm1(2 * self._log_alpha(t)))


CustomVP = diffax.pytree_dataclass(
    type("CustomVP", (_CustomVP,), {"__annotations__": {"t_min": float, "t_max": float},
                                    "t_min": 1e-3, "t_max": 1.0}))


def test_user_defined_process_gets_every_derived_quantity(x64):
    custom, ref = CustomVP(), diffax.VP()
    t = jnp.linspace(0.01, 1.0, 11)
    for method in ["alpha", "sigma", "log_snr", "f", "g2", "dalpha", "dsigma"]:
        np.testing.assert_allclose(getattr(custom, method)(t), getattr(ref, method)(t),
                                   rtol=1e-10, err_msg=method)
    lam = ref.log_snr(t)
    np.testing.assert_allclose(jax.jit(custom.t_from_log_snr)(lam), t, rtol=1e-12)


@pytest.mark.parametrize("make, match", [
    (lambda: diffax.VE(sigma_min=-0.01), "sigma_min"),
    (lambda: diffax.VE(sigma_min=60.0, sigma_max=50.0), "sigma_min"),
    (lambda: diffax.EDM(sigma_min=-0.002), "sigma_min"),
    (lambda: diffax.EDM(sigma_data=0.0), "sigma_data"),
    (lambda: diffax.VP(beta_min=20.0, beta_max=0.1), "beta_min"),
    (lambda: diffax.SubVP(beta_min=-1.0), "beta_min"),
    (lambda: diffax.VP(t_min=0.5, t_max=0.1), "t_min"),
    (lambda: diffax.RectifiedFlow(t_max=1.5), "t_max"),
    (lambda: diffax.VE(sigma_max=float("nan")), "sigma_max"),
    (lambda: diffax.DiscreteVP(betas=np.array([0.1, 1.5])), "betas"),
    (lambda: diffax.DiscreteVP.linear(num_steps=0), "num_steps"),
])
def test_bad_numbers_are_rejected_with_the_field_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("call", [
    lambda: diffax.RectifiedFlow().alpha(1.5),
    lambda: diffax.RectifiedFlow().sigma(-0.1),
    lambda: diffax.VP().sigma(-0.5),
    lambda: diffax.EDM().sigma(jnp.array([1.0, -2.0])),
    lambda: diffax.DiscreteVP.linear().alpha(1.2),
    lambda: diffax.VP().alpha(float("nan")),
])
def test_meaningless_times_raise_instead_of_nan(call):
    with pytest.raises(ValueError, match="`t`"):
        call()


def test_shape_mismatch_between_x_and_t_is_named():
    with pytest.raises(ValueError, match="`t` has shape"):
        diffax.VP().marginal_sample(jax.random.key(0), jnp.ones((4, 2)), jnp.ones(3) * 0.5)
