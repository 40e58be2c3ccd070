"""Denoising diffusion GANs (Xiao, Kreis & Vahdat, ICLR 2022): a conditional GAN per reverse step.

With only ``T = 1..8`` steps the true denoising distribution ``q(x_{t-1} | x_t)`` is far from
Gaussian (multimodal), so DDPM's Gaussian reverse step fails. DDGAN models it implicitly:

* a generator ``G(x_t, t, z) -> x0`` (:class:`Generator`: diffax's :class:`~diffax.models.MLP`
  or :class:`~diffax.models.UNet` with the latent ``z ~ N(0, I)`` normalised, sent through a
  small mapping network and added to the time embedding, as the paper injects ``z``);
* the forward process's own posterior gives ``x_{t-1} ~ q(x_{t-1} | x_t, x0 = G(x_t, t, z))``
  (:meth:`diffax.Process.posterior` on a :class:`diffax.DiscreteVP`: no second copy of the
  schedule math);
* a time-conditional discriminator ``D(x_{t-1}, x_t, t)`` (:class:`MLPDiscriminator` for
  vectors, :class:`ConvDiscriminator` for images) tells real pairs ``(x_{t-1}, x_t) ~ q`` from
  generated ones, trained with the non-saturating loss and an R1 penalty on real pairs
  (:class:`GANLoss`).

The generator never sees data: it receives ``x_t``, ``t`` and ``z`` only. Training alternates one
discriminator and one generator update with two optax optimizers held in one
:class:`diffax.train.TrainState` (``params = {"generator": ..., "discriminator": ...}``, its
``opt_state`` a :class:`GANOptState`); the EMA copies follow both networks and sampling uses the
generator's. :class:`DDGANTrainer` builds that pure train step (``diffax train`` uses it for
configs with a ``gan`` section); sampling is :class:`diffax.samplers.DDGAN` in
:func:`diffax.sample`'s loop.

Example:
  >>> import jax, jax.numpy as jnp, optax, diffax
  >>> from diffax import ddgan, models
  >>> from diffax.train import TrainState
  >>> p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=2)
  >>> model = ddgan.GANModel(
  ...     generator=ddgan.Generator(net=models.MLP.from_variant("tiny"), latent_dim=4),
  ...     discriminator=ddgan.MLPDiscriminator(width=16, depth=1), data_shape=(2,))
  >>> trainer = ddgan.DDGANTrainer(loss=ddgan.GANLoss(process=p, latent_shape=(4,)),
  ...     model=model, generator_optimizer=optax.adam(1e-3),
  ...     discriminator_optimizer=optax.adam(1e-3))
  >>> params = jax.jit(model.init_params)(jax.random.key(0))   # (jitted: faster than eager)
  >>> state = TrainState.create(params=params, optimizer=trainer.optimizer,
  ...                           key=jax.random.key(1))
  >>> step = trainer.train_step()   # jit it: state, metrics = step(state, {"x": x0})
  >>> type(state.opt_state).__name__, sorted(state.params)
  ('GANOptState', ['discriminator', 'generator'])
  >>> G = trainer.denoiser(state.sampling_params())
  >>> x_init = p.prior_sample(jax.random.key(2), (5, 2))
  >>> res = diffax.sample(jax.random.key(3), p, G, x_init,
  ...                     solver=diffax.samplers.DDGAN(latent_shape=(4,)), num_steps=2)
  >>> res.x.shape, int(res.nfe)
  ((5, 2), 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.models.layers import sinusoidal_embedding
from diffax.processes import DiscreteVP
from diffax.samplers import DDGAN
from diffax.train.state import TrainState
from diffax.train.step import TrainStep, ema_update, finish_update, repeat_steps
from diffax.typing import Array, PRNGKey, PyTree

__all__ = ["Generator", "MLPDiscriminator", "ConvDiscriminator", "GANModel", "GANOptState",
           "pair_optimizer", "GANPairs", "GANLoss", "DDGANTrainer"]


def _time_features(t: Array, batch: int, dim: int) -> Array:
    """Sinusoidal features of ``1000 t`` (times in ``[0, 1]``), ``[B, dim]``."""
    t = jnp.broadcast_to(jnp.asarray(t), (batch,))
    return sinusoidal_embedding(1000.0 * t, dim)


# --------------------------------------------------------------------------------------------
# networks


class Generator(nn.Module):
    """``G(x_t, t, z) -> x0``: a diffax network with the latent ``z`` added to its time embedding.

    ``z`` ``[B, latent_dim]`` is normalised to unit mean square (StyleGAN's pixel norm), mapped
    by ``mapping_layers`` Dense+swish layers to the network's ``emb_features`` and passed as
    its ``cond_emb``. ``z=None`` means ``z = 0`` (the mode of the latent).

    Attributes:
      net: an :class:`~diffax.models.MLP` or :class:`~diffax.models.UNet` (any linen module
        taking ``cond_emb`` and with ``config.emb_features``).
      latent_dim: size of ``z``.
      mapping_layers: depth of the mapping network.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax import models
      >>> g = Generator(net=models.MLP.from_variant("tiny"), latent_dim=3)
      >>> x, t, z = jnp.zeros((4, 2)), jnp.ones(4), jnp.ones((4, 3))
      >>> params = jax.jit(g.init)(jax.random.key(0), x, t, z)
      >>> jax.jit(g.apply)(params, x, t, z).shape
      (4, 2)
    """

    net: nn.Module
    latent_dim: int
    mapping_layers: int = 2

    @nn.compact
    def __call__(self, x: Array, t: Array, z: Array | None = None, *,
                 label: Array | None = None, train: bool = False) -> Array:
        batch = x.shape[0]
        if z is None:
            z = jnp.zeros((batch, self.latent_dim), x.dtype)
        if z.shape != (batch, self.latent_dim):
            raise ValueError(f"Generator: `z` must have shape [B, latent_dim] = "
                             f"[{batch}, {self.latent_dim}], got {tuple(z.shape)}.")
        w = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
        features = self.net.config.emb_features
        for i in range(self.mapping_layers):
            w = nn.swish(nn.Dense(features, name=f"mapping_{i}")(w))
        cond = {} if label is None else {"label": label}
        return self.net(x, t, cond_emb=w, train=train, **cond)


class MLPDiscriminator(nn.Module):
    """``D(x_{t-1}, x_t, t) -> logit [B]`` for vectors ``[B, D]``: the pair concatenated, then
    ``depth`` residual LeakyReLU(0.2) blocks with the time embedding added to each.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> d = MLPDiscriminator(width=16, depth=1)
      >>> x = jnp.zeros((3, 2))
      >>> t = jnp.ones(3)
      >>> jax.jit(lambda k: d.apply(d.init(k, x, x, t), x, x, t))(jax.random.key(0)).shape
      (3,)
    """

    width: int = 128
    depth: int = 3
    emb_dim: int = 64

    @nn.compact
    def __call__(self, x_prev: Array, x_t: Array, t: Array) -> Array:
        if x_prev.shape != x_t.shape or x_t.ndim != 2:
            raise ValueError(f"MLPDiscriminator: `x_prev` and `x_t` must both be [B, D], got "
                             f"{tuple(x_prev.shape)} and {tuple(x_t.shape)}.")
        act = lambda h: nn.leaky_relu(h, 0.2)  # noqa: E731
        temb = nn.Dense(self.width, name="temb")(_time_features(t, x_t.shape[0], self.emb_dim))
        h = nn.Dense(self.width, name="dense_in")(jnp.concatenate([x_prev, x_t], axis=-1))
        for i in range(self.depth):
            r = nn.Dense(self.width, name=f"block_{i}_0")(act(h)) + temb
            h = h + nn.Dense(self.width, name=f"block_{i}_1")(act(r))
        return nn.Dense(1, name="dense_out")(act(h))[:, 0]


class ConvDiscriminator(nn.Module):
    """``D(x_{t-1}, x_t, t) -> logit [B]`` for images ``[B, H, W, C]``: the pair concatenated
    on channels, per level a 3x3 conv block with the time embedding added, then a stride-2
    conv; LeakyReLU(0.2); a sum over space and a Dense to one logit.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> d = ConvDiscriminator(channels=8, ch_mult=(1, 2))
      >>> x = jnp.zeros((2, 8, 8, 1))
      >>> t = jnp.ones(2)
      >>> jax.jit(lambda k: d.apply(d.init(k, x, x, t), x, x, t))(jax.random.key(0)).shape
      (2,)
    """

    channels: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    emb_dim: int = 64

    @nn.compact
    def __call__(self, x_prev: Array, x_t: Array, t: Array) -> Array:
        if x_prev.shape != x_t.shape or x_t.ndim != 4:
            raise ValueError(f"ConvDiscriminator: `x_prev` and `x_t` must both be "
                             f"[B, H, W, C], got {tuple(x_prev.shape)} and {tuple(x_t.shape)}.")
        act = lambda h: nn.leaky_relu(h, 0.2)  # noqa: E731
        temb = act(nn.Dense(4 * self.channels, name="temb")(
            _time_features(t, x_t.shape[0], self.emb_dim)))
        h = nn.Conv(self.channels, (3, 3), name="conv_in")(
            jnp.concatenate([x_prev, x_t], axis=-1))
        for i, mult in enumerate(self.ch_mult):
            ch = self.channels * mult
            r = nn.Conv(ch, (3, 3), name=f"level_{i}_conv_0")(act(h))
            r = r + nn.Dense(ch, name=f"level_{i}_temb")(temb)[:, None, None, :]
            r = nn.Conv(ch, (3, 3), name=f"level_{i}_conv_1")(act(r))
            skip = nn.Conv(ch, (1, 1), name=f"level_{i}_skip")(h) if h.shape[-1] != ch else h
            h = skip + r
            h = nn.Conv(ch, (3, 3), strides=(2, 2), name=f"level_{i}_down")(act(h))
        h = jnp.sum(act(h), axis=(1, 2))
        return nn.Dense(1, name="dense_out")(h)[:, 0]


@dataclasses.dataclass(frozen=True)
class GANModel:
    """The generator and discriminator as one model: ``init`` gives
    ``{"generator": variables, "discriminator": variables}`` (what the train state holds).

    Attributes:
      generator: a :class:`Generator`.
      discriminator: :class:`MLPDiscriminator`, :class:`ConvDiscriminator` or any linen module
        called as ``D(x_prev, x_t, t) -> [B]``.
      data_shape: the shape of one example.

    Example:
      >>> import jax
      >>> from diffax import models
      >>> m = GANModel(generator=Generator(net=models.MLP.from_variant("tiny"), latent_dim=2),
      ...              discriminator=MLPDiscriminator(width=8, depth=1), data_shape=(2,))
      >>> sorted(jax.eval_shape(m.init_params, jax.random.key(0)))  # (shapes only: no compute)
      ['discriminator', 'generator']
    """

    generator: Generator
    discriminator: nn.Module
    data_shape: tuple[int, ...]

    def example_inputs(self, batch_size: int = 1) -> tuple[Array, Array]:
        """Zero inputs ``(x [B, *data_shape], t [B])``."""
        return (jnp.zeros((batch_size, *self.data_shape), jnp.float32),
                jnp.zeros((batch_size,), jnp.float32))

    def init(self, key: PRNGKey, x: Array, t: Array) -> dict[str, Any]:
        """Both networks' variables, initialised on ``x`` ``[B, ...]`` and ``t`` ``[B]``."""
        k_g, k_d = jax.random.split(key)
        z = jnp.zeros((x.shape[0], self.generator.latent_dim), x.dtype)
        return {"generator": self.generator.init(k_g, x, t, z),
                "discriminator": self.discriminator.init(k_d, x, x, t)}

    def init_params(self, key: PRNGKey) -> dict[str, Any]:
        """:meth:`init` on :meth:`example_inputs`."""
        return self.init(key, *self.example_inputs())


# --------------------------------------------------------------------------------------------
# two optimizers in one state


class GANOptState(NamedTuple):
    """The optimizer states of the two networks."""

    generator: Any
    discriminator: Any


def pair_optimizer(generator: optax.GradientTransformation,
                   discriminator: optax.GradientTransformation
                   ) -> optax.GradientTransformation:
    """One optax transformation over ``{"generator": g, "discriminator": d}`` that applies each
    network's own optimizer (states in a :class:`GANOptState`). :class:`DDGANTrainer` updates
    the two halves separately (one after the other); this is what the train state holds.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = pair_optimizer(optax.sgd(1.0), optax.sgd(0.5))
      >>> params = {"generator": jnp.ones(()), "discriminator": jnp.ones(())}
      >>> updates, _ = opt.update(params, opt.init(params), params)
      >>> float(updates["generator"]), float(updates["discriminator"])
      (-1.0, -0.5)
    """

    def init(params: PyTree) -> GANOptState:
        return GANOptState(generator=generator.init(params["generator"]),
                           discriminator=discriminator.init(params["discriminator"]))

    def update(grads: PyTree, state: GANOptState, params: PyTree | None = None
               ) -> tuple[PyTree, GANOptState]:
        part = lambda name: None if params is None else params[name]  # noqa: E731
        ug, sg = generator.update(grads["generator"], state.generator, part("generator"))
        ud, sd = discriminator.update(grads["discriminator"], state.discriminator,
                                      part("discriminator"))
        return ({"generator": ug, "discriminator": ud},
                GANOptState(generator=sg, discriminator=sd))

    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# the loss


class GANPairs(NamedTuple):
    """A batch of real and generated pairs at random steps.

    Attributes:
      x_t: ``[B, ...]`` noisy data at ``t``.
      t: ``[B]`` times ``n / T`` with ``n`` uniform in ``1..T``.
      s: ``[B]`` the previous times ``(n - 1) / T``.
      real: ``x_{t-1} ~ q(x_{t-1} | x_t, x0)`` for the data ``x0``.
      fake: ``x_{t-1} ~ q(x_{t-1} | x_t, G(x_t, t, z))``.
      z: ``[B, *latent_shape]`` the latents.
    """

    x_t: Array
    t: Array
    s: Array
    real: Array
    fake: Array
    z: Array


@pytree_dataclass
class GANLoss:
    """DDGAN's adversarial objective on a :class:`diffax.DiscreteVP` with ``T`` steps.

    Real pairs come from ``x_t ~ q(x_t | x0)`` then ``x_{t-1} ~ q(x_{t-1} | x_t, x0)`` (the
    same joint law as ``q(x_{t-1} | x0) q(x_t | x_{t-1})``, written with the process's
    marginal and posterior); fake pairs replace ``x0`` by ``G(x_t, t, z)``. With
    ``d = D(x_{t-1}, x_t, t)``:

    * discriminator: ``E_real[softplus(-d)] + E_fake[softplus(d)]
      + (r1_gamma / 2) E_real[|grad_{x_{t-1}} d|^2]`` (R1 on real pairs);
    * generator (non-saturating): ``E_fake[softplus(-d)]``.

    Attributes:
      process: the :class:`diffax.DiscreteVP` (its ``T`` steps are DDGAN's).
      r1_gamma: R1 weight ``gamma``.
      latent_shape: shape of one latent ``z`` (static).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> loss = GANLoss(process=diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=2),
      ...                r1_gamma=2.0, latent_shape=(1,))
      >>> d = lambda x_prev, x_t, t: jnp.sum(x_prev, axis=-1)   # grad = ones: R1 = 2 per pair
      >>> x = jnp.zeros((2, 2))
      >>> value, aux = loss.discriminator_loss(d, x, x, x, jnp.ones(2))
      >>> round(float(value), 4), float(aux["r1"])   # 2 softplus(0) + (2 / 2) * 2
      (3.3863, 2.0)
    """

    process: DiscreteVP
    r1_gamma: Any = 0.05
    latent_shape: tuple[int, ...] = static_field(default=(100,))

    def __post_init__(self):
        if not isinstance(self.process, DiscreteVP):
            raise ValueError(f"GANLoss: `process` must be a diffax.DiscreteVP (DDGAN's T "
                             f"steps), got {type(self.process).__name__}.")
        g = concrete_value(self.r1_gamma)
        if g is not None and not (np.all(np.isfinite(g)) and np.all(g >= 0)):
            raise ValueError(f"GANLoss: `r1_gamma` must be finite and >= 0, got "
                             f"{self.r1_gamma!r}.")
        try:
            DDGAN(latent_shape=self.latent_shape)  # the sampler's check of the same shape
        except ValueError as e:
            raise ValueError(f"GANLoss: {str(e).removeprefix('DDGAN: ')}") from None

    def pairs(self, key: PRNGKey, x0: Array, generator: Callable[[Array, Array, Array], Array]
              ) -> GANPairs:
        """Real and generated pairs for the data ``x0`` ``[B, ...]``; ``generator(x_t, t, z)``
        is called once and sees only ``x_t``, ``t`` and ``z``."""
        p = self.process
        batch = x0.shape[0]
        k_n, k_t, k_real, k_z, k_fake = jax.random.split(key, 5)
        n = jax.random.randint(k_n, (batch,), 1, p.num_steps + 1)
        t, s = p.time(n).astype(x0.dtype), p.time(n - 1).astype(x0.dtype)
        x_t = p.marginal_sample(k_t, x0, t)
        mean, std = p.posterior(x_t, x0, t=t, s=s)
        real = mean + std * jax.random.normal(k_real, x0.shape, x0.dtype)
        z = jax.random.normal(k_z, (batch, *self.latent_shape), x0.dtype)
        x0_fake = generator(x_t, t, z)
        mean, std = p.posterior(x_t, x0_fake, t=t, s=s)
        fake = mean + std * jax.random.normal(k_fake, x0.shape, x0.dtype)
        return GANPairs(x_t=x_t, t=t, s=s, real=real, fake=fake, z=z)

    def discriminator_loss(self, d: Callable[[Array, Array, Array], Array], real: Array,
                           fake: Array, x_t: Array, t: Array) -> tuple[Array, dict[str, Array]]:
        """The discriminator's loss (``fake`` is not differentiated) and
        ``{"d_real", "d_fake", "r1"}`` (mean logits; mean squared gradient norm)."""
        d_real = d(real, x_t, t)
        d_fake = d(jax.lax.stop_gradient(fake), x_t, t)
        grad = jax.grad(lambda r: jnp.sum(d(r, x_t, t)))(real)
        r1 = jnp.mean(jnp.sum(jnp.square(grad).reshape(grad.shape[0], -1), axis=-1))
        adv = jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))
        loss = adv + 0.5 * self.r1_gamma * r1
        return loss, {"d_real": jnp.mean(d_real), "d_fake": jnp.mean(d_fake), "r1": r1}

    def generator_loss(self, d: Callable[[Array, Array, Array], Array], fake: Array, x_t: Array,
                       t: Array) -> Array:
        """The non-saturating generator loss ``E[softplus(-D(fake, x_t, t))]``."""
        return jnp.mean(jax.nn.softplus(-d(fake, x_t, t)))


