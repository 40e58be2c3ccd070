"""Which order each step of a multistep solver may use near the data end: the rules behind
``lower_order_final`` (DPMSolver, DPMSolverPP, UniPC, DEIS, IPNDM).

A multistep step of order ``q`` extrapolates the model output from the last ``q`` nodes over
the step ``h`` (in the half log-SNR). Where ``h`` is much longer than the steps between those
nodes, the extrapolation amplifies their differences (its weights grow like
``(h / h_prev)^(q-1)``): on DDPM's grids the last step, into ``t_min``, is often several times
longer than the one before, and taking it at order 3 can cost more than it gains. Each rule
here gives, per step, an upper bound on the order (the warm-up on the first steps and the
first-order step where ``h`` is infinite apply on top of it):

* :class:`StepCount` (``lower_order_final=True``, the default): ``min(order, steps left)`` on
  grids with fewer than ``below`` steps: DPM-Solver's original stabilization. With
  ``below=15`` it is diffusers' ``DPMSolverMultistepScheduler`` / ``DEISMultistepScheduler``
  rule; ``below=None`` applies it for every ``N``: diffusers' ``UniPCMultistepScheduler``
  rule. ``count_denoise_final=True`` counts ``denoise_final``'s evaluation as the last step
  (the order-1 step to clean data, as diffusers' ``final_sigmas_type="zero"`` does).
* :class:`StepRatio` (diffax's own rule): order ``q`` only if the step is at most
  ``max_ratio`` times each of the ``q - 1`` steps before it, so the order falls exactly where
  the grid jumps, whatever ``N``.
* :class:`Orders`: the order of every step given explicitly (per-step order control).
* :func:`diffusers_rule`: the rule diffusers uses for a given solver.

Rules are frozen (hashable) dataclasses; solvers hold them as static options.

Example:
  >>> import diffax
  >>> s = diffax.samplers.UniPC(order=3, lower_order_final=diffax.samplers.StepRatio())
  >>> s.lower_order_final.max_ratio
  2.0
"""

from __future__ import annotations

import abc
import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from diffax.samplers._base import StepContext
from diffax.typing import Array

__all__ = ["FinalOrder", "StepCount", "StepRatio", "Orders", "diffusers_rule", "default_rule",
           "as_rule", "resolve", "DEFAULT_RULE"]


class FinalOrder(abc.ABC):
    """A rule bounding the order of each step of a multistep solver (module docstring)."""

    @abc.abstractmethod
    def cap(self, ctx: StepContext, lam: Array) -> Array:
        """The largest order step ``ctx.index`` may use (int32 scalar).

        Args:
          ctx: the step's context (``ctx.index``, ``ctx.num_steps``, ``ctx.denoise_final``).
          lam: the half log-SNR of the whole grid ``[num_steps + 1]`` (may end at ``inf``).
        """

    def check(self, num_steps: int) -> None:
        """Eager checks against the grid's step count (ValueError on a mismatch)."""
        del num_steps


