"""diffusers' scheduler configs as diffax processes, denoisers and time grids.

:func:`load_scheduler` reads a diffusers ``scheduler_config.json`` (a folder holding it, the
file, or its dict) and returns a :class:`Scheduler` with

* ``.process``: the :class:`diffax.DiscreteVP` of its betas (``linear``, ``scaled_linear``,
  ``squaredcos_cap_v2`` or ``trained_betas``, over ``num_train_timesteps``), computed in
  float64;
* ``.prediction``: ``"eps"``, ``"v"`` or ``"x0"`` (``prediction_type`` epsilon / v_prediction /
  sample), the string for :func:`diffax.as_denoiser`;
* ``.grid(num_steps)``: the decreasing times for ``diffax.sample(..., schedule=)``, with the
  scheduler's ``timestep_spacing`` and ``steps_offset`` and its final point (``t_min``, or
  ``t = 0`` for ``final_sigmas_type="zero"`` / DDIM's ``set_alpha_to_one=True``);
* ``.solver``: the diffax solver with the scheduler's own update and lower-order rule;
* ``.denoiser(net)``: a network taking diffusers' integer timesteps, ``net(x, k)``, as a
  diffax denoiser (with ``clip_sample``'s clipping of the ``x0`` prediction).

diffusers' timestep ``k`` is diffax's time ``(k + 1) / T`` on the process's grid, so
``alpha(t)^2`` is exactly ``alphas_cumprod[k]``.

Reproduced exactly (the same computation, up to floating-point rounding). Parity-tested on
committed trajectories of diffusers 0.42.1 (to 1e-4 relative; measured <= 8.6e-7): DDIM
(``leading`` + ``steps_offset=1``, ``trailing``), DPM-Solver++(2M) (every spacing, both final
sigmas, eps / v / x0, cosine betas), UniPC-2/-3 (bh1, bh2), DEIS-2/-3 (``logrho``; diffusers'
third-order closed form loses digits to its float32 sigmas, up to 1.7e-4: against its loop
with float64 sigmas diffax agrees to 5.3e-6) and DDPM (with and without ``clip_sample``, driven
by diffusers' own noise draws through ``noise_fn``: <= 1.6e-6). The rest below is the same mapping
but not parity-tested (DPM-Solver++ orders 1 and 3):

* ``DDIMScheduler`` with ``eta = 0``: ``leading`` (any ``steps_offset``) and ``trailing`` when
  ``N`` divides ``T``; ``set_alpha_to_one`` both ways; ``clip_sample`` when the clipping is
  inactive, or with ``use_clipped_model_output=True`` (diffax's DDIM recomputes ``eps`` from
  the clipped ``x0``; diffusers' default keeps the network's ``eps``).
* ``DPMSolverMultistepScheduler`` (``dpmsolver++``, ``solver_order`` 1-3, ``midpoint``),
  ``UniPCMultistepScheduler`` (``bh1``/``bh2``, ``predict_x0``, ``solver_order`` 1-3,
  ``disable_corrector=[]``), ``DEISMultistepScheduler`` (``logrho``, the grid and rule; its
  update is DEIS's log-SNR interpolation integrated by quadrature, the same integral as
  diffusers' closed form): every
  ``timestep_spacing`` with ``steps_offset``, ``final_sigmas_type`` ``zero`` / ``sigma_min``,
  ``lower_order_final`` (diffusers' rule, :func:`diffax.samplers.diffusers_rule`).
* ``DDPMScheduler`` (``variance_type="fixed_small"``): DDPM's posterior with ``clip_sample``
  (the same distribution; with diffusers' noise given through ``noise_fn``, the same
  trajectory).

Not reproduced (a ValueError names the key): ``thresholding``, ``use_karras_sigmas`` and the
other sigma re-spacings, ``rescale_betas_zero_snr``, ``lambda_min_clipped`` above ``-inf``,
``variance_type`` ``learned``/``learned_range``, ``euler_at_final``, DPM-Solver's
``algorithm_type`` other than ``dpmsolver++`` and its ``heun`` solver_type, ``timestep_spacing``
values other than the three; DDIM's ``linspace`` spacing and ``trailing`` with ``N`` not
dividing ``T`` (its step goes to ``k - T // N``, not to the next timestep: not one grid).

Example:
  >>> import diffax
  >>> s = diffax.interop.load_scheduler({"_class_name": "DDIMScheduler",
  ...                                    "num_train_timesteps": 1000, "beta_schedule": "linear",
  ...                                    "timestep_spacing": "trailing"})
  >>> s.prediction, [round(float(t), 3) for t in s.grid(4)]
  ('eps', [1.0, 0.75, 0.5, 0.25, 0.0])
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from diffax._checks import check_int
from diffax.parameterization import as_denoiser
from diffax.processes import DiscreteVP
from diffax.samplers import (
    DDIM,
    DDPM,
    DEIS,
    DPMSolverPP,
    Solver,
    UniPC,
    diffusers_rule,
)
from diffax.schedules import Spacing
from diffax.typing import Array, Denoiser

__all__ = ["Scheduler", "load_scheduler", "betas_from_config", "timestep_denoiser"]

_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_DDIM = ("DDIMScheduler",)
_MULTISTEP = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")
_DDPM = ("DDPMScheduler",)
_KNOWN = _DDIM + _MULTISTEP + _DDPM
# diffusers' __init__ defaults that change the grid or the update, per scheduler class.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "DDIMScheduler": {"timestep_spacing": "leading", "set_alpha_to_one": True,
                      "clip_sample": True},
    "DDPMScheduler": {"timestep_spacing": "leading", "clip_sample": True,
                      "variance_type": "fixed_small"},
    "DPMSolverMultistepScheduler": {"timestep_spacing": "linspace", "final_sigmas_type": "zero",
                                    "solver_order": 2, "algorithm_type": "dpmsolver++",
                                    "solver_type": "midpoint", "lower_order_final": True},
    "UniPCMultistepScheduler": {"timestep_spacing": "linspace", "final_sigmas_type": "zero",
                                "solver_order": 2, "solver_type": "bh2", "predict_x0": True,
                                "lower_order_final": True, "disable_corrector": []},
    "DEISMultistepScheduler": {"timestep_spacing": "linspace", "final_sigmas_type": "sigma_min",
                               "solver_order": 2, "algorithm_type": "deis",
                               "solver_type": "logrho", "lower_order_final": True},
}
# Options that are fine at these values only (otherwise: not reproduced).
_MUST_BE = {
    "thresholding": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
    "use_beta_sigmas": False, "use_lu_lambdas": False, "use_flow_sigmas": False,
    "rescale_betas_zero_snr": False, "euler_at_final": False, "use_dynamic_shifting": False,
    "timestep_type": "discrete",
}


@dataclasses.dataclass(frozen=True)
class Scheduler:
    """A diffusers scheduler config read by :func:`load_scheduler` (see the module docstring).

    Attributes:
      process: the :class:`diffax.DiscreteVP` of the config's betas.
      prediction: ``"eps"``, ``"v"`` or ``"x0"``, for :func:`diffax.as_denoiser`.
      config: the config dict with diffusers' defaults filled in.
    """

    process: DiscreteVP
    prediction: str
    config: Mapping[str, Any]

    @property
    def class_name(self) -> str:
        return str(self.config["_class_name"])

    @property
    def spacing(self) -> Spacing:
        """The :class:`diffax.schedules.Spacing` of this scheduler."""
        conf = self.config
        if self.class_name in _DDIM:
            clean = bool(conf["set_alpha_to_one"])
        elif self.class_name in _DDPM:
            clean = True  # DDPM's last step is x0 = D(x_1, t_1): noise-free, to clean data
        else:
            clean = conf["final_sigmas_type"] == "zero"
        return Spacing(spacing=conf["timestep_spacing"], steps_offset=int(conf.get(
            "steps_offset", 0) or 0), clean_end=clean, ddim=self.class_name in _DDIM + _DDPM)

    def grid(self, num_steps: int) -> Array:
        """The decreasing times of diffusers' ``set_timesteps(num_steps)`` followed by its final
        point, as a float64 NumPy array for ``diffax.sample(schedule=...)``.

        DDIM and DDPM grids whose last timestep is 0 with ``set_alpha_to_one=False`` leave out
        diffusers' final zero-length step (``num_steps`` times then, one evaluation fewer).
        """
        return np.asarray(self.spacing(self.process, num_steps, dtype=jnp.float64), np.float64)

    def timesteps(self, num_steps: int) -> np.ndarray:
        """diffusers' integer timesteps for ``num_steps`` (``scheduler.timesteps``)."""
        return self.spacing.timesteps(self.process, num_steps)

    @property
    def solver(self) -> Solver:
        """The diffax solver that takes diffusers' steps (with its lower-order rule)."""
        conf, name = self.config, self.class_name
        if name in _DDIM:
            return DDIM()
        if name in _DDPM:
            return DDPM()
        order = int(conf["solver_order"])
        if name == "DPMSolverMultistepScheduler":
            s = DPMSolverPP(order=order)
        elif name == "UniPCMultistepScheduler":
            s = UniPC(order=order, variant=conf["solver_type"])
        else:
            s = DEIS(order=order, interpolation="log_snr")
        rule = diffusers_rule(s) if conf["lower_order_final"] else False
        return dataclasses.replace(s, lower_order_final=rule)

    def denoiser(self, net: Callable[[Array, Array], Array]) -> Denoiser:
        """``net(x, k)`` taking diffusers' integer timesteps ``k`` ``[B]`` (int32) as a diffax
        denoiser ``D(x, t)``; with ``clip_sample`` the ``x0`` prediction is clipped to
        ``[-clip_sample_range, clip_sample_range]`` as diffusers does."""
        clip = None
        if self.config.get("clip_sample", False):
            clip = float(self.config.get("clip_sample_range", 1.0))
        return timestep_denoiser(net, self.process, prediction=self.prediction, clip=clip)


