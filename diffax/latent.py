"""Latent diffusion: autoencoder losses, latent scaling, and diffusion on scaled latents.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models") runs any diffusion process on the latents of a frozen autoencoder:
``z = scale_factor * E(x)`` (``E`` the encoder, its posterior mean or a sample for a KL
autoencoder, the quantised code for a VQ one), the process, loss and solver act on ``z``
exactly as they act on pixels, and a sample goes back to data space as ``D(z / scale_factor)``.
``scale_factor = 1 / std(E(x))`` over the training set (LDM's 0.18215 is this number for
Stable Diffusion's VAE) makes the latents' variance 1, the variance the processes assume.

Pieces (pure functions and pytree dataclasses; the Flax networks are
:mod:`diffax.models.autoencoder`):

* :class:`DiagonalGaussian`: the KL autoencoder's posterior ``q(z | x)`` (``kl``, ``sample``);
* :func:`quantize`, :func:`vq_ema_update`, :func:`codebook_usage`: vector quantisation
  (van den Oord et al. 2017, "Neural Discrete Representation Learning");
* :class:`AutoencoderKLLoss`, :class:`AutoencoderVQLoss`: the stage-1 losses;
* :func:`measure_scale_factor`: ``1 / std`` of the latents of a dataset;
* :class:`FrozenAutoencoder` (a trained autoencoder and its parameters),
  :class:`IdentityAutoencoder` (``E = D = identity``, for tests), :class:`Latent` (the
  composition: ``encode``, ``decode``, ``sample``, ``loss``) and :class:`LatentLoss` (any
  denoising loss on the scaled latents of a batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.processes import Process
from diffax.typing import Array, PRNGKey, PyTree

__all__ = [
    "AutoencoderKLLoss",
    "AutoencoderVQLoss",
    "CodebookEMA",
    "DiagonalGaussian",
    "DiscretizedGaussianDecoder",
    "FrozenAutoencoder",
    "GaussianDecoder",
    "IdentityAutoencoder",
    "Latent",
    "LatentLikelihood",
    "LatentLoss",
    "LatentSampleResult",
    "VQEMAState",
    "codebook_metrics",
    "codebook_usage",
    "gaussian_nll",
    "latent_log_likelihood",
    "measure_scale_factor",
    "quantize",
    "vq_ema_update",
]

_ENCODER_STREAM = 0x1A7E47  # fold_in tag: the encoder's posterior draw inside LatentLoss


# --------------------------------------------------------------------------------------------
# The KL autoencoder's posterior


@pytree_dataclass
class DiagonalGaussian:
    """``N(mean, diag(exp(logvar)))`` over the non-batch axes of ``mean`` ``[B, ...]``.

    ``logvar`` is clipped to ``[-30, 20]`` where it is used (LDM's guard against overflow).

    Example:
      >>> import jax.numpy as jnp
      >>> q = DiagonalGaussian(mean=jnp.zeros((2, 3)), logvar=jnp.zeros((2, 3)))
      >>> q.kl().tolist()  # against N(0, I)
      [0.0, 0.0]
    """

    mean: Array
    logvar: Array

    @property
    def _logvar(self) -> Array:
        return jnp.clip(self.logvar, -30.0, 20.0)

    @property
    def std(self) -> Array:
        return jnp.exp(0.5 * self._logvar)

    def sample(self, key: PRNGKey) -> Array:
        """``mean + std * eps`` (reparameterised)."""
        return self.mean + self.std * jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def mode(self) -> Array:
        return self.mean

    def kl(self, other: DiagonalGaussian | None = None) -> Array:
        """``KL(self || other)`` per example ``[B]``, summed over the other axes; ``other``
        ``None`` is ``N(0, I)``: ``0.5 sum(mean^2 + var - 1 - logvar)``.

        In general ``sum(log s2/s1 + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2)``.
        """
        lv1 = self._logvar
        if other is None:
            per = 0.5 * (jnp.square(self.mean) + jnp.exp(lv1) - 1.0 - lv1)
        else:
            lv2 = other._logvar
            per = 0.5 * (lv2 - lv1 + (jnp.exp(lv1) + jnp.square(self.mean - other.mean))
                         / jnp.exp(lv2) - 1.0)
        return jnp.sum(per.reshape(per.shape[0], -1), axis=-1)

    def log_prob(self, z: Array) -> Array:
        """``log q(z)`` per example ``[B]``."""
        lv = self._logvar
        per = -0.5 * (math.log(2 * math.pi) + lv + jnp.square(z - self.mean) / jnp.exp(lv))
        return jnp.sum(per.reshape(per.shape[0], -1), axis=-1)


# --------------------------------------------------------------------------------------------
# Vector quantisation


def quantize(z: Array, codebook: Array) -> tuple[Array, Array]:
    """Nearest codeword of each vector: ``(z_q, indices)``.

    Args:
      z: ``[..., D]`` encoder outputs (the last axis is the code dimension).
      codebook: ``[K, D]``.

    Returns:
      ``z_q`` ``[..., D]`` (``codebook[indices]``, no straight-through here) and ``indices``
      ``[...]`` int32 (ties go to the lower index).

    Example:
      >>> import jax.numpy as jnp
      >>> cb = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> zq, idx = quantize(jnp.array([[0.2, 0.1], [0.9, 2.0]]), cb)
      >>> idx.tolist(), zq.tolist()
      ([0, 1], [[0.0, 0.0], [1.0, 1.0]])
    """
    z = jnp.asarray(z)
    codebook = jnp.asarray(codebook)
    if codebook.ndim != 2 or z.shape[-1:] != codebook.shape[1:]:
        raise ValueError(f"quantize: `codebook` must be [K, D] with D = z.shape[-1] = "
                         f"{z.shape[-1:]}, got {codebook.shape}.")
    flat = z.reshape(-1, z.shape[-1])
    d = (jnp.sum(jnp.square(flat), axis=1, keepdims=True) - 2.0 * flat @ codebook.T
         + jnp.sum(jnp.square(codebook), axis=1)[None, :])
    idx = jnp.argmin(d, axis=1).astype(jnp.int32)
    return codebook[idx].reshape(z.shape), idx.reshape(z.shape[:-1])


@pytree_dataclass
class VQEMAState:
    """Running statistics of EMA codebook updates: ``counts`` ``[K]``, ``sums`` ``[K, D]``."""

    counts: Array
    sums: Array

    @classmethod
    def create(cls, codebook: Array) -> VQEMAState:
        """Statistics whose codebook is ``codebook`` (one count per codeword)."""
        codebook = jnp.asarray(codebook)
        return cls(counts=jnp.ones(codebook.shape[:1], codebook.dtype), sums=codebook)


def vq_ema_update(state: VQEMAState, z: Array, indices: Array, *, decay: float = 0.99,
                  eps: float = 1e-5) -> tuple[VQEMAState, Array]:
    """One EMA codebook update (van den Oord et al. 2017, appendix A.1).

    ``N_k <- decay N_k + (1 - decay) n_k`` and ``m_k <- decay m_k + (1 - decay) sum_{i: k}
    z_i`` with ``n_k`` the vectors assigned to codeword ``k``; the codebook is
    ``m_k / N'_k`` with Laplace-smoothed counts ``N'_k = (N_k + eps) / (N + K eps) N``
    (``N = sum N_k``), so an unused codeword does not divide by zero. With ``decay = 0`` and
    ``eps -> 0`` this is one k-means step: each used codeword becomes the mean of its vectors.

    Returns:
      ``(new_state, codebook [K, D])``.

    Example:
      >>> import jax.numpy as jnp
      >>> s = VQEMAState.create(jnp.zeros((2, 1)))
      >>> _, cb = vq_ema_update(s, jnp.array([[1.0], [3.0], [5.0]]), jnp.array([0, 0, 1]),
      ...                       decay=0.0, eps=0.0)
      >>> cb[:, 0].tolist()
      [2.0, 5.0]
    """
    z = jnp.asarray(z)
    flat = z.reshape(-1, z.shape[-1])
    k = state.counts.shape[0]
    onehot = jax.nn.one_hot(jnp.asarray(indices).reshape(-1), k, dtype=flat.dtype)
    counts = decay * state.counts + (1.0 - decay) * jnp.sum(onehot, axis=0)
    sums = decay * state.sums + (1.0 - decay) * (onehot.T @ flat)
    total = jnp.sum(counts)
    smoothed = (counts + eps) / (total + k * eps) * total
    return VQEMAState(counts=counts, sums=sums), sums / smoothed[:, None]


def codebook_usage(indices: Array, codebook_size: int) -> dict[str, Array]:
    """Codebook usage of a batch of codes: ``fraction_used`` (codewords used at least once,
    over ``codebook_size``) and ``perplexity`` (``exp`` of the entropy of the code
    frequencies: ``codebook_size`` for uniform use, 1 for a collapsed codebook).

    Example:
      >>> import jax.numpy as jnp
      >>> u = codebook_usage(jnp.array([0, 1, 2, 3]), 8)
      >>> float(u["fraction_used"]), round(float(u["perplexity"]), 4)
      (0.5, 4.0)
    """
    counts = jnp.bincount(jnp.asarray(indices).reshape(-1), length=int(codebook_size))
    p = counts / jnp.maximum(jnp.sum(counts), 1)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return {"fraction_used": jnp.mean(counts > 0), "perplexity": jnp.exp(entropy)}


# --------------------------------------------------------------------------------------------
# Stage-1 losses


def _reconstruction(x: Array, recon: Array, power: int) -> Array:
    err = jnp.abs(recon.astype(x.dtype) - x).reshape(x.shape[0], -1)
    return jnp.mean(err if power == 1 else jnp.square(err), axis=-1)


def _data(batch: Any, data_key: str, owner: str) -> Array:
    if isinstance(batch, Mapping):
        if data_key not in batch:
            raise ValueError(f"{owner}: the batch has no {data_key!r} entry (`data_key`); it "
                             f"has {sorted(batch)}.")
        batch = batch[data_key]
    x = jnp.asarray(batch)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{owner}: the data must be floating point, got {x.dtype}.")
    return x


def _check_power(owner: str, power: Any) -> int:
    if power not in (1, 2) or isinstance(power, bool):
        raise ValueError(f"{owner}: `reconstruction_power` must be 1 (L1) or 2 (L2), got "
                         f"{power!r}.")
    return int(power)


def _check_nonnegative(owner: str, **values: Any) -> None:
    for name, value in values.items():
        v = concrete_value(value)
        if v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) < 0):
            raise ValueError(f"{owner}: `{name}` must be a finite number >= 0, got {value!r}.")


class _Bindable:
    def bind(self, apply_fn: Callable[..., Any]) -> Callable[..., Any]:
        """The pure ``loss_fn(params, key, batch) -> (loss, aux)`` of a network."""

        def loss_fn(params, key, batch):
            return self(apply_fn, params, key, batch)

        return loss_fn


class _InnerLoss(_Bindable):
    """A loss around a denoising loss ``self.inner``: its parameterization, process and
    denoiser are the inner loss's (the network denoises what ``inner`` sees)."""

    @property
    def parameterization(self) -> Any:
        return self.inner.parameterization

    @property
    def process(self) -> Process:
        return self.inner.process

    def denoiser(self, apply_fn: Callable[..., Any], params: PyTree, **cond: Any) -> Any:
        return self.inner.denoiser(apply_fn, params, **cond)


@pytree_dataclass
class AutoencoderKLLoss(_Bindable):
    """LDM's KL-regularised autoencoder loss (the optional patch discriminator is
    :class:`diffax.patchgan.PatchGANLoss` around this loss or :class:`AutoencoderVQLoss`).

    Per example: ``mean_pixels |x - x_hat|^p + kl_weight * KL(q(z|x) || N(0, I)) / num_pixels``
    with ``x_hat`` decoded from a posterior sample; the loss is the batch mean. Both terms are
    per data dimension, so ``kl_weight`` is LDM's weight for its summed reconstruction
    (1e-6 in LDM's ``kl-f*`` configs).

    Args:
      kl_weight: weight of the KL term (a leaf: changing it does not recompile).
      reconstruction_power: 1 (L1, LDM's choice) or 2 (L2).
      data_key: the batch entry holding the data when the batch is a mapping.

    ``apply_fn(params, x, *, key)`` must return ``{"recon", "mean", "logvar"}``
    (:class:`diffax.models.AutoencoderKL`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> fn = lambda p, x, key: {"recon": x, "mean": 0 * x, "logvar": 0 * x}
      >>> loss, aux = AutoencoderKLLoss().bind(fn)(None, jax.random.key(0), jnp.ones((2, 3)))
      >>> float(loss), sorted(aux)
      (0.0, ['kl', 'reconstruction'])
    """

    kl_weight: Any = 1e-6
    reconstruction_power: int = static_field(default=1)
    data_key: str = static_field(default="x")

    def __post_init__(self):
        object.__setattr__(self, "reconstruction_power",
                           _check_power("AutoencoderKLLoss", self.reconstruction_power))
        _check_nonnegative("AutoencoderKLLoss", kl_weight=self.kl_weight)

    def __call__(self, apply_fn: Callable[..., Any], params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, dict[str, Array]]:
        x = _data(batch, self.data_key, "AutoencoderKLLoss")
        out = apply_fn(params, x, key=key)
        rec = _reconstruction(x, out["recon"], self.reconstruction_power)
        kl = DiagonalGaussian(mean=out["mean"], logvar=out["logvar"]).kl()
        kl = kl / (x.size // x.shape[0])
        return jnp.mean(rec + self.kl_weight * kl), {"reconstruction": rec, "kl": kl}


@pytree_dataclass
class CodebookEMA:
    """EMA codebook updates (van den Oord et al. 2017, appendix A.1) as a training option.

    The statistics live next to the parameters, in the ``vq_ema`` collection of an
    :class:`diffax.models.AutoencoderVQ` built with ``codebook_ema=True`` (``counts`` ``[K]``,
    ``sums`` ``[K, D]``), so they are checkpointed with them. After each optimizer update,
    :meth:`update` runs :func:`vq_ema_update` on the batch's encoder outputs and code
    indices (the loss's ``aux``) and writes the new codebook into ``params["codebook"]``:
    the codebook then gets no gradient (:class:`AutoencoderVQLoss` drops its codebook term).

    Args:
      decay: the EMA decay (0.99 in the paper; a leaf).
      eps: Laplace smoothing of the counts (a leaf).

    Example:
      >>> import jax.numpy as jnp
      >>> v = {"params": {"codebook": jnp.zeros((2, 1))},
      ...      "vq_ema": {"counts": jnp.ones(2), "sums": jnp.zeros((2, 1))}}
      >>> aux = {"z_e": jnp.array([[1.0], [3.0]]), "indices": jnp.array([0, 0])}
      >>> new, m = CodebookEMA(decay=0.0).update(v, aux)  # codeword 0: the mean of 1 and 3
      >>> new["params"]["codebook"][:, 0].round(3).tolist(), float(m["codebook_fraction_used"])
      ([2.0, 0.0], 0.5)
    """

    decay: Any = 0.99
    eps: Any = 1e-5

    def __post_init__(self):
        _check_nonnegative("CodebookEMA", eps=self.eps)
        v = concrete_value(self.decay)
        if v is not None and (v.ndim != 0 or not 0.0 <= float(v) < 1.0):
            raise ValueError(f"CodebookEMA: `decay` must lie in [0, 1), got {self.decay!r}.")

    def update(self, variables: PyTree, aux: Mapping[str, Array]
               ) -> tuple[PyTree, dict[str, Array]]:
        """``(variables with the new codebook and statistics, usage metrics)``.

        Raises:
          ValueError: ``variables`` without a ``vq_ema`` collection (naming
            ``codebook_ema``), or ``aux`` without ``z_e`` / ``indices``.
        """
        if "vq_ema" not in variables:
            raise ValueError("CodebookEMA: the autoencoder's variables have no `vq_ema` "
                             "collection; build AutoencoderVQ with `codebook_ema=True`.")
        for name in ("z_e", "indices"):
            if name not in aux:
                raise ValueError(f"CodebookEMA: the loss's aux has no {name!r} "
                                 f"(AutoencoderVQLoss with `ema` set returns it).")
        stats = variables["vq_ema"]
        state = VQEMAState(counts=stats["counts"], sums=stats["sums"])
        z_e = jax.lax.stop_gradient(aux["z_e"]).astype(state.sums.dtype)
        state, codebook = vq_ema_update(state, z_e, aux["indices"], decay=self.decay,
                                        eps=self.eps)
        new = dict(variables)
        new["params"] = dict(variables["params"], codebook=codebook)
        new["vq_ema"] = dict(stats, counts=state.counts, sums=state.sums)
        return new, codebook_metrics(aux["indices"], codebook.shape[0])


def codebook_metrics(indices: Array, codebook_size: int) -> dict[str, Array]:
    """:func:`codebook_usage` of a batch's codes as training metrics
    (``codebook_fraction_used``, ``codebook_perplexity``)."""
    usage = codebook_usage(indices, codebook_size)
    return {"codebook_fraction_used": usage["fraction_used"].astype(jnp.float32),
            "codebook_perplexity": usage["perplexity"].astype(jnp.float32)}


@pytree_dataclass
class AutoencoderVQLoss(_Bindable):
    """VQ-VAE's loss (van den Oord et al. 2017, eq. 3), per data / code dimension:

    ``mean |x - x_hat|^p + codebook_weight * mean ||sg(z_e) - z_q||^2
    + commitment * mean ||z_e - sg(z_q)||^2`` with ``x_hat`` decoded from the
    straight-through code ``z_e + sg(z_q - z_e)``; batch mean. With EMA codebook updates
    (:func:`vq_ema_update`) ``codebook_weight`` is 0.

    Args:
      commitment: beta, the commitment weight (0.25 in the paper).
      codebook_weight: weight of the codebook term.
      reconstruction_power: 1 (L1) or 2 (L2).
      data_key: the batch entry holding the data.
      ema: a :class:`CodebookEMA` (``None``: the codebook is trained by its gradient): the
        codebook term is then reported but not trained (``codebook_weight`` is not used) and
        ``aux`` carries the encoder output ``z_e`` for :meth:`CodebookEMA.update`.

    ``apply_fn(params, x, *, key)`` must return ``{"recon", "z_e", "z_q", "indices"}``
    (:class:`diffax.models.AutoencoderVQ`); ``aux`` holds the terms and the codes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> fn = lambda p, x, key: {"recon": x, "z_e": x, "z_q": x, "indices": jnp.zeros(2, int)}
      >>> loss, _ = AutoencoderVQLoss().bind(fn)(None, jax.random.key(0), jnp.ones((2, 3)))
      >>> float(loss)
      0.0
    """

    commitment: Any = 0.25
    codebook_weight: Any = 1.0
    reconstruction_power: int = static_field(default=1)
    data_key: str = static_field(default="x")
    ema: CodebookEMA | None = None

    def __post_init__(self):
        object.__setattr__(self, "reconstruction_power",
                           _check_power("AutoencoderVQLoss", self.reconstruction_power))
        _check_nonnegative("AutoencoderVQLoss", commitment=self.commitment,
                           codebook_weight=self.codebook_weight)
        if self.ema is not None and not isinstance(self.ema, CodebookEMA):
            raise TypeError(f"AutoencoderVQLoss: `ema` must be a CodebookEMA or None, got "
                            f"{self.ema!r}.")

    def terms(self, z_e: Array, z_q: Array) -> tuple[Array, Array]:
        """``(codebook, commitment)`` terms per example ``[B]`` (means over code elements)."""
        sg = jax.lax.stop_gradient
        b = z_e.shape[0]
        codebook = jnp.mean(jnp.square(sg(z_e) - z_q).reshape(b, -1), axis=-1)
        commit = jnp.mean(jnp.square(z_e - sg(z_q)).reshape(b, -1), axis=-1)
        return codebook, commit

    def __call__(self, apply_fn: Callable[..., Any], params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, dict[str, Array]]:
        x = _data(batch, self.data_key, "AutoencoderVQLoss")
        out = apply_fn(params, x, key=key)
        rec = _reconstruction(x, out["recon"], self.reconstruction_power)
        codebook, commit = self.terms(out["z_e"], out["z_q"])
        aux = {"reconstruction": rec, "codebook": codebook, "commitment": commit,
               "indices": out["indices"]}
        if self.ema is not None:  # the codebook follows the EMA, not a gradient
            aux["z_e"] = jax.lax.stop_gradient(out["z_e"])
            return jnp.mean(rec + self.commitment * commit), aux
        loss = rec + self.codebook_weight * codebook + self.commitment * commit
        return jnp.mean(loss), aux


# --------------------------------------------------------------------------------------------
# Frozen autoencoders and latent scaling


def _shape_of(tree: Any) -> Any:
    return jax.tree.map(lambda a: (tuple(jnp.shape(a)), jnp.result_type(a).name), tree)


@pytree_dataclass
class FrozenAutoencoder:
    """A trained autoencoder (a :mod:`diffax.models.autoencoder` module) with its parameters.

    ``encode(x, key=None)``: the latent (KL: the posterior mean, or a sample when ``key`` is
    given; VQ: the quantised code); ``decode(z)``: back to data space. ``params`` must be
    the module's own parameters: another module's (a checkpoint of the wrong autoencoder)
    raise a ``ValueError`` naming ``params``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from diffax.models import AutoencoderKL
      >>> m = AutoencoderKL.from_variant("tiny")
      >>> ae = FrozenAutoencoder(module=m, params=m.init_params(jax.random.key(0)))
      >>> ae.latent_shape, ae.decode(ae.encode(jnp.zeros((2, 16, 16, 1)))).shape
      ((8, 8, 2), (2, 16, 16, 1))
    """

    module: Any = static_field()
    params: PyTree

    def __post_init__(self):
        for name in ("encode_latent", "decode", "init_params"):
            if not hasattr(self.module, name):
                raise TypeError(f"FrozenAutoencoder: `module` must be a diffax autoencoder "
                                f"(AutoencoderKL, AutoencoderVQ), got {type(self.module)}.")
        want = _shape_of(jax.eval_shape(self.module.init_params, jax.random.key(0)))
        got = _shape_of(self.params)
        if want != got:
            raise ValueError(f"FrozenAutoencoder: `params` are not parameters of this "
                             f"{type(self.module).__name__} (config {self.module.config}); a "
                             f"checkpoint of another autoencoder? Parameter shapes differ.")

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.module.config.input_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.module.config.latent_shape)

    def encode(self, x: Array, *, key: PRNGKey | None = None) -> Array:
        return self.module.apply(self.params, x, key=key, method="encode_latent")

    def posterior(self, x: Array) -> DiagonalGaussian | None:
        """``q(u | x)`` of a KL autoencoder (``None`` for a deterministic encoder, VQ)."""
        if not hasattr(self.module, "posterior"):
            return None
        mean, logvar = self.module.apply(self.params, x, method="posterior")
        return DiagonalGaussian(mean=mean, logvar=logvar)

    def decode(self, z: Array) -> Array:
        return self.module.apply(self.params, z, method="decode")


@pytree_dataclass
class IdentityAutoencoder:
    """``encode = decode = identity`` on data of shape ``shape``: latent diffusion with it
    and ``scale_factor = 1`` is pixel diffusion, bit for bit (the tests' oracle).

    Example:
      >>> import jax.numpy as jnp
      >>> IdentityAutoencoder(shape=(2,)).encode(jnp.ones((3, 2))).shape
      (3, 2)
    """

    shape: tuple[int, ...] = static_field()

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)

    def encode(self, x: Array, *, key: PRNGKey | None = None) -> Array:
        del key
        return x

    def decode(self, z: Array) -> Array:
        return z