# --------------------------------------------------------------------------------------------
# the train step


@dataclasses.dataclass(frozen=True)
class DDGANTrainer:
    """The alternating DDGAN update as a pure ``train_step(state, batch)``.

    Per update (``key = fold_in(state.key, state.step)``): pairs from :meth:`GANLoss.pairs`;
    one discriminator step; then one generator step against the updated discriminator on the
    same ``x_t``, ``t``, ``z`` and noise; both EMA'd (``optax.incremental_update``). As in
    :func:`diffax.train.make_train_step`, an update with a non-finite loss or gradient is
    skipped in the compiled program (only ``step`` advances) and counted in ``nonfinite``.

    Attributes:
      loss: the :class:`GANLoss`.
      model: the :class:`GANModel`.
      generator_optimizer: optax transformation of the generator.
      discriminator_optimizer: optax transformation of the discriminator.
      data_key: the batch entry holding the data.
    """

    loss: GANLoss
    model: GANModel
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation
    data_key: str = "x"

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """:func:`pair_optimizer` of the two (what :class:`TrainState.create` takes)."""
        return pair_optimizer(self.generator_optimizer, self.discriminator_optimizer)

    def generator_fn(self, gen_params: PyTree, *, train: bool = False, key: PRNGKey | None = None
                     ) -> Callable[[Array, Array, Array | None], Array]:
        """``G(x_t, t, z)`` with the generator's variables ``gen_params``."""
        rngs = None if key is None else {"dropout": key}

        def g(x: Array, t: Array, z: Array | None = None) -> Array:
            return self.model.generator.apply(gen_params, x, t, z, train=train, rngs=rngs)

        return g

    def discriminator_fn(self, disc_params: PyTree) -> Callable[[Array, Array, Array], Array]:
        """``D(x_prev, x_t, t) -> [B]`` with the discriminator's variables."""
        return lambda x_prev, x_t, t: self.model.discriminator.apply(disc_params, x_prev, x_t, t)

    def denoiser(self, params: PyTree, **cond: Any) -> Callable[..., Array]:
        """The generator of ``params`` (``{"generator", "discriminator"}``) as the ``denoiser``
        of :class:`diffax.samplers.DDGAN`: ``G(x, t, z=None)``."""
        if cond:
            raise ValueError(f"DDGANTrainer.denoiser: conditioning {sorted(cond)} is not "
                             f"supported (unconditional DDGAN).")
        return self.generator_fn(params["generator"])

    def train_step(self, *, n_steps: int = 1, ema_warmup: bool = False,
                   learning_rate: optax.ScalarOrSchedule | None = None,
                   skip_nonfinite: bool = True) -> TrainStep:
        """``train_step(state, batch) -> (state, metrics)`` (``n_steps`` updates per call, as
        :func:`diffax.train.make_train_step`).

        Metrics: ``loss`` (generator), ``d_loss``, ``d_real``, ``d_fake``, ``r1``,
        ``grad_norm`` (generator), ``d_grad_norm``, ``nonfinite``, ``nonfinite_step`` and, when
        ``learning_rate`` is given, ``learning_rate`` (the generator's).
        """
        schedule = pair_step_schedule("DDGANTrainer", n_steps, learning_rate)
        loss, opt_g, opt_d = self.loss, self.generator_optimizer, self.discriminator_optimizer

        def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
            x0 = jnp.asarray(batch[self.data_key] if isinstance(batch, dict) else batch)
            key = jax.random.fold_in(state.key, state.step)
            k_pairs, k_drop = jax.random.split(key)
            g_params = state.params["generator"]
            d_params = state.params["discriminator"]
            gen = lambda gp: self.generator_fn(gp, train=True, key=k_drop)  # noqa: E731
            pairs = loss.pairs(k_pairs, x0, gen(g_params))

            def d_objective(dp):
                return loss.discriminator_loss(self.discriminator_fn(dp), pairs.real,
                                               pairs.fake, pairs.x_t, pairs.t)

            (d_loss, aux), d_grads = jax.value_and_grad(d_objective, has_aux=True)(d_params)
            d_updates, d_opt = opt_d.update(d_grads, state.opt_state.discriminator, d_params)
            d_new = optax.apply_updates(d_params, d_updates)

            def g_objective(gp):
                p = loss.pairs(k_pairs, x0, gen(gp))
                return loss.generator_loss(self.discriminator_fn(d_new), p.fake, p.x_t, p.t)

            g_loss, g_grads = jax.value_and_grad(g_objective)(g_params)
            g_updates, g_opt = opt_g.update(g_grads, state.opt_state.generator, g_params)
            g_new = optax.apply_updates(g_params, g_updates)

            return finish_pair_update(
                state, (g_new, d_new), (g_opt, d_opt), (g_loss, d_loss), (g_grads, d_grads),
                {"loss": g_loss, "d_loss": d_loss, **aux}, ema_warmup=ema_warmup,
                schedule=schedule, skip_nonfinite=skip_nonfinite)

        return repeat_steps(one_step, int(n_steps))


