"""Config -> objects. The only place in diffax where config strings become classes.

A training config is an ml_collections ``ConfigDict`` with sections ``process``, ``model``,
``loss``, ``optim``, ``train``, ``data``, ``sample`` and ``eval`` plus a top-level ``seed``.
Each ``build_*`` function reads one section, rejects keys it does not know (naming them, so a
typo fails at start rather than being ignored) and returns typed objects; the library core
never sees a string. Every key but ``<section>.name`` has a default here, so a config only
states what it changes.

Keys (defaults in brackets):

* ``process.name``: ``vp`` | ``subvp`` | ``cosine`` | ``ve`` | ``edm`` | ``rectified_flow`` |
  ``ddpm``; with that process's numbers (``beta_min``, ``beta_max``, ``sigma_min``,
  ``sigma_max``, ``sigma_data``, ``s``, ``t_min``, ``t_max``; for ``ddpm``: ``num_steps``,
  ``schedule`` [linear] | cosine, ``beta_start``, ``beta_end``).
* ``model.name``: ``unet`` | ``mlp``; ``model.variant`` [tiny]; ``model.conditional``
  [False] (class labels from the data); ``model.kwargs``: field overrides of the variant's
  config. The data's shape fills ``image_size``/``num_channels`` (UNet) or ``dim`` (MLP).
* ``loss.weighting`` [eps]: eps | x0 | v | score | likelihood | edm | flow;
  ``loss.time_sampler`` [uniform]: uniform | lognormal | importance | discrete;
  ``loss.variates`` [iid]: iid | low_discrepancy | antithetic; ``loss.prediction`` [eps]:
  eps | x0 | v | score | velocity | edm (EDM preconditioning); ``loss.noise_input`` [time for
  predictions, edm for edm]: time | log_snr | edm | index; ``loss.time_scale`` [1.0];
  ``loss.sigma_data`` [process's]; ``loss.lognormal_mean`` [-1.2]; ``loss.lognormal_std``
  [1.2]; ``loss.truncate`` [False]; ``loss.reduce_mean`` [True]; ``loss.p_uncond`` [0.0]:
  label dropout for classifier-free guidance (conditional models only).
* ``optim.learning_rate`` [2e-4], ``warmup_steps`` [0], ``schedule`` [constant] | cosine,
  ``end_learning_rate`` [0], ``b1`` [0.9], ``b2`` [0.999], ``eps`` [1e-8], ``weight_decay`` [0],
  ``grad_clip`` [1.0], ``ema_decays`` [(0.9999,)], ``ema_warmup`` [False].
* ``sample.solver`` [euler]: euler | heun | ddim | ddpm | euler_maruyama | pc |
  edm_stochastic | adaptive | dpm_solver | dpm_solver_pp | unipc | deis | ipndm | lms;
  ``sample.num_steps`` [50]; ``sample.num_samples`` [64]; ``sample.use_ema`` [True];
  ``sample.schedule`` [default: the solver's own]: time_uniform | quadratic | log_snr |
  karras (``sample.rho`` [7.0]); the solvers' options ``sample.order`` [2] (1-3; 1-4 for
  ipndm and lms), ``sample.method`` (dpm_solver: singlestep | multistep | adaptive;
  dpm_solver_pp: singlestep | multistep), ``sample.variant`` (unipc: bh1 | bh2),
  ``sample.corrector`` (unipc), ``sample.sde`` (dpm_solver_pp), ``sample.lower_order_final``,
  ``sample.eta``, ``sample.rtol``, ``sample.atol``, ``sample.churn``, ``sample.snr``; an
  option the chosen solver does not have is ignored.
* ``data.name`` and the keyword arguments of :func:`diffax.data.make_dataset` (``split``,
  ``data_dir``, ``random_flip``, ``image_size``, ...).
* ``train``: see :class:`TrainOptions`.

:func:`check_config` validates a whole config before anything is computed or written:
unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the key.

Example:
  >>> import ml_collections
  >>> from diffax.train import build
  >>> cfg = ml_collections.ConfigDict({"name": "edm", "sigma_max": 40.0})
  >>> build.build_process(cfg)
  EDM(sigma_min=0.002, sigma_max=40.0, sigma_data=0.5)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optax

from diffax import cld, losses, processes, samplers, schedules
from diffax.cld import CLD
from diffax.processes import Process
from diffax.train import step as step_lib
from diffax.typing import ApplyFn

__all__ = [
    "ConfigError",
    "TrainOptions",
    "SECTIONS",
    "TRAIN_KEYS",
    "check_config",
    "train_options",
    "dataset_kwargs",
    "Experiment",
    "build_experiment",
    "build_process",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_solver",
    "build_schedule",
    "build_dataset_info",
    "build_data_iterator",
    "section",
]


def section(config: Any, name: str) -> dict[str, Any]:
    """``config[name]`` as a plain dict (empty if missing)."""
    value = config.get(name) if hasattr(config, "get") else None
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(f"config.{name} must be a ConfigDict section, got {type(value).__name__}.")


class ConfigError(ValueError):
    """A config key with a bad name, type or value; ``key`` names it (``"train.batch_size"``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _check_keys(cfg: Mapping[str, Any], sec: str, allowed: set[str]) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"{sec}.{unknown[0]}",
                          f"unknown config key(s) {', '.join(f'{sec}.{k}' for k in unknown)}; "
                          f"known keys of `{sec}`: {', '.join(sorted(allowed))}.")


