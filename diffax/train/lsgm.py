"""LSGM joint training in ``diffax train``: encoder, decoder and latent score model together.

A config with an ``lsgm`` section (:class:`~diffax.train.options.LSGMOptions`) trains, in one
:class:`~diffax.train.state.TrainState`, the parameters

    {"autoencoder": a diffax.models.AutoencoderKL (encoder q(z_0|x) and decoder),
     "score": the latent score network of config.model (a UNet on the latents),
     "mixing_logits": LSGM's per-dimension mixing logits [*latent_shape]}

on :class:`diffax.lsgm.LSGMObjective` (``lsgm.time_sampler``: the paper's importance
sampling or uniform ``t``; ``lsgm.score_weighting``: the score model on the same
likelihood-weighted ELBO, or on its own unweighted / reweighted objective). As in the paper,
the autoencoder and the score model have their own optimisers: ``optax.multi_transform`` with
``config.optim`` for the score network and its mixing logits and ``config.optim`` with
``lsgm.autoencoder_learning_rate`` for the
autoencoder. Checkpoints, resumption and EMA are the train loop's; ``diffax sample`` /
``diffax eval`` sample the latents with the mixed-score denoiser and decode them with the
trained decoder (:meth:`LSGMTrainer.decode`).

The training loss is the negative ELBO in nats per data dimension (its batch mean).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffax import lsgm
from diffax.latent import DiagonalGaussian, FrozenAutoencoder, Latent
from diffax.train.step import TrainStep, make_train_step
from diffax.typing import Array, PRNGKey, PyTree

__all__ = ["LSGMModel", "LSGMTrainer", "lsgm_likelihood", "param_labels"]


@dataclasses.dataclass(frozen=True)
class LSGMModel:
    """The three parameter groups' networks: ``init(key, x)`` returns ``{"autoencoder",
    "score", "mixing_logits"}`` (what the train loop and ``diffax sample`` initialise).

    Attributes:
      autoencoder: a :class:`diffax.models.AutoencoderKL`.
      score: the latent score network (e.g. :class:`diffax.models.UNet` on the latent shape),
        called ``score(z, noise_input, train=..., label=None)``.
      mixing_init: the initial mixing logit (``sigmoid(0) = 1/2``).
    """

    autoencoder: Any
    score: Any
    mixing_init: float = 0.0

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.config.input_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.config.latent_shape)

    def example_inputs(self, batch_size: int = 1) -> tuple[Array]:
        return self.autoencoder.example_inputs(batch_size)

    def init(self, key: PRNGKey, x: Array) -> dict[str, Any]:
        k_ae, k_score = jax.random.split(key)
        return {"autoencoder": self.autoencoder.init(k_ae, x),
                "score": self.score.init(k_score, *self.score.example_inputs()),
                "mixing_logits": jnp.full(self.latent_shape, self.mixing_init, jnp.float32)}


def param_labels(params: Mapping[str, Any]) -> dict[str, Any]:
    """``"autoencoder"`` for the autoencoder's leaves, ``"score"`` for the score network's and
    the mixing logits (the ``optax.multi_transform`` groups)."""
    return {name: jax.tree.map(lambda _, n=name: "autoencoder" if n == "autoencoder"
                               else "score", tree) for name, tree in params.items()}


@dataclasses.dataclass(frozen=True)
class LSGMTrainer:
    """LSGM's joint update and its sampling pieces (the ``trainer`` of a training run).

    Attributes:
      objective: the :class:`diffax.lsgm.LSGMObjective` (its ``process`` is the latent
        diffusion).
      model: the :class:`LSGMModel`.
      parameterization: the score network's input map (``Predict(prediction="eps", ...)``).
      score_optimizer: optax transformation of the score network and mixing logits.
      autoencoder_optimizer: optax transformation of the encoder and decoder.
      dropout: whether the score network takes a dropout key when training.
      data_key: the batch entry holding the data.
    """

    objective: lsgm.LSGMObjective
    model: LSGMModel
    parameterization: Any
    score_optimizer: optax.GradientTransformation
    autoencoder_optimizer: optax.GradientTransformation
    dropout: bool = False
    data_key: str = "x"

    @property
    def process(self) -> Any:
        return self.objective.process

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.model.latent_shape

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """``optax.multi_transform`` of the two groups (:func:`param_labels`)."""
        return optax.multi_transform({"autoencoder": self.autoencoder_optimizer,
                                      "score": self.score_optimizer}, param_labels)

    def _network(self, score_params: PyTree, *, train: bool, key: PRNGKey | None):
        def apply(params, z, noise, **kwargs):
            rngs = {"dropout": key} if key is not None else None
            return self.model.score.apply(params, z, noise, train=train, rngs=rngs, **kwargs)

        return lambda z, t: self.parameterization.network_output(
            apply, score_params, self.process, z, t)

    def eps_fn(self, params: PyTree, *, train: bool = False, key: PRNGKey | None = None):
        """The mixed score's ``eps_hat(z, t)`` of ``params``."""
        net = self._network(params["score"], train=train, key=key)
        return lambda z, t: lsgm.mixed_eps(self.process, z, t, net(z, t),
                                           params["mixing_logits"])

    def denoiser(self, params: PyTree, **cond: Any) -> Any:
        """``D(z, t)`` on the latents (inference mode), for any diffax solver."""
        if cond:
            raise ValueError(f"LSGMTrainer.denoiser: conditioning {sorted(cond)} is not "
                             f"supported (unconditional LSGM).")
        net = self._network(params["score"], train=False, key=None)
        return lsgm.mixed_denoiser(self.process, net, params["mixing_logits"])

    def decode(self, params: PyTree, z: Array) -> Array:
        """Latents ``[B, *latent_shape]`` -> data (the decoder's mean)."""
        return self.model.autoencoder.apply(params["autoencoder"], z, method="decode")

    def latent(self, params: PyTree) -> Latent:
        """The trained model as a :class:`diffax.Latent` (its autoencoder, the latent
        process, scale 1: LSGM's latents are not rescaled), for
        :func:`diffax.latent.latent_log_likelihood` with :meth:`denoiser`."""
        ae = FrozenAutoencoder(module=self.model.autoencoder, params=params["autoencoder"])
        return Latent(autoencoder=ae, process=self.process, scale_factor=1.0)

    def posterior(self, params: PyTree, x: Array) -> DiagonalGaussian:
        mean, logvar = self.model.autoencoder.apply(params["autoencoder"], x,
                                                    method="posterior")
        return DiagonalGaussian(mean=mean, logvar=logvar)

    def loss_fn(self, params: PyTree, key: PRNGKey, batch: Any) -> tuple[Array, dict]:
        """The batch mean of the negative ELBO in nats per data dimension, and ``aux`` (with
        ``objective.score_weighting``: the negative ELBO plus the score model's own term, see
        :class:`diffax.lsgm.LSGMObjective`)."""
        x = batch[self.data_key] if isinstance(batch, Mapping) else batch
        x = jnp.asarray(x)
        k_obj, k_drop = jax.random.split(key)
        eps_fn = self.eps_fn(params, train=True, key=k_drop if self.dropout else None)
        extra = {}
        if self.objective.score_weighting is not None:  # the paper's separate objectives
            extra["encoder_eps_fn"] = self.eps_fn(jax.lax.stop_gradient(params), train=True,
                                                  key=k_drop if self.dropout else None)
        nelbo, aux = self.objective(k_obj, x, posterior=self.posterior(params, x),
                                    decode=lambda z: self.decode(params, z), eps_fn=eps_fn,
                                    **extra)
        return jnp.mean(nelbo) / math.prod(x.shape[1:]), aux

    def train_step(self, *, n_steps: int = 1, ema_warmup: bool = False,
                   learning_rate: optax.ScalarOrSchedule | None = None) -> TrainStep:
        """``train_step(state, batch) -> (state, metrics)``:
        :func:`diffax.train.make_train_step` of :meth:`loss_fn` and :attr:`optimizer`."""
        return make_train_step(self.loss_fn, self.optimizer, learning_rate=learning_rate,
                               n_steps=n_steps, ema_warmup=ema_warmup)


