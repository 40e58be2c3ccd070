"""Adversarial training of latent-diffusion autoencoders against a patch discriminator.

The optional part of LDM's stage 1 (Rombach et al. 2022, section 3 and appendix G), taken
from taming-transformers' VQGAN (Esser, Rombach & Ommer 2021, eqs. 4-7), here without the
perceptual (LPIPS) term. With ``D`` a :class:`diffax.models.PatchDiscriminator` (a grid of
logits per image) and ``x_hat`` the reconstruction:

* autoencoder ("generator"): ``L_AE + lambda * f(step) * L_GAN`` with ``L_AE`` the plain
  autoencoder loss (:class:`diffax.latent.AutoencoderKLLoss` /
  :class:`~diffax.latent.AutoencoderVQLoss`), ``L_GAN = -mean D(x_hat)`` and the adaptive
  weight ``lambda = disc_weight * clip(||grad_W L_rec|| / (||grad_W L_GAN|| + 1e-4), 0, 1e4)``
  (``W`` the kernel of the decoder's last layer, ``L_rec`` the batch-mean reconstruction term;
  ``lambda`` is not differentiated): at ``W`` the adversarial gradient is ``disc_weight`` times
  as large as the reconstruction's, whatever the scale of either loss;
* discriminator: ``f(step) * d_loss(D(x), D(sg(x_hat)))`` with the hinge loss
  ``0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))`` (:func:`hinge_d_loss`) or the
  vanilla one ``0.5 (mean softplus(-D(x)) + mean softplus(D(x_hat)))``
  (:func:`vanilla_d_loss`);
* ``f(step) = disc_factor`` once ``step >= disc_start`` (updates done), else 0: the
  discriminator is switched on after the autoencoder has learnt to reconstruct.

Each update (:class:`AutoencoderGANTrainer`, on ``key = fold_in(state.key, state.step)``): one
autoencoder step against the current discriminator, then one discriminator step on the same
batch's real images and the (detached) reconstructions of that autoencoder step's forward pass
(taming's two-optimizer loop recomputes them after the autoencoder's update: one forward pass
more per step). The two networks and optax optimizers live
in one :class:`diffax.train.TrainState` exactly as DDGAN's (:func:`diffax.ddgan.pair_optimizer`:
``params = {"generator": autoencoder variables, "discriminator": ...}``), so orbax checkpoints
and resumes both. While ``f = 0`` (or ``disc_weight = 0``) the autoencoder's loss and update are
the plain autoencoder's, bit for bit.

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> from diffax import latent, models, patchgan
  >>> from diffax.train import TrainState
  >>> ae = models.AutoencoderKL.from_variant("tiny")
  >>> model = patchgan.AutoencoderGANModel(
  ...     autoencoder=ae, discriminator=models.PatchDiscriminator(channels=8, num_layers=2))
  >>> trainer = patchgan.AutoencoderGANTrainer(
  ...     loss=patchgan.PatchGANLoss(autoencoder_loss=latent.AutoencoderKLLoss(),
  ...                                disc_weight=0.5, disc_start=0),
  ...     model=model, generator_optimizer=optax.adam(1e-3),
  ...     discriminator_optimizer=optax.adam(1e-3, b1=0.5, b2=0.9))
  >>> params = jax.jit(model.init)(jax.random.key(0), *model.example_inputs())
  >>> state = TrainState.create(params=params, optimizer=trainer.optimizer,
  ...                           key=jax.random.key(1))
  >>> step = jax.jit(trainer.train_step())
  >>> state, metrics = step(state, {"x": jnp.zeros((2, 16, 16, 1))})
  >>> sorted(state.params), int(state.step)
  (['discriminator', 'generator'], 1)
  >>> all(k in metrics for k in ("d_loss", "g_loss", "adaptive_weight"))
  True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.ddgan import finish_pair_update, pair_optimizer, pair_step_schedule
from diffax.latent import AutoencoderKLLoss, AutoencoderVQLoss
from diffax.train.state import TrainState
from diffax.train.step import TrainStep, repeat_steps
from diffax.typing import Array, PRNGKey, PyTree

__all__ = ["hinge_d_loss", "vanilla_d_loss", "generator_loss", "adaptive_weight",
           "PatchGANLoss", "AutoencoderGANModel", "AutoencoderGANTrainer", "LAST_LAYER"]

LAST_LAYER = ("params", "decoder", "conv_out", "kernel")
"""Where :class:`diffax.models.AutoencoderKL` / ``AutoencoderVQ`` keep the kernel of the
decoder's last convolution (the adaptive weight's ``W``)."""

ADAPTIVE_DELTA = 1e-4
ADAPTIVE_MAX = 1e4


def hinge_d_loss(logits_real: Array, logits_fake: Array) -> Array:
    """``0.5 (mean relu(1 - logits_real) + mean relu(1 + logits_fake))``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(hinge_d_loss(jnp.array([2.0, 0.0]), jnp.array([-3.0, 1.0])))  # (0.5 + 1) / 2
      0.75
    """
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - logits_real))
                  + jnp.mean(jax.nn.relu(1.0 + logits_fake)))


def vanilla_d_loss(logits_real: Array, logits_fake: Array) -> Array:
    """``0.5 (mean softplus(-logits_real) + mean softplus(logits_fake))`` (binary
    cross-entropy of real against fake, halved as the hinge loss).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(vanilla_d_loss(jnp.zeros(2), jnp.zeros(2))), 6)  # log 2
      0.693147
    """
    return 0.5 * (jnp.mean(jax.nn.softplus(-logits_real))
                  + jnp.mean(jax.nn.softplus(logits_fake)))


def generator_loss(logits_fake: Array) -> Array:
    """The autoencoder's adversarial term ``-mean(logits_fake)`` (for either ``d_loss``).

    Example:
      >>> import jax.numpy as jnp
      >>> float(generator_loss(jnp.array([1.0, 3.0])))
      -2.0
    """
    return -jnp.mean(logits_fake)


def adaptive_weight(rec_grad: Array, gan_grad: Array) -> Array:
    """``clip(||rec_grad|| / (||gan_grad|| + 1e-4), 0, 1e4)``, not differentiated.

    Example:
      >>> import jax.numpy as jnp
      >>> float(adaptive_weight(jnp.array([3.0, 4.0]), jnp.array([0.0, 0.5])))
      9.998000144958496
    """
    ratio = jnp.linalg.norm(jnp.ravel(rec_grad)) / (jnp.linalg.norm(jnp.ravel(gan_grad))
                                                    + ADAPTIVE_DELTA)
    return jax.lax.stop_gradient(jnp.clip(ratio, 0.0, ADAPTIVE_MAX))


def _get(tree: PyTree, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _replace(tree: PyTree, path: tuple[str, ...], value: Any) -> PyTree:
    if not path:
        return value
    return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}


@pytree_dataclass
class PatchGANLoss:
    """The autoencoder and discriminator objectives (see the module docstring).

    Attributes:
      autoencoder_loss: the plain :class:`diffax.latent.AutoencoderKLLoss` or
        :class:`~diffax.latent.AutoencoderVQLoss` (``L_AE``; its ``reconstruction`` term is
        ``L_rec``).
      disc_weight: ``disc_weight >= 0`` multiplying the adaptive weight (LDM's KL configs 0.5,
        taming's VQGAN 0.8; a leaf).
      disc_start: updates before the discriminator switches on (``>= 0``; a leaf).
      disc_factor: ``f`` once on (``>= 0``; taming: 1; a leaf).
      d_loss: :func:`hinge_d_loss` (taming's default) or :func:`vanilla_d_loss` (static).
      last_layer: path of the decoder's last kernel in the autoencoder's variables (static).

    Raises:
      ValueError / TypeError: naming the attribute.

    Example:
      >>> import jax.numpy as jnp
      >>> from diffax import latent
      >>> loss = PatchGANLoss(autoencoder_loss=latent.AutoencoderKLLoss(), disc_start=10)
      >>> float(loss.factor(jnp.array(9))), float(loss.factor(jnp.array(10)))
      (0.0, 1.0)
    """

    autoencoder_loss: AutoencoderKLLoss | AutoencoderVQLoss
    disc_weight: Any = 0.5
    disc_start: Any = 0
    disc_factor: Any = 1.0
    d_loss: Callable[[Array, Array], Array] = static_field(default=hinge_d_loss)
    last_layer: tuple[str, ...] = static_field(default=LAST_LAYER)

    def __post_init__(self):
        if not isinstance(self.autoencoder_loss, AutoencoderKLLoss | AutoencoderVQLoss):
            raise TypeError(f"PatchGANLoss: `autoencoder_loss` must be an AutoencoderKLLoss or "
                            f"AutoencoderVQLoss, got {type(self.autoencoder_loss).__name__}.")
        for name in ("disc_weight", "disc_start", "disc_factor"):
            v = concrete_value(getattr(self, name))
            if v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) < 0):
                raise ValueError(f"PatchGANLoss: `{name}` must be a finite number >= 0, got "
                                 f"{getattr(self, name)!r}.")
        if self.d_loss not in (hinge_d_loss, vanilla_d_loss):
            raise ValueError(f"PatchGANLoss: `d_loss` must be patchgan.hinge_d_loss or "
                             f"patchgan.vanilla_d_loss, got {self.d_loss!r}.")
        object.__setattr__(self, "last_layer", tuple(self.last_layer))

    def factor(self, step: Array) -> Array:
        """``f(step)``: ``disc_factor`` once ``step >= disc_start``, else 0."""
        return jnp.where(step >= self.disc_start, self.disc_factor, 0.0)

    def autoencoder_objective(self, apply_fn: Callable[..., Any], params: PyTree,
                              discriminator: Callable[[Array], Array], key: PRNGKey,
                              batch: Any, step: Array) -> tuple[Array, dict[str, Array]]:
        """``(L_AE + lambda f L_GAN, aux)``: ``aux`` is ``L_AE``'s aux plus ``ae_loss``
        (``L_AE``), ``g_loss``, ``adaptive_weight`` (``lambda``, ``disc_weight`` included),
        ``disc_factor``, ``x`` and ``recon`` (not differentiated).

        ``apply_fn(params, x, *, key)`` is the autoencoder (called with ``key`` exactly as
        ``L_AE`` calls it); ``discriminator(x) -> logits``."""
        ae_loss = self.autoencoder_loss
        x = _batch_data(batch, ae_loss)

        def forward(w):  # the autoencoder with the decoder's last kernel `w`
            out = apply_fn(_replace(params, self.last_layer, w), x, key=key)
            return out["recon"], out

        # One forward pass; its pullback at the last kernel gives grad_W of both terms.
        recon, pullback, out = jax.vjp(forward, _get(params, self.last_layer), has_aux=True)

        def ae_terms(r):
            return ae_loss(lambda *_, **__: {**out, "recon": r}, params, key, batch)

        value, aux = ae_terms(recon)
        g_loss, gan_ct = jax.value_and_grad(lambda r: generator_loss(discriminator(r)))(recon)
        rec_ct = jax.grad(lambda r: jnp.mean(ae_terms(r)[1]["reconstruction"]))(recon)
        (rec_grad,), (gan_grad,) = pullback(rec_ct), pullback(gan_ct)
        weight = self.disc_weight * adaptive_weight(rec_grad, gan_grad)
        f = self.factor(step)
        total = value + weight * f * g_loss
        aux = {**aux, "ae_loss": value, "g_loss": g_loss, "adaptive_weight": weight,
               "disc_factor": f, "x": x, "recon": jax.lax.stop_gradient(recon)}
        return total, aux

    def discriminator_objective(self, discriminator: Callable[[Array], Array], x: Array,
                                recon: Array, step: Array) -> tuple[Array, dict[str, Array]]:
        """``(f d_loss(D(x), D(sg(recon))), {"logits_real", "logits_fake"})`` (mean logits)."""
        real = discriminator(x)
        fake = discriminator(jax.lax.stop_gradient(recon))
        value = self.factor(step) * self.d_loss(real, fake)
        return value, {"logits_real": jnp.mean(real), "logits_fake": jnp.mean(fake)}


def _batch_data(batch: Any, loss: Any) -> Array:
    from diffax.latent import _data

    return _data(batch, loss.data_key, "PatchGANLoss")


@dataclasses.dataclass(frozen=True)
class AutoencoderGANModel:
    """The autoencoder and its discriminator as one model: :meth:`init` gives
    ``{"generator": autoencoder variables, "discriminator": variables}``. The autoencoder's
    variables are ``autoencoder.init(key, x)``, exactly those of a plain run with the same key;
    the discriminator's use ``fold_in(key, 1)``.

    Attributes:
      autoencoder: :class:`diffax.models.AutoencoderKL` or ``AutoencoderVQ``.
      discriminator: :class:`diffax.models.PatchDiscriminator` (any ``D(x) -> logits``).
    """

    autoencoder: Any
    discriminator: Any

    def example_inputs(self, batch_size: int = 1) -> tuple[Array]:
        return self.autoencoder.example_inputs(batch_size)

    def init(self, key: PRNGKey, x: Array) -> dict[str, Any]:
        return {"generator": self.autoencoder.init(key, x),
                "discriminator": self.discriminator.init(jax.random.fold_in(key, 1), x)}


@dataclasses.dataclass(frozen=True)
class AutoencoderGANTrainer:
    """The alternating update as a pure ``train_step(state, batch)`` (module docstring).

    As :func:`diffax.train.make_train_step`, an update with a non-finite loss or gradient is
    skipped in the compiled program (only ``step`` advances) and counted in ``nonfinite``.

    Attributes:
      loss: the :class:`PatchGANLoss`.
      model: the :class:`AutoencoderGANModel`.
      generator_optimizer: optax transformation of the autoencoder.
      discriminator_optimizer: optax transformation of the discriminator (taming: Adam with
        betas (0.5, 0.9)).
      post_update: ``post_update(variables, aux) -> (variables, metrics)`` on the updated
        autoencoder (a VQ autoencoder's EMA codebook and usage), or ``None``.
    """

    loss: PatchGANLoss
    model: AutoencoderGANModel
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation
    post_update: Callable[[PyTree, Any], tuple[PyTree, dict[str, Array]]] | None = None

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """:func:`diffax.ddgan.pair_optimizer` of the two (what ``TrainState.create`` takes)."""
        return pair_optimizer(self.generator_optimizer, self.discriminator_optimizer)

    def autoencoder_fn(self, params: PyTree, x: Array, *, key: PRNGKey | None = None) -> Any:
        """The autoencoder's outputs for its variables ``params``."""
        return self.model.autoencoder.apply(params, x, key=key)

    def discriminator_fn(self, d_params: PyTree) -> Callable[[Array], Array]:
        """``D(x) -> logits`` with the discriminator's variables."""
        return lambda x: self.model.discriminator.apply(d_params, x)

    def train_step(self, *, n_steps: int = 1, ema_warmup: bool = False,
                   learning_rate: optax.ScalarOrSchedule | None = None,
                   skip_nonfinite: bool = True) -> TrainStep:
        """``train_step(state, batch) -> (state, metrics)`` (``n_steps`` updates per call).

        Metrics: ``loss`` (the autoencoder's total), ``ae_loss``, ``g_loss``,
        ``adaptive_weight``, ``disc_factor``, ``d_loss``, ``logits_real``, ``logits_fake``,
        ``grad_norm``, ``d_grad_norm``, ``nonfinite``, ``nonfinite_step``, ``post_update``'s
        and, when ``learning_rate`` is given, ``learning_rate`` (the autoencoder's).
        """
        schedule = pair_step_schedule("AutoencoderGANTrainer", n_steps, learning_rate)
        loss, opt_g, opt_d = self.loss, self.generator_optimizer, self.discriminator_optimizer

        def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
            key = jax.random.fold_in(state.key, state.step)
            g_params = state.params["generator"]
            d_params = state.params["discriminator"]
            d_old = self.discriminator_fn(d_params)

            (g_total, aux), g_grads = jax.value_and_grad(
                lambda p: loss.autoencoder_objective(self.autoencoder_fn, p, d_old, key, batch,
                                                     state.step), has_aux=True)(g_params)
            g_updates, g_opt = opt_g.update(g_grads, state.opt_state.generator, g_params)
            g_new = optax.apply_updates(g_params, g_updates)
            extra = {}
            if self.post_update is not None:
                g_new, extra = self.post_update(g_new, aux)

            (d_loss, d_aux), d_grads = jax.value_and_grad(
                lambda dp: loss.discriminator_objective(self.discriminator_fn(dp), aux["x"],
                                                        aux["recon"], state.step),
                has_aux=True)(d_params)
            d_updates, d_opt = opt_d.update(d_grads, state.opt_state.discriminator, d_params)
            d_new = optax.apply_updates(d_params, d_updates)

            metrics = {"loss": g_total, "ae_loss": aux["ae_loss"], "g_loss": aux["g_loss"],
                       "adaptive_weight": aux["adaptive_weight"],
                       "disc_factor": aux["disc_factor"], "d_loss": d_loss, **d_aux, **extra}
            return finish_pair_update(
                state, (g_new, d_new), (g_opt, d_opt), (g_total, d_loss), (g_grads, d_grads),
                metrics, ema_warmup=ema_warmup, schedule=schedule,
                skip_nonfinite=skip_nonfinite)

        return repeat_steps(one_step, int(n_steps))