def measure_scale_factor(latents: Any) -> dict[str, float]:
    """LDM's latent scale: ``scale_factor = 1 / std(z)`` over every element of ``latents``.

    Args:
      latents: ``[N, ...]`` latents of the training set (an array, or a list of batches).

    Returns:
      ``{"scale_factor", "std", "mean", "num_examples", "num_elements"}``; ``std`` is the
      (centred, float64) standard deviation of all elements; ``mean`` is reported but not
      removed (LDM scales without shifting).

    Raises:
      ValueError: no latents, or a zero/non-finite std (naming ``latents``).

    Example:
      >>> import numpy as np
      >>> z = 3.0 * np.random.default_rng(0).standard_normal((1000, 4))
      >>> round(measure_scale_factor(z)["scale_factor"], 2)
      0.33
    """
    if isinstance(latents, list | tuple):
        latents = np.concatenate([np.asarray(b, np.float64) for b in latents])
    z = np.asarray(latents, np.float64)
    if z.ndim < 1 or z.shape[0] == 0 or z.size < 2:
        raise ValueError(f"measure_scale_factor: `latents` must hold at least two elements, "
                         f"got shape {z.shape}.")
    std = float(z.std())
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"measure_scale_factor: `latents` have std {std!r}; cannot scale.")
    return {"scale_factor": 1.0 / std, "std": std, "mean": float(z.mean()),
            "num_examples": int(z.shape[0]), "num_elements": int(z.size)}