def lsgm_likelihood(trained: Any, workdir: str) -> dict[str, Any]:
    """``diffax likelihood`` of an LSGM run: a bound on ``-log2 P(x) / N`` of the model
    ``p(z_0) P(x | z_0)`` in bits/dim of the 8-bit data; writes ``eval/likelihood.json``.

    One draw ``z_0 ~ q(z_0 | x)`` of the trained encoder per held-out example, and

        -log2 P(x) / N <= -(log P(x | z_0) + log p(z_0) - log q(z_0 | x)) / (N ln 2)

    in expectation (Jensen), with ``log p(z_0)`` the latent NLL of the mixed score's
    probability-flow ODE (:func:`diffax.log_likelihood`) and ``P(x | z_0)`` the trained
    Gaussian decoder (``lsgm.decoder_std``, the std it was trained with) discretised to the
    256 values of each pixel (:class:`diffax.latent.DiscretizedGaussianDecoder`, a probability,
    so no dequantisation). The same path as LDM stage 2
    (:func:`diffax.latent.latent_log_likelihood` through
    :func:`diffax.train.latent.latent_bound_report`) with :meth:`LSGMTrainer.latent`.
    """
    from diffax.latent import DiscretizedGaussianDecoder
    from diffax.train.latent import latent_bound_report

    trainer = trained.exp.trainer
    lo, hi = trained.options.data.value_range
    std = float(trainer.objective.reconstruction.std)
    decoder = DiscretizedGaussianDecoder(std=std, data_range=(lo, hi))
    info = {"kind": "discretized Gaussian on the 8-bit values", "std": std,
            "std_from": "config.lsgm.decoder_std (the trained decoder's own)"}
    return latent_bound_report(trained, workdir, latent_of=trainer.latent, decoder=decoder,
                               sample_posterior=True, has_posterior=True, decoder_info=info)