@dataclasses.dataclass(frozen=True)
class StepCount(FinalOrder):
    """``min(order, steps left)`` on grids with fewer than ``below`` steps.

    Args:
      below: apply on grids with fewer steps than this (``None``: on every grid).
      count_denoise_final: with ``denoise_final=True``, count its evaluation as one more
        (order-1) step, so the last grid step may use order 2.

    Example:
      >>> StepCount(below=None).below is None
      True
    """

    below: int | None = 15
    count_denoise_final: bool = False

    def __post_init__(self):
        if self.below is not None and (isinstance(self.below, bool) or not isinstance(
                self.below, (int, np.integer)) or self.below < 1):
            raise ValueError(f"StepCount: `below` must be an int >= 1 or None, got "
                             f"{self.below!r}.")
        if not isinstance(self.count_denoise_final, bool):
            raise ValueError(f"StepCount: `count_denoise_final` must be a bool, got "
                             f"{self.count_denoise_final!r}.")

    def cap(self, ctx, lam):
        total = ctx.num_steps + int(self.count_denoise_final and ctx.denoise_final)
        if self.below is not None and total >= self.below:
            return jnp.int32(np.iinfo(np.int32).max)
        return (jnp.int32(total) - ctx.index).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class StepRatio(FinalOrder):
    """diffax's rule: order ``q`` only where the step ``h_i`` (half log-SNR) is at most
    ``max_ratio`` times each of the ``q - 1`` steps before it; with ``long_step``, a step at
    least that long also uses at most ``min(order, steps left)``.

    Extrapolating over a step ``r`` times longer than the node spacing multiplies the
    differences of past outputs by weights that grow like ``r^(q-1)``; lowering the order
    exactly there fixes the end of DDPM's grids (where the step into ``t_min`` is 2-10 times
    the one before) for every ``N``, and leaves smooth grids (log-SNR-uniform, Karras) at full
    order everywhere. ``denoise_final``'s evaluation is a step of infinite length, taken at
    order 1 in any case. On grids of uniformly long steps (few steps: ``h >= 1``, e.g. 5 steps
    of 1.9 on VP's log-SNR grid) no ratio is large, but a third-order extrapolation over such
    a step into the data end is itself the error (DPM-Solver++(3M) at 5 steps: 2.3x DDIM-like
    error without lowering): ``long_step`` then lowers the last steps as DPM-Solver's
    ``lower_order_final`` does, by their length instead of by the grid's step count, counting
    ``denoise_final``'s evaluation as a step. ``StepRatio(long_step=1.0)`` is the default rule
    of the multistep solvers whose extrapolation weights grow with the step (:func:`default_rule`).

    Args:
      max_ratio: the largest ``h_i / h_{i-j}`` accepted (> 1; default 2).
      long_step: a step of at least this length in the half log-SNR uses at most
        ``min(order, steps left)`` (``None``, the default: no such bound).

    Example:
      >>> StepRatio(max_ratio=3.0).max_ratio
      3.0
    """

    max_ratio: float = 2.0
    long_step: float | None = None

    def __post_init__(self):
        if isinstance(self.max_ratio, bool) or not isinstance(
                self.max_ratio, (int, float, np.floating)) or not (
                math.isfinite(self.max_ratio) and self.max_ratio >= 1.0):
            raise ValueError(f"StepRatio: `max_ratio` must be a finite number >= 1, got "
                             f"{self.max_ratio!r}.")
        if self.long_step is not None and (isinstance(self.long_step, bool) or not isinstance(
                self.long_step, (int, float, np.floating)) or not (
                math.isfinite(self.long_step) and self.long_step > 0.0)):
            raise ValueError(f"StepRatio: `long_step` must be a finite number > 0 or None, got "
                             f"{self.long_step!r}.")

    def cap(self, ctx, lam):
        h = jnp.diff(lam)  # [N]; inf where the grid ends at clean data
        i = ctx.index
        h_i = h[i]
        big = jnp.int32(np.iinfo(np.int32).max)
        # The order may rise by one per earlier step j = 1, 2, ... as long as each satisfies
        # the ratio; at most 3 past steps matter for orders up to 4.
        q = jnp.int32(1)
        ok = jnp.ones((), bool)
        for j in range(1, 4):
            prev = h[jnp.maximum(i - j, 0)]
            ok = ok & (i - j >= 0) & (h_i <= self.max_ratio * prev)
            q = q + ok.astype(jnp.int32)
        q = jnp.where(q >= 4, big, q)
        if self.long_step is None:
            return q
        left = jnp.int32(ctx.num_steps + int(ctx.denoise_final)) - i
        return jnp.where(h_i >= self.long_step, jnp.minimum(q, left), q).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Orders(FinalOrder):
    """The order of every step given explicitly (an upper bound: the warm-up still applies).

    Args:
      orders: a tuple of ints >= 1, one per grid step (length ``num_steps``).

    Example:
      >>> Orders((1, 2, 3, 3, 2, 1)).orders[-1]
      1
    """

    orders: tuple[int, ...] = ()

    def __post_init__(self):
        orders = tuple(self.orders)
        if not orders or any(isinstance(q, bool) or not isinstance(q, (int, np.integer))
                             or q < 1 for q in orders):
            raise ValueError(f"Orders: `orders` must be a non-empty tuple of ints >= 1, got "
                             f"{self.orders!r}.")
        object.__setattr__(self, "orders", tuple(int(q) for q in orders))

    def check(self, num_steps):
        if len(self.orders) != num_steps:
            raise ValueError(f"Orders: `orders` has {len(self.orders)} entries but the grid has "
                             f"{num_steps} steps.")

    def cap(self, ctx, lam):
        return jnp.asarray(self.orders, jnp.int32)[ctx.index]