# --------------------------------------------------------------------------------------------
# The composition


@pytree_dataclass
class Latent:
    """Diffusion on the scaled latents of a frozen autoencoder.

    ``encode(x) = scale_factor * autoencoder.encode(x)``, ``decode(z) =
    autoencoder.decode(z / scale_factor)``; the ``process`` (any Gaussian diffusion of
    :mod:`diffax.processes`), its losses (:meth:`loss`) and every solver (:meth:`sample`) act
    on the latents ``[B, *latent_shape]`` unchanged.

    Args:
      autoencoder: a :class:`FrozenAutoencoder` (or :class:`IdentityAutoencoder`).
      process: the diffusion process on the latents.
      scale_factor: ``1 / std`` of the training latents (:func:`measure_scale_factor`);
        required, a positive number (a leaf: changing it does not recompile).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> lat = diffax.Latent(autoencoder=IdentityAutoencoder(shape=(2,)),
      ...                     process=diffax.VP(), scale_factor=1.0)
      >>> D = lambda z, t: jnp.zeros_like(z)
      >>> res = lat.sample(jax.random.key(0), D, num_samples=4,
      ...                  solver=diffax.samplers.DDIM(), num_steps=3)
      >>> res.x.shape, res.z.shape
      ((4, 2), (4, 2))
    """

    autoencoder: Any
    process: Process
    scale_factor: Any = None

    def __post_init__(self):
        for name in ("encode", "decode", "latent_shape"):
            if not hasattr(self.autoencoder, name):
                raise TypeError(f"Latent: `autoencoder` must have encode, decode and "
                                f"latent_shape (FrozenAutoencoder), got {self.autoencoder!r}.")
        if not isinstance(self.process, Process):
            raise TypeError(f"Latent: `process` must be a diffax process, got "
                            f"{self.process!r}.")
        if self.scale_factor is None:
            raise ValueError("Latent: `scale_factor` is required (1 / std of the training "
                             "latents: diffax.latent.measure_scale_factor, or the "
                             "latent_scale.json of a stage-1 workdir).")
        v = concrete_value(self.scale_factor)
        if v is not None and (v.ndim != 0 or not np.isfinite(v) or float(v) <= 0):
            raise ValueError(f"Latent: `scale_factor` must be a positive number, got "
                             f"{self.scale_factor!r}.")

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.latent_shape)

    def _check(self, arr: Array, shape: tuple[int, ...], name: str) -> None:
        if tuple(jnp.shape(arr)[1:]) != tuple(shape):
            raise ValueError(f"Latent: `{name}` must have shape [B, {', '.join(map(str, shape))}]"
                             f", got {tuple(jnp.shape(arr))}.")

    def encode(self, x: Array, *, key: PRNGKey | None = None) -> Array:
        """Data ``[B, *data_shape]`` -> scaled latents ``[B, *latent_shape]``."""
        self._check(x, self.autoencoder.data_shape, "x")
        return self.scale_factor * self.autoencoder.encode(x, key=key)

    def decode(self, z: Array) -> Array:
        """Scaled latents ``[B, *latent_shape]`` -> data ``[B, *data_shape]``."""
        self._check(z, self.latent_shape, "z")
        return self.autoencoder.decode(z / self.scale_factor)

    def prior_sample(self, key: PRNGKey, num_samples: int) -> Array:
        """``num_samples`` draws of the process's prior on the latents."""
        return self.process.prior_sample(key, (int(num_samples), *self.latent_shape))

    def sample(self, key: PRNGKey, denoiser: Callable[..., Array], *,
               num_samples: int | None = None, z_init: Array | None = None,
               **sample_kwargs: Any) -> Any:
        """Samples latents with :func:`diffax.sample` and decodes them.

        Args:
          key: PRNG key of the solver (and of the prior draw when ``z_init`` is ``None``:
            ``key`` is then split in two, as ``diffax sample`` does).
          denoiser: ``D(z, t)`` on scaled latents.
          num_samples: prior draws (when ``z_init`` is not given).
          z_init: the latent state at ``process.t_max`` ``[B, *latent_shape]``.
          **sample_kwargs: ``solver``, ``num_steps``, ``schedule``, ... of
            :func:`diffax.sample`.

        Returns:
          A :class:`LatentSampleResult`: ``x`` (decoded to data space), ``z`` (the sampled
          latents), ``result`` (the solver's :class:`diffax.samplers.SampleResult`), ``nfe``.
        """
        from diffax import samplers

        if (num_samples is None) == (z_init is None):
            raise ValueError("Latent.sample: give exactly one of `num_samples` and `z_init`.")
        if z_init is None:
            key, k_init = jax.random.split(key)
            z_init = self.prior_sample(k_init, num_samples)
        self._check(z_init, self.latent_shape, "z_init")
        res = samplers.sample(key, self.process, denoiser, z_init, **sample_kwargs)
        return LatentSampleResult(z=res.x, x=self.decode(res.x), result=res)

    def loss(self, inner: Any, *, sample_posterior: bool = True) -> LatentLoss:
        """``inner`` (e.g. a :class:`diffax.losses.DenoisingLoss` of ``process``) on the scaled
        latents of each batch (see :class:`LatentLoss`)."""
        return LatentLoss(latent=self, inner=inner, sample_posterior=sample_posterior)


