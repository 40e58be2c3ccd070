"""Time grids for samplers.

A schedule maps ``(process, num_steps)`` to a strictly decreasing array of ``num_steps + 1``
times from ``process.t_max`` (noise) to ``process.t_min`` (data); the end points are exact.
Schedules are pytree dataclasses: their numbers (``rho``, ``shift``) are leaves, so changing
them does not recompile, and they work on a process whose numbers are traced.

Schedules defined on the noise level use the process's *scaled* noise level
``sigma(t) / alpha(t) = exp(-log_snr(t) / 2)`` and map back to time with
``process.t_from_log_snr``, so one definition serves every process: on :class:`diffax.EDM`
(``alpha = 1``, ``sigma = t``) :class:`Karras` is exactly EDM's grid, and on
:class:`diffax.RectifiedFlow` (``t_min = 0``) :class:`Shift` is Stable Diffusion 3's time shift.

Every schedule takes keyword-only ``t_start=`` and ``t_end=``: the grid then runs from
``t_start`` (default ``process.t_max``) to ``t_end`` (default ``process.t_min``) by the same law,
as if the process ended there (SDEdit starts at ``t_start < t_max``; a sampler may stop at
``t_end > t_min``); left at ``None`` the grid is exactly the one over the whole interval.

Where the process makes the scaled noise level infinite (``alpha(t_max) = 0``, as for
rectified flow at ``t = 1``) or zero (``sigma(t_min) = 0``), a schedule that needs a finite
value uses the one at ``1e-3`` of the time range inside the interval instead; the end points
themselves stay exactly ``t_max`` and ``t_min``, so nothing is NaN.

Example:
  >>> import diffax
  >>> ts = diffax.schedules.Karras(rho=7.0)(diffax.EDM(), 4)
  >>> [round(float(t), 3) for t in ts]
  [80.0, 17.528, 2.515, 0.17, 0.002]
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field
from diffax.processes import Process, time_at_log_snr  # re-exported: one inverse
from diffax.typing import Array, ArrayLike

__all__ = [
    "Schedule",
    "TimeUniform",
    "Quadratic",
    "LogSNRUniform",
    "Karras",
    "Shift",
    "Spacing",
    "diffusers_timesteps",
    "Endpoints",
    "time_uniform",
    "quadratic",
    "log_snr_uniform",
    "karras",
    "shift",
    "resolve",
    "check_num_steps",
    "finite_log_snr_range",
    "time_at_log_snr",
    "optimize",  # noqa: F822 - resolved by __getattr__ below
]

# Where a scaled noise level is infinite or zero at an end point, schedules that need a finite
# value use the one this fraction of the time range inside the interval.
_END_INSET = 1e-3


def check_num_steps(num_steps: Any, *, name: str = "num_steps") -> int:
    """Returns ``num_steps`` as a Python int >= 1, or raises a ValueError naming it."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"`{name}` must be a Python int >= 1 (it fixes array shapes), got "
                         f"{num_steps!r} of type {type(num_steps).__name__}.")
    if int(num_steps) < 1:
        raise ValueError(f"`{name}` must be >= 1, got {num_steps}.")
    return int(num_steps)


def _float_dtype() -> Any:
    return jnp.result_type(float)


def _ends(process: Process, dtype: Any) -> tuple[Array, Array]:
    return jnp.asarray(process.t_max, dtype), jnp.asarray(process.t_min, dtype)


def finite_log_snr_range(process: Process, dtype: Any) -> tuple[Array, Array]:
    """``(log_snr(t_max), log_snr(t_min))`` with infinite ends replaced by the values at
    ``1e-3`` of the time range inside the interval (what the log-SNR schedules use)."""
    t_max, t_min = _ends(process, dtype)
    inset = _END_INSET * (t_max - t_min)
    lam_lo = process.log_snr(t_max)
    lam_lo = jnp.where(jnp.isfinite(lam_lo), lam_lo, process.log_snr(t_max - inset))
    lam_hi = process.log_snr(t_min)
    lam_hi = jnp.where(jnp.isfinite(lam_hi), lam_hi, process.log_snr(t_min + inset))
    return lam_lo, lam_hi


