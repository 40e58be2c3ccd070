"""Latent diffusion (diffax.latent, diffax.models.autoencoder) against exact oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import latent, losses, samplers
from diffax.models import AutoencoderKL, AutoencoderVQ


def _mixture():
    return diffax.testing.GaussianMixture(
        means=jnp.array([[[-1.0, 0.5], [0.3, 0.0]], [[1.0, -0.5], [0.0, 0.8]]]),
        stds=jnp.array([0.3, 0.5]), weights=jnp.array([0.4, 0.6]))


@pytest.mark.parametrize("solver", [samplers.DDIM(), samplers.EulerMaruyama()])
def test_identity_autoencoder_latent_diffusion_is_pixel_diffusion_bitwise(solver):
    """Identity encoder/decoder and scale 1: the same key and solver give the same bits as
    diffusion on the data (a deterministic and a stochastic solver; separate programs)."""
    p = diffax.VP()
    D = _mixture().denoiser(p)
    lat = diffax.Latent(autoencoder=latent.IdentityAutoencoder(shape=(2, 2)), process=p,
                        scale_factor=1.0)

    @jax.jit
    def pixel(key):  # what `diffax sample` does: split, prior draw, solve
        k_solve, k_init = jax.random.split(key)
        x_init = p.prior_sample(k_init, (16, 2, 2))
        return diffax.sample(k_solve, p, D, x_init, solver=solver, num_steps=7).x

    @jax.jit
    def in_latents(key):
        return lat.sample(key, D, num_samples=16, solver=solver, num_steps=7).x

    key = jax.random.key(3)
    np.testing.assert_array_equal(np.asarray(in_latents(key)), np.asarray(pixel(key)))


def test_identity_latent_loss_is_the_pixel_loss_bitwise():
    p = diffax.VP()
    inner = losses.DenoisingLoss(process=p, weighting=losses.VMSE(),
                                 parameterization=losses.Predict(prediction="v"))
    lat = diffax.Latent(autoencoder=latent.IdentityAutoencoder(shape=(3,)), process=p,
                        scale_factor=1.0)
    f = lambda w, x, t: jnp.tanh(w * x) + t[:, None]
    batch = {"x": jax.random.normal(jax.random.key(0), (8, 3))}
    b = jax.jit(inner.bind(f))(0.7, jax.random.key(5), batch)[0]
    # One program for the two latent losses (each its own computation) and a scale != 1,
    # which changes the loss (the latents do go through the scaling).
    lat2 = diffax.Latent(autoencoder=lat.autoencoder, process=p, scale_factor=2.0)
    a_post, a_mean, c = jax.jit(lambda key: tuple(
        loss.bind(f)(0.7, key, batch)[0] for loss in (lat.loss(inner, sample_posterior=True),
                                                      lat.loss(inner, sample_posterior=False),
                                                      lat2.loss(inner))))(jax.random.key(5))
    for a in (a_post, a_mean):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert float(c) != float(b)


def test_diagonal_gaussian_kl_matches_monte_carlo(x64):
    """KL(q || p) in closed form equals E_q[log q - log p] (float64, 200k draws); the margin
    is 5 Monte Carlo standard errors."""
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(0), 5)
    q = latent.DiagonalGaussian(mean=jax.random.normal(k1, (1, 3, 2)),
                                logvar=0.5 * jax.random.normal(k2, (1, 3, 2)))
    p = latent.DiagonalGaussian(mean=jax.random.normal(k3, (1, 3, 2)),
                                logvar=0.5 * jax.random.normal(k4, (1, 3, 2)))
    std_normal = latent.DiagonalGaussian(mean=jnp.zeros((1, 3, 2)), logvar=jnp.zeros((1, 3, 2)))
    n = 200_000
    z = q.mean + q.std * jax.random.normal(k5, (n, 3, 2), jnp.float64)
    tile = lambda g: latent.DiagonalGaussian(mean=jnp.broadcast_to(g.mean, z.shape),
                                             logvar=jnp.broadcast_to(g.logvar, z.shape))
    for other, closed in ((p, q.kl(p)), (std_normal, q.kl())):
        log_ratio = np.asarray(tile(q).log_prob(z) - tile(other).log_prob(z))
        est, se = log_ratio.mean(), log_ratio.std() / np.sqrt(n)
        assert abs(est - float(closed[0])) < 5 * se, (est, float(closed[0]), se)
    assert float(q.kl(q)[0]) == pytest.approx(0.0, abs=1e-12)


def test_vq_quantize_is_idempotent_and_commitment_is_zero_on_codewords():
    codebook = jax.random.normal(jax.random.key(0), (16, 3))
    z = jax.random.normal(jax.random.key(1), (4, 5, 5, 3))

    @jax.jit  # one program: quantise, re-quantise, the loss terms, the usage
    def run(z, codebook):
        zq, idx = latent.quantize(z, codebook)
        zq2, idx2 = latent.quantize(zq, codebook)
        return zq, idx, zq2, idx2, latent.AutoencoderVQLoss().terms(zq, zq2), \
            latent.codebook_usage(idx, 16)

    zq, idx, zq2, idx2, (book, commit), usage = run(z, codebook)
    # Brute force: the nearest codeword by explicit distances.
    d = np.linalg.norm(np.asarray(z)[..., None, :] - np.asarray(codebook), axis=-1)
    np.testing.assert_array_equal(np.asarray(idx), d.argmin(-1))
    np.testing.assert_array_equal(np.asarray(zq2), np.asarray(zq))
    np.testing.assert_array_equal(np.asarray(idx2), np.asarray(idx))
    assert float(jnp.max(commit)) == 0.0 and float(jnp.max(book)) == 0.0
    assert float(usage["fraction_used"]) == len(np.unique(np.asarray(idx))) / 16


def test_vq_ema_update_with_zero_decay_is_a_k_means_step():
    z = np.random.default_rng(0).standard_normal((50, 2))
    codebook = np.random.default_rng(1).standard_normal((6, 2))

    @jax.jit  # one program: the assignment, a k-means step (decay 0) and a decay-0.9 step
    def run(z, codebook):
        _, idx = latent.quantize(z, codebook)
        state = latent.VQEMAState.create(codebook)
        _, new = latent.vq_ema_update(state, z, idx, decay=0.0, eps=0.0)
        return idx, new, latent.vq_ema_update(state, z, idx, decay=0.9)[0]

    idx, new, s1 = run(jnp.asarray(z), jnp.asarray(codebook))
    idx = np.asarray(idx)
    for k in np.unique(idx):
        np.testing.assert_allclose(np.asarray(new[k]), z[idx == k].mean(0), rtol=1e-5)
    # With decay d the statistics move by (1 - d) toward the batch's.
    np.testing.assert_allclose(np.asarray(s1.counts),
                               0.9 + 0.1 * np.bincount(idx, minlength=6), rtol=1e-6)


def test_measured_scale_makes_latent_std_one_within_sampling_error():
    """iid N(0, 3^2) latents: the measured scale times 3 is 1 within 4 standard errors of a
    sample std (sigma / sqrt(2 N) for Gaussian data; the same relative error for 1/std)."""
    n = 40_000
    z = 3.0 * np.random.default_rng(0).standard_normal((n // 4, 4))
    m = latent.measure_scale_factor([z[:5000], z[5000:]])
    assert m["num_elements"] == n and m["num_examples"] == n // 4
    assert abs(m["scale_factor"] * 3.0 - 1.0) < 4.0 / np.sqrt(2 * n)
    # On other draws of the same latents the scaled std is 1 within the same error.
    fresh = 3.0 * np.random.default_rng(1).standard_normal((n // 4, 4))
    assert abs(np.std(m["scale_factor"] * fresh) - 1.0) < 4.0 * np.sqrt(2) / np.sqrt(2 * n)


@pytest.fixture(scope="module")
def autoencoders():
    """The tiny VQ autoencoder with initialised parameters; the KL one's parameters only as
    shapes (the bad-input checks compare shapes and fail before any compute)."""
    vq, kl = AutoencoderVQ.from_variant("tiny"), AutoencoderKL.from_variant("tiny")
    return {"AutoencoderVQ": (vq, vq.init_params(jax.random.key(0))),
            "AutoencoderKL": (kl, jax.eval_shape(kl.init_params, jax.random.key(0)))}


def test_autoencoders_shapes_and_vq_codewords_pass_through(autoencoders):
    m, params = autoencoders["AutoencoderVQ"]
    assert m.config.latent_shape == (8, 8, 2) and m.config.factor == 2
    codebook = params["params"]["codebook"]
    # Codewords laid out as a latent map quantise to themselves (zero commitment).
    z = jnp.tile(codebook[:64].reshape(1, 8, 8, 2), (2, 1, 1, 1))
    zq, idx = m.apply(params, z, method="quantize")
    np.testing.assert_array_equal(np.asarray(zq), np.asarray(z))
    np.testing.assert_array_equal(np.asarray(idx[0]).ravel(), np.arange(64))
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 1), minval=-1, maxval=1)

    @jax.jit  # one program: the forward pass, the frozen autoencoder and the gradient
    def run(params, x):
        ae = latent.FrozenAutoencoder(module=m, params=params)
        out = m.apply(params, x)
        # The straight-through estimator: the reconstruction's gradient reaches the encoder.
        g = jax.grad(lambda p: jnp.sum(m.apply(p, x)["recon"]))(params)
        g_enc = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf))
                                   for leaf in jax.tree.leaves(g["params"]["encoder"])]))
        return out, ae.encode(x), ae.decode(ae.encode(x)), g_enc

    out, z, x_hat, g_enc = run(params, x)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(out["z_q"]))
    assert x_hat.shape == x.shape and float(g_enc) > 0


def test_kl_autoencoder_loss_is_reconstruction_plus_weighted_kl_per_dimension():
    """The loss object's formula against a hand computation (a stand-in network returning
    known outputs, so no compile of the real one): L2 reconstruction per pixel plus
    kl_weight * KL(N(mean, exp(logvar)) || N(0, I)) / num_pixels, batch mean."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (2, 4, 4, 1)), jnp.float32)
    recon = jnp.asarray(rng.uniform(-1, 1, (2, 4, 4, 1)), jnp.float32)
    mean = jnp.asarray(rng.standard_normal((2, 2, 2, 3)), jnp.float32)
    logvar = jnp.asarray(0.3 * rng.standard_normal((2, 2, 2, 3)), jnp.float32)
    fn = lambda p, x, key: {"recon": recon, "mean": mean, "logvar": logvar}
    loss, aux = latent.AutoencoderKLLoss(kl_weight=0.5, reconstruction_power=2).bind(fn)(
        None, jax.random.key(1), {"x": x})
    m, v = np.asarray(mean, np.float64), np.exp(np.asarray(logvar, np.float64))
    kl = 0.5 * (m**2 + v - 1 - np.log(v)).reshape(2, -1).sum(1) / 16
    rec = ((np.asarray(recon) - np.asarray(x)) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(float(loss), np.mean(rec + 0.5 * kl), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(aux["kl"]), kl, rtol=1e-5)
    l1, _ = latent.AutoencoderKLLoss(kl_weight=0.0).bind(fn)(None, jax.random.key(1), x)
    np.testing.assert_allclose(float(l1), np.abs(np.asarray(recon - x)).mean(), rtol=1e-6)


def test_bad_input_names_the_argument(autoencoders):
    ident = latent.IdentityAutoencoder(shape=(4,))
    with pytest.raises(ValueError, match="`scale_factor` is required"):
        diffax.Latent(autoencoder=ident, process=diffax.VP())
    with pytest.raises(ValueError, match="`scale_factor` must be a positive"):
        diffax.Latent(autoencoder=ident, process=diffax.VP(), scale_factor=0.0)
    lat = diffax.Latent(autoencoder=ident, process=diffax.VP(), scale_factor=1.0)
    with pytest.raises(ValueError, match=r"`z` must have shape \[B, 4\]"):
        lat.decode(jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="`z_init`"):
        lat.sample(jax.random.key(0), lambda z, t: z, z_init=jnp.zeros((2, 3)),
                   solver=samplers.DDIM(), num_steps=2)
    kl, kl_params = autoencoders["AutoencoderKL"]
    vq, vq_params = autoencoders["AutoencoderVQ"]
    with pytest.raises(ValueError, match="`params` are not parameters of this AutoencoderVQ"):
        latent.FrozenAutoencoder(module=vq, params=kl_params)
    with pytest.raises(TypeError, match="`module`"):
        latent.FrozenAutoencoder(module=object(), params=kl_params)
    with pytest.raises(ValueError, match="`z` must have shape"):
        jax.eval_shape(lambda p: kl.apply(p, jnp.zeros((1, 4, 4, 2)), method="decode"),
                       kl_params)
    with pytest.raises(ValueError, match="reconstruction_power"):
        latent.AutoencoderKLLoss(reconstruction_power=3)
    with pytest.raises(ValueError, match="`latents`"):
        latent.measure_scale_factor(np.zeros((3, 2)))
