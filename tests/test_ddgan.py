"""Denoising diffusion GANs (diffax.ddgan, diffax.samplers.DDGAN) against exact oracles.

* The chain is exact: with an exact sampler of ``p(x0 | x_t)`` of a Gaussian mixture in place
  of the generator (``GaussianMixture.posterior_sample``) and ``x_T`` drawn from the exact
  ``q(x_T)``, DDGAN's T-step chain reproduces the mixture for T = 1, 2, 4 at the sampling
  noise floor; the same chain with the posterior *mean* (DDPM's Gaussian step) does not.
* The discriminator loss, the R1 penalty and the generator loss equal hand-computed values.
* The real pairs have q's joint law; the generator only ever receives ``(x_t, t, z)``, with
  ``x_t`` carrying the full forward noise (a spy inside the compiled train step).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffax
from diffax import ddgan, models, samplers
from diffax.evaluation.metrics import sliced_wasserstein
from diffax.testing import GaussianMixture
from diffax.train import TrainState

N = 4000  # samples per set
FLOOR_SEEDS = 6
MARGIN = 1.5  # threshold = MARGIN x the largest of FLOOR_SEEDS noise-floor distances


@pytest.fixture(scope="module")
def f64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _mixture():
    return GaussianMixture(means=jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                           stds=jnp.array([0.25, 0.4, 0.15]),
                           weights=jnp.array([0.5, 0.3, 0.2]))


def _distance(x, y):
    return sliced_wasserstein(np.asarray(x), np.asarray(y), num_projections=64, seed=0)


def _chain(T, *, exact, seed):
    gm = _mixture()
    p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=T)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    x_init = gm.sample(k_init, p, p.t_max, N, jnp.float64)  # exact q(x_T)
    if exact:
        G = lambda x, t, z=None: gm.posterior_sample(  # noqa: E731
            p, x, t, jnp.zeros((x.shape[0], 3), x.dtype) if z is None else z)
    else:  # DDPM's Gaussian step: x0 = E[x0 | x_t], the latent ignored
        G = lambda x, t, z=None: gm.posterior_mean(p, x, t)  # noqa: E731
    run = jax.jit(lambda k, x: samplers.sample(k, p, G, x, solver=samplers.DDGAN(
        latent_shape=(3,)), num_steps=T))
    res = run(k_run, x_init)
    assert int(res.nfe) == T and float(res.times[-1]) == 0.0
    return res.x


@pytest.fixture(scope="module")
def floor(f64):
    gm = _mixture()
    d = [_distance(gm.sample_data(jax.random.key(100 + 2 * i), N),
                   gm.sample_data(jax.random.key(101 + 2 * i), N)) for i in range(FLOOR_SEEDS)]
    return max(d)


@pytest.mark.parametrize("T", [1, 2, 4])
def test_chain_with_exact_posterior_sampler_reproduces_the_mixture(f64, floor, T):
    x = _chain(T, exact=True, seed=T)
    ref = _mixture().sample_data(jax.random.key(7), N)
    d = _distance(x, ref)
    assert x.dtype == jnp.float64
    assert d < MARGIN * floor, (T, d, floor)


def test_gaussian_step_with_the_posterior_mean_misses_the_mixture(f64, floor):
    """The same chain with DDPM's Gaussian step at T = 2 is far off: the test above can fail."""
    x = _chain(2, exact=False, seed=2)
    d = _distance(x, _mixture().sample_data(jax.random.key(7), N))
    assert d > 3 * MARGIN * floor, (d, floor)


# --------------------------------------------------------------------------------------------
# losses against hand-computed values


def _softplus(v):
    return np.log1p(np.exp(v))


def test_discriminator_loss_and_r1_match_hand_computed_values(f64):
    loss = ddgan.GANLoss(process=diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=4),
                         r1_gamma=0.3, latent_shape=(2,))
    w, v = np.array([0.5, -1.5]), np.array([2.0, 0.25])
    # D = x_prev.w + t |x_prev|^2 + x_t.v: grad wrt x_prev = w + 2 t x_prev.
    d = lambda xp, xt, t: xp @ w + t * jnp.sum(xp**2, -1) + xt @ v  # noqa: E731
    real = np.array([[0.1, 0.2], [-0.3, 0.4], [1.0, -1.0]])
    fake = np.array([[0.5, 0.0], [0.2, -0.2], [-1.0, 0.3]])
    x_t = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    t = np.array([0.25, 0.5, 1.0])
    d_real = real @ w + t * (real**2).sum(-1) + x_t @ v
    d_fake = fake @ w + t * (fake**2).sum(-1) + x_t @ v
    grad = w[None] + 2 * t[:, None] * real
    r1 = np.mean((grad**2).sum(-1))
    expected = np.mean(_softplus(-d_real)) + np.mean(_softplus(d_fake)) + 0.5 * 0.3 * r1
    value, aux = jax.jit(lambda *a: loss.discriminator_loss(d, *a))(real, fake, x_t, t)
    np.testing.assert_allclose(float(value), expected, rtol=1e-12)
    np.testing.assert_allclose(float(aux["r1"]), r1, rtol=1e-12)
    np.testing.assert_allclose(float(aux["d_real"]), d_real.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(aux["d_fake"]), d_fake.mean(), rtol=1e-12)
    g = loss.generator_loss(d, fake, x_t, t)
    np.testing.assert_allclose(float(g), np.mean(_softplus(-d_fake)), rtol=1e-12)
    # The fake pairs are not differentiated by the discriminator's loss.
    g_fake = jax.grad(lambda f: loss.discriminator_loss(d, real, f, x_t, t)[0])(fake)
    assert np.all(np.asarray(g_fake) == 0)