def _pin(ts: Array, process: Process) -> Array:
    t_max, t_min = _ends(process, ts.dtype)
    ts = jnp.clip(ts, t_min, t_max)
    return ts.at[0].set(t_max).at[-1].set(t_min)


class _Interval:
    """A view of a process whose time range is ``[t_end, t_start]``: schedules read ``t_max``,
    ``t_min`` and the process's coefficient functions, so a grid built on the view follows the
    same law over the sub-interval."""

    def __init__(self, process: Process, t_start: Any, t_end: Any):
        self._process = process
        self.t_max, self.t_min = t_start, t_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)


def _check_time(name: str, value: Any) -> None:
    if value is None:
        return
    if jnp.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a scalar time, got shape {tuple(jnp.shape(value))}.")
    v = concrete_value(value)
    if v is not None and not np.isfinite(v):
        raise ValueError(f"`{name}` must be a finite time, got {value!r}.")


_ENDS = ("t_start", "t_end")


@pytree_dataclass
class Schedule(abc.ABC):
    """A map ``(process, num_steps) -> times [num_steps + 1]``, decreasing from ``t_start``
    (default ``t_max``) to ``t_end`` (default ``t_min``).

    Subclasses implement ``_times(process, num_steps, dtype)`` on a process whose ``t_max`` and
    ``t_min`` are the grid's ends; ``__call__`` validates ``num_steps`` and the ends and pins the
    end points exactly.

    Args:
      t_start: the first time (noise side), in ``(t_end, t_max]``; ``None``: ``process.t_max``.
      t_end: the last time (data side), in ``[t_min, t_start)``; ``None``: ``process.t_min``.
        Both are pytree leaves (they may be traced); checks against the process run at call
        time when the values are concrete.

    Example:
      >>> import diffax
      >>> p = diffax.RectifiedFlow(t_min=0.0)
      >>> ts = diffax.schedules.TimeUniform(t_start=0.5, t_end=0.1)(p, 4)
      >>> [round(float(t), 6) for t in ts]
      [0.5, 0.4, 0.3, 0.2, 0.1]
    """

    t_start: Any = None
    t_end: Any = None

    def __post_init__(self):
        for name in _ENDS:
            _check_time(name, getattr(self, name))
        a, b = concrete_value(self.t_start), concrete_value(self.t_end)
        if a is not None and b is not None and not float(b) < float(a):
            raise ValueError(f"{type(self).__name__}: `t_end`={float(b):g} must be below "
                             f"`t_start`={float(a):g} (times decrease from noise to data).")

    def __init_subclass__(cls, **kwargs: Any):
        # The dataclass decorator keeps a __repr__ found in the class's own namespace: every
        # schedule prints its own options first and t_start / t_end only when they are set.
        super().__init_subclass__(**kwargs)
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = Schedule.__repr__

    def __repr__(self) -> str:
        names = [f.name for f in dataclasses.fields(self) if f.repr and f.name not in _ENDS]
        names += [n for n in _ENDS if getattr(self, n) is not None]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    def interval(self, process: Process, dtype: Any = None) -> Process:
        """``process`` itself, or (with ``t_start`` / ``t_end`` set) a view of it whose
        ``t_max`` / ``t_min`` are those times, after checking they lie in its range.

        Raises:
          ValueError: naming ``t_start`` or ``t_end`` when it lies outside
            ``[process.t_min, process.t_max]`` (concrete values only).
        """
        if self.t_start is None and self.t_end is None:
            return process
        dtype = dtype or _float_dtype()
        lo, hi = concrete_value(process.t_min), concrete_value(process.t_max)
        tol = 1e-6 * max(1.0, abs(float(hi))) if hi is not None else 0.0
        for name, value in zip(_ENDS, (self.t_start, self.t_end), strict=True):
            v = concrete_value(value)
            if v is None or lo is None or hi is None:
                continue
            if not float(lo) - tol <= float(v) <= float(hi) + tol:
                raise ValueError(f"{type(self).__name__}: `{name}`={float(v):g} lies outside "
                                 f"the time range [t_min, t_max] = [{float(lo):g}, "
                                 f"{float(hi):g}] of {type(process).__name__}.")
        t_start = process.t_max if self.t_start is None else self.t_start
        t_end = process.t_min if self.t_end is None else self.t_end
        return _Interval(process, jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype))

    def __call__(self, process: Process, num_steps: int, *, dtype: Any = None) -> Array:
        num_steps = check_num_steps(num_steps)
        dtype = dtype or _float_dtype()
        process = self.interval(process, dtype)
        return _pin(self._times(process, num_steps, dtype), process)

    @abc.abstractmethod
    def _times(self, process: Process, num_steps: int, dtype: Any) -> Array:
        """The raw grid ``[num_steps + 1]`` (end points are pinned afterwards)."""