_REQUIRED = object()


def _integer(cfg: Mapping[str, Any], sec: str, key: str, default: Any = _REQUIRED, *,
             minimum: int | None = None, maximum: int | None = None) -> Any:
    """``cfg[key]`` as an int (``None`` passes if the default is ``None``)."""
    value = cfg.get(key, default)
    if value is _REQUIRED:
        raise ConfigError(f"{sec}.{key}", f"config key `{sec}.{key}` is required.")
    if value is None and default is None:
        return None
    ok = (isinstance(value, int | np.integer) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    if not ok:
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be an integer, got "
                          f"{value!r} ({type(value).__name__}).")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]")
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be an integer {bounds}, "
                          f"got {value!r}.")
    return value


def _real(cfg: Mapping[str, Any], sec: str, key: str, default: Any, *,
          low: float | None = None, high: float | None = None, low_open: bool = False,
          high_open: bool = False, allow_none: bool = False) -> Any:
    """``cfg[key]`` as a finite float in the given interval."""
    value = cfg.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
            or not np.isfinite(value):
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be a finite number, got "
                          f"{value!r} ({type(value).__name__}).")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}" \
                   f"{')' if high_open or high is None else ']'}"
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must lie in {interval}, got "
                          f"{value!r}.")
    return value


def _boolean(cfg: Mapping[str, Any], sec: str, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be True or False, got "
                          f"{value!r} ({type(value).__name__}).")
    return bool(value)


def _string(cfg: Mapping[str, Any], sec: str, key: str, default: Any = _REQUIRED) -> Any:
    value = cfg.get(key, default)
    if value is _REQUIRED or value is None:
        raise ConfigError(f"{sec}.{key}", f"config key `{sec}.{key}` is required.")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be a non-empty string, "
                          f"got {value!r}.")
    return value


def _choice(cfg: Mapping[str, Any], sec: str, key: str, options: Mapping[str, Any],
            default: str | None = None) -> Any:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"{sec}.{key}", f"config key `{sec}.{key}` is required; one of "
                          f"{', '.join(map(repr, options))}.")
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key}={value!r} is not one of "
                          f"{', '.join(map(repr, options))}.")
    return options[value]


# --------------------------------------------------------------------------------------------
# process