def timestep_denoiser(net: Callable[[Array, Array], Array], process: DiscreteVP, *,
                      prediction: str = "eps", clip: float | None = None) -> Denoiser:
    """A network ``net(x, k)`` on diffusers' / DDPM's integer timesteps ``k = 0..T-1`` as a
    diffax denoiser ``D(x, t)`` of ``process`` (``k = process.index(t)``, the nearest step).

    Args:
      net: ``net(x, k)`` with ``x`` ``[B, ...]`` and ``k`` int32 ``[B]``, returning the
        ``prediction`` shaped like ``x``.
      process: the :class:`diffax.DiscreteVP` the network was trained with.
      prediction: ``"eps"``, ``"v"`` or ``"x0"`` (see :func:`diffax.as_denoiser`).
      clip: clip the ``x0`` prediction to ``[-clip, clip]`` (diffusers' ``clip_sample``).

    Example:
      >>> import jax.numpy as jnp, diffax
      >>> p = diffax.DiscreteVP.linear()
      >>> D = timestep_denoiser(lambda x, k: jnp.zeros_like(x), p, clip=1.0)
      >>> D(jnp.full((2, 3), 5.0), jnp.array([0.5, 0.5])).max().item()
      1.0
    """
    if not isinstance(process, DiscreteVP):
        raise ValueError(f"`process` must be a diffax.DiscreteVP (integer timesteps), got "
                         f"{type(process).__name__}.")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"`clip` must be a positive number or None, got {clip!r}.")
    d = as_denoiser(lambda x, t: net(x, process.index(t)), process, prediction=prediction)
    if clip is None:
        return d
    return lambda x, t: jnp.clip(d(x, t), -clip, clip)


