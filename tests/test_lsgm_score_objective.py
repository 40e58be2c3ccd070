"""LSGM's separate objectives (``LSGMObjective(score_weighting=...)``, the paper's section 3.3):
which gradient reaches which parameter group, in float64.

A linear-Gaussian encoder, a linear decoder and a linear "score network" (``eps_theta = M z +
t v``, mixed with learned logits). One ``jax.grad`` of the objective's loss must give

* the encoder and decoder exactly the gradient of the hand-built negative ELBO
  ``reconstruction - H(q) + CE`` (same keys; the cross-entropy of ``dsm_cross_entropy`` with
  the score parameters as constants), and
* the score network and mixing logits exactly the gradient of the hand-built
  ``score_matching_loss`` of the posterior draw ``z_0`` as a constant array,

to float64 rounding (rtol 1e-10). Each half is shown to have power: without the encoder's
``stop_gradient`` (the score seeing the cross-entropy too) the score gradient differs, and
with a score term that is not cut from ``z_0`` the encoder gradient differs, both by far more
than the tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import lsgm
from diffax.latent import DiagonalGaussian

DX, DZ, B = 3, 2, 8
RTOL = 1e-10


def _setup():
    rng = np.random.default_rng(7)
    r = lambda *s: jnp.asarray(rng.standard_normal(s))
    params = {"enc": {"a": r(DZ, DX), "b": r(DZ), "logvar": r(DZ) - 1.0},
              "dec": {"w": r(DX, DZ), "c": r(DX)},
              "score": {"m": 0.3 * r(DZ, DZ), "v": r(DZ)}, "logits": r(DZ)}
    return params, r(B, DX)


def _posterior(p, x):
    mean = x @ p["enc"]["a"].T + p["enc"]["b"][None]
    return DiagonalGaussian(mean=mean, logvar=jnp.broadcast_to(p["enc"]["logvar"], mean.shape))


def _decode(p, z):
    return z @ p["dec"]["w"].T + p["dec"]["c"][None]


def _eps_fn(process, p):
    net = lambda z, t: z @ p["score"]["m"].T + t[:, None] * p["score"]["v"][None]
    return lambda z, t: lsgm.mixed_eps(process, z, t, net(z, t), p["logits"])


def test_each_group_gets_the_gradient_of_its_own_term(x64):
    """With UnweightedScore (the routing does not depend on the weighting: ReweightedScore
    goes through the same code, its objective is checked in the test below and its weight
    g^2 in its docstring)."""
    weighting = lsgm.UnweightedScore()
    process = diffax.VP()
    obj = lsgm.LSGMObjective(process=process, score_weighting=weighting,
                             reconstruction=lsgm.GaussianReconstruction(std=0.5))
    params, x = _setup()
    key = jax.random.key(3)
    k_z, k_ce = jax.random.split(key)

    def loss(p, *, cut_encoder=True):
        enc_eps = _eps_fn(process, jax.lax.stop_gradient(p) if cut_encoder else p)
        out, _ = obj(key, x, posterior=_posterior(p, x), decode=lambda z: _decode(p, z),
                     eps_fn=_eps_fn(process, p), encoder_eps_fn=enc_eps)
        return jnp.mean(out)

    def elbo_term(p, score_p):  # encoder + decoder: the negative ELBO, score held fixed
        q = _posterior(p, x)
        z0 = q.sample(k_z)
        ce, _ = lsgm.dsm_cross_entropy(k_ce, process, _eps_fn(process, score_p), z0,
                                       time_sampler=obj.time_sampler)
        return jnp.mean(obj.reconstruction(x, _decode(p, z0)) - lsgm.gaussian_entropy(q) + ce)

    def score_term(p, z0):  # score network + logits: their own loss on a constant z0
        out, _ = lsgm.score_matching_loss(jax.random.fold_in(k_ce, 1), process,
                                          _eps_fn(process, p), z0, weighting=weighting)
        return jnp.mean(out)

    @jax.jit  # one compile: the objective's gradient, the hand-built ones, two broken ones
    def all_grads(params):
        z0 = _posterior(params, x).sample(k_z)
        uncut = lambda p: elbo_term(p, params) + score_term(p, _posterior(p, x).sample(k_z))
        return (jax.grad(loss)(params), jax.grad(elbo_term)(params, params),
                jax.grad(score_term)(params, z0),
                jax.grad(lambda p: loss(p, cut_encoder=False))(params), jax.grad(uncut)(params))

    grads, want_ae, want_score, broken, uncut = all_grads(params)
    close = lambda a, b: all(jax.tree.leaves(jax.tree.map(
        lambda u, v: bool(np.allclose(u, v, rtol=RTOL, atol=RTOL * float(np.max(np.abs(v))))),
        a, b)))
    for group in ("enc", "dec"):
        assert close(grads[group], want_ae[group]), group
    for group in ("score", "logits"):
        assert close(grads[group], want_score[group]), group
    assert all(float(np.max(np.abs(g))) > 0 for g in jax.tree.leaves(grads))
    # Power: the score seeing the cross-entropy (no stop_gradient on the encoder's eps_fn)...
    assert not close(broken["score"], want_score["score"])
    assert not close(broken["logits"], want_score["logits"])
    # ...and the encoder seeing the score term (z0 not cut) both change the gradients.
    assert not close(uncut["enc"], want_ae["enc"])


def test_default_is_the_joint_negative_elbo_and_bad_input_names_the_argument(x64):
    """score_weighting=None: one loss, the negative ELBO, whose gradient reaches the score
    through the cross-entropy (today's behaviour); encoder_eps_fn is then unused."""
    process = diffax.VP()
    params, x = _setup()
    obj = lsgm.LSGMObjective(process=process)
    run = lambda enc_eps: jax.jit(lambda p: obj(
        jax.random.key(0), x, posterior=_posterior(p, x), decode=lambda z: _decode(p, z),
        eps_fn=_eps_fn(process, p), encoder_eps_fn=enc_eps))(params)
    def unused(z, t):
        raise AssertionError("encoder_eps_fn is called without a score_weighting")

    nelbo, aux = run(unused)
    assert "score_loss" not in aux
    np.testing.assert_allclose(nelbo, aux["reconstruction"] + aux["kl"], rtol=1e-14)
    sep = lsgm.LSGMObjective(process=process, score_weighting=lsgm.ReweightedScore())
    with pytest.raises(ValueError, match="encoder_eps_fn"):
        sep(jax.random.key(0), x, posterior=_posterior(params, x),
            decode=lambda z: _decode(params, z), eps_fn=_eps_fn(process, params))
    with pytest.raises(TypeError, match="score_weighting"):
        lsgm.LSGMObjective(process=process, score_weighting="unweighted")
    with pytest.raises(TypeError, match="weighting"):
        lsgm.score_matching_loss(jax.random.key(0), process, lambda z, t: z, jnp.ones((2, 2)),
                                 weighting=None)
    # Separate objectives: the loss is the negative ELBO plus the score term, per example,
    # and the ELBO is the joint objective's (same keys).
    loss, aux = jax.jit(lambda p: sep(
        jax.random.key(0), x, posterior=_posterior(p, x), decode=lambda z: _decode(p, z),
        eps_fn=_eps_fn(process, p), encoder_eps_fn=_eps_fn(process, p)))(params)
    np.testing.assert_allclose(loss, aux["nelbo"] + aux["score_loss"], rtol=1e-14)
    np.testing.assert_allclose(aux["nelbo"], nelbo, rtol=1e-14)
    # The score term is score_matching_loss(fold_in(k_ce, 1), ...) of the same draw z0.
    k_z, k_ce = jax.random.split(jax.random.key(0))
    want, t = jax.jit(lambda p: lsgm.score_matching_loss(
        jax.random.fold_in(k_ce, 1), process, _eps_fn(process, p),
        _posterior(p, x).sample(k_z), weighting=lsgm.ReweightedScore()))(params)
    np.testing.assert_allclose(aux["score_loss"], want, rtol=1e-12)
    np.testing.assert_array_equal(aux["t_score"], t)
