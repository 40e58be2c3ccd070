"""Score-based medical imaging: an unconditional sampler with a measurement-consistency step.

Song, Shen, Xing & Ermon, "Solving inverse problems in medical imaging with score-based
generative models" (ICLR 2022). Public through :mod:`diffax.inverse` as
:func:`consistency_sample`.

For ``y = S T x`` (a :class:`diffax.inverse.SubsampledTransform`: Radon over a full angle grid
then some angles; the Fourier transform then a k-space mask), before every step of any
one-step solver the state ``x_t`` is moved towards the measurement in ``T``-space:

    ``y_t = alpha(t) y + sigma(t) S T z``, ``z ~ N(0, I)``  (a draw of ``p(y_t | y)``)
    ``x_t <- T^{-1} [ T x_t + lam * S^T (y_t - S T x_t) ]``

i.e. ``lam * y_t + (1 - lam) * (measured part of T x_t)`` on the measured entries, the
unmeasured ones unchanged (the paper's eq. (9) with ``Lambda = S^T S``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diffax._operators import SubsampledTransform
from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.processes import Process
from diffax.samplers import SampleResult, Solver, StepContext
from diffax.schedules import Schedule
from diffax.typing import Array, ArrayLike, Denoiser, PRNGKey

__all__ = ["consistency_sample", "consistency_step"]


def consistency_step(operator: SubsampledTransform, x: Array, y: Array, lam: ArrayLike
                     ) -> Array:
    """``T^{-1}[T x + lam S^T (y - S T x)]``: the measured part of ``T x`` moved to ``y``.

    With ``lam = 1`` the measured entries of ``T x`` are replaced by ``y``; with ``lam = 0``
    ``x`` comes back through ``T^{-1} T`` (exactly ``x`` for Fourier; the FBP of the full
    sinogram for CT).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> A = diffax.inverse.fourier_undersampling(jnp.ones((2, 2)))
      >>> x, target = jnp.zeros((1, 2, 2, 1)), jnp.ones((1, 2, 2, 1))
      >>> diffax.inverse.consistency_step(A, x, A(target), 1.0)[0, :, :, 0].round(5)
      Array([[1., 1.],
             [1., 1.]], dtype=float32)
    """
    z = operator.transform(x)
    z = z + jnp.asarray(lam, z.dtype) * operator.embed(y - operator.select(z))
    return operator.inverse_transform(z).astype(x.dtype)


@pytree_dataclass
class _ConsistencyStep(Solver):
    """A consistency step at ``t`` followed by a step of the inner one-step solver."""

    inner: Solver
    y: Any
    lam: Any
    operator: SubsampledTransform = static_field()

    @property
    def order(self):  # type: ignore[override]
        return self.inner.order

    @property
    def stochastic(self):  # type: ignore[override]
        return True

    @property
    def nfe_per_step(self):  # type: ignore[override]
        return self.inner.nfe_per_step

    def default_schedule(self, process):
        return self.inner.default_schedule(process)

    def check(self, process, times):
        self.inner.check(process, times)

    def step(self, process, denoiser, x, state, ctx: StepContext):
        key_y, key_inner = jax.random.split(ctx.key)
        t = ctx.t
        z = ctx.noise(key_y, x.shape)
        y_t = (process.alpha(t) * self.y + process.sigma(t) * self.operator(z)).astype(x.dtype)
        x = consistency_step(self.operator, x, y_t, self.lam)
        return self.inner.step(process, denoiser, x, state, ctx._replace(key=key_inner))


def consistency_sample(
    key: PRNGKey,
    process: Process,
    denoiser: Denoiser,
    x_init: ArrayLike,
    y: ArrayLike,
    operator: SubsampledTransform,
    *,
    num_steps: int,
    lam: ArrayLike = 1.0,
    solver: Solver | None = None,
    schedule: Schedule | ArrayLike | None = None,
    final_consistency: bool = True,
) -> SampleResult:
    """Song et al. (2022): unconditional sampling with a measurement-consistency step.

    Before every step of ``solver`` (from ``t``) the state is made consistent with a draw of
    the noised measurement ``y_t = alpha(t) y + sigma(t) A z`` (:func:`consistency_step` with
    weight ``lam``); after the last step, with ``final_consistency``, with ``y`` itself. With
    ``lam = 1`` and noise-free ``y`` the measured part of the result is exactly ``y``; with a
    prior that is Gaussian and diagonal in ``T``'s basis the unmeasured part is then sampled
    from the exact posterior (the prior of those coordinates, up to the solver's
    discretisation; tested). For noisy measurements ``lam < 1`` keeps some of the model's own
    estimate of the measured part (the paper tunes ``lam`` on validation data).

    Any process and any one-step solver compose with it: the paper's predictor-corrector is
    ``solver=diffax.samplers.PredictorCorrector(predictor="reverse_diffusion",
    corrector="langevin", snr=...)`` (its corrector then runs after the consistency step).

    Args:
      key: PRNG key (required: the measurement noise of ``y_t`` is drawn every step).
      process: the process of the unconditional ``denoiser``.
      denoiser: ``D(x, t)``.
      x_init: the state at ``process.t_max``, ``[B, H, W, C]``.
      y: the measurement ``A(x)`` ``[B, ...]`` (a :class:`~diffax.inverse.Radon` sinogram,
        :class:`~diffax.inverse.FourierUndersampling` k-space).
      operator: the :class:`~diffax.inverse.SubsampledTransform` ``A``.
      num_steps: solver steps.
      lam: the consistency weight ``lambda`` in ``[0, 1]``.
      solver: a one-step solver without history (default
        ``PredictorCorrector(predictor="reverse_diffusion", corrector="langevin", snr=0.16)``).
      schedule: the time grid, as for :func:`diffax.sample`.
      final_consistency: apply :func:`consistency_step` with ``y`` after the last step.

    Returns:
      A :class:`diffax.SampleResult`.

    Raises:
      ValueError: naming the argument: ``operator`` not a subsampled transform, ``y`` not of
        the shape ``operator(x_init)`` has, ``lam`` outside ``[0, 1]``, a solver with
        history, a missing key, or the checks of :func:`diffax.sample`.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> A = diffax.inverse.fourier_undersampling(
      ...     diffax.inverse.cartesian_mask((8, 8), acceleration=2))
      >>> x_true = jnp.ones((2, 8, 8, 1))
      >>> res = diffax.inverse.consistency_sample(
      ...     jax.random.key(0), diffax.VP(), lambda x, t: 0.5 * x, jnp.zeros((2, 8, 8, 1)),
      ...     A(x_true), A, num_steps=5, solver=diffax.samplers.DDPM())
      >>> bool(jnp.allclose(A(res.x), A(x_true), atol=1e-5))
      True
    """
    from diffax.inverse import _check_one_step
    from diffax.samplers import PredictorCorrector, check_inputs, sample
    from diffax.schedules import check_num_steps

    if not isinstance(operator, SubsampledTransform):
        raise ValueError(f"consistency_sample: `operator` must be a diffax.inverse."
                         f"SubsampledTransform (radon, sparse_view_radon, "
                         f"fourier_undersampling), got {operator!r}.")
    solver = (PredictorCorrector(predictor="reverse_diffusion", corrector="langevin", snr=0.16)
              if solver is None else solver)
    check_inputs(key, process, denoiser, x_init, solver, None)
    if key is None:
        raise ValueError("consistency_sample: `key` is required (the noise of y_t).")
    num_steps = check_num_steps(num_steps)
    x_init = jnp.asarray(x_init)
    try:
        y_spec = jax.eval_shape(operator, jax.ShapeDtypeStruct(x_init.shape, x_init.dtype))
    except ValueError as e:
        raise ValueError(f"consistency_sample: `x_init` does not fit `operator`: {e}") from e
    y = jnp.asarray(y)
    if tuple(y.shape) != tuple(y_spec.shape):
        raise ValueError(f"consistency_sample: `y` has shape {tuple(y.shape)}, but "
                         f"operator(x_init) has shape {tuple(y_spec.shape)} "
                         f"(measurement/operator mismatch).")
    v = concrete_value(lam)
    if v is not None and not (v.ndim == 0 and 0.0 <= float(v) <= 1.0):
        raise ValueError(f"consistency_sample: `lam` must be a scalar in [0, 1], got {lam!r}.")
    _check_one_step(solver, process, denoiser, x_init,
                    jnp.asarray([process.t_max, process.t_min], x_init.dtype),
                    "consistency_sample")
    y = y.astype(x_init.dtype)
    wrapped = _ConsistencyStep(inner=solver, y=y, lam=lam, operator=operator)
    res = sample(key, process, denoiser, x_init, solver=wrapped, num_steps=num_steps,
                 schedule=schedule)
    if final_consistency:
        res = res._replace(x=consistency_step(operator, res.x, y, lam))
    return res
