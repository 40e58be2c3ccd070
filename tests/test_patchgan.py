"""diffax.patchgan / diffax.models.PatchDiscriminator against independent oracles: the
discriminator losses by hand, the adaptive weight from gradients taken separately (float64),
the plain autoencoder's update bit for bit while the discriminator is off, and the patch
grid's shape and receptive field from the convolution arithmetic."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffax import latent, models, patchgan
from diffax.train import TrainState, make_train_step

# --------------------------------------------------------------------------------------------
# losses by hand

REAL = [[2.0, 0.5], [-1.0, 1.0]]
FAKE = [[-2.0, 0.0], [0.5, -0.5]]


def test_discriminator_and_generator_losses_by_hand(x64):
    real, fake = jnp.asarray(REAL, jnp.float64), jnp.asarray(FAKE, jnp.float64)
    # hinge: relu(1 - real) = 0, 0.5, 2, 0 (mean 0.625); relu(1 + fake) = 0, 1, 1.5, 0.5 (0.75)
    assert float(patchgan.hinge_d_loss(real, fake)) == 0.5 * (0.625 + 0.75)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    want = 0.5 * (sum(sp(-r) for r in np.ravel(REAL)) / 4 + sum(sp(f) for f in np.ravel(FAKE)) / 4)
    assert float(patchgan.vanilla_d_loss(real, fake)) == pytest.approx(want, rel=1e-14)
    assert float(patchgan.generator_loss(fake)) == 0.5  # -(-2 + 0 + 0.5 - 0.5) / 4
    # The factor: 0 before disc_start, disc_factor from it on.
    loss = patchgan.PatchGANLoss(autoencoder_loss=latent.AutoencoderKLLoss(), disc_start=3,
                                 disc_factor=0.25)
    assert [float(loss.factor(jnp.asarray(s))) for s in (0, 2, 3, 9)] == [0, 0, 0.25, 0.25]


def test_small_doctests():
    """The functions' and classes' examples (the module example compiles a whole train step:
    run it by hand, see the module docstring)."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    finder = doctest.DocTestFinder()
    for obj in (patchgan.hinge_d_loss, patchgan.vanilla_d_loss, patchgan.generator_loss,
                patchgan.adaptive_weight, patchgan.PatchGANLoss):
        for test in finder.find(obj, globs=vars(patchgan).copy()):
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"disc_weight": -0.5}, "disc_weight"),
    ({"disc_start": -1}, "disc_start"),
    ({"disc_factor": float("nan")}, "disc_factor"),
    ({"d_loss": jnp.mean}, "d_loss"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        patchgan.PatchGANLoss(autoencoder_loss=latent.AutoencoderKLLoss(), **kwargs)
    with pytest.raises(TypeError, match="autoencoder_loss"):
        patchgan.PatchGANLoss(autoencoder_loss=object())


# --------------------------------------------------------------------------------------------
# the patch grid


def test_patch_grid_shape_and_receptive_field(x64):
    d = models.PatchDiscriminator(channels=2, num_layers=2, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(0), (1, 48, 48, 1), jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), d.init(jax.random.key(1), x))
    logits = d.apply(params, x)
    # 48 -> 24 -> 12 (two stride-2 4x4 convs, padding 1) -> 11 -> 10 (two stride-1 ones).
    assert logits.shape == (1, 10, 10, 1) and d.output_size(48) == 10
    assert d.receptive_field == 34 and models.PatchDiscriminator(num_layers=3).receptive_field == 70
    # Logit (i, j) reads rows [s i - 1, s i + 2] of its conv's input (4x4, stride s, padding
    # 1): walking back from (3, 4) through strides 1, 1, 2, 2 gives rows [4i - 11, 4i + 22].
    grad = jax.grad(lambda v: d.apply(params, v)[0, 3, 4, 0])(x)[0, :, :, 0]
    support = np.argwhere(np.asarray(grad) != 0)
    assert support.min(0).tolist() == [1, 5] and support.max(0).tolist() == [34, 38]
    assert len(support) == 34 * 34  # every pixel of the window counts
    with pytest.raises(ValueError, match="too small"):
        models.PatchDiscriminator(num_layers=3).init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))


