"""The config schema: one frozen dataclass per section, each default written once.

A training config is an ml_collections ``ConfigDict`` (or nested dicts) with sections
``process``, ``model``, ``loss``, ``optim``, ``train``, ``data``, ``sample`` and ``eval`` plus a
top-level ``seed``. :func:`parse_config` checks all of it once (unknown keys, wrong types,
impossible values raise :class:`ConfigError` naming the key) and returns an :class:`Options`;
:mod:`diffax.train.build` turns options into objects. Only this module, ``build.py`` and
``diffax/cli.py`` read config keys.

The defaults are the dataclass fields below; :data:`SAMPLE_DEFAULTS` and :data:`EVAL_DEFAULTS`
(the ``sample``/``eval`` keys a config states so that they can be overridden after training)
are derived from them. A new family (process, model, loss) plugs in as one builder branch in
``build.py`` (its numbers pass through :class:`ProcessOptions`/:class:`ModelOptions`) or as one
new typed section here.

Example:
  >>> opts = parse_config({"seed": 0, "data": {"name": "toy2d/eight_gaussians"},
  ...                      "process": {"name": "vp"}, "model": {"name": "mlp"},
  ...                      "train": {"num_steps": 10, "batch_size": 8,
  ...                                "checkpoint_every": 5}}, num_devices=1)
  >>> opts.sample.solver, opts.optim.learning_rate, opts.eval.num_samples
  ('euler', 0.0002, 1000)
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ConfigError",
    "Options",
    "ProcessOptions",
    "ModelOptions",
    "LossOptions",
    "OptimOptions",
    "TrainOptions",
    "DataOptions",
    "SampleOptions",
    "EvalOptions",
    "GANOptions",
    "AUTOENCODER_NAMES",
    "AutoencoderLossOptions",
    "LatentOptions",
    "LSGMOptions",
    "lsgm_options",
    "autoencoder_loss_options",
    "latent_options",
    "SECTIONS",
    "TRAIN_KEYS",
    "SAMPLE_DEFAULTS",
    "EVAL_DEFAULTS",
    "SOLVER_ORDERS",
    "section",
    "check_keys",
    "data_kwargs",
    "parse_config",
    "process_options",
    "model_options",
    "loss_options",
    "optim_options",
    "train_options",
    "data_options",
    "sample_options",
    "eval_options",
    "gan_options",
]


class ConfigError(ValueError):
    """A config key with a bad name, type or value; ``key`` names it (``"train.batch_size"``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def section(config: Any, name: str) -> dict[str, Any]:
    """``config[name]`` as a plain dict (empty if missing).

    Example:
      >>> section({"train": {"num_steps": 3}}, "train"), section({}, "eval")
      ({'num_steps': 3}, {})
    """
    value = config.get(name) if hasattr(config, "get") else None
    if value is None:
        return {}
    if isinstance(value, _Section):
        return value.to_dict()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(f"config.{name} must be a ConfigDict section, got {type(value).__name__}.")


def _section(config: Any, name: str) -> dict[str, Any]:
    try:
        return section(config, name)
    except ValueError as e:
        raise ConfigError(name, str(e)) from None


# --------------------------------------------------------------------------------------------
# value checks


def check_keys(cfg: Mapping[str, Any], sec: str, allowed: set[str] | frozenset[str]) -> None:
    """Raises :class:`ConfigError` naming the first key of ``cfg`` not in ``allowed``."""
    unknown = sorted(set(cfg) - set(allowed))
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


def _boolean(cfg: Mapping[str, Any], sec: str, key: str, default: Any) -> Any:
    value = cfg.get(key, default)
    if value is None and default is None:
        return None
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


def _choice(cfg: Mapping[str, Any], sec: str, key: str, options: Any,
            default: str | None = None) -> str:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"{sec}.{key}", f"config key `{sec}.{key}` is required; one of "
                          f"{', '.join(map(repr, options))}.")
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key}={value!r} is not one of "
                          f"{', '.join(map(repr, options))}.")
    return value


