"""Reverse-SDE samplers: Euler-Maruyama and score_sde's predictor-corrector samplers
(Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations", Algorithms 2-3), for every process.

With ``score = (alpha_t D - x) / sigma_t^2`` (Tweedie) and the forward SDE
``dx = f x dt + g dw``, the reverse SDE is ``dx = (f x - g^2 score) dt + g dw_bar``.

* :class:`EulerMaruyama`: ``x_s = x_t + (s - t)(f x_t - g^2 score) + sqrt(t - s) g z``. The
  reverse SDE's coefficients are infinite where ``alpha = 0`` (rectified flow at ``t = 1``:
  ``f = -1/(1 - t)``); a step starting there is taken as the exact posterior (ancestral) step,
  which is what the SDE step tends to as ``alpha_t -> 0`` given ``D``.
* :class:`ReverseDiffusion` (score_sde's reverse-diffusion predictor): reverses the
  discretized forward transition ``x_t = a x_s + G z`` with ``a = alpha_t / alpha_s`` and
  ``G^2 = sigma_t^2 (1 - r)``, ``r = exp(log_snr_t - log_snr_s)``, as
  ``x_s = (2 - a) x_t + G^2 score + G z`` (score_sde's ``x - f + G^2 score``, ``f = (a - 1) x``).
* :class:`Langevin` corrector: ``x <- x + e score + sqrt(2 e) z`` with
  ``e = 2 a_i (snr ||z|| / ||score||)^2`` and ``a_i = (alpha_t / alpha_s)^2`` (score_sde's
  ``alphas[i] = 1 - beta_i`` for VP, 1 for VE), defined for every process. As in score_sde,
  ``||z||`` and ``||score||`` are per-example norms averaged over the batch: a per-example
  ratio is unstable in low dimension, where an example near a mode has a near-zero score and
  would get an unbounded step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.samplers import _sscs
from diffax.samplers._base import Solver, StepContext, call, one_minus_snr_ratio, scalars
from diffax.samplers._first_order import DDPM

__all__ = ["EulerMaruyama", "ReverseDiffusion", "Langevin", "PredictorCorrector"]


def _score(x, d, a, s):
    return (a * d - x) / jnp.square(s)


@pytree_dataclass
class EulerMaruyama(Solver):
    """Euler-Maruyama on the reverse-time SDE (score_sde's ``EulerMaruyamaPredictor``).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(jax.random.key(0), diffax.VP(), D, jnp.ones((2, 3)),
      ...                     solver=EulerMaruyama(), num_steps=10)
      >>> int(res.nfe)
      10
    """

    order = 1
    nfe_per_step = 1
    stochastic = True
    scalar_coefficients_only = False  # on a StateProcess (CLD): process.reverse_sde

    def step(self, process, denoiser, x, state, ctx: StepContext):
        if not process.scalar_coefficients:
            x_next, nfe = _sscs.euler_maruyama_step(process, denoiser, x, ctx, ctx.key)
            return x_next, state, nfe
        t, t_next = ctx.t, ctx.t_next
        a_t, s_t, _ = scalars(process, t)
        z = ctx.noise(ctx.key, x.shape)

        def sde_step(_):
            d = call(denoiser, x, t)
            f, g2 = process.f(t), process.g2(t)
            dt = t_next - t
            drift = f * x - g2 * _score(x, d, a_t, s_t)
            return x + dt * drift + jnp.sqrt(-dt * g2) * z

        def posterior_step(_):
            d = call(denoiser, x, t)
            mean, std = process.posterior(x, d, t=t, s=t_next)
            return mean + std * z

        x_next = jax.lax.cond(a_t > 0, sde_step, posterior_step, None)
        return x_next, state, jnp.int32(1)


@pytree_dataclass
class ReverseDiffusion(Solver):
    """score_sde's reverse-diffusion predictor (see the module docstring).

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> res = diffax.sample(jax.random.key(0), diffax.VE(), D, jnp.ones((2, 3)),
      ...                     solver=ReverseDiffusion(), num_steps=10)
      >>> res.x.shape
      (2, 3)
    """

    order = 1
    nfe_per_step = 1
    stochastic = True

    def step(self, process, denoiser, x, state, ctx: StepContext):
        a_t, s_t, lam_t = scalars(process, ctx.t)
        a_s, _, lam_s = scalars(process, ctx.t_next)
        one_minus_r = one_minus_snr_ratio(lam_t, lam_s)
        d = call(denoiser, x, ctx.t)
        # G^2 score = (1 - r)(alpha_t D - x): no division by sigma or alpha_t.
        x_mean = (2.0 - a_t / a_s) * x + one_minus_r * (a_t * d - x)
        z = ctx.noise(ctx.key, x.shape)
        return x_mean + (s_t * jnp.sqrt(one_minus_r)) * z, state, jnp.int32(1)


@pytree_dataclass
class _NoPredictor(Solver):
    """Leaves ``x`` unchanged (score_sde's ``NonePredictor``: corrector-only sampling)."""

    order = 0
    nfe_per_step = 0
    stochastic = False

    def step(self, process, denoiser, x, state, ctx: StepContext):
        return x, state, jnp.int32(0)


def _per_example_norm(v):
    return jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), axis=-1))


