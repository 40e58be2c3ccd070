"""Shared pieces of the training tests: a tiny Flax network, a toy mixture and a data iterator.

Also imported by the subprocess workers (multi-process and kill/resume tests), so it imports
nothing from the test conftest.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import diffax
from diffax import losses
from diffax.testing import GaussianMixture
from diffax.train import TrainState, make_optimizer, make_train_step

MIXTURE = GaussianMixture(
    means=jnp.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]]),
    stds=jnp.array([0.3, 0.3, 0.3, 0.3]), weights=jnp.array([0.25, 0.25, 0.25, 0.25]))


class TinyNet(nn.Module):
    """A small residual MLP for ``[B, 2]`` data with Fourier features of its noise input."""

    width: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, x, t):
        t = jnp.asarray(t, x.dtype)
        freqs = jnp.geomspace(1e-2, 10.0, 8).astype(x.dtype)
        arg = t[:, None] * freqs[None, :]
        emb = jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)
        temb = nn.Dense(self.width)(emb)
        h = nn.Dense(self.width)(x)
        for _ in range(self.depth):
            h = h + nn.Dense(self.width)(nn.swish(h + temb))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(nn.swish(h))


def apply_fn(params, x, t):
    return TinyNet().apply(params, x, t)


def init_params(key):
    return TinyNet().init(key, jnp.zeros((1, 2)), jnp.zeros((1,)))


NAMED_LOSSES = {
    "ddpm": losses.DenoisingLoss(
        process=diffax.DiscreteVP.linear(num_steps=100, beta_end=0.2),
        time_sampler=losses.DiscreteTime(),
        parameterization=losses.Predict(prediction="eps", noise_input=losses.IndexInput())),
    "eps_vp": losses.DenoisingLoss(process=diffax.VP()),
    "x0_vp": losses.DenoisingLoss(process=diffax.VP(), weighting=losses.X0MSE(),
                                  parameterization=losses.Predict(prediction="x0")),
    "v_cosine": losses.DenoisingLoss(
        process=diffax.VP.cosine(), weighting=losses.VMSE(),
        parameterization=losses.Predict(prediction="v", noise_input=losses.LogSNRInput())),
    "score_ve": losses.DenoisingLoss(
        process=diffax.VE(sigma_max=10.0), weighting=losses.ScoreMSE(),
        parameterization=losses.Predict(prediction="eps")),
    "likelihood": losses.DenoisingLoss(
        process=diffax.VP(), weighting=losses.Likelihood(), reduce_mean=False,
        time_sampler=losses.ImportanceTime()),
    "edm": losses.DenoisingLoss(
        process=diffax.EDM(sigma_data=1.5), weighting=losses.EDMWeighting(),
        time_sampler=losses.LogNormalSigma(), parameterization=losses.EDMPrecond()),
    "flow": losses.DenoisingLoss(
        process=diffax.RectifiedFlow(), weighting=losses.FlowMatching(),
        time_sampler=losses.UniformTime(low_discrepancy=True),
        parameterization=losses.Predict(prediction="velocity")),
}


def setup(loss="eps_vp", *, learning_rate=3e-3, n_steps=1, ema_decays=(0.99,), seed=0):
    """(train_step, initial state, optimizer) for the tiny network and a named loss."""
    loss = NAMED_LOSSES[loss] if isinstance(loss, str) else loss
    optimizer, schedule = make_optimizer(learning_rate=learning_rate, warmup_steps=10)
    k_init, k_train = jax.random.split(jax.random.key(seed))
    state = TrainState.create(params=init_params(k_init), optimizer=optimizer, key=k_train,
                              ema_decays=ema_decays)
    step = make_train_step(loss.bind(apply_fn), optimizer, learning_rate=schedule,
                           n_steps=n_steps)
    return step, state, optimizer


class MixtureIterator:
    """Deterministic numpy batches of the mixture with a JSON-able ``get_state``/``set_state``:
    batch ``i`` of process ``shard`` depends only on ``(seed, i, shard)``."""

    def __init__(self, batch_size, *, seed=0, shard=0, n_steps=None):
        self.batch_size, self.seed, self.shard, self.n_steps = batch_size, seed, shard, n_steps
        self.position = 0

    def _one(self, i):
        rng = np.random.default_rng([self.seed, i, self.shard])
        means = np.asarray(MIXTURE.means)
        comp = rng.integers(0, means.shape[0], self.batch_size)
        x = means[comp] + 0.3 * rng.standard_normal((self.batch_size, 2))
        return {"x": x.astype(np.float32)}

    def __iter__(self):
        return self

    def __next__(self):
        if self.n_steps is None:
            batch = self._one(self.position)
            self.position += 1
            return batch
        batches = [self._one(self.position + j) for j in range(self.n_steps)]
        self.position += self.n_steps
        return {"x": np.stack([b["x"] for b in batches])}

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = int(state["position"])


def global_batch(i, batch_size, seed=0):
    """Batch ``i`` of a single-process run: the concatenation of the process shards' batches
    for a ``num_shards``-process run is built by the callers."""
    return MixtureIterator(batch_size, seed=seed)._one(i)


def tree_max_abs_diff(a, b):
    """Largest absolute difference between two trees (compared on the host)."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


__all__ = ["MIXTURE", "NAMED_LOSSES", "TinyNet", "MixtureIterator", "apply_fn", "init_params",
           "setup", "global_batch", "tree_max_abs_diff", "optax"]