def _defaults(cls: type, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The dataclass defaults of ``cls`` (the fields ``names``, default all with a default)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING or (names is not None and f.name not in names):
            continue
        out[f.name] = f.default
    return out


class _Section:
    """Mixin: ``to_dict()`` gives the section's fields as config keys."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# --------------------------------------------------------------------------------------------
# process and model: a name plus that family's numbers (checked by the family's builder)


PROCESS_NAMES = ("vp", "subvp", "cosine", "ve", "edm", "rectified_flow", "ddpm", "masked",
                 "d3pm_uniform", "d3pm_absorbing", "d3pm_gaussian", "cld")
"""``process.name`` values: each is one branch of :func:`diffax.train.build.build_process`."""

_PROCESS_NUMBERS = ("beta_min", "beta_max", "sigma_min", "sigma_max", "sigma_data", "s",
                    "t_min", "t_max", "beta_start", "beta_end")


@dataclasses.dataclass(frozen=True)
class ProcessOptions(_Section):
    """``config.process``: ``name`` and the keys that process takes (``params``)."""

    name: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def process_options(cfg: Mapping[str, Any]) -> ProcessOptions:
    """Checks the numbers of ``config.process`` (the builder checks which keys apply).

    Example:
      >>> process_options({"name": "ve", "sigma_max": 50.0})
      ProcessOptions(name='ve', params={'sigma_max': 50.0})
    """
    cfg = dict(cfg)
    for key in _PROCESS_NUMBERS:
        if key in cfg:
            _real(cfg, "process", key, None)
    if "num_steps" in cfg:
        _integer(cfg, "process", "num_steps", minimum=2)
    if "vocab_size" in cfg:  # discrete processes (diffax.discrete)
        _integer(cfg, "process", "vocab_size", minimum=1)
    if "t_min" in cfg and "t_max" in cfg and not cfg["t_min"] < cfg["t_max"]:
        raise ConfigError("process.t_min", f"config.process.t_min={cfg['t_min']!r} must be "
                          f"below config.process.t_max={cfg['t_max']!r}.")
    name = _choice(cfg, "process", "name", PROCESS_NAMES)
    return ProcessOptions(name=name, params={k: v for k, v in cfg.items() if k != "name"})


MODEL_NAMES = ("unet", "mlp", "transformer", "dit", "autoencoder_kl", "autoencoder_vq")
"""``model.name`` values: each is one branch of :func:`diffax.train.build.build_model`."""


@dataclasses.dataclass(frozen=True)
class ModelOptions(_Section):
    """``config.model`` (defaults in the fields)."""

    name: str
    variant: str = "tiny"
    conditional: bool = False
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def model_options(cfg: Mapping[str, Any]) -> ModelOptions:
    """Checks ``config.model`` (the variant against the model's table).

    Example:
      >>> model_options({"name": "mlp", "variant": "toy2d"})
      ModelOptions(name='mlp', variant='toy2d', conditional=False, kwargs={})
    """
    from diffax import models

    cfg = dict(cfg)
    d = _defaults(ModelOptions)
    check_keys(cfg, "model", {f.name for f in dataclasses.fields(ModelOptions)})
    name = _choice(cfg, "model", "name", MODEL_NAMES)
    variants = {"unet": models.UNET_VARIANTS, "mlp": models.MLP_VARIANTS,
                "transformer": models.TRANSFORMER_VARIANTS,
                "dit": models.TRANSFORMER_VARIANTS,
                "autoencoder_kl": models.AUTOENCODER_VARIANTS,
                "autoencoder_vq": models.AUTOENCODER_VARIANTS}[name]
    variant = _string(cfg, "model", "variant", d["variant"])
    if variant not in variants:
        raise ConfigError("model.variant", f"config.model.variant={variant!r} is not one of "
                          f"{', '.join(map(repr, variants))}.")
    return ModelOptions(name=name, variant=variant,
                        conditional=_boolean(cfg, "model", "conditional", d["conditional"]),
                        kwargs=_fields_dict(cfg, "model", "kwargs", "model"))


def _fields_dict(cfg: Mapping[str, Any], sec: str, key: str, what: str) -> dict[str, Any]:
    """``cfg[key]`` (a dict of ``what`` config fields, default empty) as a plain dict."""
    kwargs = cfg.get(key) or {}
    if hasattr(kwargs, "to_dict"):
        kwargs = kwargs.to_dict()
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must be a dict of {what} "
                          f"config fields, got {kwargs!r}.")
    return dict(kwargs)


# --------------------------------------------------------------------------------------------
# loss

WEIGHTINGS = ("eps", "x0", "v", "score", "likelihood", "edm", "flow")
TIME_SAMPLERS = ("uniform", "lognormal", "importance", "discrete")
VARIATES = ("iid", "low_discrepancy", "antithetic")
PREDICTIONS = ("eps", "x0", "v", "score", "velocity", "edm")
NOISE_INPUTS = ("time", "log_snr", "edm", "index")


@dataclasses.dataclass(frozen=True)
class LossOptions(_Section):
    """``config.loss`` (defaults in the fields; see :mod:`diffax.train.build`).

    ``noise_input`` ``None`` means ``"edm"`` for ``prediction="edm"``, else ``"time"``;
    ``sigma_data`` ``None`` means the process's.
    """

    weighting: str = "eps"
    time_sampler: str = "uniform"
    variates: str = "iid"
    prediction: str = "eps"
    noise_input: str | None = None
    time_scale: float = 1.0
    sigma_data: float | None = None
    lognormal_mean: float = -1.2
    lognormal_std: float = 1.2
    truncate: bool = False
    reduce_mean: bool = True
    p_uncond: float = 0.0
    t_eps: float = 1e-3
    """Discrete ``masked`` process: smallest time of MDLM's loss."""
    low_discrepancy: bool = True
    """Discrete ``masked`` process: stratify MDLM's times over the batch."""
    hybrid_coeff: float = 0.01
    """Discrete ``d3pm_*`` processes: lambda of D3PM's hybrid loss."""

    @property
    def resolved_noise_input(self) -> str:
        if self.noise_input is not None:
            return self.noise_input
        return "edm" if self.prediction == "edm" else "time"


def loss_options(cfg: Mapping[str, Any]) -> LossOptions:
    """Checks ``config.loss``.

    Example:
      >>> loss_options({"weighting": "v", "prediction": "v"}).time_sampler
      'uniform'
    """
    cfg = dict(cfg)
    d = _defaults(LossOptions)
    check_keys(cfg, "loss", set(d))
    for key, kw in (("time_scale", {"low": 0.0, "low_open": True}),
                    ("sigma_data", {"low": 0.0, "low_open": True, "allow_none": True}),
                    ("lognormal_mean", {}), ("lognormal_std", {"low": 0.0, "low_open": True}),
                    ("p_uncond", {"low": 0.0, "high": 1.0}),
                    ("t_eps", {"low": 0.0, "high": 1.0, "high_open": True}),
                    ("hybrid_coeff", {"low": 0.0})):
        if key in cfg:
            _real(cfg, "loss", key, None, **kw)
    for key in ("truncate", "reduce_mean", "low_discrepancy"):
        if key in cfg:
            _boolean(cfg, "loss", key, False)
    weighting = _choice(cfg, "loss", "weighting", WEIGHTINGS, d["weighting"])
    sampler = _choice(cfg, "loss", "time_sampler", TIME_SAMPLERS, d["time_sampler"])
    variates = _choice(cfg, "loss", "variates", VARIATES, d["variates"])
    if sampler != "lognormal":
        for key in ("lognormal_mean", "lognormal_std", "truncate"):
            if key in cfg:
                raise ConfigError(f"loss.{key}", f"config.loss.{key} applies to "
                                  f"loss.time_sampler='lognormal' only, not {sampler!r}.")
    prediction = cfg.get("prediction", d["prediction"])
    if prediction not in PREDICTIONS:
        raise ConfigError("loss.prediction", f"config.loss.prediction={prediction!r} is not "
                          f"one of {', '.join(map(repr, PREDICTIONS))}.")
    noise_input = cfg.get("noise_input")
    if noise_input is not None:
        _choice(cfg, "loss", "noise_input", NOISE_INPUTS)
    p_uncond = float(cfg.get("p_uncond", d["p_uncond"]))
    if not 0.0 <= p_uncond <= 1.0:
        raise ConfigError("loss.p_uncond", f"config.loss.p_uncond={p_uncond!r} must be a "
                          f"probability in [0, 1].")
    return LossOptions(
        weighting=weighting, time_sampler=sampler, variates=variates, prediction=prediction,
        noise_input=noise_input, time_scale=cfg.get("time_scale", d["time_scale"]),
        sigma_data=cfg.get("sigma_data"),
        lognormal_mean=cfg.get("lognormal_mean", d["lognormal_mean"]),
        lognormal_std=cfg.get("lognormal_std", d["lognormal_std"]),
        truncate=bool(cfg.get("truncate", d["truncate"])),
        reduce_mean=bool(cfg.get("reduce_mean", d["reduce_mean"])), p_uncond=p_uncond,
        t_eps=float(cfg.get("t_eps", d["t_eps"])),
        low_discrepancy=bool(cfg.get("low_discrepancy", d["low_discrepancy"])),
        hybrid_coeff=float(cfg.get("hybrid_coeff", d["hybrid_coeff"])))


# --------------------------------------------------------------------------------------------
# autoencoders (stage 1 of latent diffusion) and the latent section (stage 2)

AUTOENCODER_NAMES = ("autoencoder_kl", "autoencoder_vq")
"""``model.name`` values of the autoencoders (:mod:`diffax.models.autoencoder`): trained by
``diffax train`` with :class:`AutoencoderLossOptions` and no ``process``."""


@dataclasses.dataclass(frozen=True)
class AutoencoderLossOptions(_Section):
    """``config.loss`` of an autoencoder (:class:`diffax.latent.AutoencoderKLLoss`,
    :class:`diffax.latent.AutoencoderVQLoss`; defaults in the fields).

    ``kl_weight`` applies to ``autoencoder_kl``, ``commitment``, ``codebook_weight``,
    ``codebook_update`` and ``codebook_decay`` to ``autoencoder_vq``; ``reconstruction`` is
    ``"l1"`` or ``"l2"``. ``codebook_update``: ``"gradient"`` (the codebook term of the loss,
    weighted by ``codebook_weight``) or ``"ema"`` (:class:`diffax.latent.CodebookEMA` with
    decay ``codebook_decay``: no gradient reaches the codebook, ``codebook_weight`` is unused).

    Patch discriminator (:mod:`diffax.patchgan`, both autoencoders; off while
    ``disc_weight`` is 0): ``disc_weight`` scales the adaptive weight, ``disc_start`` updates
    pass before the discriminator switches on, ``disc_factor`` is its factor once on,
    ``disc_loss`` is ``"hinge"`` or ``"vanilla"``, ``disc_channels`` / ``disc_layers`` size
    the :class:`diffax.models.PatchDiscriminator`, ``disc_learning_rate`` is its Adam
    learning rate (betas 0.5, 0.9; ``None``: ``optim.learning_rate``).
    """

    reconstruction: str = "l1"
    kl_weight: float = 1e-6
    commitment: float = 0.25
    codebook_weight: float = 1.0
    codebook_update: str = "gradient"
    codebook_decay: float = 0.99
    disc_weight: float = 0.0
    disc_start: int = 0
    disc_factor: float = 1.0
    disc_loss: str = "hinge"
    disc_channels: int = 64
    disc_layers: int = 3
    disc_learning_rate: float | None = None

    @property
    def discriminator(self) -> bool:
        """The patch discriminator is on (``disc_weight > 0``)."""
        return self.disc_weight > 0


_DISC_KEYS = ("disc_weight", "disc_start", "disc_factor", "disc_loss", "disc_channels",
              "disc_layers", "disc_learning_rate")


def autoencoder_loss_options(cfg: Mapping[str, Any], model_name: str) -> AutoencoderLossOptions:
    """Checks ``config.loss`` of an autoencoder.

    Example:
      >>> autoencoder_loss_options({"kl_weight": 1e-4}, "autoencoder_kl").reconstruction
      'l1'
    """
    cfg = dict(cfg)
    d = _defaults(AutoencoderLossOptions)
    own = {"autoencoder_kl": ("reconstruction", "kl_weight"),
           "autoencoder_vq": ("reconstruction", "commitment", "codebook_weight")}[model_name]
    ema_keys = ("codebook_update", "codebook_decay") if model_name == "autoencoder_vq" else ()
    check_keys(cfg, "loss", {*own, *ema_keys, *_DISC_KEYS})
    extra = {
        "disc_weight": _real(cfg, "loss", "disc_weight", d["disc_weight"], low=0.0),
        "disc_start": _integer(cfg, "loss", "disc_start", d["disc_start"], minimum=0),
        "disc_factor": _real(cfg, "loss", "disc_factor", d["disc_factor"], low=0.0),
        "disc_loss": _choice(cfg, "loss", "disc_loss", ("hinge", "vanilla"), d["disc_loss"]),
        "disc_channels": _integer(cfg, "loss", "disc_channels", d["disc_channels"], minimum=1),
        "disc_layers": _integer(cfg, "loss", "disc_layers", d["disc_layers"], minimum=1),
        "disc_learning_rate": _real(cfg, "loss", "disc_learning_rate", None, low=0.0,
                                    low_open=True, allow_none=True)}
    if extra["disc_weight"] == 0:  # a discriminator key without the discriminator: a mistake
        for key in _DISC_KEYS[1:]:
            if key in cfg:
                raise ConfigError(f"loss.{key}", f"config.loss.{key} has no effect while "
                                  f"config.loss.disc_weight is 0 (the patch discriminator is "
                                  f"off); set loss.disc_weight > 0 or remove loss.{key}.")
    if ema_keys:
        extra |= {"codebook_update": _choice(cfg, "loss", "codebook_update",
                                             ("gradient", "ema"), d["codebook_update"]),
                  "codebook_decay": _real(cfg, "loss", "codebook_decay", d["codebook_decay"],
                                          low=0.0, high=1.0, high_open=True)}
    return AutoencoderLossOptions(
        reconstruction=_choice(cfg, "loss", "reconstruction", ("l1", "l2"),
                               d["reconstruction"]),
        **{k: _real(cfg, "loss", k, d[k], low=0.0) for k in own[1:]}, **extra)


@dataclasses.dataclass(frozen=True)
class LatentOptions(_Section):
    """``config.latent``: diffusion on the latents of a stage-1 autoencoder run.

    Attributes:
      workdir: the stage-1 ``diffax train`` workdir (its checkpoint and the
        ``latent_scale.json`` measured after training) (required).
      step: the stage-1 checkpoint [None: the latest].
      autoencoder: the ``model.name`` the stage-1 run must have (``"autoencoder_kl"`` or
        ``"autoencoder_vq"``) [None: either].
      scale_factor: use this scale instead of the measured one [None: read
        ``latent_scale.json``].
      sample_posterior: train on posterior samples of a KL autoencoder (LDM) rather than
        its mean [True].
      role: ``"prior"`` (LDM: the diffusion model runs on the scaled latents) or
        ``"decoder"`` (DiVAE, :mod:`diffax.divae`: a diffusion model on the data conditioned
        on the scaled codes, the autoencoder's decoder replaced by ``p(x | z)``) ["prior"].
    """

    workdir: str
    step: int | None = None
    autoencoder: str | None = None
    scale_factor: float | None = None
    sample_posterior: bool = True
    role: str = "prior"


def latent_options(cfg: Mapping[str, Any]) -> LatentOptions:
    """Checks ``config.latent``.

    Example:
      >>> latent_options({"workdir": "/tmp/ae"}).sample_posterior
      True
    """
    cfg = dict(cfg)
    d = _defaults(LatentOptions)
    check_keys(cfg, "latent", {f.name for f in dataclasses.fields(LatentOptions)})
    auto = cfg.get("autoencoder")
    if auto is not None:
        _choice(cfg, "latent", "autoencoder", AUTOENCODER_NAMES)
    return LatentOptions(
        workdir=_string(cfg, "latent", "workdir"),
        step=_integer(cfg, "latent", "step", None, minimum=0), autoencoder=auto,
        scale_factor=_real(cfg, "latent", "scale_factor", None, low=0.0, low_open=True,
                           allow_none=True),
        sample_posterior=_boolean(cfg, "latent", "sample_posterior", d["sample_posterior"]),
        role=_choice(cfg, "latent", "role", LATENT_ROLES, d["role"]))


LATENT_ROLES = ("prior", "decoder")
"""``config.latent.role``: diffusion on the latents (LDM) or a diffusion decoder (DiVAE)."""


# --------------------------------------------------------------------------------------------
# optimizer

LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimOptions(_Section):
    """``config.optim`` (defaults in the fields; Adam(W) with warmup, clipping and EMA)."""

    learning_rate: float = 2e-4
    warmup_steps: int = 0
    schedule: str = "constant"
    end_learning_rate: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decays: tuple[float, ...] = (0.9999,)
    ema_warmup: bool = False


def optim_options(cfg: Mapping[str, Any]) -> OptimOptions:
    """Checks ``config.optim``.

    Example:
      >>> optim_options({"learning_rate": 1e-3}).ema_decays
      (0.9999,)
    """
    cfg = dict(cfg)
    d = _defaults(OptimOptions)
    check_keys(cfg, "optim", set(d))
    lr = _real(cfg, "optim", "learning_rate", d["learning_rate"], low=0.0, low_open=True)
    warmup = _integer(cfg, "optim", "warmup_steps", d["warmup_steps"], minimum=0)
    schedule = _choice(cfg, "optim", "schedule", LR_SCHEDULES, d["schedule"])
    end_lr = _real(cfg, "optim", "end_learning_rate", d["end_learning_rate"], low=0.0)
    b1 = _real(cfg, "optim", "b1", d["b1"], low=0.0, high=1.0, high_open=True)
    b2 = _real(cfg, "optim", "b2", d["b2"], low=0.0, high=1.0, high_open=True)
    eps = _real(cfg, "optim", "eps", d["eps"], low=0.0, low_open=True)
    wd = _real(cfg, "optim", "weight_decay", d["weight_decay"], low=0.0)
    clip = _real(cfg, "optim", "grad_clip", d["grad_clip"], low=0.0, low_open=True,
                 allow_none=True)
    ema_warmup = _boolean(cfg, "optim", "ema_warmup", d["ema_warmup"])
    decays = cfg.get("ema_decays", d["ema_decays"])
    if isinstance(decays, str) or not isinstance(decays, list | tuple):
        raise ConfigError("optim.ema_decays", f"config.optim.ema_decays must be a tuple of "
                          f"numbers in [0, 1), got {decays!r}.")
    for i, v in enumerate(decays):
        _real({f"ema_decays[{i}]": v}, "optim", f"ema_decays[{i}]", None, low=0.0, high=1.0,
              high_open=True)
    if len(set(decays)) != len(decays):
        raise ConfigError("optim.ema_decays", f"config.optim.ema_decays has duplicates: "
                          f"{decays!r}.")
    return OptimOptions(learning_rate=lr, warmup_steps=warmup, schedule=schedule,
                        end_learning_rate=end_lr, b1=b1, b2=b2, eps=eps, weight_decay=wd,
                        grad_clip=clip, ema_decays=tuple(float(v) for v in decays),
                        ema_warmup=ema_warmup)


# --------------------------------------------------------------------------------------------
# train

_NONFINITE_POLICIES = ("error", "skip")


@dataclasses.dataclass(frozen=True)
class TrainOptions(_Section):
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


TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainOptions))
"""The keys of ``config.train`` (see :class:`TrainOptions`)."""


