"""Discrete (categorical) diffusion: D3PM and continuous-time masked diffusion over tokens.

Tokens are int32 ``[B, L]``; a denoiser ``D(x_t, t)`` returns the probabilities
``[B, L, K]`` of the data tokens (the posterior mean of ``onehot(x0)``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from diffax import discrete
  >>> p = discrete.D3PM.uniform(vocab_size=4, num_steps=8)
  >>> D = lambda x, t: jnp.full((*x.shape, 4), 0.25)
  >>> discrete.sample(jax.random.key(0), p, D, shape=(2, 3), num_steps=4).x.shape
  (2, 3)
"""

from diffax.discrete.denoiser import DiscreteDenoiser, as_denoiser
from diffax.discrete.likelihood import nelbo
from diffax.discrete.losses import D3PMHybridLoss, MaskedDiffusionLoss
from diffax.discrete.processes import D3PM, DiscreteProcess, Masked
from diffax.discrete.sampling import METHODS, SampleResult, sample

__all__ = [
    "D3PM",
    "D3PMHybridLoss",
    "DiscreteDenoiser",
    "DiscreteProcess",
    "METHODS",
    "Masked",
    "MaskedDiffusionLoss",
    "SampleResult",
    "as_denoiser",
    "nelbo",
    "sample",
]