@pytree_dataclass
class TimeUniform(Schedule):
    """Equally spaced times: ``t_i = t_max + (i / N) (t_min - t_max)``.

    Example:
      >>> import diffax
      >>> [float(t) for t in diffax.schedules.TimeUniform()(diffax.RectifiedFlow(t_min=0.0), 4)]
      [1.0, 0.75, 0.5, 0.25, 0.0]
    """

    def _times(self, process, num_steps, dtype):
        t_max, t_min = _ends(process, dtype)
        return jnp.linspace(t_max, t_min, num_steps + 1, dtype=dtype)


@pytree_dataclass
class Endpoints(Schedule):
    """One interval ``[t_max, t_min]``, whatever ``num_steps`` is: the grid of adaptive-step
    solvers (:class:`diffax.samplers.Adaptive`, ``DPMSolver(method="adaptive")``), which choose
    their own steps inside it.

    Example:
      >>> import diffax
      >>> [float(t) for t in diffax.schedules.Endpoints()(diffax.RectifiedFlow(t_min=0.0), 7)]
      [1.0, 0.0]
    """

    def __call__(self, process, num_steps, *, dtype=None):
        dtype = dtype or jnp.result_type(float)
        process = self.interval(process, dtype)
        return jnp.stack([jnp.asarray(process.t_max, dtype), jnp.asarray(process.t_min, dtype)])

    def _times(self, process, num_steps, dtype):  # pragma: no cover - __call__ is overridden
        raise NotImplementedError


@pytree_dataclass
class Quadratic(Schedule):
    """DDIM's quadratic grid, denser near the data: ``t = t_min + (t_max - t_min) u^2`` with
    ``u`` equally spaced from 1 to 0.

    Example:
      >>> import diffax
      >>> [float(t) for t in diffax.schedules.Quadratic()(diffax.RectifiedFlow(t_min=0.0), 2)]
      [1.0, 0.25, 0.0]
    """

    def _times(self, process, num_steps, dtype):
        t_max, t_min = _ends(process, dtype)
        u = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=dtype)
        return t_min + (t_max - t_min) * jnp.square(u)


@pytree_dataclass
class LogSNRUniform(Schedule):
    """Equally spaced log-SNR (DPM-Solver's ``logSNR`` grid).

    Example:
      >>> import diffax
      >>> p = diffax.VP()
      >>> lam = p.log_snr(diffax.schedules.LogSNRUniform()(p, 4))
      >>> bool(abs(float((lam[1] - lam[0]) - (lam[4] - lam[3]))) < 1e-4)
      True
    """

    def _times(self, process, num_steps, dtype):
        lam_lo, lam_hi = finite_log_snr_range(process, dtype)
        lam = jnp.linspace(lam_lo, lam_hi, num_steps + 1, dtype=dtype)
        return process.t_from_log_snr(lam)