def train_options(config: Any) -> TrainOptions:
    """The checked :class:`TrainOptions` of ``config.train`` (``config``: the whole config).

    Raises:
      ConfigError: naming the key.

    Example:
      >>> opts = train_options({"train": {"num_steps": 10, "batch_size": 8,
      ...                                 "checkpoint_every": 5, "nonfinite": "skip"}})
      >>> opts.num_steps, opts.n_jitted_steps, opts.nonfinite
      (10, 1, 'skip')
    """
    cfg = _section(config, "train")
    check_keys(cfg, "train", set(TRAIN_KEYS))
    d = _defaults(TrainOptions)
    n_jitted = _integer(cfg, "train", "n_jitted_steps", d["n_jitted_steps"], minimum=1)
    opts = TrainOptions(
        num_steps=_integer(cfg, "train", "num_steps", minimum=1),
        batch_size=_integer(cfg, "train", "batch_size", minimum=1),
        checkpoint_every=_integer(cfg, "train", "checkpoint_every", minimum=1),
        n_jitted_steps=n_jitted,
        log_every=_integer(cfg, "train", "log_every", d["log_every"], minimum=1),
        sample_every=_integer(cfg, "train", "sample_every", d["sample_every"], minimum=0),
        keep_last=_integer(cfg, "train", "keep_last", d["keep_last"], minimum=1),
        keep_every=_integer(cfg, "train", "keep_every", d["keep_every"], minimum=1),
        async_checkpoint=_boolean(cfg, "train", "async_checkpoint", d["async_checkpoint"]),
        nonfinite=_string(cfg, "train", "nonfinite", d["nonfinite"]),
        restore_fallback=_boolean(cfg, "train", "restore_fallback", d["restore_fallback"]),
        heartbeat_timeout=_integer(cfg, "train", "heartbeat_timeout", d["heartbeat_timeout"],
                                   minimum=1))
    if opts.nonfinite not in _NONFINITE_POLICIES:
        raise ConfigError("train.nonfinite", f"config.train.nonfinite={opts.nonfinite!r} is "
                          f"not one of {', '.join(map(repr, _NONFINITE_POLICIES))}.")
    for key in ("num_steps", "checkpoint_every", "log_every", "sample_every"):
        value = getattr(opts, key)
        if value % n_jitted:
            raise ConfigError(f"train.{key}", f"config.train.{key}={value} must be a multiple "
                              f"of train.n_jitted_steps={n_jitted}.")
    return opts