def pair_step_schedule(owner: str, n_steps: int,
                       learning_rate: optax.ScalarOrSchedule | None) -> Any:
    """Checks a two-network ``train_step``'s ``n_steps`` (naming ``owner``) and returns the
    ``learning_rate`` as a schedule (``None`` stays ``None``)."""
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"{owner}.train_step: `n_steps` must be a positive integer, "
                         f"got {n_steps!r}.")
    return learning_rate if callable(learning_rate) else (
        None if learning_rate is None else (lambda step: jnp.asarray(learning_rate)))


def finish_pair_update(state: TrainState, params: tuple[PyTree, PyTree],
                       opt_states: tuple[Any, Any], losses: tuple[Array, Array],
                       grads: tuple[PyTree, PyTree], metrics: dict[str, Array], *,
                       ema_warmup: bool = False, schedule: optax.Schedule | None = None,
                       skip_nonfinite: bool = True) -> tuple[TrainState, dict[str, Array]]:
    """The state after one update of a generator and a discriminator (each pair in that
    order): ``params = {"generator", "discriminator"}``, a :class:`GANOptState`, the EMA moved;
    ``metrics`` gets ``grad_norm`` (generator) and ``d_grad_norm``; the update is skipped when
    a loss or a gradient norm is not finite (:func:`diffax.train.step.finish_update`)."""
    new = {"generator": params[0], "discriminator": params[1]}
    opt_state = GANOptState(generator=opt_states[0], discriminator=opt_states[1])
    ema_params = ema_update(state, new, ema_warmup=ema_warmup)
    g_norm, d_norm = optax.tree.norm(grads[0]), optax.tree.norm(grads[1])
    bad = ~(jnp.isfinite(losses[0]) & jnp.isfinite(losses[1]) & jnp.isfinite(g_norm)
            & jnp.isfinite(d_norm))
    metrics = {**metrics, "grad_norm": g_norm, "d_grad_norm": d_norm}
    return finish_update(state, new, opt_state, ema_params, metrics, bad=bad,
                         schedule=schedule, skip_nonfinite=skip_nonfinite)
