"""Shared problems for the sampler tests: processes, Gaussian-mixture oracles, distances."""

import jax
import jax.numpy as jnp
import numpy as np

import diffax
from diffax import samplers, schedules
from diffax.testing import GaussianMixture

PROCESSES = {
    "VP": lambda: diffax.VP(),
    "SubVP": lambda: diffax.SubVP(),
    "VE": lambda: diffax.VE(),
    "EDM": lambda: diffax.EDM(),
    "RectifiedFlow": lambda: diffax.RectifiedFlow(),  # alpha(t_max) = 0
    "DiscreteVP": lambda: diffax.DiscreteVP.linear(num_steps=1000),
}


def natural_schedule(pname):
    """A grid on which first-order samplers are reasonable for the process: EDM's Karras grid
    for the EDM process (uniform in sigma from 80 wastes the steps), uniform time otherwise."""
    return schedules.Karras(rho=7.0) if pname == "EDM" else schedules.TimeUniform()


def single_gaussian(dtype=None):
    return GaussianMixture(means=jnp.array([[1.0, -0.5]], dtype),
                           stds=jnp.array([[0.4, 1.3]], dtype), weights=jnp.array([1.0], dtype))


def mixture_2d(dtype=None):
    return GaussianMixture(means=jnp.array([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], dtype),
                           stds=jnp.array([0.3, 0.6, 0.4], dtype),
                           weights=jnp.array([0.3, 0.5, 0.2], dtype))


def mixture_64d(dtype=None):
    means = 0.5 * np.random.default_rng(0).standard_normal((4, 64))
    return GaussianMixture(means=jnp.asarray(means, dtype),
                           stds=jnp.array([0.3, 0.5, 0.7, 0.9], dtype),
                           weights=jnp.array([0.1, 0.2, 0.3, 0.4], dtype))


def padded_grids(process, schedule, ns):
    """Grids for several step counts, stacked ``[len(ns), max(ns) + 1]``: each grid is padded
    at the end with copies of ``t_min``. A zero-length step leaves every solver's state exactly
    unchanged (``sigma_s / sigma_t = 1``, ``alpha_s - alpha_t = 0``), so one compiled
    ``jax.vmap`` over the grids gives the results of all step counts."""
    m = max(ns)
    rows = []
    for n in ns:
        ts = np.asarray(schedule(process, n))
        rows.append(np.concatenate([ts, np.full(m - n, ts[-1])]))
    return jnp.asarray(np.stack(rows))


def run_on_grids(solver, process, denoiser, x_init, grids, key=None, **kwargs):
    """``sample`` vmapped over stacked grids (schedule arrays are traced: no value checks)."""
    def one(ts):
        return samplers.sample(key, process, denoiser, x_init, solver=solver, schedule=ts,
                               **kwargs)
    return jax.vmap(one)(grids)


def rms(a, b):
    """Root-mean-square difference per leading index ``[..., B, D] -> [...]``."""
    return jnp.sqrt(jnp.mean(jnp.square(a - b), axis=(-2, -1)))


def sliced_wasserstein(a, b, key, num_projections=512):
    """Sliced 2-Wasserstein distance between two equal-size samples ``[N, D]``."""
    d = a.shape[1]
    dirs = jax.random.normal(key, (d, num_projections), a.dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = jnp.sort(a @ dirs, axis=0), jnp.sort(b @ dirs, axis=0)
    return jnp.sqrt(jnp.mean(jnp.square(pa - pb)))