@pytree_dataclass
class LatentSampleResult:
    """Decoded samples ``x``, their latents ``z`` and the solver's :class:`SampleResult`."""

    x: Array
    z: Array
    result: Any

    @property
    def nfe(self) -> Array:
        return self.result.nfe


@pytree_dataclass
class LatentLoss(_InnerLoss):
    """A denoising loss on frozen, scaled latents: the batch's data entry ``x`` is replaced
    by ``latent.encode(x)`` (a posterior sample, drawn from its own stream of the loss key,
    when ``sample_posterior``), then ``inner`` runs with the unchanged key. So with an
    :class:`IdentityAutoencoder` and ``scale_factor = 1`` the loss equals ``inner`` bit for
    bit. The encoder is frozen (``stop_gradient``).

    ``parameterization`` and ``denoiser`` are the inner loss's (a trained network's denoiser
    acts on latents).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> lat = diffax.Latent(autoencoder=IdentityAutoencoder(shape=(2,)),
      ...                     process=diffax.VP(), scale_factor=1.0)
      >>> inner = diffax.losses.DenoisingLoss(process=diffax.VP())
      >>> f = lambda p, x, t: p * x
      >>> a = lat.loss(inner).bind(f)(1.0, jax.random.key(0), jnp.ones((4, 2)))[0]
      >>> b = inner.bind(f)(1.0, jax.random.key(0), jnp.ones((4, 2)))[0]
      >>> bool(a == b)
      True
    """

    latent: Latent
    inner: Any
    sample_posterior: bool = static_field(default=True)

    def encode_batch(self, key: PRNGKey, batch: Any) -> Any:
        """The batch with its data entry replaced by scaled latents."""
        data_key = getattr(self.inner, "data_key", "x")
        k_enc = jax.random.fold_in(key, _ENCODER_STREAM) if self.sample_posterior else None
        if isinstance(batch, Mapping):
            z = self.latent.encode(jnp.asarray(batch[data_key]), key=k_enc)
            return dict(batch, **{data_key: jax.lax.stop_gradient(z)})
        return jax.lax.stop_gradient(self.latent.encode(jnp.asarray(batch), key=k_enc))

    def __call__(self, apply_fn: Callable[..., Any], params: PyTree, key: PRNGKey, batch: Any
                 ) -> tuple[Array, Any]:
        return self.inner(apply_fn, params, key, self.encode_batch(key, batch))