@pytree_dataclass
class Langevin:
    """score_sde's Langevin corrector, for every process (see the module docstring).

    Used through :class:`PredictorCorrector`, which supplies ``snr`` and the number of steps.
    """

    nfe_per_step = 1

    def correct(self, process, denoiser, x, ctx: StepContext, key, *, snr, n_steps: int):
        """``n_steps`` Langevin steps at ``ctx.t``: ``(x, nfe)``."""
        t = ctx.t
        a_t, s_t, _ = scalars(process, t)
        a_s = process.alpha(ctx.t_next)
        step_alpha = jnp.square(a_t / a_s)
        tiny = jnp.finfo(x.dtype).tiny

        def body(j, x):
            score = _score(x, call(denoiser, x, t), a_t, s_t)
            z = ctx.noise(jax.random.fold_in(key, j), x.shape, t_next=t)
            ratio = snr * jnp.mean(_per_example_norm(z)) / jnp.maximum(
                jnp.mean(_per_example_norm(score)), tiny)
            e = 2.0 * step_alpha * jnp.square(ratio)
            return x + e * score + jnp.sqrt(2.0 * e) * z

        x = jax.lax.fori_loop(0, n_steps, body, x)
        return x, jnp.int32(n_steps * self.nfe_per_step)


_PREDICTORS = {
    "reverse_diffusion": ReverseDiffusion,
    "ancestral": DDPM,
    "euler_maruyama": EulerMaruyama,
    "none": _NoPredictor,
}
_CORRECTORS = {"langevin": Langevin, "none": None}


@pytree_dataclass
class PredictorCorrector(Solver):
    """score_sde's predictor-corrector sampler: at each grid time ``t``, ``n_corrector_steps``
    corrector steps at ``t``, then one predictor step from ``t`` to ``t_next``.

    Args:
      predictor: a solver, or ``"reverse_diffusion"`` (:class:`ReverseDiffusion`),
        ``"ancestral"`` (:class:`DDPM`), ``"euler_maruyama"`` (:class:`EulerMaruyama`) or
        ``"none"`` (corrector only: annealed Langevin dynamics). Names are converted to objects
        here, once.
      corrector: :class:`Langevin`, ``"langevin"`` or ``"none"``/``None``.
      snr: the corrector's signal-to-noise ratio (score_sde uses 0.16 for VE and 0.01-0.16 for
        VP).
      n_corrector_steps: corrector steps per grid time.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> D = lambda x, t: jnp.zeros_like(x)
      >>> pc = PredictorCorrector(predictor="reverse_diffusion", corrector="langevin",
      ...                         snr=0.16, n_corrector_steps=1)
      >>> res = diffax.sample(jax.random.key(0), diffax.SubVP(), D, jnp.ones((2, 3)),
      ...                     solver=pc, num_steps=10)
      >>> int(res.nfe)
      20
    """

    predictor: Any = "reverse_diffusion"
    corrector: Any = "langevin"
    snr: Any = 0.16
    n_corrector_steps: int = static_field(default=1)

    def __post_init__(self):
        pred, corr = self.predictor, self.corrector
        if pred is None:
            pred = "none"
        if isinstance(pred, str):
            if pred not in _PREDICTORS:
                raise ValueError(f"PredictorCorrector: `predictor` must be a solver or one of "
                                 f"{', '.join(map(repr, _PREDICTORS))}; got {pred!r}.")
            pred = _PREDICTORS[pred]()
        elif not isinstance(pred, Solver) or not pred.fixed_grid:
            raise ValueError(f"PredictorCorrector: `predictor` must be a fixed-step solver or a "
                             f"name, got {pred!r}.")
        if isinstance(corr, str):
            if corr not in _CORRECTORS:
                raise ValueError(f"PredictorCorrector: `corrector` must be Langevin() or one of "
                                 f"{', '.join(map(repr, _CORRECTORS))}; got {corr!r}.")
            corr = _CORRECTORS[corr]
            corr = corr() if corr is not None else None
        elif corr is not None and not isinstance(corr, Langevin):
            raise ValueError(f"PredictorCorrector: `corrector` must be Langevin(), 'langevin' or "
                             f"None, got {corr!r}.")
        n = self.n_corrector_steps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"PredictorCorrector: `n_corrector_steps` must be an int >= 0, got "
                             f"{n!r}.")
        v = concrete_value(self.snr)
        if v is not None and not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"PredictorCorrector: `snr` must be finite and non-negative, got "
                             f"{self.snr!r}.")
        object.__setattr__(self, "predictor", pred)
        object.__setattr__(self, "corrector", corr)
        object.__setattr__(self, "n_corrector_steps", int(n))

    @property
    def order(self) -> int:  # type: ignore[override]
        return self.predictor.order

    @property
    def nfe_per_step(self) -> int:  # type: ignore[override]
        n_corr = self.n_corrector_steps if self.corrector is not None else 0
        return self.predictor.nfe_per_step + n_corr * Langevin.nfe_per_step

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        corrects = self.corrector is not None and self.n_corrector_steps > 0
        return corrects or self.predictor.stochastic

    def default_schedule(self, process):
        return self.predictor.default_schedule(process)

    def init(self, process, denoiser, x, times):
        return self.predictor.init(process, denoiser, x, times)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        nfe = jnp.int32(0)
        key_p = ctx.key
        if self.corrector is not None and self.n_corrector_steps > 0:
            if ctx.key is None:
                raise ValueError("PredictorCorrector: the Langevin corrector is stochastic; "
                                 "diffax.sample needs a PRNG `key`.")
            key_c, key_p = jax.random.split(ctx.key)
            x, nfe = self.corrector.correct(process, denoiser, x, ctx, key_c, snr=self.snr,
                                            n_steps=self.n_corrector_steps)
        x, state, n_pred = self.predictor.step(process, denoiser, x, state,
                                               ctx._replace(key=key_p))
        return x, state, nfe + n_pred