def _pick(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


def _ddpm(cfg: Mapping[str, Any]) -> Process:
    schedule = cfg.get("schedule", "linear")
    if schedule == "linear":
        return processes.DiscreteVP.linear(**_pick(cfg, ("num_steps", "beta_start", "beta_end")))
    if schedule == "cosine":
        return processes.DiscreteVP.cosine(**_pick(cfg, ("num_steps", "s")))
    raise ValueError(f"config.process.schedule={schedule!r} is not one of 'linear', 'cosine'.")


_PROCESSES: dict[str, tuple[Callable[..., Process], tuple[str, ...]]] = {
    "vp": (processes.VP, ("beta_min", "beta_max", "t_min", "t_max")),
    "subvp": (processes.SubVP, ("beta_min", "beta_max", "t_min", "t_max")),
    "cosine": (processes.VP.cosine, ("s", "t_min", "t_max")),
    "ve": (processes.VE, ("sigma_min", "sigma_max", "t_min", "t_max")),
    "edm": (processes.EDM, ("sigma_min", "sigma_max", "sigma_data")),
    "rectified_flow": (processes.RectifiedFlow, ("t_min", "t_max")),
    "ddpm": (lambda **kw: _ddpm(kw), ("num_steps", "schedule", "beta_start", "beta_end", "s")),
    "cld": (CLD, ("beta", "m_inv", "gamma", "t_min", "t_max")),
}


def build_process(cfg: Mapping[str, Any]) -> Process:
    """The forward process of ``config.process`` (see the module docstring)."""
    cfg = dict(cfg)
    factory, keys = _choice(cfg, "process", "name", _PROCESSES)
    _check_keys(cfg, "process", {"name", *keys})
    return factory(**_pick(cfg, keys)) if cfg["name"] != "ddpm" else _ddpm(cfg)


# --------------------------------------------------------------------------------------------
# loss

_WEIGHTINGS: dict[str, Callable[[Any], losses.Weighting]] = {
    "eps": lambda sd: losses.EpsMSE(),
    "x0": lambda sd: losses.X0MSE(),
    "v": lambda sd: losses.VMSE(),
    "score": lambda sd: losses.ScoreMSE(),
    "likelihood": lambda sd: losses.Likelihood(),
    "edm": lambda sd: losses.EDMWeighting(sigma_data=sd),
    "flow": lambda sd: losses.FlowMatching(),
}

_SAMPLERS: dict[str, Callable[..., losses.TimeSampler]] = {
    "uniform": losses.UniformTime,
    "lognormal": losses.LogNormalSigma,
    "importance": losses.ImportanceTime,
    "discrete": losses.DiscreteTime,
}

_VARIATES = {
    "iid": {},
    "low_discrepancy": {"low_discrepancy": True},
    "antithetic": {"antithetic": True},
}

_NOISE_INPUTS: dict[str, Callable[[float], losses.NoiseInput]] = {
    "time": lambda scale: losses.TimeInput(scale=scale),
    "log_snr": lambda scale: losses.LogSNRInput(),
    "edm": lambda scale: losses.EDMNoiseInput(),
    "index": lambda scale: losses.IndexInput(),
}

_PREDICTIONS = ("eps", "x0", "v", "score", "velocity", "edm")

_LOSS_KEYS = {"weighting", "time_sampler", "variates", "prediction", "noise_input",
              "time_scale", "sigma_data", "lognormal_mean", "lognormal_std", "truncate",
              "reduce_mean", "p_uncond"}


def build_loss(cfg: Mapping[str, Any], process: Process, *, conditional: bool = False,
               dropout_key: bool = False, null_label: int | None = None
               ) -> losses.DenoisingLoss:
    """The :class:`diffax.losses.DenoisingLoss` of ``config.loss`` for ``process``.

    Args:
      cfg: the ``loss`` section.
      process: from :func:`build_process`.
      conditional: pass the batch's ``label`` to the network.
      dropout_key: pass a PRNG key to the network as ``key`` (dropout).
      null_label: the model's "no label" index, for ``loss.p_uncond``.
    """
    cfg = dict(cfg)
    if not process.scalar_coefficients:
        return _build_hsm_loss(cfg, process, conditional=conditional, dropout_key=dropout_key)
    _check_keys(cfg, "loss", _LOSS_KEYS)
    sd = cfg.get("sigma_data")
    weighting = _choice(cfg, "loss", "weighting", _WEIGHTINGS, "eps")(sd)
    sampler_cls = _choice(cfg, "loss", "time_sampler", _SAMPLERS, "uniform")
    variates = _choice(cfg, "loss", "variates", _VARIATES, "iid")
    if sampler_cls is losses.LogNormalSigma:
        sampler = sampler_cls(mean=cfg.get("lognormal_mean", -1.2),
                              std=cfg.get("lognormal_std", 1.2),
                              truncate=bool(cfg.get("truncate", False)), **variates)
    else:
        for key in ("lognormal_mean", "lognormal_std", "truncate"):
            if key in cfg:
                raise ValueError(f"config.loss.{key} applies to loss.time_sampler='lognormal' "
                                 f"only, not {cfg.get('time_sampler', 'uniform')!r}.")
        sampler = sampler_cls(**variates)
    prediction = cfg.get("prediction", "eps")
    if prediction not in _PREDICTIONS:
        raise ValueError(f"config.loss.prediction={prediction!r} is not one of "
                         f"{', '.join(map(repr, _PREDICTIONS))}.")
    noise = _choice(cfg, "loss", "noise_input", _NOISE_INPUTS,
                    "edm" if prediction == "edm" else "time")(cfg.get("time_scale", 1.0))
    if prediction == "edm":
        parameterization = losses.EDMPrecond(sigma_data=sd, noise_input=noise)
    else:
        parameterization = losses.Predict(prediction=prediction, noise_input=noise)
    p_uncond = float(cfg.get("p_uncond", 0.0))
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"config.loss.p_uncond={p_uncond!r} must be a probability in [0, 1].")
    if p_uncond > 0 and (not conditional or null_label is None):
        raise ValueError("config.loss.p_uncond > 0 needs a conditional model "
                         "(config.model.conditional=True) with a null label.")
    return losses.DenoisingLoss(
        process=process, weighting=weighting, time_sampler=sampler,
        parameterization=parameterization, reduce_mean=bool(cfg.get("reduce_mean", True)),
        cond_keys=("label",) if conditional else (),
        key_arg="key" if dropout_key else None,
        p_uncond=p_uncond, null_label=null_label if p_uncond > 0 else None)


_HSM_WEIGHTINGS = {"eps": cld.EpsWeighting, "likelihood": cld.LikelihoodWeighting}


def _build_hsm_loss(cfg: dict[str, Any], process: Any, *, conditional: bool,
                    dropout_key: bool) -> cld.HSMLoss:
    """CLD's hybrid score matching (``config.loss``: ``weighting`` eps | likelihood,
    ``prediction`` eps | x0, ``time_scale`` [999], ``reduce_mean`` [True])."""
    _check_keys(cfg, "loss", {"weighting", "prediction", "time_scale", "reduce_mean"})
    weighting = _choice(cfg, "loss", "weighting", _HSM_WEIGHTINGS, "eps")()
    prediction = cfg.get("prediction", "eps")
    if prediction not in ("eps", "x0"):
        raise ValueError(f"config.loss.prediction={prediction!r} is not one of 'eps', 'x0' "
                         f"(process.name='cld').")
    par = cld.CLDPredict(prediction=prediction, time_scale=float(cfg.get("time_scale", 999.0)))
    return cld.HSMLoss(process=process, weighting=weighting, parameterization=par,
                       reduce_mean=bool(cfg.get("reduce_mean", True)),
                       cond_keys=("label",) if conditional else (),
                       key_arg="key" if dropout_key else None)


# --------------------------------------------------------------------------------------------
# model