def as_rule(value: bool | FinalOrder | None, owner: str) -> FinalOrder | None:
    """``lower_order_final`` as a rule: ``True`` is :class:`StepCount` (below 15), ``False``
    none, ``None`` the solver's default (checked, returned as ``None``); raises a ValueError
    naming ``owner`` for anything else."""
    if isinstance(value, FinalOrder):
        return value
    if isinstance(value, bool):
        return StepCount() if value else None
    if value is None:
        return None
    raise ValueError(f"{owner}: `lower_order_final` must be a bool, None (the solver's "
                     f"default) or a rule from diffax.samplers (StepCount, StepRatio, Orders), "
                     f"got {value!r}.")


DEFAULT_RULE = StepRatio(max_ratio=2.0, long_step=1.0)
"""The default rule of the data-prediction multistep solvers (DPM-Solver++ multistep, UniPC)."""


def default_rule(solver: object) -> bool | FinalOrder:
    """The rule ``solver`` uses with ``lower_order_final=None`` (the default): the one that
    measured most accurate for its frame (tools/bench_samplers.py; README "Benchmarks").

    * DPM-Solver++ (multistep) and UniPC, data prediction: ``StepRatio(max_ratio=2.0,
      long_step=1.0)``. The step's weight ``e^(lam - lam_s)`` sits at its end, so the
      extrapolation reaches over the whole step: lower where the step jumps, and on the last
      steps when they are long.
    * DPM-Solver (multistep) and ``DEIS(interpolation="log_snr")``, noise prediction with a
      polynomial in the log-SNR: ``StepRatio(max_ratio=2.0)``. The weight ``e^-lam`` sits at
      the step's start: a long step is no danger in itself (``long_step`` measured slightly
      worse), a jump in the node spacing still is.
    * ``DEIS(interpolation="time")`` (tAB) and :class:`~diffax.samplers.IPNDM`: ``False``
      (their polynomial in time / fixed Adams-Bashforth weights measured best at full order
      on every grid, up to 4x better than any lowering on DDPM's grids).
    * singlestep DPM-Solver(++) (no extrapolation) and the adaptive method: ``True``
      (DPM-Solver-fast's order pattern ``[3, ..., 3, 2, 1]`` on grids below 15 steps).
    * anything else (:class:`~diffax.samplers.LMS`): ``False``.

    Example:
      >>> import diffax
      >>> default_rule(diffax.samplers.UniPC()).long_step
      1.0
      >>> default_rule(diffax.samplers.DPMSolver(method="singlestep"))
      True
    """
    from diffax.samplers._dpm_solver import _DPMBase
    from diffax.samplers._multistep import DEIS
    from diffax.samplers._unipc import UniPC

    if isinstance(solver, _DPMBase):
        if solver.method != "multistep":
            return True
        return StepRatio(max_ratio=2.0) if solver.noise_prediction else DEFAULT_RULE
    if isinstance(solver, UniPC):
        return DEFAULT_RULE
    if isinstance(solver, DEIS) and solver.interpolation == "log_snr":
        return StepRatio(max_ratio=2.0)
    return False


def resolve(solver: object) -> bool | FinalOrder:
    """``solver.lower_order_final``, or :func:`default_rule` where it is ``None``."""
    value = getattr(solver, "lower_order_final", None)
    return default_rule(solver) if value is None else value


def diffusers_rule(solver: object) -> FinalOrder:
    """The rule diffusers' scheduler for ``solver`` uses with ``lower_order_final=True``:
    :class:`StepCount` below 15 steps for DPM-Solver(++) and DEIS, on every grid for UniPC,
    each counting ``denoise_final`` as the final order-1 step.

    Example:
      >>> import diffax
      >>> diffusers_rule(diffax.samplers.UniPC()).below is None
      True
    """
    from diffax.samplers._unipc import UniPC

    return StepCount(below=None if isinstance(solver, UniPC) else 15, count_denoise_final=True)