# --------------------------------------------------------------------------------------------
# data

SOURCE_KEYS = ("data_dir", "folder", "image_size", "channels", "center_crop", "labels")
"""``config.data`` keys that say which dataset and where (see :attr:`DataOptions.source`)."""

_DATA_KEYS = frozenset({"name", "split", "shuffle", "random_flip", "value_range", "cache",
                        "num_threads", "prefetch_buffer_size", *SOURCE_KEYS})


def data_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The set (not ``None``) keys of a data section; lists of ``image_size`` and
    ``value_range`` as tuples."""
    out = {k: v for k, v in cfg.items() if v is not None}
    for k in ("image_size", "value_range"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


@dataclasses.dataclass(frozen=True)
class DataOptions(_Section):
    """``config.data``: ``name`` and the keyword arguments of
    :func:`diffax.data.make_dataset` that the config sets (``kwargs``; the others keep that
    function's defaults, which are the only ones).
    """

    name: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def source(self) -> dict[str, Any]:
        """Which dataset and where (``data_dir``, ``folder``, ``image_size``, ...), for
        :func:`diffax.data.data_source`, :func:`diffax.data.dataset_info`, ``load_split``."""
        return {k: v for k, v in self.kwargs.items() if k in SOURCE_KEYS}

    @property
    def value_range(self) -> tuple[float, float]:
        """The model's range of image values (``diffax.data.DEFAULT_VALUE_RANGE`` unless set)."""
        if "value_range" in self.kwargs:
            return tuple(float(v) for v in self.kwargs["value_range"])
        from diffax.data import DEFAULT_VALUE_RANGE

        return tuple(float(v) for v in DEFAULT_VALUE_RANGE)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


def data_options(cfg: Mapping[str, Any]) -> DataOptions:
    """Checks the keys of ``config.data`` (values are checked by :mod:`diffax.data`).

    Example:
      >>> data_options({"name": "digits", "image_size": [8, 8]})
      DataOptions(name='digits', kwargs={'image_size': (8, 8)})
    """
    cfg = dict(cfg)
    check_keys(cfg, "data", _DATA_KEYS)
    name = _string(cfg, "data", "name")
    return DataOptions(name=name, kwargs=data_kwargs({k: v for k, v in cfg.items() if k != "name"}))


# --------------------------------------------------------------------------------------------
# sample

SOLVERS = ("euler", "heun", "ddim", "ddpm", "euler_maruyama", "reverse_diffusion", "pc",
           "edm_stochastic", "adaptive", "dpm_solver", "dpm_solver_pp", "unipc", "deis",
           "ipndm", "lms", "ancestral", "tau_leaping", "sscs", "ddgan")
"""``sample.solver`` values: each is one branch of :func:`diffax.train.build.build_solver`."""

SCHEDULES = ("default", "time_uniform", "quadratic", "log_snr", "karras", "shift")
"""``sample.schedule`` names (or a list of ``num_steps + 1`` decreasing times)."""

SOLVER_ORDERS = (1, 3)
"""The range of ``sample.order`` (DPM-Solver, DPM-Solver++, UniPC, DEIS; IPNDM and LMS go to
4); 0 is the solver's own default."""

_ORDER_4 = ("ipndm", "lms")


@dataclasses.dataclass(frozen=True)
class SampleOptions(_Section):
    """``config.sample`` (defaults in the fields).

    ``order`` 0 means the solver class's own default order (DPM-Solver, DPM-Solver++, UniPC 2;
    DEIS 3; iPNDM and LMS 4), stated once, in :mod:`diffax.samplers`. ``schedule`` is a name
    of :data:`SCHEDULES` or an explicit grid: a tuple of ``num_steps + 1`` decreasing times
    (e.g. :func:`diffax.schedules.optimize`'s ``grid.tolist()``; on the command line
    ``--config.sample.schedule="[1.0, 0.5, 0.001]"``). ``method``, ``variant``, ``corrector``,
    ``sde`` and ``lower_order_final`` ``None`` keep the solver's defaults (for
    ``lower_order_final``: the order near the data end chosen by the step sizes,
    :func:`diffax.samplers.default_rule`; ``true`` is the step-count rule below 15 steps,
    ``false`` never lowers); an option the chosen solver does not have is ignored.
    """

    solver: str = "euler"
    num_steps: int = 50
    num_samples: int = 64
    use_ema: bool = True
    denoise_final: bool = False
    order: int = 0
    eta: float = 0.0
    snr: float = 0.16
    churn: float = 0.0
    rtol: float = 1e-5
    atol: float = 1e-5
    schedule: str | tuple[float, ...] = "default"
    rho: float = 7.0
    shift: float = 3.0
    method: str | None = None
    variant: str | None = None
    corrector: bool | None = None
    sde: bool | None = None
    lower_order_final: bool | None = None
    explicit: frozenset[str] = dataclasses.field(default=frozenset(), repr=False)
    """The keys the config sets: a solver's own default (DPM-Solver's adaptive tolerances)
    applies unless the config sets that key."""

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        del out["explicit"]
        return out


SAMPLE_DEFAULTS: dict[str, Any] = _defaults(SampleOptions, (
    "solver", "num_steps", "num_samples", "use_ema", "denoise_final", "order", "eta", "snr",
    "churn", "rtol", "atol", "schedule"))
"""The ``sample`` keys a config states so that each can be overridden after training
(``diffax sample --config.sample.KEY=VALUE``), with :class:`SampleOptions`' defaults."""


def _schedule_value(cfg: Mapping[str, Any], num_steps: int) -> str | tuple[float, ...]:
    value = cfg.get("schedule", "default")
    if value is None:
        value = "default"
    if isinstance(value, str) and value.lstrip().startswith(("[", "(")):
        try:  # a list given on the command line arrives as its text
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ConfigError("sample.schedule", f"config.sample.schedule={value!r} is "
                              "neither a schedule name nor a list of numbers.") from None
    if isinstance(value, str):
        return _choice({"schedule": value}, "sample", "schedule", SCHEDULES)
    if not isinstance(value, list | tuple | np.ndarray):
        raise ConfigError("sample.schedule", f"config.sample.schedule must be one of "
                          f"{', '.join(map(repr, SCHEDULES))} or a list of times, got "
                          f"{value!r}.")
    grid = []
    for i, v in enumerate(list(value)):
        grid.append(_real({"t": v}, "sample", "t", None) if not isinstance(v, bool) else v)
        if isinstance(v, bool):
            raise ConfigError("sample.schedule", f"config.sample.schedule[{i}] must be a "
                              f"number, got {v!r}.")
    if len(grid) != num_steps + 1:
        raise ConfigError("sample.schedule", f"config.sample.schedule has {len(grid)} times; "
                          f"sample.num_steps={num_steps} needs {num_steps + 1}.")
    if any(not b < a for a, b in zip(grid[:-1], grid[1:], strict=True)):
        raise ConfigError("sample.schedule", f"config.sample.schedule must be strictly "
                          f"decreasing, got {grid!r}.")
    return tuple(grid)


def sample_options(cfg: Mapping[str, Any]) -> SampleOptions:
    """Checks ``config.sample``.

    Example:
      >>> sample_options({"solver": "ipndm"}).order  # 0: IPNDM's own order (4)
      0
      >>> sample_options({"schedule": "[1.0, 0.5, 0.01]", "num_steps": 2}).schedule
      (1.0, 0.5, 0.01)
    """
    cfg = dict(cfg)
    d = _defaults(SampleOptions)
    d.pop("explicit")
    check_keys(cfg, "sample", set(d))
    solver = _choice(cfg, "sample", "solver", SOLVERS, d["solver"])
    num_steps = _integer(cfg, "sample", "num_steps", d["num_steps"], minimum=1)
    num_samples = _integer(cfg, "sample", "num_samples", d["num_samples"], minimum=1)
    order = _integer(cfg, "sample", "order", d["order"], minimum=0)
    if order:
        _integer(cfg, "sample", "order", d["order"], minimum=SOLVER_ORDERS[0],
                 maximum=4 if solver in _ORDER_4 else SOLVER_ORDERS[1])
    use_ema = _boolean(cfg, "sample", "use_ema", d["use_ema"])
    denoise_final = _boolean(cfg, "sample", "denoise_final", d["denoise_final"])
    flags = {}
    for key in ("corrector", "sde", "lower_order_final"):
        flags[key] = cfg.get(key)
        if cfg.get(key) is not None and solver != "pc":
            flags[key] = _boolean(cfg, "sample", key, None)
    names = {}
    for key, options in (("method", ("singlestep", "multistep", "adaptive")),
                         ("variant", ("bh1", "bh2"))):
        names[key] = cfg.get(key)
        if cfg.get(key) is not None:
            _choice(cfg, "sample", key, options)
    schedule = _schedule_value(cfg, num_steps)
    rho = _real(cfg, "sample", "rho", d["rho"], low=0.0, low_open=True)
    shift = _real(cfg, "sample", "shift", d["shift"], low=0.0, low_open=True)
    eta = _real(cfg, "sample", "eta", d["eta"], low=0.0)
    churn = _real(cfg, "sample", "churn", d["churn"], low=0.0)
    pos = {key: _real(cfg, "sample", key, d[key], low=0.0, low_open=True)
           for key in ("snr", "rtol", "atol")}
    return SampleOptions(solver=solver, num_steps=num_steps, num_samples=num_samples,
                         use_ema=use_ema, denoise_final=denoise_final, order=order, eta=eta,
                         churn=churn, schedule=schedule, rho=rho, shift=shift, **pos, **names,
                         **flags,
                         explicit=frozenset(k for k, v in cfg.items() if v is not None))


# --------------------------------------------------------------------------------------------
# eval


@dataclasses.dataclass(frozen=True)
class EvalOptions(_Section):
    """``config.eval``: what ``diffax eval`` / ``diffax likelihood`` compute.

    Attributes:
      split: the held-out split ["test"].
      num_samples: samples scored [1000].
      batch_size: examples per device call when sampling and computing likelihoods [500].
      feature_dim: PCA components [16].
      num_projections: directions of the sliced Wasserstein distance [256].
      likelihood: include the NLL in ``diffax eval`` [True].
      likelihood_examples: held-out examples for the NLL (at most the split) [1000].
      divergence: "exact" | "hutchinson" ["exact"].
      num_probes: Hutchinson probes [1].
      rtol: ODE relative tolerance [1e-5].
      atol: ODE absolute tolerance [1e-5].
      dequantize: uniform dequantization of 8-bit images for the NLL [True].
      nelbo_steps: discrete D3PM processes: step terms of the held-out NELBO [0: all].
    """

    split: str = "test"
    num_samples: int = 1000
    batch_size: int = 500
    feature_dim: int = 16
    num_projections: int = 256
    likelihood: bool = True
    likelihood_examples: int = 1000
    divergence: str = "exact"
    num_probes: int = 1
    rtol: float = 1e-5
    atol: float = 1e-5
    dequantize: bool = True
    nelbo_steps: int = 0


EVAL_DEFAULTS: dict[str, Any] = _defaults(EvalOptions)
"""The ``eval`` keys with :class:`EvalOptions`' defaults (stated in configs so that each can be
overridden on the command line)."""


def eval_options(cfg: Mapping[str, Any]) -> EvalOptions:
    """Checks ``config.eval``.

    Example:
      >>> eval_options({"num_samples": 10}).batch_size
      500
    """
    cfg = dict(EVAL_DEFAULTS, **dict(cfg))
    unknown = sorted(set(cfg) - set(EVAL_DEFAULTS))
    if unknown:
        raise ConfigError(f"eval.{unknown[0]}",
                          f"unknown config key(s) {', '.join('eval.' + k for k in unknown)}; "
                          f"known keys of `eval`: {', '.join(sorted(EVAL_DEFAULTS))}")
    for key in ("num_samples", "batch_size", "feature_dim", "num_projections",
                "likelihood_examples", "num_probes"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"eval.{key}", f"config.eval.{key} must be an integer >= 1, "
                              f"got {v!r}")
    v = cfg["nelbo_steps"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError("eval.nelbo_steps", f"config.eval.nelbo_steps must be an integer "
                          f">= 0, got {v!r}")
    if cfg["divergence"] not in ("exact", "hutchinson"):
        raise ConfigError("eval.divergence", f"config.eval.divergence={cfg['divergence']!r} "
                          "is not one of 'exact', 'hutchinson'")
    for key in ("rtol", "atol"):
        if not (isinstance(cfg[key], int | float) and cfg[key] > 0):
            raise ConfigError(f"eval.{key}", f"config.eval.{key} must be a positive number, "
                              f"got {cfg[key]!r}")
    return EvalOptions(**cfg)


# --------------------------------------------------------------------------------------------
# lsgm: joint training of an autoencoder and a latent score model (diffax.train.lsgm)

LSGM_TIME_SAMPLERS = ("importance", "uniform")
"""``lsgm.time_sampler``: :class:`diffax.lsgm.NormalImportanceTime` or
:class:`diffax.losses.UniformTime`."""


LSGM_SCORE_WEIGHTINGS = ("likelihood", "unweighted", "reweighted")
"""``lsgm.score_weighting``: the score model on the ELBO (``None``),
:class:`diffax.lsgm.UnweightedScore` or :class:`diffax.lsgm.ReweightedScore`."""


@dataclasses.dataclass(frozen=True)
class LSGMOptions(_Section):
    """``config.lsgm``: LSGM (:mod:`diffax.lsgm`): the encoder, decoder and latent score model
    (``config.model``, on the latents) trained together on the negative ELBO.

    Attributes:
      autoencoder_variant: the :class:`diffax.models.AutoencoderKL` variant ["digits"].
      autoencoder_kwargs: its config fields (``nf``, ``latent_channels``, ...) [{}].
      decoder_std: std of the Gaussian decoder in the model range [0.05].
      time_sampler: ``"importance"`` (the paper's variance reduction) or ``"uniform"``.
      kl_weight: weight of ``CE - H`` (1: the ELBO) [1.0].
      autoencoder_learning_rate: the autoencoder's own learning rate (its optimiser is
        ``config.optim`` otherwise) [None: optim.learning_rate].
      mixing_init: initial mixing logit of the mixed score [0.0].
      score_weighting: the score model's objective: ``"likelihood"`` (the ELBO, like the
        encoder) or the paper's separate ``"unweighted"`` / ``"reweighted"`` one
        (:class:`diffax.lsgm.LSGMObjective`) ["likelihood"].
    """

    autoencoder_variant: str = "digits"
    autoencoder_kwargs: dict = dataclasses.field(default_factory=dict)
    decoder_std: float = 0.05
    time_sampler: str = "importance"
    kl_weight: float = 1.0
    autoencoder_learning_rate: float | None = None
    mixing_init: float = 0.0
    score_weighting: str = "likelihood"


def lsgm_options(cfg: Mapping[str, Any]) -> LSGMOptions:
    """Checks ``config.lsgm``.

    Example:
      >>> lsgm_options({"decoder_std": 0.1}).time_sampler
      'importance'
      >>> lsgm_options({"decoder_std": 0.0})
      Traceback (most recent call last):
      ...
      diffax.train.options.ConfigError: config.lsgm.decoder_std must lie in (0, inf), got 0.0.
    """
    cfg = dict(cfg)
    d = _defaults(LSGMOptions)
    check_keys(cfg, "lsgm", {f.name for f in dataclasses.fields(LSGMOptions)})
    return LSGMOptions(
        autoencoder_variant=_string(cfg, "lsgm", "autoencoder_variant",
                                    d["autoencoder_variant"]),
        autoencoder_kwargs=_fields_dict(cfg, "lsgm", "autoencoder_kwargs", "autoencoder"),
        decoder_std=_real(cfg, "lsgm", "decoder_std", d["decoder_std"], low=0.0,
                          low_open=True),
        time_sampler=_choice(cfg, "lsgm", "time_sampler", LSGM_TIME_SAMPLERS,
                             d["time_sampler"]),
        kl_weight=_real(cfg, "lsgm", "kl_weight", d["kl_weight"], low=0.0),
        autoencoder_learning_rate=_real(cfg, "lsgm", "autoencoder_learning_rate", None,
                                        low=0.0, low_open=True, allow_none=True),
        mixing_init=_real(cfg, "lsgm", "mixing_init", d["mixing_init"]),
        score_weighting=_choice(cfg, "lsgm", "score_weighting", LSGM_SCORE_WEIGHTINGS,
                                d["score_weighting"]))


# --------------------------------------------------------------------------------------------
# gan


@dataclasses.dataclass(frozen=True)
class GANOptions(_Section):
    """``config.gan``: train a denoising diffusion GAN (:mod:`diffax.ddgan`) instead of a
    denoiser. ``model`` is then the generator's network and ``optim`` its optimizer; the
    process must be ``ddpm`` (its ``num_steps`` are DDGAN's T) and ``sample.solver`` ``ddgan``.

    Attributes:
      latent_dim: size of the latent ``z`` [100].
      mapping_layers: depth of the latent's mapping network [2].
      r1_gamma: weight of the R1 penalty on real pairs [0.05].
      d_learning_rate: the discriminator's Adam learning rate [1e-4].
      d_b1, d_b2: the discriminator's Adam betas [0.5, 0.9].
      d_grad_clip: the discriminator's global-norm clipping [None: none].
      d_width, d_depth: the MLP discriminator (vector data) [128, 3].
      d_channels, d_ch_mult: the conv discriminator (images) [32, (1, 2, 2)].
    """

    latent_dim: int = 100
    mapping_layers: int = 2
    r1_gamma: float = 0.05
    d_learning_rate: float = 1e-4
    d_b1: float = 0.5
    d_b2: float = 0.9
    d_grad_clip: float | None = None
    d_width: int = 128
    d_depth: int = 3
    d_channels: int = 32
    d_ch_mult: tuple[int, ...] = (1, 2, 2)


def gan_options(cfg: Mapping[str, Any]) -> GANOptions:
    """Checks ``config.gan``.

    Example:
      >>> gan_options({"latent_dim": 8}).r1_gamma
      0.05
      >>> gan_options({"latent_dim": 0})
      Traceback (most recent call last):
      ...
      diffax.train.options.ConfigError: config.gan.latent_dim must be an integer >= 1, got 0.
    """
    cfg = dict(cfg)
    d = _defaults(GANOptions)
    check_keys(cfg, "gan", set(d))
    ints = {k: _integer(cfg, "gan", k, d[k], minimum=m)
            for k, m in (("latent_dim", 1), ("mapping_layers", 0), ("d_width", 1),
                         ("d_depth", 1), ("d_channels", 1))}
    mult = cfg.get("d_ch_mult", d["d_ch_mult"])
    if isinstance(mult, str) or not isinstance(mult, list | tuple) or not mult:
        raise ConfigError("gan.d_ch_mult", f"config.gan.d_ch_mult must be a non-empty tuple "
                          f"of positive integers, got {mult!r}.")
    mult = tuple(_integer({f"d_ch_mult[{i}]": m}, "gan", f"d_ch_mult[{i}]", minimum=1)
                 for i, m in enumerate(mult))
    return GANOptions(
        **ints, d_ch_mult=mult,
        r1_gamma=_real(cfg, "gan", "r1_gamma", d["r1_gamma"], low=0.0),
        d_learning_rate=_real(cfg, "gan", "d_learning_rate", d["d_learning_rate"], low=0.0,
                              low_open=True),
        d_b1=_real(cfg, "gan", "d_b1", d["d_b1"], low=0.0, high=1.0, high_open=True),
        d_b2=_real(cfg, "gan", "d_b2", d["d_b2"], low=0.0, high=1.0, high_open=True),
        d_grad_clip=_real(cfg, "gan", "d_grad_clip", d["d_grad_clip"], low=0.0, low_open=True,
                          allow_none=True))


# --------------------------------------------------------------------------------------------
# the whole config

SECTIONS = ("seed", "process", "model", "loss", "optim", "train", "data", "sample", "eval",
            "gan", "latent", "lsgm")
"""The top-level keys of a training config."""


@dataclasses.dataclass(frozen=True)
class Options:
    """A whole config, checked: one typed section per config section."""

    seed: int
    process: ProcessOptions
    model: ModelOptions
    loss: LossOptions
    optim: OptimOptions
    train: TrainOptions
    data: DataOptions
    sample: SampleOptions
    eval: EvalOptions
    gan: GANOptions | None = None
    """A denoising diffusion GAN's options (``None``: a denoiser is trained)."""
    latent: LatentOptions | None = None
    """Stage 2 of latent diffusion: the stage-1 autoencoder run (``None``: pixel space)."""
    lsgm: LSGMOptions | None = None
    """LSGM's joint training (``None``: no ``lsgm`` section)."""

    @property
    def is_autoencoder(self) -> bool:
        """Whether this config trains an autoencoder (stage 1 of latent diffusion)."""
        return self.model.name in AUTOENCODER_NAMES


def parse_config(config: Any, *, num_devices: int | None = None) -> Options:
    """Checks a whole config (no compute, no objects) and returns its :class:`Options`.

    Args:
      config: the training config (``ConfigDict`` or nested dicts).
      num_devices: devices the global batch is split over (default: ``jax.device_count()``).

    Raises:
      ConfigError: a ``ValueError`` whose ``key`` attribute and message name the key.
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
    train = train_options(config)
    if num_devices is None:
        import jax

        num_devices = jax.device_count()
    if train.batch_size % num_devices:
        n, b = num_devices, train.batch_size
        raise ConfigError("train.batch_size", f"`train.batch_size`={b} is not divisible by the "
                          f"number of devices ({n}); use a multiple of {n}, e.g. "
                          f"{max(n, b // n * n)} or {(b // n + 1) * n}.")
    data = data_options(_section(config, "data"))
    model_name = _section(config, "model").get("name")
    if model_name in AUTOENCODER_NAMES:  # stage 1 of latent diffusion: no process
        if _section(config, "process"):
            raise ConfigError("process", f"config.process does not apply to "
                              f"model.name={model_name!r} (an autoencoder); remove it.")
        if _section(config, "latent"):
            raise ConfigError("latent", f"config.latent does not apply to "
                              f"model.name={model_name!r}: an autoencoder trains on data.")
        process = None
    else:
        process = process_options(_section(config, "process"))
    model = model_options(_section(config, "model"))
    if model.name in AUTOENCODER_NAMES:
        loss = autoencoder_loss_options(_section(config, "loss"), model.name)
    else:
        loss = loss_options(_section(config, "loss"))
    latent = latent_options(_section(config, "latent")) if _section(config, "latent") else None
    optim = optim_options(_section(config, "optim"))
    sample = sample_options(_section(config, "sample"))
    evaluation = eval_options(_section(config, "eval"))
    gan = gan_options(_section(config, "gan")) if config.get("gan") is not None else None
    lsgm = lsgm_options(_section(config, "lsgm")) if config.get("lsgm") is not None else None
    return Options(seed=int(seed), process=process, model=model, loss=loss, optim=optim,
                   train=train, data=data, sample=sample, eval=evaluation, gan=gan,
                   latent=latent, lsgm=lsgm)


# --------------------------------------------------------------------------------------------
# the task examples (``diffax task CONFIG``): one frozen section per config section, each
# default written once, in the field. Each field's ``metadata["check"]`` says how it is checked.


def _field(default: Any = _REQUIRED, check: tuple = ("any",)) -> Any:
    if default is _REQUIRED:
        return dataclasses.field(metadata={"check": check})
    if isinstance(default, list | dict):
        raise TypeError("task option defaults are immutable (tuples)")
    return dataclasses.field(default=default, metadata={"check": check})


def _tuple_of(value: Any, sec: str, key: str, kind: Any, *, nonempty: bool = True) -> tuple:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        value = (value,) if value is not None else ()
    if nonempty and not value:
        raise ConfigError(f"{sec}.{key}", f"config.{sec}.{key} must not be empty.")
    return tuple(kind({key: v}, sec, key) for v in value)


def _checked(cfg: Mapping[str, Any], sec: str, key: str, default: Any, check: tuple) -> Any:
    """One task option: ``cfg[key]`` (or ``default``) checked by ``check``."""
    kind = check[0]
    value = cfg.get(key, default)
    if value is _REQUIRED:
        raise ConfigError(f"{sec}.{key}", f"config key `{sec}.{key}` is required.")
    if kind == "any":
        return value
    if value is None and check[-1] == "optional":
        return None
    if kind == "int":
        return _integer(cfg, sec, key, default, minimum=check[1])
    if kind == "real":
        return _real(cfg, sec, key, default, low=check[1], low_open=check[2],
                     high=check[3] if len(check) > 3 and check[3] != "optional" else None,
                     high_open=True)
    if kind == "str":
        return _string(cfg, sec, key, default)
    if kind == "choice":
        return _choice(cfg, sec, key, check[1], default)
    if kind == "ints":
        return _tuple_of(value, sec, key, lambda c, s, k: _integer(c, s, k, minimum=check[1]))
    if kind == "reals":
        return _tuple_of(value, sec, key, lambda c, s, k: _real(c, s, k, None, low=check[1]))
    if kind == "choices":
        return _tuple_of(value, sec, key, lambda c, s, k: _choice(c, s, k, check[1]))
    if kind == "strs":
        return _tuple_of(value, sec, key, lambda c, s, k: _string(c, s, k))
    if kind == "time_sets":  # a tuple of times, or a tuple of non-empty tuples of times
        value = tuple(value) if isinstance(value, tuple | list) else (value,)
        if value and all(isinstance(v, tuple | list) for v in value):
            return tuple(_tuple_of(v, sec, key, lambda c, s, k: _real(c, s, k, None, low=0.0,
                                                                       low_open=True))
                         for v in value)
        return (_tuple_of(value, sec, key, lambda c, s, k: _real(c, s, k, None, low=0.0,
                                                                  low_open=True)),)
    raise AssertionError(kind)


def _parse_section(cls: type, cfg: Mapping[str, Any], sec: str) -> Any:
    """``cls`` from ``cfg`` (unknown keys raise), each field checked by its metadata."""
    if isinstance(cfg, cls):
        return cfg
    cfg = dict(cfg)
    fields = dataclasses.fields(cls)
    check_keys(cfg, sec, {f.name for f in fields})
    values = {}
    for f in fields:
        default = _REQUIRED if f.default is dataclasses.MISSING else f.default
        check = f.metadata.get("check", ("any",))
        if check[0] == "section":
            values[f.name] = _parse_section(check[1], _section(cfg, f.name), f"{sec}.{f.name}")
        else:
            values[f.name] = _checked(cfg, sec, f.name, default, check)
    return cls(**values)


def section_defaults(cls: type) -> dict[str, Any]:
    """The stated defaults of a task section (fields without a default left out): the values a
    task config starts from (``configs/tasks/``), so each default is written once.

    Example:
      >>> section_defaults(SROptions)["num_samples"]
      8
    """
    return {f.name: (section_defaults(f.metadata["check"][1])
                     if f.metadata.get("check", ("",))[0] == "section" else f.default)
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING
            or f.metadata.get("check", ("",))[0] == "section"}


@dataclasses.dataclass(frozen=True)
class FitOptions(_Section):
    """``config.train`` (and ``classifier.train``, ``pixel_train``) of a task: the keyword
    arguments of :func:`diffax.train.fit` (its defaults)."""

    num_steps: int = _field(check=("int", 1))
    batch_size: int = _field(check=("int", 1))
    learning_rate: float = _field(1e-3, ("real", 0.0, True))
    warmup_steps: int = _field(0, ("int", 0))
    ema_decay: float = _field(0.999, ("real", 0.0, False, 1.0))
    steps_per_call: int = _field(100, ("int", 1))
    xla_optimization_level: int | None = _field(None, ("int", 0, "optional"))
    unroll: int = _field(1, ("int", 1))


@dataclasses.dataclass(frozen=True)
class TaskModelOptions(_Section):
    """``config.model`` (``classifier.model``) of a task: a UNet ``variant`` and the config
    fields ``kwargs`` it overrides (lists become tuples)."""

    variant: str = _field("digits", ("str",))
    kwargs: Mapping[str, Any] = _field(None, ("any",))

    def model_kwargs(self) -> dict[str, Any]:
        """``kwargs`` as keyword arguments (lists as tuples)."""
        kwargs = self.kwargs.to_dict() if hasattr(self.kwargs, "to_dict") else self.kwargs
        return {k: tuple(v) if isinstance(v, list) else v
                for k, v in dict(kwargs or {}).items()}


@dataclasses.dataclass(frozen=True)
class TaskDataOptions(_Section):
    """``config.data`` of a task: where the digits are, the anomaly example's classes, and
    the validation split held out of the train split (fixed-seed permutation) on which the
    examples choose their hyperparameters."""

    data_dir: str | None = _field(None, ("str", "optional"))
    normal_classes: tuple[int, ...] = _field(tuple(range(9)), ("ints", 0))
    anomaly_classes: tuple[int, ...] = _field((9,), ("ints", 0))
    num_validation: int = _field(300, ("int", 1))
    validation_seed: int = _field(0, ("int", 0))


@dataclasses.dataclass(frozen=True)
class ClassifierSectionOptions(_Section):
    """``config.classifier``: the noise-conditional classifier's model and training."""

    model: TaskModelOptions = _field(check=("section", TaskModelOptions))
    train: FitOptions = _field(check=("section", FitOptions))


@dataclasses.dataclass(frozen=True)
class TaskEvalOptions(_Section):
    """``config.eval`` of the classifier example: the times its accuracy is measured at."""

    times: tuple[float, ...] = _field((0.001, 0.2, 0.4, 0.6, 0.8, 1.0), ("reals", 0.0))


@dataclasses.dataclass(frozen=True)
class GuidanceOptions(_Section):
    """``config.guidance``: guidance scales, samples per class, and the guided denoiser's
    prior (``"unet"``: the trained UNet; ``"gaussian"``: the exact denoiser of a Gaussian
    fitted to the train digits, no training)."""

    scales: tuple[float, ...] = _field((0.0, 1.0, 4.0), ("reals", 0.0))
    samples_per_class: int = _field(10, ("int", 1))
    prior: str = _field("unet", ("choice", ("unet", "gaussian")))


@dataclasses.dataclass(frozen=True)
class SROptions(_Section):
    """``config.sr``: pooling factor, upsampling of the condition, samples, test images
    (0: all)."""

    factor: int = _field(2, ("int", 1))
    upsample: str = _field("nearest", ("choice", ("nearest", "linear", "bilinear", "cubic",
                                                  "bicubic", "lanczos3", "lanczos5")))
    num_samples: int = _field(8, ("int", 1))
    num_eval: int = _field(300, ("int", 0))


@dataclasses.dataclass(frozen=True)
class PurifyOptions(_Section):
    """``config.purify``: candidate purification times (chosen on validation), the FGSM
    budget and the Gaussian perturbation's std."""

    t0: tuple[float, ...] = _field((0.1, 0.25, 0.4), ("reals", 0.0))
    fgsm_epsilon: float = _field(0.25, ("real", 0.0, False))
    noise_std: float = _field(0.5, ("real", 0.0, False))


@dataclasses.dataclass(frozen=True)
class AnomalyOptions(_Section):
    """``config.anomaly``: noises, candidate times (chosen on validation), draws, the simplex
    noise, and balanced evaluation subsets (0: all)."""

    noises: tuple[str, ...] = _field(("gaussian", "simplex"),
                                     ("choices", ("gaussian", "simplex")))
    times: tuple[float, ...] = _field((0.1, 0.2, 0.3), ("reals", 0.0))
    num_draws: int = _field(8, ("int", 1))
    simplex_frequency: float = _field(1.0, ("real", 0.0, True))
    simplex_octaves: int = _field(3, ("int", 1))
    simplex_persistence: float = _field(0.8, ("real", 0.0, True))
    num_eval: int = _field(0, ("int", 0))


@dataclasses.dataclass(frozen=True)
class SegOptions(_Section):
    """``config.seg``: candidate sets of feature times (chosen on validation), UNet blocks,
    labelled images per class, labellings, the pixel classifier's hidden widths."""

    times: tuple[tuple[float, ...], ...] = _field(
        ((0.01, 0.05), (0.05, 0.2), (0.01,), (0.1,), (0.4,)), ("time_sets",))
    blocks: tuple[str, ...] = _field(("mid_block_1", "mid_attn", "up_1_block_0", "up_1_block_1",
                                      "up_0_block_0", "up_0_block_1"), ("strs",))
    labelled_per_class: int = _field(2, ("int", 1))
    labellings: tuple[str, ...] = _field(("parts", "digit_class"),
                                         ("choices", ("parts", "digit_class")))
    hidden: tuple[int, ...] = _field((64, 64), ("ints", 1))


@dataclasses.dataclass(frozen=True)
class InverseOptions(_Section):
    """``config.inverse``: masks, methods, problems, DDPM steps, samples, test images (0: all),
    RePaint's jumps, DPS's step size, the blur's std."""

    masks: tuple[str, ...] = _field(("center", "bottom_half", "random_half"),
                                    ("choices", ("center", "bottom_half", "random_half")))
    methods: tuple[str, ...] = _field(("replace", "repaint", "dps"),
                                      ("choices", ("replace", "repaint", "dps")))
    problems: tuple[str, ...] = _field(("blur", "downsample"),
                                       ("choices", ("blur", "downsample")))
    num_steps: int = _field(50, ("int", 1))
    num_samples: int = _field(2, ("int", 1))
    num_eval: int = _field(100, ("int", 0))
    jump_length: int = _field(5, ("int", 1))
    resample: int = _field(5, ("int", 1))
    dps_step_size: float = _field(1.0, ("real", 0.0, True))
    blur_std: float = _field(1.0, ("real", 0.0, True))
    prior: str = _field("unet", ("choice", ("unet", "gaussian")))


@dataclasses.dataclass(frozen=True)
class MedicalOptions(_Section):
    """``config.medical``: the phantom CT / MRI example (see :mod:`diffax.tasks.medical`)."""

    problem: str = _field(check=("choice", ("ct", "mri")))
    settings: tuple[int, ...] = _field(check=("ints", 1))
    size: int = _field(32, ("int", 1))
    num_full_views: int = _field(180, ("int", 1))
    mask: str = _field("cartesian", ("choice", ("cartesian", "random")))
    center_fraction: float = _field(0.08, ("real", 0.0, False, 1.0))
    methods: tuple[str, ...] = _field(("consistency", "dps"),
                                      ("choices", ("consistency", "dps")))
    num_steps: int = _field(100, ("int", 1))
    num_samples: int = _field(2, ("int", 1))
    num_eval: int = _field(8, ("int", 1))
    lam: float = _field(1.0, ("real", 0.0, False))
    snr: float = _field(0.16, ("real", 0.0, False))
    dps_step_size: float = _field(1.0, ("real", 0.0, True))
    dps_step_sizes: tuple[float, ...] | None = _field(None, ("reals", 0.0, "optional"))
    num_validation: int = _field(8, ("int", 1))
    noise_std: float = _field(0.0, ("real", 0.0, False))
    denoiser_from: str | None = _field(None, ("str", "optional"))
    prior: str = _field("unet", ("choice", ("unet", "gaussian")))
    inverse_ridge: float | None = _field(1e-2, ("real", 0.0, False, "optional"))


@dataclasses.dataclass(frozen=True)
class SegDiffOptions(_Section):
    """``config.segdiff``: the SegDiff example (see :mod:`diffax.tasks.examples.segdiff`)."""

    dataset: str = _field("digits", ("choice", ("digits", "phantoms")))
    size: int = _field(32, ("int", 1))
    labellings: tuple[str, ...] = _field(("parts", "digit_class"),
                                         ("choices", ("parts", "digit_class", "regions")))
    labelled_per_class: int = _field(2, ("int", 0))
    num_labelled: int = _field(200, ("int", 1))
    num_eval: int = _field(0, ("int", 0))
    num_samples: int = _field(8, ("int", 1))
    sample_counts: tuple[int, ...] = _field((1, 2, 4, 8), ("ints", 1))
    encoder_blocks: int = _field(2, ("int", 0))
    baselines: tuple[str, ...] = _field(
        ("untrained", "pixel_window", "pixel_window_global", "diffusion_features"),
        ("choices", ("untrained", "pixel_window", "pixel_window_global",
                     "diffusion_features")))
    feature_times: tuple[float, ...] = _field((0.01, 0.05), ("reals", 0.0))
    blocks: tuple[str, ...] = _field(("mid_block_1", "mid_attn", "up_1_block_0", "up_1_block_1",
                                      "up_0_block_0", "up_0_block_1"), ("strs",))
    hidden: tuple[int, ...] = _field((64, 64), ("ints", 1))


@dataclasses.dataclass(frozen=True)
class SynthesisOptions(_Section):
    """``config.synthesis``: the mask -> image example (see
    :mod:`diffax.tasks.examples.synthesis`)."""

    p_uncond: float = _field(0.2, ("real", 0.0, False, 1.0))
    scales: tuple[float, ...] = _field((0.0, 1.0, 2.0, 4.0), ("reals", 0.0))
    num_eval: int = _field(300, ("int", 0))


TASK_SECTIONS: dict[str, dict[str, type]] = {
    "classifier": {"classifier": ClassifierSectionOptions, "eval": TaskEvalOptions,
                   "guidance": GuidanceOptions},
    "super_resolution": {"sr": SROptions},
    "purification": {"classifier": ClassifierSectionOptions, "purify": PurifyOptions},
    "anomaly": {"anomaly": AnomalyOptions},
    "segmentation": {"seg": SegOptions, "pixel_train": FitOptions},
    "inverse_problems": {"inverse": InverseOptions},
    "medical": {"medical": MedicalOptions},
    "segdiff": {"segdiff": SegDiffOptions, "pixel_train": FitOptions},
    "synthesis": {"synthesis": SynthesisOptions},
}
"""The sections of each task beyond the common ones (``seed``, ``task``, ``process``,
``model``, ``train``, ``sample``, ``data``)."""


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """A task config, checked once: the common sections and the task's own (``sections``)."""

    seed: int
    task: str
    process: ProcessOptions
    model: TaskModelOptions
    train: FitOptions
    sample: SampleOptions | None
    data: TaskDataOptions
    sections: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:  # opts.sr, opts.anomaly, ...
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)


def parse_task_config(config: Any) -> TaskOptions:
    """Checks a task config (``configs/tasks/*.py``) once and returns its :class:`TaskOptions`
    (a :class:`TaskOptions` passes through).

    Raises:
      ConfigError: a ``ValueError`` naming the key.

    Example:
      >>> o = parse_task_config({"seed": 0, "task": "super_resolution",
      ...                        "process": {"name": "vp"},
      ...                        "train": {"num_steps": 4, "batch_size": 8},
      ...                        "sample": {"solver": "ddim", "num_steps": 3}, "sr": {}})
      >>> o.sr.num_samples, o.train.learning_rate, o.data.num_validation
      (8, 0.001, 300)
    """
    if isinstance(config, TaskOptions):
        return config
    if not hasattr(config, "keys") or not hasattr(config, "get"):
        raise ConfigError("config", f"the config must be a ConfigDict or a dict, got "
                          f"{type(config).__name__}.")
    task = config.get("task")
    if task not in TASK_SECTIONS:
        raise ConfigError("task", f"config.task={task!r} is not one of "
                          f"{tuple(TASK_SECTIONS)}.")
    own = TASK_SECTIONS[task]
    known = {"seed", "task", "process", "model", "train", "sample", "data", *own}
    unknown = sorted(str(k) for k in config.keys() if k not in known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown top-level config key(s) {', '.join(unknown)} "
                          f"for task {task!r}; known: {', '.join(sorted(known))}.")
    seed = config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError("seed", f"config.seed must be an integer, got {seed!r}.")
    sample = _section(config, "sample")
    return TaskOptions(
        seed=int(seed), task=task, process=process_options(_section(config, "process")),
        model=_parse_section(TaskModelOptions, _section(config, "model"), "model"),
        train=_parse_section(FitOptions, _section(config, "train"), "train"),
        sample=sample_options(sample) if sample else None,
        data=_parse_section(TaskDataOptions, _section(config, "data"), "data"),
        sections={name: _parse_section(cls, _section(config, name), name)
                  for name, cls in own.items()})