# --------------------------------------------------------------------------------------------
# Likelihood of latent diffusion: the latent NLL plus the decoder term


@pytree_dataclass
class GaussianDecoder:
    """The decoder as a density on continuous data: ``p(x | u) = N(x; decode(u), std^2 I)``.

    Example:
      >>> import jax.numpy as jnp, math
      >>> lp = GaussianDecoder(std=1.0).log_prob(jnp.zeros((1, 2)), jnp.zeros((1, 2)))
      >>> round(float(lp[0]), 6) == round(-math.log(2 * math.pi), 6)
      True
    """

    std: Any

    def __post_init__(self):
        _check_positive("GaussianDecoder", std=self.std)

    def log_prob(self, x: Array, mean: Array) -> Array:
        """``log N(x; mean, std^2 I)`` per example ``[B]`` (nats)."""
        return -gaussian_nll(x, mean, self.std)


def gaussian_nll(x: Array, mean: Array, std: Any) -> Array:
    """``-log N(x; mean, std^2 I)`` per example ``[B]``, summed over the data's axes:
    ``||x - mean||^2 / (2 std^2) + D (log std + log(2 pi) / 2)`` (the one implementation
    behind :class:`GaussianDecoder` and :class:`diffax.lsgm.GaussianReconstruction`).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(gaussian_nll(jnp.zeros((1, 2)), jnp.ones((1, 2)), 1.0)[0]), 6)
      2.837877
    """
    x = jnp.asarray(x)
    std = jnp.asarray(std, x.dtype)
    dim = math.prod(x.shape[1:])
    sq = jnp.square(jnp.asarray(mean, x.dtype) - x)
    sq = jnp.sum(sq.reshape(sq.shape[0], -1), axis=-1)
    return 0.5 * sq / jnp.square(std) + dim * (jnp.log(std) + 0.5 * math.log(2 * math.pi))