@pytree_dataclass
class Karras(Schedule):
    """EDM's grid (Karras et al. 2022, eq. 5) on the scaled noise level ``s = sigma / alpha``:
    ``s_i = (s_max^(1/rho) + (i / N) (s_min^(1/rho) - s_max^(1/rho)))^rho``.

    Args:
      rho: the exponent; 7 is EDM's choice, 1 is uniform in ``s``, large values approach
        log-SNR-uniform.
      sigma_min, sigma_max: optional scaled noise levels replacing the process's own
        ``sigma/alpha`` at ``t_min`` / ``t_max`` for the interior points (EDM's options);
        the end points remain ``t_min`` and ``t_max``.

    Example:
      >>> import diffax
      >>> ts = diffax.schedules.Karras(rho=7.0)(diffax.EDM(), 17)
      >>> ts.shape, round(float(ts[0]), 6), round(float(ts[-1]), 6)
      ((18,), 80.0, 0.002)
    """

    rho: Any = 7.0
    sigma_min: Any = None
    sigma_max: Any = None

    def __post_init__(self):
        super().__post_init__()
        v = concrete_value(self.rho)
        if v is not None and not bool(np.all(v > 0)):
            raise ValueError(f"Karras: `rho` must be positive, got {self.rho!r}.")
        for name in ("sigma_min", "sigma_max"):
            v = concrete_value(getattr(self, name))
            if v is not None and not bool(np.all(v >= 0)):
                raise ValueError(f"Karras: `{name}` must be non-negative, got "
                                 f"{getattr(self, name)!r}.")

    def _times(self, process, num_steps, dtype):
        t_max, t_min = _ends(process, dtype)
        inset = _END_INSET * (t_max - t_min)
        s_hi = jnp.exp(-0.5 * process.log_snr(t_max))
        s_hi = jnp.where(jnp.isfinite(s_hi), s_hi,
                         jnp.exp(-0.5 * process.log_snr(t_max - inset)))
        s_lo = jnp.exp(-0.5 * process.log_snr(t_min))  # may be 0: fine for the power law
        if self.sigma_max is not None:
            s_hi = jnp.asarray(self.sigma_max, dtype)
        if self.sigma_min is not None:
            s_lo = jnp.asarray(self.sigma_min, dtype)
        inv = 1.0 / jnp.asarray(self.rho, dtype)
        u = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=dtype)
        s = (s_hi**inv + u * (s_lo**inv - s_hi**inv)) ** self.rho
        return process.t_from_log_snr(-2.0 * jnp.log(s))


@pytree_dataclass
class Shift(Schedule):
    """Shifts a base grid toward higher noise: the scaled noise level ``sigma/alpha`` is
    multiplied by ``shift`` (Stable Diffusion 3's shift for flow models).

    On :class:`diffax.RectifiedFlow` with ``t_min = 0`` this is exactly SD3's
    ``sigma' = shift * sigma``, i.e. ``t' = shift t / (1 + (shift - 1) t)``. So that every
    process keeps its end points and a strictly decreasing grid (no point pushed past
    ``t_max`` or below ``t_min``, whatever ``shift``), the map is the Moebius transformation of
    the scaled noise level ``s`` that fixes ``s_min = s(t_min)`` and ``s_max = s(t_max)`` and
    has slope ``shift`` at ``s_min``: with ``v = (s - s_min)/(s_max - s_min)``,
    ``v' = shift v / (1 + (shift - 1) v)``. When ``s_max`` is infinite (``alpha(t_max) = 0``)
    it is ``s' = s_min + shift (s - s_min)``, which is ``shift * s`` when ``s_min = 0`` and
    differs from it by ``(shift - 1) s_min`` otherwise (2e-3 for the default rectified flow).

    Args:
      shift: the factor, positive; ``> 1`` spends more steps at high noise, 1 is the base grid.
      base: the grid to shift (default :class:`TimeUniform`).

    Example:
      >>> import diffax
      >>> ts = diffax.schedules.Shift(shift=3.0)(diffax.RectifiedFlow(t_min=0.0), 2)
      >>> [round(float(t), 6) for t in ts]
      [1.0, 0.75, 0.0]
    """

    shift: Any = 3.0
    base: Schedule | None = None

    def __post_init__(self):
        super().__post_init__()
        v = concrete_value(self.shift)
        if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
            raise ValueError(f"Shift: `shift` must be positive, got {self.shift!r}.")
        if self.base is not None and not isinstance(self.base, Schedule):
            raise ValueError(f"Shift: `base` must be a Schedule, got {self.base!r}.")

    def _times(self, process, num_steps, dtype):
        base = self.base if self.base is not None else TimeUniform()
        ts = base(process, num_steps, dtype=dtype)
        t_max, t_min = _ends(process, dtype)
        level = jnp.exp(-0.5 * process.log_snr(ts))
        lo = jnp.exp(-0.5 * process.log_snr(t_min))
        hi = jnp.exp(-0.5 * process.log_snr(t_max))
        k = jnp.asarray(self.shift, dtype)
        finite = jnp.isfinite(hi)
        width = jnp.where(finite, hi - lo, 1.0)
        v = (level - lo) / width
        bounded = lo + width * (k * v / (1.0 + (k - 1.0) * v))
        level = jnp.where(finite, bounded, lo + k * (level - lo))
        return process.t_from_log_snr(-2.0 * jnp.log(level))