def betas_from_config(conf: Mapping[str, Any]) -> np.ndarray:
    """diffusers' betas (float64) for ``beta_schedule`` / ``trained_betas`` of ``conf``.

    Example:
      >>> betas_from_config({"num_train_timesteps": 10, "beta_schedule": "linear"})[[0, -1]]
      array([0.0001, 0.02  ])
    """
    num = _int(conf, "num_train_timesteps", 1000)
    if conf.get("trained_betas") is not None:
        betas = np.asarray(conf["trained_betas"], np.float64)
        if betas.shape != (num,):
            raise ValueError(f"scheduler config: `trained_betas` has shape {betas.shape}, "
                             f"expected ({num},) for num_train_timesteps={num}.")
        return betas
    start = float(conf.get("beta_start", 0.0001))
    end = float(conf.get("beta_end", 0.02))
    kind = conf.get("beta_schedule", "linear")
    if kind == "linear":
        return np.linspace(start, end, num, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, num, dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - abar((i + 1) / num) / abar(i / num), 0.999)
                         for i in range(num)], np.float64)
    raise ValueError(f"scheduler config: `beta_schedule` must be 'linear', 'scaled_linear' or "
                     f"'squaredcos_cap_v2' (or give `trained_betas`), got {kind!r}.")


def load_scheduler(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> Scheduler:
    """Reads a diffusers scheduler config: a folder holding ``scheduler_config.json`` (or a
    ``scheduler/`` subfolder with it, as in a pipeline folder), the JSON file, or its dict.

    Returns:
      A :class:`Scheduler` with ``.process``, ``.prediction``, ``.grid(num_steps)``,
      ``.solver`` and ``.denoiser(net)``.

    Raises:
      ValueError: naming the config key, for an unknown scheduler class, beta schedule,
        prediction type or timestep spacing, or an option that is not reproduced (module
        docstring); FileNotFoundError for a missing file. Never downloads anything.

    Example:
      >>> import jax, jax.numpy as jnp, diffax
      >>> s = diffax.interop.load_scheduler({"_class_name": "DPMSolverMultistepScheduler",
      ...                                    "beta_schedule": "scaled_linear",
      ...                                    "beta_start": 0.00085, "beta_end": 0.012})
      >>> D = s.denoiser(lambda x, k: jnp.zeros_like(x))
      >>> x = s.process.prior_sample(jax.random.key(0), (2, 4))
      >>> res = diffax.sample(None, s.process, D, x, solver=s.solver, schedule=s.grid(10))
      >>> int(res.nfe), float(res.times[-1])
      (10, 0.0)
    """
    conf = _read(path_or_dict)
    name = conf.get("_class_name", "DDIMScheduler")
    if name not in _KNOWN:
        raise ValueError(f"scheduler config: `_class_name` {name!r} is not supported; known: "
                         f"{', '.join(_KNOWN)}.")
    full = {"_class_name": name, **_DEFAULTS[name], **conf}
    for key, ok in _MUST_BE.items():
        if key in full and full[key] is not None and full[key] != ok:
            raise ValueError(f"scheduler config: `{key}`={full[key]!r} is not reproduced by "
                             f"diffax (supported: {ok!r}).")
    lmc = full.get("lambda_min_clipped", -math.inf)
    if lmc is not None and float(lmc) != -math.inf:
        raise ValueError(f"scheduler config: `lambda_min_clipped`={lmc!r} is not reproduced "
                         f"(supported: -inf).")
    if full["timestep_spacing"] not in ("leading", "trailing", "linspace"):
        raise ValueError(f"scheduler config: `timestep_spacing` must be 'leading', 'trailing' "
                         f"or 'linspace', got {full['timestep_spacing']!r}.")
    pred = full.get("prediction_type", "epsilon")
    if pred not in _PREDICTIONS:
        raise ValueError(f"scheduler config: `prediction_type` must be one of "
                         f"{', '.join(map(repr, _PREDICTIONS))}, got {pred!r}.")
    if name == "DPMSolverMultistepScheduler":
        if full["algorithm_type"] != "dpmsolver++":
            raise ValueError(f"scheduler config: `algorithm_type`={full['algorithm_type']!r} is "
                             f"not reproduced (supported: 'dpmsolver++').")
        if full["solver_type"] != "midpoint":
            raise ValueError(f"scheduler config: `solver_type`={full['solver_type']!r} is not "
                             f"reproduced (supported: 'midpoint').")
    if name == "UniPCMultistepScheduler":
        if full["solver_type"] not in ("bh1", "bh2") or not full["predict_x0"] or \
                full["disable_corrector"]:
            raise ValueError("scheduler config: UniPC is reproduced with `solver_type` 'bh1' or "
                             "'bh2', `predict_x0`=true and `disable_corrector`=[] only.")
    if name == "DDPMScheduler" and full["variance_type"] != "fixed_small":
        raise ValueError(f"scheduler config: `variance_type`={full['variance_type']!r} is not "
                         f"reproduced (supported: 'fixed_small').")
    if name in _MULTISTEP and _int(full, "solver_order", 2) not in (1, 2, 3):
        raise ValueError(f"scheduler config: `solver_order` must be 1, 2 or 3, got "
                         f"{full['solver_order']!r}.")
    if name in _MULTISTEP and full["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise ValueError(f"scheduler config: `final_sigmas_type` must be 'zero' or "
                         f"'sigma_min', got {full['final_sigmas_type']!r}.")
    steps_offset = full.get("steps_offset", 0) or 0
    check_int(steps_offset, name="steps_offset", where="scheduler config", minimum=0)
    process = DiscreteVP(betas=betas_from_config(full))
    return Scheduler(process=process, prediction=_PREDICTIONS[pred], config=full)


def _int(conf: Mapping[str, Any], key: str, default: int) -> int:
    return check_int(conf.get(key, default), name=key, where="scheduler config")


def _read(src: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(src, Mapping):
        return dict(src)
    if not isinstance(src, (str, os.PathLike)):
        raise ValueError(f"`path_or_dict` must be a folder, a JSON file or a dict, got "
                         f"{type(src).__name__}.")
    path = os.fspath(src)
    if os.path.isdir(path):
        for cand in ("scheduler_config.json", os.path.join("scheduler",
                                                           "scheduler_config.json")):
            if os.path.isfile(os.path.join(path, cand)):
                path = os.path.join(path, cand)
                break
        else:
            raise FileNotFoundError(f"no scheduler_config.json in {src!r} (nor in its "
                                    f"scheduler/ subfolder).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"scheduler config {src!r} does not exist.")
    with open(path) as f:
        try:
            conf = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"scheduler config {path!r} is not valid JSON: {e}") from e
    if not isinstance(conf, dict):
        raise ValueError(f"scheduler config {path!r} must hold a JSON object.")
    return conf