@pytree_dataclass
class DiscretizedGaussianDecoder:
    """The decoder as a probability of 8-bit data (DDPM's discretised decoder):
    ``P(k | u) = prod_i [Phi((x_i + d/2 - m_i) / std) - Phi((x_i - d/2 - m_i) / std)]`` with
    ``x = lo + (hi - lo) k / 255`` (the value ``k`` in the model's range), ``d = (hi - lo) /
    255`` the bin width, ``m = decode(u)``, and the end bins extended to ``-inf`` / ``+inf``
    (so the 256 probabilities of a pixel sum to 1).

    Args:
      std: the decoder's standard deviation, in the model's range.
      data_range: ``(lo, hi)``, the model's range of the 8-bit values.

    Example:
      >>> import jax.numpy as jnp
      >>> dec = DiscretizedGaussianDecoder(std=0.05)
      >>> k = jnp.arange(256.0).reshape(256, 1)  # every value of one pixel
      >>> p = jnp.exp(dec.log_prob(k, jnp.full((256, 1), 0.3)))
      >>> round(float(p.sum()), 6)
      1.0
    """

    std: Any
    data_range: tuple[float, float] = static_field(default=(-1.0, 1.0))

    def __post_init__(self):
        _check_positive("DiscretizedGaussianDecoder", std=self.std)
        lo, hi = (float(v) for v in self.data_range)
        if not hi > lo:
            raise ValueError(f"DiscretizedGaussianDecoder: `data_range` must be (lo, hi) with "
                             f"lo < hi, got {self.data_range!r}.")
        object.__setattr__(self, "data_range", (lo, hi))

    def log_prob(self, k: Array, mean: Array) -> Array:
        """``log P(k | mean)`` per example ``[B]`` (nats); ``k`` the 8-bit values (0..255,
        any dtype), ``mean`` the decoder's output in the model's range."""
        from diffax.likelihood import _log_normal_mass

        lo, hi = self.data_range
        k = jnp.round(jnp.asarray(k, mean.dtype))
        half = 0.5 * (hi - lo) / 255.0
        x = lo + (hi - lo) * k / 255.0
        std = jnp.asarray(self.std, mean.dtype)
        a = jnp.where(k <= 0, -jnp.inf, (x - half - mean) / std)
        b = jnp.where(k >= 255, jnp.inf, (x + half - mean) / std)
        per = _log_normal_mass(a, b)
        return jnp.sum(per.reshape(k.shape[0], -1), axis=-1)