def test_real_pairs_have_the_forward_joint_law(f64):
    """``x_t ~ q(x_t | x0)``, ``x_s ~ q(x_s | x_t, x0)`` has q's joint law: per step n,
    ``E[x_s] = a_s x0``, ``Var[x_s] = sig_s^2``, ``Var[x_t] = sig_t^2``,
    ``Cov[x_s, x_t] = (a_t / a_s) sig_s^2``."""
    T = 4
    p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=T)
    loss = ddgan.GANLoss(process=p, latent_shape=(1,))
    x0 = jnp.full((40000, 1), 1.5)
    pairs = jax.jit(lambda k: loss.pairs(k, x0, lambda x, t, z: x))(jax.random.key(0))
    for n in range(1, T + 1):
        sel = np.asarray(pairs.t) == n / T
        xs, xt = np.asarray(pairs.real)[sel, 0], np.asarray(pairs.x_t)[sel, 0]
        a_t, a_s = float(p.alpha(n / T)), float(p.alpha((n - 1) / T))
        s_t, s_s = float(p.sigma(n / T)), float(p.sigma((n - 1) / T))
        m = sel.sum()
        assert m > 9000  # n uniform in 1..T
        tol = 5 / np.sqrt(m)  # 5 standard errors (all variances <= 1)
        assert abs(xs.mean() - a_s * 1.5) < tol
        assert abs(xt.mean() - a_t * 1.5) < tol
        assert abs(xs.var() - s_s**2) < tol * np.sqrt(2)
        assert abs(xt.var() - s_t**2) < tol * np.sqrt(2)
        cov = np.mean((xs - xs.mean()) * (xt - xt.mean()))
        assert abs(cov - (a_t / a_s) * s_s**2) < tol


# --------------------------------------------------------------------------------------------
# the generator never sees data


def _assert_noised_input(x_in, t_in, x0, p):
    """``x_in`` is ``alpha(t) x0 + sigma(t) eps`` with unit-variance noise and ``t >= 1/T``."""
    t_in = np.asarray(t_in)
    T = p.num_steps
    n = np.round(t_in * T)
    assert np.allclose(t_in, n / T) and n.min() >= 1
    a = np.asarray(p.alpha(t_in))[:, None]
    s = np.asarray(p.sigma(t_in))[:, None]
    eps = (np.asarray(x_in) - a * np.asarray(x0)) / s
    assert abs(eps.std() - 1.0) < 0.1 and abs(eps.mean()) < 0.1, (eps.mean(), eps.std())


def test_the_spy_check_flags_data_given_to_the_generator():
    p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=4)
    x0 = np.random.default_rng(0).normal(size=(512, 2)) + 3.0
    with pytest.raises(AssertionError):
        _assert_noised_input(x0, np.full(512, 0.25), x0, p)


def test_generator_receives_only_noised_inputs_inside_the_train_step():
    p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=4)
    gen = ddgan.Generator(net=models.MLP.from_variant("tiny"), latent_dim=3)
    model = ddgan.GANModel(generator=gen, discriminator=ddgan.MLPDiscriminator(width=8, depth=1),
                           data_shape=(2,))
    calls = []

    class Spy(ddgan.DDGANTrainer):
        def generator_fn(self, gen_params, *, train=False, key=None):
            inner = super().generator_fn(gen_params, train=train, key=key)

            def g(*args, **kwargs):
                assert not kwargs and len(args) == 3  # (x_t, t, z) only
                jax.debug.callback(lambda *a: calls.append([np.asarray(v) for v in a]), *args)
                return inner(*args)

            return g

    trainer = Spy(loss=ddgan.GANLoss(process=p, latent_shape=(3,)), model=model,
                  generator_optimizer=optax.adam(1e-3), discriminator_optimizer=optax.adam(1e-3))
    # (Initialised under jit: op-by-op initialisation costs more CPU than compiling it.)
    state = TrainState.create(params=jax.jit(model.init_params)(jax.random.key(0)),
                              optimizer=trainer.optimizer, key=jax.random.key(1))
    # Poisoned data: far from anything noise produces, so a leak shows in the residual.
    x0 = np.asarray(jax.random.normal(jax.random.key(2), (512, 2))) * 0.1 + 50.0
    state, metrics = jax.jit(trainer.train_step())(state, {"x": jnp.asarray(x0, jnp.float32)})
    jax.effects_barrier()
    assert len(calls) == 2  # once for the discriminator's pairs, once in the generator's loss
    for x_in, t_in, z_in in calls:
        _assert_noised_input(x_in, t_in, x0, p)
        assert z_in.shape == (512, 3) and abs(z_in.std() - 1.0) < 0.1
    assert int(state.step) == 1 and int(metrics["nonfinite"]) == 0


# --------------------------------------------------------------------------------------------
# docstring examples


def _doctest_targets():
    from diffax import processes
    from diffax.samplers import _ddgan
    from diffax.train import options

    return [(ddgan, ddgan), (_ddgan, _ddgan),
            (processes.DiscreteVP.from_continuous, processes),
            (options.gan_options, options)]


def test_docstring_examples():
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for obj, module in _doctest_targets():
        for test in finder.find(obj, getattr(obj, "__qualname__", obj.__name__),
                                globs=dict(vars(module))):
            result = runner.run(test)
            attempted += result.attempted
            assert result.failed == 0, test.name
    assert attempted >= 20