# --------------------------------------------------------------------------------------------
# the adaptive weight (float64): gradients of each term taken separately


def _tiny(dtype):
    ae = models.AutoencoderKL.from_variant("tiny", dtype=dtype, ch_mult=(1,), nf=4)
    disc = models.PatchDiscriminator(channels=4, num_layers=1, dtype=dtype)
    return patchgan.AutoencoderGANModel(autoencoder=ae, discriminator=disc)


def _toy_apply(p, x, *, key):
    """A small KL autoencoder in plain jax (AutoencoderKL's outputs, its last-kernel path)."""
    q = p["params"]
    mean = jnp.tanh(q["enc"] * x)
    logvar = q["logvar"] + 0 * mean
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
    h = jnp.concatenate([jnp.tanh(z), z * z], axis=-1)
    recon = jax.lax.conv_general_dilated(h, q["decoder"]["conv_out"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return {"recon": recon, "mean": mean, "logvar": logvar}


def test_last_layer_is_the_decoders_output_kernel():
    for cls in (models.AutoencoderKL, models.AutoencoderVQ):
        ae = cls.from_variant("tiny")
        shapes = jax.eval_shape(ae.init, jax.random.key(0), *ae.example_inputs())
        kernel = shapes
        for name in patchgan.LAST_LAYER:
            kernel = kernel[name]
        assert kernel.shape == (3, 3, ae.config.nf, ae.config.num_channels)


def test_adaptive_weight_is_the_ratio_of_last_layer_gradient_norms(x64):
    f64 = jnp.float64
    ks = jax.random.split(jax.random.key(0), 4)
    ae_p = {"params": {"enc": jnp.asarray(1.3, f64), "logvar": jnp.asarray(-2.0, f64),
                       "decoder": {"conv_out": {"kernel": 0.3 * jax.random.normal(
                           ks[0], (3, 3, 2, 1), f64)}}}}
    disc = models.PatchDiscriminator(channels=2, num_layers=1, dtype=f64)
    x = jax.random.uniform(ks[1], (3, 8, 8, 1), f64, -1, 1)
    d_p = jax.tree.map(lambda a: a.astype(f64), disc.init(ks[2], x))
    D = lambda v: disc.apply(d_p, v)  # noqa: E731
    key, batch, step = ks[3], {"x": x}, jnp.asarray(5)
    ae_loss = latent.AutoencoderKLLoss(kl_weight=1e-3)
    loss = patchgan.PatchGANLoss(autoencoder_loss=ae_loss, disc_weight=0.7, disc_start=0)
    flat = lambda v: jnp.zeros(v.shape[:1] + (2, 2, 1), f64)  # noqa: E731  a constant D

    def with_kernel(w):
        p = {"params": {**ae_p["params"], "decoder": {"conv_out": {"kernel": w}}}}
        return _toy_apply(p, x, key=key)["recon"]

    @jax.jit  # one compile of everything below (eager float64 dispatch is slower)
    def run():
        w = ae_p["params"]["decoder"]["conv_out"]["kernel"]
        rec = lambda w: jnp.mean(jnp.abs(with_kernel(w) - x))  # noqa: E731  L1, batch mean
        gan = lambda w: -jnp.mean(D(with_kernel(w)))  # noqa: E731
        objective = lambda p, d: loss.autoencoder_objective(  # noqa: E731
            _toy_apply, p, d, key, batch, step)
        total, aux = objective(ae_p, D)
        return {
            "total": total, "weight": aux["adaptive_weight"], "gan": gan(w),
            "rec_norm": jnp.linalg.norm(jax.grad(rec)(w)),
            "gan_norm": jnp.linalg.norm(jax.grad(gan)(w)),
            "plain": ae_loss.bind(_toy_apply)(ae_p, key, batch)[0],
            "g_total": jax.grad(lambda p: objective(p, D)[0])(ae_p),
            "g_plain": jax.grad(lambda p: ae_loss.bind(_toy_apply)(p, key, batch)[0])(ae_p),
            "g_gan": jax.grad(lambda p: -jnp.mean(D(_toy_apply(p, x, key=key)["recon"])))(ae_p),
            "weight_flat": objective(ae_p, flat)[1]["adaptive_weight"]}

    r = run()
    ratio = r["rec_norm"] / (r["gan_norm"] + 1e-4)
    assert 1e-3 < float(ratio) < 1e4  # not clipped: the ratio itself is checked
    np.testing.assert_allclose(r["weight"], 0.7 * ratio, rtol=1e-12)
    np.testing.assert_allclose(r["total"], r["plain"] + 0.7 * ratio * r["gan"], rtol=1e-12)
    # lambda is a constant to the gradient: grad = grad L_AE + lambda grad L_GAN.
    jax.tree.map(lambda a, b, c: np.testing.assert_allclose(a, b + 0.7 * ratio * c, rtol=1e-10),
                 r["g_total"], r["g_plain"], r["g_gan"])
    # A constant D gives ||grad L_GAN|| = 0: lambda = 0.7 ||grad L_rec|| / 1e-4 (clipped at 1e4).
    want = 0.7 * min(float(r["rec_norm"]) / 1e-4, 1e4)
    np.testing.assert_allclose(r["weight_flat"], want, rtol=1e-12)
    assert float(patchgan.adaptive_weight(jnp.array([3.0, 4.0]), jnp.zeros(2))) == 1e4  # 5e4


# --------------------------------------------------------------------------------------------
# off: the plain autoencoder's update, bit for bit (float32, the training dtype)


def test_discriminator_off_is_the_plain_update_bitwise():
    model = _tiny(jnp.float32)
    ae_loss = latent.AutoencoderKLLoss()
    opt_g = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    trainer = patchgan.AutoencoderGANTrainer(
        loss=patchgan.PatchGANLoss(autoencoder_loss=ae_loss), model=model,
        generator_optimizer=opt_g, discriminator_optimizer=optax.adam(1e-3, b1=0.5, b2=0.9))
    variables = jax.jit(model.init)(jax.random.key(0), *model.example_inputs())
    batch = {"x": jax.random.uniform(jax.random.key(3), (4, 16, 16, 1), minval=-1, maxval=1)}
    gan = TrainState.create(params=variables, optimizer=trainer.optimizer,
                            key=jax.random.key(1), ema_decays=(0.9,))
    apply_fn = lambda p, v, *, key: model.autoencoder.apply(p, v, key=key)  # noqa: E731
    plain_state = TrainState.create(params=variables["generator"], optimizer=opt_g,
                                    key=jax.random.key(1), ema_decays=(0.9,))
    plain, m_plain = jax.jit(make_train_step(ae_loss.bind(apply_fn), opt_g))(plain_state, batch)
    # One compile for both cases: the weights are leaves of the loss.
    step = jax.jit(lambda loss, s, b: patchgan.AutoencoderGANTrainer(
        loss=loss, model=model, generator_optimizer=opt_g,
        discriminator_optimizer=trainer.discriminator_optimizer).train_step()(s, b))
    for weight, start in ((0.5, 5), (0.0, 0)):  # before disc_start; disc_weight 0
        loss = patchgan.PatchGANLoss(autoencoder_loss=ae_loss, disc_weight=weight,
                                     disc_start=start)
        new, m = step(loss, gan, batch)
        assert float(m["disc_factor"]) == (0.0 if start else 1.0)
        assert m["loss"] == m_plain["loss"] and m["grad_norm"] == m_plain["grad_norm"]
        for got, want in ((new.params["generator"], plain.params),
                          (new.opt_state.generator, plain.opt_state),
                          (new.ema_params[0]["generator"], plain.ema_params[0])):
            jax.tree.map(np.testing.assert_array_equal, got, want)
        if start:  # f = 0: no gradient reaches the discriminator either
            jax.tree.map(np.testing.assert_array_equal, new.params["discriminator"],
                         variables["discriminator"])
    # On (disc_weight 0.5, from step 0): the update differs from the plain one.
    new, m = step(patchgan.PatchGANLoss(autoencoder_loss=ae_loss, disc_weight=0.5), gan, batch)
    assert m["loss"] != m_plain["loss"] and float(m["adaptive_weight"]) > 0
    assert not np.array_equal(new.params["discriminator"]["params"]["conv_out"]["kernel"],
                              variables["discriminator"]["params"]["conv_out"]["kernel"])