def _check_positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        v = concrete_value(value)
        if value is None or (v is not None and (v.ndim != 0 or not np.isfinite(v)
                                                or float(v) <= 0)):
            raise ValueError(f"{owner}: `{name}` must be a positive number, got {value!r}.")


@pytree_dataclass
class LatentLikelihood:
    """The terms of :func:`latent_log_likelihood`, per example ``[B]`` (nats).

    ``logp = decoder_logp + latent_logp + log_det_scale - posterior_logq`` is the bound
    (see :func:`latent_log_likelihood`); ``nfe`` is the latent ODE solve's.
    """

    logp: Array
    latent_logp: Array
    log_det_scale: Array
    decoder_logp: Array
    posterior_logq: Array
    nfe: Array


def latent_log_likelihood(key: PRNGKey | None, latent: Latent, denoiser: Callable[..., Array],
                          x: Array, *, decoder: Any, sample_posterior: bool = True,
                          data: Array | None = None, **likelihood_kwargs: Any
                          ) -> LatentLikelihood:
    """A lower bound on ``log p(x)`` of latent diffusion: latent density plus decoder term.

    With ``u`` the unscaled latent of ``x`` and ``z = s u`` (``s`` the scale factor), the
    model is ``p(x) = int p(x | u) p_U(u) du`` with ``p_U(u) = p_Z(s u) s^D`` (``D`` latent
    dimensions; ``p_Z`` the diffusion model's density, :func:`diffax.log_likelihood` through
    the probability-flow ODE). For an encoder posterior ``q(u | x)`` (a KL autoencoder with
    ``sample_posterior``: ``u ~ q`` drawn from ``key``), Jensen's inequality gives the ELBO

        log p(x) >= E_q[ log p(x | u) + log p_Z(s u) + D log s - log q(u | x) ],

    and ``logp`` is its one-sample estimate (unbiased for the ELBO, so ``-logp`` is an upper
    bound on ``-log p(x)`` in expectation). The terms: ``decoder_logp = log p(x | u)``
    (``decoder``: :class:`GaussianDecoder`, a density of continuous ``x``, or
    :class:`DiscretizedGaussianDecoder`, a probability of 8-bit ``data``), ``latent_logp =
    log p_Z(s u)``, ``log_det_scale = D log s`` (the scaling's change of variables: a scale
    ``s`` lowers ``latent_logp`` by exactly ``D log s`` and this term gives it back),
    ``posterior_logq = log q(u | x)``.

    A deterministic encoder (a VQ code, the posterior mean with ``sample_posterior=False``, an
    :class:`IdentityAutoencoder`) has no posterior density: ``posterior_logq`` is 0 and
    ``logp`` is ``log p(x | u) + log p_U(u)`` at ``u = E(x)``, the "rate + distortion" of the
    code, which is *not* a bound in general (it is the bound's integrand at one point).

    Args:
      key: split for the posterior draw and the ODE's Hutchinson probes (``None`` with a
        deterministic encoder and ``divergence="exact"``).
      latent: the :class:`Latent` (autoencoder, process on the scaled latents, scale).
      denoiser: ``D(z, t)`` on the scaled latents.
      x: data ``[B, *data_shape]`` in the model's range (what the encoder sees).
      decoder: a :class:`GaussianDecoder` or :class:`DiscretizedGaussianDecoder`.
      sample_posterior: draw ``u ~ q(u | x)`` when the autoencoder has a posterior.
      data: the 8-bit values of ``x`` for a :class:`DiscretizedGaussianDecoder` (default:
        ``x`` itself for a :class:`GaussianDecoder`).
      **likelihood_kwargs: ``divergence``, ``rtol``, ``atol``, ... of
        :func:`diffax.log_likelihood`.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> p = diffax.VP()
      >>> lat = diffax.Latent(autoencoder=IdentityAutoencoder(shape=(2,)), process=p,
      ...                     scale_factor=1.0)
      >>> D = diffax.testing.GaussianMixture(means=jnp.zeros((1, 2)), stds=jnp.ones(1),
      ...                                    weights=jnp.ones(1)).denoiser(p)
      >>> r = latent_log_likelihood(None, lat, D, jnp.zeros((1, 2)),
      ...                           decoder=GaussianDecoder(std=1.0))
      >>> bool(jnp.allclose(r.logp, r.latent_logp + r.decoder_logp))
      True
    """
    from diffax.likelihood import log_likelihood

    if not isinstance(decoder, GaussianDecoder | DiscretizedGaussianDecoder):
        raise TypeError(f"latent_log_likelihood: `decoder` must be a GaussianDecoder or a "
                        f"DiscretizedGaussianDecoder, got {decoder!r}.")
    if isinstance(decoder, DiscretizedGaussianDecoder) and data is None:
        raise ValueError("latent_log_likelihood: a DiscretizedGaussianDecoder needs `data`, "
                         "the 8-bit values of `x`.")
    x = jnp.asarray(x)
    latent._check(x, latent.autoencoder.data_shape, "x")
    k_enc, k_ll = (None, None) if key is None else jax.random.split(key)
    posterior = getattr(latent.autoencoder, "posterior", None)
    q = posterior(x) if posterior is not None and sample_posterior else None
    if q is not None:
        if k_enc is None:
            raise ValueError("latent_log_likelihood: `key` is required to draw from the "
                             "encoder's posterior (or pass sample_posterior=False).")
        u = q.sample(k_enc)
        logq = q.log_prob(u)
    else:
        u = latent.autoencoder.encode(x)
        logq = jnp.zeros(x.shape[:1], x.dtype)
    scale = jnp.asarray(latent.scale_factor, u.dtype)
    res = log_likelihood(k_ll, latent.process, denoiser, scale * u, **likelihood_kwargs)
    dims = math.prod(latent.latent_shape)
    log_det = jnp.broadcast_to(dims * jnp.log(scale), res.logp.shape).astype(res.logp.dtype)
    mean = latent.autoencoder.decode(u)
    dec = decoder.log_prob(x if data is None else data, mean.astype(x.dtype))
    return LatentLikelihood(logp=dec + res.logp + log_det - logq, latent_logp=res.logp,
                            log_det_scale=log_det, decoder_logp=dec, posterior_logq=logq,
                            nfe=res.nfe)