def _model_overrides(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # JSON/ConfigDict round trips turn tuples into lists; model configs want tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(kwargs).items()}


def build_model(cfg: Mapping[str, Any], info: Any, *, input_copies: int = 1
                ) -> tuple[Any, bool]:
    """The Flax model of ``config.model`` for data described by ``info`` (a ``DataInfo``);
    ``input_copies`` data-shaped arrays enter concatenated on the channel axis (CLD's
    ``(x, v)``: 2).

    Returns:
      ``(model, conditional)``.
    """
    from diffax import models  # Flax networks: imported only when a model is built

    cfg = dict(cfg)
    _check_keys(cfg, "model", {"name", "variant", "conditional", "kwargs"})
    kinds = {"unet": models.UNet, "mlp": models.MLP}
    cls = _choice(cfg, "model", "name", kinds)
    conditional = bool(cfg.get("conditional", False))
    overrides = _model_overrides(cfg.get("kwargs") or {})
    if conditional:
        if not info.num_classes:
            raise ValueError(f"config.model.conditional=True but dataset {info.name!r} has no "
                             "labels.")
        overrides.setdefault("num_classes", info.num_classes)
    if cls is models.UNet:
        if len(info.shape) != 3 or info.shape[0] != info.shape[1]:
            raise ValueError(f"config.model.name='unet' needs square images [H, W, C]; dataset "
                             f"{info.name!r} has examples of shape {info.shape}.")
        overrides.setdefault("image_size", info.shape[0])
        overrides.setdefault("num_channels", info.shape[-1])
        if input_copies != 1:
            overrides.setdefault("in_channels", input_copies * info.shape[-1])
    else:
        if len(info.shape) != 1:
            raise ValueError(f"config.model.name='mlp' needs vectors [D]; dataset "
                             f"{info.name!r} has examples of shape {info.shape}.")
        overrides.setdefault("dim", info.shape[0])
        if input_copies != 1:
            overrides.setdefault("in_dim", input_copies * info.shape[0])
    variant = cfg.get("variant", "tiny")
    try:
        model = cls.from_variant(variant, **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"config.model (name={cfg['name']!r}, variant={variant!r}, "
                         f"kwargs={overrides}): {e}") from e
    return model, conditional


# --------------------------------------------------------------------------------------------
# optimizer


_OPTIM_KEYS = {"learning_rate", "warmup_steps", "schedule", "end_learning_rate", "b1", "b2",
               "eps", "weight_decay", "grad_clip", "ema_decays", "ema_warmup"}


def build_optimizer(cfg: Mapping[str, Any], *, num_steps: int
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optimizer, schedule)`` of ``config.optim`` (see :func:`make_optimizer`)."""
    cfg = dict(cfg)
    _check_keys(cfg, "optim", _OPTIM_KEYS)
    warmup = int(cfg.get("warmup_steps", 0))
    schedule = cfg.get("schedule", "constant")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"config.optim.schedule={schedule!r} is not one of 'constant', "
                         "'cosine'.")
    decay_steps = max(int(num_steps) - warmup, 1) if schedule == "cosine" else None
    try:
        return step_lib.make_optimizer(
            learning_rate=float(cfg.get("learning_rate", 2e-4)), warmup_steps=warmup,
            decay_steps=decay_steps, end_learning_rate=float(cfg.get("end_learning_rate", 0.0)),
            b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.999)),
            eps=float(cfg.get("eps", 1e-8)), weight_decay=float(cfg.get("weight_decay", 0.0)),
            grad_clip=cfg.get("grad_clip", 1.0))
    except ValueError as e:
        raise ValueError(f"config.optim: {e}") from e


# --------------------------------------------------------------------------------------------
# sampler


def _solver_options(cfg: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The solver options among ``keys`` that ``cfg`` sets (the rest keep the class defaults)."""
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


def _solvers(cfg: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
    opts = functools.partial(_solver_options, cfg)
    order = {"order": cfg.get("order", 2)}
    return {
        "euler": samplers.Euler,
        "heun": samplers.Heun,
        "ddim": lambda: samplers.DDIM(eta=cfg.get("eta", 0.0)),
        "ddpm": samplers.DDPM,
        "euler_maruyama": samplers.EulerMaruyama,
        "reverse_diffusion": samplers.ReverseDiffusion,
        "pc": lambda: samplers.PredictorCorrector(snr=cfg.get("snr", 0.16)),
        "edm_stochastic": lambda: samplers.EDMStochastic(S_churn=cfg.get("churn", 0.0)),
        "adaptive": lambda: samplers.Adaptive(rtol=cfg.get("rtol", 1e-5),
                                              atol=cfg.get("atol", 1e-5)),
        "dpm_solver": lambda: samplers.DPMSolver(
            **order, **opts("method", "lower_order_final", "rtol", "atol")),
        "dpm_solver_pp": lambda: samplers.DPMSolverPP(
            **order, **opts("method", "lower_order_final", "sde")),
        "unipc": lambda: samplers.UniPC(
            **order, **opts("variant", "corrector", "lower_order_final")),
        "deis": lambda: samplers.DEIS(**order),
        "ipndm": lambda: samplers.IPNDM(**order),
        "lms": lambda: samplers.LMS(**order),
        "sscs": lambda: samplers.SSCS(final_step=bool(cfg.get("final_step", False))),
    }


_SCHEDULES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "default": lambda cfg: None,
    "time_uniform": lambda cfg: schedules.TimeUniform(),
    "quadratic": lambda cfg: schedules.Quadratic(),
    "log_snr": lambda cfg: schedules.LogSNRUniform(),
    "karras": lambda cfg: schedules.Karras(rho=cfg.get("rho", 7.0)),
}

_SAMPLE_KEYS = {"solver", "num_steps", "num_samples", "use_ema", "order", "eta", "snr",
                "churn", "rtol", "atol", "denoise_final", "schedule", "rho", "method",
                "variant", "corrector", "sde", "lower_order_final", "final_step"}


def build_solver(cfg: Mapping[str, Any]) -> tuple[Any, int]:
    """``(solver, num_steps)`` of ``config.sample``.

    Example:
      >>> solver, n = build_solver({"solver": "unipc", "order": 3, "variant": "bh1",
      ...                           "num_steps": 10})
      >>> type(solver).__name__, solver.order, solver.variant, n
      ('UniPC', 3, 'bh1', 10)
    """
    cfg = dict(cfg)
    _check_keys(cfg, "sample", _SAMPLE_KEYS)
    factory = _choice(cfg, "sample", "solver", _solvers(cfg), "euler")
    num_steps = int(cfg.get("num_steps", 50))
    if num_steps < 1:
        raise ValueError(f"config.sample.num_steps must be >= 1, got {num_steps}.")
    return factory(), num_steps


def build_schedule(cfg: Mapping[str, Any]) -> Any:
    """The :mod:`diffax.schedules` object of ``config.sample.schedule`` (``None``: the solver's
    own ``default_schedule``).

    Example:
      >>> build_schedule({"schedule": "karras", "rho": 5.0})
      Karras(rho=5.0, sigma_min=None, sigma_max=None)
      >>> build_schedule({}) is None
      True
    """
    cfg = dict(cfg)
    return _choice(cfg, "sample", "schedule", _SCHEDULES, "default")(cfg)


# --------------------------------------------------------------------------------------------
# data

_INFO_KEYS = ("data_dir", "folder", "image_size", "channels", "center_crop", "labels")
_DATA_KEYS = {"name", "split", "shuffle", "random_flip", "value_range", "cache", "num_threads",
              "prefetch_buffer_size", *_INFO_KEYS}


def _data_kwargs(cfg: Mapping[str, Any], keys) -> dict[str, Any]:
    out = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    for k in ("image_size", "value_range"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


def dataset_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``config.data`` that say which dataset and where
    (``data_dir``, ``folder``, ``image_size``, ...), for :func:`diffax.data.data_source`,
    :func:`diffax.data.dataset_info` and :func:`diffax.data.load_split`.

    Example:
      >>> dataset_kwargs({"name": "digits", "image_size": [8, 8], "shuffle": True})
      {'image_size': (8, 8)}
    """
    return _data_kwargs(dict(cfg), _INFO_KEYS)


def build_dataset_info(cfg: Mapping[str, Any]) -> Any:
    """``diffax.data.dataset_info`` of ``config.data`` (prepares diffax's own datasets)."""
    from diffax import data

    cfg = dict(cfg)
    _check_keys(cfg, "data", _DATA_KEYS)
    if not cfg.get("name"):
        raise ValueError("config key `data.name` is required.")
    return data.dataset_info(cfg["name"], **dataset_kwargs(cfg))


def build_data_iterator(cfg: Mapping[str, Any], *, seed: int, batch_size: int,
                        shard_index: int = 0, shard_count: int = 1) -> Any:
    """This process's training iterator (``get_state``/``set_state``) for ``config.data``.

    Args:
      cfg: the ``data`` section.
      seed: ``config.seed``.
      batch_size: this process's share of the global batch.
      shard_index: ``jax.process_index()``.
      shard_count: ``jax.process_count()``.
    """
    from diffax import data

    cfg = dict(cfg)
    _check_keys(cfg, "data", _DATA_KEYS)
    kwargs = _data_kwargs(cfg, _DATA_KEYS - {"name"})
    return data.make_iterator(cfg["name"], batch_size=batch_size, seed=int(seed),
                              shard_index=shard_index, shard_count=shard_count, **kwargs)


# --------------------------------------------------------------------------------------------
# everything


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The objects a training run needs, built from a config."""

    process: Process
    loss: losses.DenoisingLoss
    model: Any
    apply_fn: ApplyFn
    """``apply_fn(params, x, t, *, label=None, key=None)`` in inference mode (sampling)."""
    train_apply_fn: ApplyFn
    """The same with ``train=True`` (dropout on; the loss passes ``key``)."""
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    ema_decays: tuple[float, ...]
    ema_warmup: bool
    solver: Any
    sample_steps: int
    data_info: Any
    conditional: bool
    sample_schedule: Any = None
    """The sampling grid's :mod:`diffax.schedules` object (``None``: the solver's default)."""


def build_experiment(config: Any) -> Experiment:
    """Builds every object of a training config (prepares the dataset if it is diffax's own).

    Raises:
      ValueError: naming the config key, for unknown keys or values.
    """
    from diffax import models

    for key in ("seed", "data", "train"):
        if config.get(key) is None:
            raise ValueError(f"config key `{key}` is required.")
    process = build_process(section(config, "process"))
    info = build_dataset_info(section(config, "data"))
    model, conditional = build_model(
        section(config, "model"), info,
        input_copies=1 if process.scalar_coefficients else process.state_size)
    dropout = float(getattr(model.config, "dropout", 0.0)) > 0
    loss = build_loss(section(config, "loss"), process, conditional=conditional,
                      dropout_key=dropout,
                      null_label=getattr(model.config, "null_label", None))
    optim = section(config, "optim")
    optimizer, schedule = build_optimizer(optim, num_steps=int(config.train.num_steps))
    ema_decays = tuple(float(d) for d in optim.get("ema_decays", (0.9999,)))
    solver, sample_steps = build_solver(section(config, "sample"))
    apply_fn = models.apply_fn(model)
    return Experiment(
        process=process, loss=loss, model=model, apply_fn=apply_fn,
        train_apply_fn=functools.partial(apply_fn, train=True), optimizer=optimizer,
        schedule=schedule, ema_decays=ema_decays,
        ema_warmup=bool(optim.get("ema_warmup", False)), solver=solver,
        sample_steps=sample_steps, data_info=info, conditional=conditional,
        sample_schedule=build_schedule(section(config, "sample")))


# --------------------------------------------------------------------------------------------
# the train section, and validating a whole config before any compute

SECTIONS = ("seed", "process", "model", "loss", "optim", "train", "data", "sample", "eval")
"""The top-level keys of a training config (``eval`` is read by :mod:`diffax.cli`)."""

TRAIN_KEYS = frozenset({"num_steps", "batch_size", "checkpoint_every", "n_jitted_steps",
                        "log_every", "sample_every", "keep_last", "keep_every",
                        "async_checkpoint", "nonfinite", "restore_fallback",
                        "heartbeat_timeout"})
"""The keys of ``config.train`` (see :class:`TrainOptions`)."""

_NONFINITE_POLICIES = ("error", "skip")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """``config.train``, checked (defaults in brackets).

    Attributes:
      num_steps: optimizer updates in the run (required).
      batch_size: global batch size, divisible by the device count (required).
      checkpoint_every: steps between (asynchronous) checkpoints (required).
      n_jitted_steps: updates per compiled call [1]; the step counts above are multiples.
      log_every: steps between metric logs [100].
      sample_every: steps between sample grids, 0 for never [0].
      keep_last: checkpoints kept [3] ...
      keep_every: ... plus every step that is a multiple of this [None].
      async_checkpoint: write checkpoints in the background [True].
      nonfinite: what a NaN/inf loss or gradient does ["error"]: ``"error"`` stops the run
        with an error naming the step and the last good checkpoint; ``"skip"`` skips that
        update (in the compiled step) and counts it in the ``skipped_updates`` metric.
      restore_fallback: when the newest checkpoint is corrupt or was written by an
        incompatible config, set it aside and resume from the newest good one [False: stop
        with an error naming it].
      heartbeat_timeout: seconds without a heartbeat after which a multi-process job declares
        a process dead and stops the others [None: jax's default, 100].
    """

    num_steps: int
    batch_size: int
    checkpoint_every: int
    n_jitted_steps: int = 1
    log_every: int = 100
    sample_every: int = 0
    keep_last: int = 3
    keep_every: int | None = None
    async_checkpoint: bool = True
    nonfinite: str = "error"
    restore_fallback: bool = False
    heartbeat_timeout: int | None = None


def train_options(config: Any) -> TrainOptions:
    """The checked :class:`TrainOptions` of ``config.train``.

    Raises:
      ConfigError: naming the key.

    Example:
      >>> opts = train_options({"train": {"num_steps": 10, "batch_size": 8,
      ...                                 "checkpoint_every": 5, "nonfinite": "skip"}})
      >>> opts.num_steps, opts.n_jitted_steps, opts.nonfinite
      (10, 1, 'skip')
    """
    cfg = _section(config, "train")
    _check_keys(cfg, "train", set(TRAIN_KEYS))
    n_jitted = _integer(cfg, "train", "n_jitted_steps", 1, minimum=1)
    opts = TrainOptions(
        num_steps=_integer(cfg, "train", "num_steps", minimum=1),
        batch_size=_integer(cfg, "train", "batch_size", minimum=1),
        checkpoint_every=_integer(cfg, "train", "checkpoint_every", minimum=1),
        n_jitted_steps=n_jitted,
        log_every=_integer(cfg, "train", "log_every", 100, minimum=1),
        sample_every=_integer(cfg, "train", "sample_every", 0, minimum=0),
        keep_last=_integer(cfg, "train", "keep_last", 3, minimum=1),
        keep_every=_integer(cfg, "train", "keep_every", None, minimum=1),
        async_checkpoint=_boolean(cfg, "train", "async_checkpoint", True),
        nonfinite=_string(cfg, "train", "nonfinite", "error"),
        restore_fallback=_boolean(cfg, "train", "restore_fallback", False),
        heartbeat_timeout=_integer(cfg, "train", "heartbeat_timeout", None, minimum=1))
    if opts.nonfinite not in _NONFINITE_POLICIES:
        raise ConfigError("train.nonfinite", f"config.train.nonfinite={opts.nonfinite!r} is "
                          f"not one of {', '.join(map(repr, _NONFINITE_POLICIES))}.")
    for key in ("num_steps", "checkpoint_every", "log_every", "sample_every"):
        value = getattr(opts, key)
        if value % n_jitted:
            raise ConfigError(f"train.{key}", f"config.train.{key}={value} must be a multiple "
                              f"of train.n_jitted_steps={n_jitted}.")
    return opts


def _section(config: Any, name: str) -> dict[str, Any]:
    try:
        return section(config, name)
    except ValueError as e:
        raise ConfigError(name, str(e)) from None


def _wrap(key: str, fn: Callable[[], Any]) -> Any:
    """Runs ``fn``; a ValueError/TypeError without a key becomes a ConfigError naming ``key``."""
    try:
        return fn()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        text = str(e)
        prefix = "" if f"config.{key}" in text or f"`{key}" in text else f"config.{key}: "
        raise ConfigError(key, prefix + text) from e


_PROCESS_NUMBERS = ("beta_min", "beta_max", "sigma_min", "sigma_max", "sigma_data", "s",
                    "t_min", "t_max", "beta_start", "beta_end")


def _check_process(cfg: dict[str, Any]) -> Process:
    for key in _PROCESS_NUMBERS:
        if key in cfg:
            _real(cfg, "process", key, None)
    if "num_steps" in cfg:
        _integer(cfg, "process", "num_steps", minimum=2)
    if "t_min" in cfg and "t_max" in cfg and not cfg["t_min"] < cfg["t_max"]:
        raise ConfigError("process.t_min", f"config.process.t_min={cfg['t_min']!r} must be "
                          f"below config.process.t_max={cfg['t_max']!r}.")
    process = _wrap("process", lambda: build_process(cfg))
    t_min, t_max = float(process.t_min), float(process.t_max)
    if not t_min < t_max:
        key = "process.t_min" if "t_min" in cfg else "process.t_max"
        raise ConfigError(key, f"config.process: t_min={t_min:g} must be below "
                          f"t_max={t_max:g} ({key} is set).")
    return process


def _check_loss(cfg: dict[str, Any], process: Process, conditional: bool) -> None:
    for key, kw in (("time_scale", {"low": 0.0, "low_open": True}),
                    ("sigma_data", {"low": 0.0, "low_open": True, "allow_none": True}),
                    ("lognormal_mean", {}), ("lognormal_std", {"low": 0.0, "low_open": True}),
                    ("p_uncond", {"low": 0.0, "high": 1.0})):
        if key in cfg:
            _real(cfg, "loss", key, None, **kw)
    for key in ("truncate", "reduce_mean"):
        if key in cfg:
            _boolean(cfg, "loss", key, False)
    # The null label comes from the model; any index stands in for it here.
    _wrap("loss", lambda: build_loss(cfg, process, conditional=conditional,
                                     null_label=0 if conditional else None))


def _check_model(cfg: dict[str, Any]) -> bool:
    from diffax import models

    _check_keys(cfg, "model", {"name", "variant", "conditional", "kwargs"})
    variants = _choice(cfg, "model", "name", {"unet": models.UNET_VARIANTS,
                                              "mlp": models.MLP_VARIANTS})
    variant = _string(cfg, "model", "variant", "tiny")
    if variant not in variants:
        raise ConfigError("model.variant", f"config.model.variant={variant!r} is not one of "
                          f"{', '.join(map(repr, variants))}.")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) and not hasattr(kwargs, "to_dict"):
        raise ConfigError("model.kwargs", f"config.model.kwargs must be a dict of model "
                          f"config fields, got {kwargs!r}.")
    return _boolean(cfg, "model", "conditional", False)


def _check_optim(cfg: dict[str, Any], num_steps: int) -> None:
    _check_keys(cfg, "optim", _OPTIM_KEYS)
    _real(cfg, "optim", "learning_rate", 2e-4, low=0.0, low_open=True)
    _integer(cfg, "optim", "warmup_steps", 0, minimum=0)
    _choice(cfg, "optim", "schedule", {"constant": None, "cosine": None}, "constant")
    _real(cfg, "optim", "end_learning_rate", 0.0, low=0.0)
    _real(cfg, "optim", "b1", 0.9, low=0.0, high=1.0, high_open=True)
    _real(cfg, "optim", "b2", 0.999, low=0.0, high=1.0, high_open=True)
    _real(cfg, "optim", "eps", 1e-8, low=0.0, low_open=True)
    _real(cfg, "optim", "weight_decay", 0.0, low=0.0)
    _real(cfg, "optim", "grad_clip", 1.0, low=0.0, low_open=True, allow_none=True)
    _boolean(cfg, "optim", "ema_warmup", False)
    decays = cfg.get("ema_decays", (0.9999,))
    if isinstance(decays, str) or not isinstance(decays, list | tuple):
        raise ConfigError("optim.ema_decays", f"config.optim.ema_decays must be a tuple of "
                          f"numbers in [0, 1), got {decays!r}.")
    for i, d in enumerate(decays):
        _real({f"ema_decays[{i}]": d}, "optim", f"ema_decays[{i}]", None, low=0.0, high=1.0,
              high_open=True)
    if len(set(decays)) != len(decays):
        raise ConfigError("optim.ema_decays", f"config.optim.ema_decays has duplicates: "
                          f"{decays!r}.")
    _wrap("optim", lambda: build_optimizer(cfg, num_steps=num_steps))


SOLVER_ORDERS = (1, 3)
"""The range of ``sample.order`` (DPM-Solver, DPM-Solver++, UniPC, DEIS; IPNDM and LMS go to
4)."""


def _check_sample(cfg: dict[str, Any]) -> None:
    _check_keys(cfg, "sample", _SAMPLE_KEYS)
    _choice(cfg, "sample", "solver", _solvers(cfg), "euler")
    _integer(cfg, "sample", "num_steps", 50, minimum=1)
    _integer(cfg, "sample", "num_samples", 64, minimum=1)
    _integer(cfg, "sample", "order", 2, minimum=SOLVER_ORDERS[0],
             maximum=4 if cfg.get("solver") in ("ipndm", "lms") else SOLVER_ORDERS[1])
    for key in ("use_ema", "denoise_final"):
        _boolean(cfg, "sample", key, key == "use_ema")
    for key in ("corrector", "sde", "lower_order_final"):
        if cfg.get(key) is not None and cfg.get("solver") != "pc":
            _boolean(cfg, "sample", key, False)
    for key, options in (("method", ("singlestep", "multistep", "adaptive")),
                         ("variant", ("bh1", "bh2"))):
        if cfg.get(key) is not None:
            _choice(cfg, "sample", key, dict.fromkeys(options))
    _choice(cfg, "sample", "schedule", _SCHEDULES, "default")
    _real(cfg, "sample", "rho", 7.0, low=0.0, low_open=True)
    _real(cfg, "sample", "eta", 0.0, low=0.0)
    _real(cfg, "sample", "churn", 0.0, low=0.0)
    for key, default in (("snr", 0.16), ("rtol", 1e-5), ("atol", 1e-5)):
        _real(cfg, "sample", key, default, low=0.0, low_open=True)
    _wrap("sample", lambda: build_solver(cfg))
    _wrap("sample", lambda: build_schedule(cfg))


def check_config(config: Any, *, num_devices: int | None = None) -> TrainOptions:
    """Validates a training config before anything is computed or written.

    Checks every section: unknown keys (at the top level and in each section), wrong types,
    impossible values (a non-positive learning rate, a global batch size not divisible by
    the device count, ``sample.order`` outside :data:`SOLVER_ORDERS`, ``process.t_min >=
    process.t_max``, an unknown solver, ...). It builds the cheap objects (process, loss,
    optimizer, solver) but neither the dataset nor the model's parameters; the ``eval``
    section is the command line's (:mod:`diffax.cli`).

    Args:
      config: the training config (``ConfigDict`` or nested dicts).
      num_devices: devices the global batch is split over (default: ``jax.device_count()``).

    Returns:
      The :class:`TrainOptions` of ``config.train``.

    Raises:
      ConfigError: a ``ValueError`` whose ``key`` attribute and message name the key.

    Example:
      >>> cfg = {"seed": 0, "data": {"name": "toy2d/eight_gaussians"},
      ...        "process": {"name": "vp"}, "model": {"name": "mlp"},
      ...        "optim": {"learning_rate": -1.0},
      ...        "train": {"num_steps": 10, "batch_size": 8, "checkpoint_every": 5}}
      >>> try:
      ...     check_config(cfg, num_devices=8)
      ... except ConfigError as e:
      ...     print(e.key, "|", e)
      optim.learning_rate | config.optim.learning_rate must lie in (0, inf), got -1.0.
    """
    if not hasattr(config, "keys") or not hasattr(config, "get"):
        raise ConfigError("config", f"the config must be a ConfigDict or a dict, got "
                          f"{type(config).__name__}.")
    unknown = sorted(str(k) for k in config.keys() if k not in SECTIONS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown top-level config key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(SECTIONS)}.")
    for key in ("seed", "data", "train"):
        if config.get(key) is None:
            raise ConfigError(key, f"config key `{key}` is required.")
    seed = config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError("seed", f"config.seed must be an integer, got {seed!r}.")
    opts = train_options(config)
    if num_devices is None:
        import jax

        num_devices = jax.device_count()
    if opts.batch_size % num_devices:
        n, b = num_devices, opts.batch_size
        raise ConfigError("train.batch_size", f"`train.batch_size`={b} is not divisible by the "
                          f"number of devices ({n}); use a multiple of {n}, e.g. "
                          f"{max(n, b // n * n)} or {(b // n + 1) * n}.")
    data_cfg = _section(config, "data")
    _check_keys(data_cfg, "data", _DATA_KEYS)
    _string(data_cfg, "data", "name")
    process = _check_process(_section(config, "process"))
    conditional = _check_model(_section(config, "model"))
    _check_loss(_section(config, "loss"), process, conditional)
    _check_optim(_section(config, "optim"), opts.num_steps)
    _check_sample(_section(config, "sample"))
    return opts