# --------------------------------------------------------------------------------------------
# diffusers' integer timestep spacings for discrete processes (Lin et al. 2024, Table 2).

_SPACINGS = ("leading", "trailing", "linspace")


def diffusers_timesteps(spacing: str, num_train_steps: int, num_steps: int, *,
                        steps_offset: int = 0, ddim: bool = False) -> np.ndarray:
    """diffusers' 0-based integer timesteps (``num_steps`` of them, decreasing) of a scheduler
    with ``timestep_spacing=spacing`` over ``num_train_steps`` training steps.

    ``ddim=True`` gives :code:`DDIMScheduler`'s variant (``leading``: ratio ``T // N`` and
    the timesteps ``0, r, .., (N-1) r``; ``linspace``: ``N`` points from 0 to ``T - 1``); the
    multistep schedulers (DPM-Solver, UniPC, DEIS) use ``T // (N + 1)`` and ``N + 1`` points
    without the last. ``trailing`` is the same for both.

    Example:
      >>> diffusers_timesteps("trailing", 1000, 4).tolist()
      [999, 749, 499, 249]
    """
    if spacing not in _SPACINGS:
        raise ValueError(f"`spacing` must be one of {', '.join(map(repr, _SPACINGS))}; got "
                         f"{spacing!r}.")
    big_t, n = int(num_train_steps), check_num_steps(num_steps)
    if n > big_t:
        raise ValueError(f"`num_steps` = {n} exceeds the process's {big_t} discrete steps.")
    if spacing == "linspace":
        ks = np.linspace(0, big_t - 1, n if ddim else n + 1).round()[::-1]
        ks = ks if ddim else ks[:-1]
    elif spacing == "leading":
        if ddim:
            ks = (np.arange(0, n) * (big_t // n)).round()[::-1]
        else:
            ks = (np.arange(0, n + 1) * (big_t // (n + 1))).round()[::-1][:-1]
        ks = ks + int(steps_offset)
    else:
        ks = np.round(np.arange(big_t, 0, -big_t / n)) - 1
    return ks.astype(np.int64)


@pytree_dataclass
class Spacing(Schedule):
    """diffusers' timestep spacings on a :class:`diffax.DiscreteVP` (``leading``,
    ``trailing``, ``linspace``, with ``steps_offset``): the grid equals a diffusers
    scheduler's without hand-built arrays.

    diffusers' integer timestep ``k`` (``0..T-1``) is diffax's time ``(k + 1) / T``; the grid
    is the ``num_steps`` timesteps of :func:`diffusers_timesteps` followed by the final point:
    ``p.t_min`` (diffusers' ``final_sigmas_type="sigma_min"``, DDIM's
    ``set_alpha_to_one=False``) or, with ``clean_end=True``, ``t = 0`` where ``sigma = 0``
    (``final_sigmas_type="zero"``, ``set_alpha_to_one=True``; only solvers with
    ``reaches_clean_data`` accept it). Unlike the other schedules the grid need not start at
    ``t_max`` (``leading`` starts below it) and, for DDIM's grids whose last timestep is
    already ``t_min``, the final no-op step is left out (``num_steps`` times then).

    Args:
      spacing: ``"leading"``, ``"trailing"`` or ``"linspace"``.
      steps_offset: added to the ``leading`` timesteps (Stable Diffusion's 1).
      clean_end: end at ``t = 0`` instead of ``p.t_min``.
      ddim: ``DDIMScheduler``'s spacing (see :func:`diffusers_timesteps`). DDIM steps from
        ``k`` to ``k - T // N``, which is the next timestep only when the spacing is
        consistent (always for ``leading``, for ``trailing`` when ``N`` divides ``T``); other
        grids raise a ValueError, since diffusers' DDIM is then not a sampler on one grid.

    Example:
      >>> import diffax
      >>> p = diffax.DiscreteVP.linear()
      >>> [round(float(t), 3) for t in Spacing(spacing="trailing")(p, 4)]
      [1.0, 0.75, 0.5, 0.25, 0.001]
    """

    spacing: str = static_field(default="leading")
    steps_offset: int = static_field(default=0)
    clean_end: bool = static_field(default=False)
    ddim: bool = static_field(default=False)

    def __post_init__(self):
        for name in _ENDS:
            if getattr(self, name) is not None:
                raise ValueError(f"Spacing: `{name}` is not an option of diffusers' timestep "
                                 f"spacings (their timesteps are fixed by `spacing`, "
                                 f"`steps_offset` and the process); pass an explicit array of "
                                 f"times instead.")
        if self.spacing not in _SPACINGS:
            raise ValueError(f"Spacing: `spacing` must be one of "
                             f"{', '.join(map(repr, _SPACINGS))}; got {self.spacing!r}.")
        if isinstance(self.steps_offset, bool) or not isinstance(
                self.steps_offset, (int, np.integer)) or self.steps_offset < 0:
            raise ValueError(f"Spacing: `steps_offset` must be an int >= 0, got "
                             f"{self.steps_offset!r}.")
        for name in ("clean_end", "ddim"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Spacing: `{name}` must be a bool, got "
                                 f"{getattr(self, name)!r}.")

    def timesteps(self, process: Process, num_steps: int) -> np.ndarray:
        """diffusers' integer timesteps of this grid (without the final point)."""
        big_t = _discrete_steps(process)
        ks = diffusers_timesteps(self.spacing, big_t, num_steps, steps_offset=self.steps_offset,
                                 ddim=self.ddim)
        if ks.max() > big_t - 1 or ks.min() < 0:
            raise ValueError(f"Spacing: timesteps {ks.tolist()} leave [0, {big_t - 1}] "
                             f"(steps_offset={self.steps_offset}).")
        if self.ddim and len(ks) > 1 and not np.all(-np.diff(ks) == big_t // len(ks)):
            raise ValueError(
                f"Spacing: diffusers' DDIM steps from timestep k to k - T // N = k - "
                f"{big_t // len(ks)}, but the {self.spacing!r} timesteps {ks.tolist()[:6]}... "
                f"are not spaced by that, so it is not a sampler on one grid; use 'leading', or "
                f"'trailing' with num_steps dividing {big_t}.")
        return ks

    def __call__(self, process: Process, num_steps: int, *, dtype: Any = None) -> Array:
        dtype = dtype or _float_dtype()
        ks = self.timesteps(process, num_steps)
        big_t = _discrete_steps(process)
        ts = (ks.astype(np.float64) + 1.0) / big_t
        prev = ks[-1] - big_t // len(ks) if self.ddim else -1  # DDIM steps to k - T // N
        if prev >= 0:
            ts = np.append(ts, (prev + 1.0) / big_t)
        elif self.clean_end:
            ts = np.append(ts, 0.0)
        elif ks[-1] > 0:
            ts = np.append(ts, 1.0 / big_t)
        return jnp.asarray(ts, dtype)

    def _times(self, process, num_steps, dtype):  # pragma: no cover - __call__ is overridden
        raise NotImplementedError


def _discrete_steps(process: Process) -> int:
    steps = getattr(process, "num_steps", None)
    if not isinstance(steps, (int, np.integer)):
        raise ValueError(f"Spacing: diffusers' timestep spacings need a discrete process "
                         f"(diffax.DiscreteVP) with integer steps, got {type(process).__name__}.")
    return int(steps)


def time_uniform(*, t_start: Any = None, t_end: Any = None) -> TimeUniform:
    """:class:`TimeUniform` (from ``t_start`` to ``t_end``, default ``t_max`` to ``t_min``).

    Example:
      >>> import diffax
      >>> p = diffax.RectifiedFlow(t_min=0.0)
      >>> [float(t) for t in diffax.schedules.time_uniform(t_start=0.5)(p, 2)]
      [0.5, 0.25, 0.0]
    """
    return TimeUniform(t_start=t_start, t_end=t_end)


def quadratic(*, t_start: Any = None, t_end: Any = None) -> Quadratic:
    """:class:`Quadratic` (from ``t_start`` to ``t_end``, default ``t_max`` to ``t_min``).

    Example:
      >>> import diffax
      >>> p = diffax.RectifiedFlow(t_min=0.0)
      >>> [float(t) for t in diffax.schedules.quadratic(t_start=0.5)(p, 2)]
      [0.5, 0.125, 0.0]
    """
    return Quadratic(t_start=t_start, t_end=t_end)


def log_snr_uniform(*, t_start: Any = None, t_end: Any = None) -> LogSNRUniform:
    """:class:`LogSNRUniform` (from ``t_start`` to ``t_end``, default ``t_max`` to ``t_min``).

    Example:
      >>> import diffax
      >>> p = diffax.VP()
      >>> ts = diffax.schedules.log_snr_uniform(t_start=0.5, t_end=0.1)(p, 2)
      >>> lam = p.log_snr(ts)
      >>> [round(float(t), 6) for t in ts], bool(abs(float(2 * lam[1] - lam[0] - lam[2])) < 1e-4)
      ([0.5, 0.273308, 0.1], True)
    """
    return LogSNRUniform(t_start=t_start, t_end=t_end)


def karras(rho: float = 7.0, *, sigma_min: float | None = None,
           sigma_max: float | None = None, t_start: Any = None, t_end: Any = None) -> Karras:
    """:class:`Karras` with exponent ``rho`` (from ``t_start`` to ``t_end``, default ``t_max``
    to ``t_min``).

    Example:
      >>> import diffax
      >>> ts = diffax.schedules.karras(7.0, t_start=10.0)(diffax.EDM(), 2)
      >>> [round(float(t), 4) for t in ts]
      [10.0, 0.4803, 0.002]
    """
    return Karras(rho=rho, sigma_min=sigma_min, sigma_max=sigma_max, t_start=t_start,
                  t_end=t_end)


def shift(shift: float = 3.0, *, base: Schedule | None = None, t_start: Any = None,
          t_end: Any = None) -> Shift:
    """:class:`Shift` by ``shift`` (of ``base``, default :class:`TimeUniform`; from ``t_start``
    to ``t_end``, default ``t_max`` to ``t_min``).

    Example:
      >>> import diffax
      >>> ts = diffax.schedules.shift(3.0, t_start=0.5)(diffax.RectifiedFlow(t_min=0.0), 2)
      >>> [round(float(t), 6) for t in ts]
      [0.5, 0.375, 0.0]
    """
    return Shift(shift=shift, base=base, t_start=t_start, t_end=t_end)


def resolve(schedule: Schedule | ArrayLike, process: Process, num_steps: int | None, *,
            dtype: Any = None, clean_end: bool = False) -> Array:
    """The time grid ``[num_steps + 1]`` described by ``schedule``, validated.

    Args:
      schedule: a :class:`Schedule`, or an explicit array of times, strictly decreasing and
        inside ``[process.t_min, process.t_max]`` (it may start below ``t_max`` and end above
        ``t_min``: the sampler then runs over that sub-interval).
      process: the process the grid is for.
      num_steps: the number of steps; for an explicit array it may be ``None`` (taken from
        the array) and must otherwise equal ``len(schedule) - 1``.
      dtype: the dtype of the result (default: the default float dtype).
      clean_end: also accept an explicit array whose last time lies below ``t_min`` where
        ``sigma = 0`` (clean data, e.g. ``t = 0``), for solvers that take that step exactly.

    Raises:
      ValueError: naming ``num_steps`` or ``schedule``, for a bad step count, a wrong length,
        a grid that is not strictly decreasing, or times outside the process's range. Checks
        on values run only when the values are concrete (not traced).

    Example:
      >>> import diffax, numpy as np
      >>> resolve(np.array([1.0, 0.5, 0.001]), diffax.VP(), 2).shape
      (3,)
    """
    dtype = dtype or _float_dtype()
    if isinstance(schedule, Schedule):
        if num_steps is None:
            raise ValueError("`num_steps` is required when `schedule` is not an explicit array "
                             "of times.")
        return schedule(process, check_num_steps(num_steps), dtype=dtype)
    if callable(schedule):
        raise ValueError(f"`schedule` must be a diffax.schedules.Schedule or an array of "
                         f"times, got the callable {schedule!r}.")
    try:
        ts = jnp.asarray(schedule)
    except TypeError as e:
        raise ValueError(f"`schedule` must be a diffax.schedules.Schedule or an array of times, "
                         f"got {schedule!r}.") from e
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`schedule` given as an array must be 1-D with at least 2 times, got "
                         f"shape {tuple(ts.shape)}.")
    if num_steps is not None and check_num_steps(num_steps) != ts.shape[0] - 1:
        raise ValueError(f"`schedule` has {ts.shape[0]} times, i.e. {ts.shape[0] - 1} steps, "
                         f"but `num_steps` is {num_steps}; an explicit schedule needs "
                         f"num_steps + 1 times.")
    v = concrete_value(schedule) if not isinstance(schedule, (list, tuple)) else np.asarray(
        schedule, dtype=np.float64)
    if v is not None:
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`schedule` must hold finite times, got {v}.")
        if not np.all(np.diff(v) < 0):
            raise ValueError(f"`schedule` must be strictly decreasing (from t_max, noise, to "
                             f"t_min, data), got {np.array2string(v, precision=4, threshold=8)}.")
        lo, hi = concrete_value(process.t_min), concrete_value(process.t_max)
        if lo is not None and hi is not None:
            tol = 1e-6 * max(1.0, float(abs(hi)))
            last = v[-1]
            if clean_end and last < float(lo) - tol and is_clean(process, last):
                last = float(lo)  # the clean end point is kept as given below
            if v[0] > float(hi) + tol or last < float(lo) - tol:
                raise ValueError(
                    f"`schedule` runs from {v[0]:g} to {v[-1]:g}, outside the time range "
                    f"[t_min, t_max] = [{float(lo):g}, {float(hi):g}] of "
                    f"{type(process).__name__}.")
            end = v[-1]
            v = np.clip(v, float(lo), float(hi))
            if end < float(lo) - tol:
                v[-1] = end
            return jnp.asarray(v, dtype)
    return ts.astype(dtype)


def is_clean(process: Process, t: float) -> bool:
    """Whether the concrete time ``t`` is in the process's domain with ``sigma(t) = 0``."""
    try:
        # Evaluated eagerly also under jit (a concrete grid given to a jitted sample).
        with jax.ensure_compile_time_eval():
            s = concrete_value(process.sigma(jnp.asarray(t, jnp.result_type(float))))
    except ValueError:
        return False
    return s is not None and float(s) == 0.0


def __getattr__(name: str) -> Any:
    # ``diffax.schedules.optimize`` runs samplers, which import this module: it lives above
    # them, in :mod:`diffax.samplers.grid_search`, and is reached here lazily (no import cycle).
    if name == "optimize":
        from diffax.samplers.grid_search import optimize

        return optimize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
