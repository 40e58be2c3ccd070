"""D3PM and Masked against closed forms and brute-force enumeration of paths (float64)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffax import discrete


@pytest.fixture(autouse=True)
def _x64(x64):
    yield


def processes(T=5):
    return {"uniform": discrete.D3PM.uniform(vocab_size=3, num_steps=T),
            "absorbing": discrete.D3PM.absorbing(vocab_size=3, num_steps=T),
            "gaussian": discrete.D3PM.gaussian(vocab_size=4, num_steps=T)}


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "gaussian"])
def test_rows_sum_to_one_and_q_bar_is_the_product(kind):
    p = processes(6)[kind]
    S = p.num_states
    assert p.q_mats.dtype == jnp.float64
    prod = np.eye(S)
    np.testing.assert_array_equal(p.q_bar(0), np.eye(S))
    for k in range(1, p.num_steps + 1):
        q = np.asarray(p.q_matrix(k))
        assert (q >= 0).all()
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-14)
        prod = prod @ q
        np.testing.assert_allclose(p.q_bar(k), prod, atol=1e-14)
        np.testing.assert_allclose(p.transition(0, k), prod, atol=1e-14)
        np.testing.assert_allclose(p.q_bar(k).sum(axis=1), 1.0, atol=1e-14)


def test_closed_forms_and_stationary_distributions():
    T, K = 6, 3
    # uniform: alpha_bar from the cosine formula itself, not from the betas.
    p = discrete.D3PM.uniform(vocab_size=K, num_steps=T)
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    for k in range(T + 1):
        a = 0.0 if k == T else f[k] / f[0]
        np.testing.assert_allclose(p.q_bar(k), a * np.eye(K) + (1 - a) / K, atol=1e-14)
    np.testing.assert_allclose(p.q_bar(T), np.full((K, K), 1 / K), atol=1e-15)
    # absorbing: alpha_bar_k = 1 - k / T, mask id K.
    p = discrete.D3PM.absorbing(vocab_size=K, num_steps=T)
    e_mask = np.zeros(K + 1)
    e_mask[K] = 1.0
    for k in range(T + 1):
        a = 1 - k / T
        np.testing.assert_allclose(p.q_bar(k), a * np.eye(K + 1) + (1 - a) * e_mask[None],
                                   atol=1e-14)
    np.testing.assert_allclose(p.q_bar(T), np.tile(e_mask, (K + 1, 1)), atol=1e-15)
    np.testing.assert_array_equal(p.prior_probs(), e_mask)
    # gaussian: symmetric doubly-stochastic matrices; ||row - uniform|| <= prod |lambda_2|.
    p = discrete.D3PM.gaussian(vocab_size=5, num_steps=40)
    bound = 1.0
    for k in range(1, 41):
        q = np.asarray(p.q_matrix(k))
        np.testing.assert_allclose(q, q.T, atol=1e-15)
        bound *= np.sort(np.abs(np.linalg.eigvalsh(q)))[-2]
    dev = np.linalg.norm(np.asarray(p.q_bar(40)) - 0.2, axis=1).max()
    assert dev <= bound + 1e-12 and bound < 1e-3


def path_probs(p, x0):
    """Brute force: probability of every path x_0 = x0, x_1, ..., x_T (one token)."""
    S, T = p.num_states, p.num_steps
    Q = [np.asarray(p.q_matrix(k)) for k in range(1, T + 1)]
    paths = np.array(list(itertools.product(range(S), repeat=T)))
    prob = np.ones(len(paths))
    prev = np.full(len(paths), x0)
    for k in range(T):
        prob *= Q[k][prev, paths[:, k]]
        prev = paths[:, k]
    return np.concatenate([np.full((len(paths), 1), x0), paths], axis=1), prob


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "gaussian"])
def test_d3pm_marginals_and_posteriors_equal_path_enumeration(kind):
    p = processes(4)[kind]
    K, S, T = p.vocab_size, p.num_states, p.num_steps
    enum = [path_probs(p, x0) for x0 in range(K)]
    rng = np.random.default_rng(0)
    x0_probs = rng.dirichlet(np.ones(K), size=S)  # one random x0 distribution per x_t value
    marginal = jax.jit(p.marginal_probs)
    posterior = jax.jit(p.posterior_probs)
    x0s = jnp.arange(K)[:, None]
    for t in range(0, T + 1):
        got = marginal(x0s, t)[:, 0]
        for x0, (paths, prob) in enumerate(enum):
            want = np.array([prob[paths[:, t] == v].sum() for v in range(S)])
            np.testing.assert_allclose(got[x0], want, atol=1e-13)
    x_t = jnp.tile(jnp.arange(S)[None, :], (K, 1))        # row x0, column x_t
    onehot = jax.nn.one_hot(jnp.tile(x0s, (1, S)), K)       # one-hot x0 per row
    checked = 0
    for t in range(1, T + 1):
        for s in range(0, t):
            true = np.zeros((K, S, S))  # q(x_s | x_t, x0) by enumeration; nan: x_t impossible
            for x0, (paths, prob) in enumerate(enum):
                for v in range(S):
                    sel = paths[:, t] == v
                    true[x0, v] = [prob[sel & (paths[:, s] == u)].sum() for u in range(S)]
                    true[x0, v] /= prob[sel].sum() if prob[sel].sum() > 0 else np.nan
            got = posterior(x_t, onehot, t, s)
            ok = ~np.isnan(true[..., 0])
            np.testing.assert_allclose(np.asarray(got)[ok], true[ok], atol=1e-12)
            # a distribution over x0: the mixture of the posteriors of the x0 that can
            # produce x_t, weighted by x0_probs (renormalised over them)
            got = posterior(jnp.arange(S)[None], jnp.asarray(x0_probs)[None], t, s)[0]
            for v in range(S):
                w = np.where(ok[:, v], x0_probs[v], 0.0)
                if w.sum() == 0:
                    continue  # no x0 gives this x_t
                want = np.nansum(w[:, None] * np.nan_to_num(true[:, v]), axis=0) / w.sum()
                np.testing.assert_allclose(got[v], want, atol=1e-12)
                checked += 1
    assert checked >= T * (T + 1) // 2  # at least one x_t per (t, s) pair


def test_masked_marginals_and_posteriors_equal_enumeration():
    K = 3
    p = discrete.Masked(vocab_size=K)
    M = K
    rng = np.random.default_rng(1)
    x0_probs = rng.dirichlet(np.ones(K), size=K + 1)

    def step(a_from, a_to):  # q(x_to | x_from) from the definition: stay with alpha ratio
        m = np.zeros((K + 1, K + 1))
        for v in range(K):
            m[v, v] = a_to / a_from
            m[v, M] = 1 - a_to / a_from
        m[M, M] = 1.0
        return m

    for t, s in [(1.0, 0.0), (0.7, 0.2), (0.5, 0.49), (0.3, 0.0)]:
        a_t, a_s = 1 - t, 1 - s
        for x0 in range(K):
            q_s = step(1.0, a_s)[x0]
            joint = q_s[:, None] * step(a_s, a_t)  # [x_s, x_t]
            np.testing.assert_allclose(p.marginal_probs(jnp.array([[x0]]), t)[0, 0],
                                       joint.sum(0), atol=1e-14)
            got = p.posterior_probs(jnp.arange(K + 1)[None], jax.nn.one_hot(
                jnp.full((1, K + 1), x0), K), t, s)[0]
            for v in range(K + 1):
                if joint[:, v].sum() > 0:
                    np.testing.assert_allclose(got[v], joint[:, v] / joint[:, v].sum(),
                                               atol=1e-14)
        got = p.posterior_probs(jnp.arange(K + 1)[None], jnp.asarray(x0_probs)[None], t, s)[0]
        want_mask = np.zeros(K + 1)
        for x0 in range(K):
            joint = step(1.0, a_s)[x0][:, None] * step(a_s, a_t)
            want_mask += x0_probs[M, x0] * joint[:, M] / joint[:, M].sum()
        np.testing.assert_allclose(got[M], want_mask, atol=1e-14)


def test_as_denoiser_with_confident_logits_gives_the_true_posterior():
    p = discrete.D3PM.absorbing(vocab_size=3, num_steps=4)
    x0 = jnp.array([[0, 2, 1]])
    D = discrete.as_denoiser(lambda x, t: 1e4 * jax.nn.one_hot(x0, 3), p)
    x_t = jnp.array([[3, 2, 3]])
    np.testing.assert_allclose(p.posterior_probs(x_t, D(x_t, 3), 3),
                               p.posterior_probs(x_t, jax.nn.one_hot(x0, 3), 3), atol=1e-12)
    # an unmasked token is its own x0, whatever the network says
    D = discrete.as_denoiser(lambda x, t: jnp.zeros((*x.shape, 3)), p)
    np.testing.assert_array_equal(D(x_t, 3)[0, 1], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("make", [lambda: discrete.Masked(vocab_size=3),
                                  lambda: discrete.D3PM.uniform(vocab_size=3, num_steps=4)])
def test_bad_inputs_name_the_argument(make):
    p = make()
    t = 0.5 if isinstance(p, discrete.Masked) else 2
    ok = jnp.zeros((2, 4), jnp.int32)
    with pytest.raises(TypeError, match="`x0`.*integer"):
        p.marginal_probs(ok.astype(jnp.float32), t)
    with pytest.raises(ValueError, match="`x0`.*outside"):
        p.marginal_probs(ok.at[0, 1].set(7), t)
    with pytest.raises(ValueError, match="`x0`.*shape"):
        p.marginal_probs(jnp.zeros((4,), jnp.int32), t)
    with pytest.raises(ValueError, match="`t`"):
        p.marginal_probs(ok, jnp.full((3,), t))
    with pytest.raises(TypeError, match="`t`"):
        p.marginal_probs(ok, 0.5 if not isinstance(p, discrete.Masked) else 1)
    with pytest.raises(ValueError, match="`x0_probs`.*shape"):
        p.posterior_probs(ok, jnp.zeros((2, 4, 5)), t, 0 * t)
    with pytest.raises(ValueError, match="`s` must be below `t`"):
        p.posterior_probs(ok, jnp.full((2, 4, 3), 1 / 3), t, t)
    D = lambda x, tt: jnp.full((*x.shape, 3), 1 / 3)
    with pytest.raises(ValueError, match="`shape`"):
        discrete.sample(jax.random.key(0), p, D, shape=(2,), num_steps=2)
    with pytest.raises(ValueError, match="`method`"):
        discrete.sample(jax.random.key(0), p, D, shape=(2, 3), num_steps=2, method="euler")
    with pytest.raises(ValueError, match="`num_steps`"):  # Masked: >= 1; D3PM: divides T
        discrete.sample(jax.random.key(0), p, D, shape=(2, 3),
                        num_steps=0 if isinstance(p, discrete.Masked) else 3)
    with pytest.raises(TypeError, match="`x0`"):
        discrete.nelbo(jax.random.key(0), p, D, ok.astype(jnp.float32))
    with pytest.raises(ValueError, match="`key`"):
        discrete.nelbo(0, p, D, ok)


def test_constructor_errors_and_tau_leaping_refuses_d3pm():
    with pytest.raises(ValueError, match="`vocab_size`"):
        discrete.D3PM.uniform(vocab_size=1, num_steps=4)
    with pytest.raises(ValueError, match="`num_steps`"):
        discrete.D3PM.absorbing(vocab_size=3, num_steps=0)
    with pytest.raises(ValueError, match="`vocab_size`"):
        discrete.Masked(vocab_size=0)
    p = discrete.D3PM.uniform(vocab_size=3, num_steps=4)
    with pytest.raises(ValueError, match="tau_leaping"):
        discrete.sample(jax.random.key(0), p, lambda x, t: x, shape=(2, 3), num_steps=4,
                        method="tau_leaping")
