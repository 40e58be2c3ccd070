"""Options -> objects. The only place in diffax where config strings become classes.

:mod:`diffax.train.options` checks a config once and gives typed, frozen options (every default
is written there, once); each ``build_*`` function here turns one section's options into
library objects (it also accepts the raw section, which it parses first). The library core
never sees a string. A new process, model, loss or solver family is one branch in a table
below.

Keys (defaults: the fields of :mod:`diffax.train.options`):

* ``process.name``: ``vp`` | ``subvp`` | ``cosine`` | ``ve`` | ``edm`` | ``rectified_flow`` |
  ``ddpm``; with that process's numbers (``beta_min``, ``beta_max``, ``sigma_min``,
  ``sigma_max``, ``sigma_data``, ``s``, ``t_min``, ``t_max``; for ``ddpm``: ``num_steps``,
  ``schedule`` [linear] | cosine | vp (score_sde's VP with ``beta_min``/``beta_max`` on
  ``num_steps`` uniform steps), ``beta_start``, ``beta_end``).
* ``model.name``: ``unet`` | ``mlp``; ``model.variant``; ``model.conditional`` (class labels
  from the data); ``model.kwargs``: field overrides of the variant's config. The data's shape
  fills ``image_size``/``num_channels`` (UNet) or ``dim`` (MLP).
* ``loss``: :class:`~diffax.train.options.LossOptions` (``weighting``: eps | x0 | v | score |
  likelihood | edm | flow; ``time_sampler``: uniform | lognormal | importance | discrete;
  ``variates``: iid | low_discrepancy | antithetic; ``prediction``: eps | x0 | v | score |
  velocity | edm (EDM preconditioning); ``noise_input``: time | log_snr | edm | index;
  ``time_scale``, ``sigma_data``, ``lognormal_mean``, ``lognormal_std``, ``truncate``,
  ``reduce_mean``, ``p_uncond``: label dropout for classifier-free guidance).
* ``optim``: :class:`~diffax.train.options.OptimOptions`.
* ``sample``: :class:`~diffax.train.options.SampleOptions` (``solver``: euler | heun | ddim |
  ddpm | euler_maruyama | reverse_diffusion | pc | edm_stochastic | adaptive | dpm_solver |
  dpm_solver_pp | unipc | deis | ipndm | lms | ddgan; ``schedule``: a name or a list of times).
* ``gan`` (optional): :class:`~diffax.train.options.GANOptions`; a denoising diffusion GAN
  (:mod:`diffax.ddgan`): ``model`` is the generator's network, ``optim`` its optimizer.
* ``data.name`` and the keyword arguments of :func:`diffax.data.make_dataset` (``split``,
  ``data_dir``, ``random_flip``, ``image_size``, ...).
* ``train``: :class:`~diffax.train.options.TrainOptions`; ``eval``:
  :class:`~diffax.train.options.EvalOptions`.

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

from diffax import cld, losses, parameterization, processes, samplers, schedules
from diffax.processes import Process
from diffax.train import options as opts_lib
from diffax.train import step as step_lib
from diffax.train.options import (
    SECTIONS,
    SOLVER_ORDERS,
    TRAIN_KEYS,
    ConfigError,
    DataOptions,
    LossOptions,
    ModelOptions,
    OptimOptions,
    Options,
    ProcessOptions,
    SampleOptions,
    TrainOptions,
    parse_config,
    section,
    train_options,
)
from diffax.typing import ApplyFn

__all__ = [
    "ConfigError",
    "TrainOptions",
    "Options",
    "SECTIONS",
    "SOLVER_ORDERS",
    "TRAIN_KEYS",
    "check_config",
    "parse_config",
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
    "build_autoencoder_loss",
    "section",
]


def _as(parse: Callable[[Mapping[str, Any]], Any], cls: type, cfg: Any) -> Any:
    """``cfg`` if it already is options of ``cls``, else the parsed raw section."""
    if isinstance(cfg, cls):
        return cfg
    return parse(dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg))


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


# --------------------------------------------------------------------------------------------
# process


def _ddpm(schedule: str = "linear", **numbers: Any) -> Process:
    if schedule == "linear":
        return processes.DiscreteVP.linear(**_pick(numbers, ("num_steps", "beta_start",
                                                             "beta_end")))
    if schedule == "cosine":
        return processes.DiscreteVP.cosine(**_pick(numbers, ("num_steps", "s")))
    if schedule == "vp":  # score_sde's VP on T uniform steps (DDGAN's few-step schedule)
        return processes.DiscreteVP.from_continuous(
            processes.VP(**_pick(numbers, ("beta_min", "beta_max"))),
            num_steps=numbers.get("num_steps", 1000))
    raise ValueError(f"config.process.schedule={schedule!r} is not one of 'linear', 'cosine', "
                     f"'vp'.")


def _pick(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


_PROCESSES: dict[str, tuple[Callable[..., Process], tuple[str, ...]]] = {
    "vp": (processes.VP, ("beta_min", "beta_max", "t_min", "t_max")),
    "subvp": (processes.SubVP, ("beta_min", "beta_max", "t_min", "t_max")),
    "cosine": (processes.VP.cosine, ("s", "t_min", "t_max")),
    "ve": (processes.VE, ("sigma_min", "sigma_max", "t_min", "t_max")),
    "edm": (processes.EDM, ("sigma_min", "sigma_max", "sigma_data")),
    "rectified_flow": (processes.RectifiedFlow, ("t_min", "t_max")),
    "ddpm": (_ddpm, ("num_steps", "schedule", "beta_start", "beta_end", "s", "beta_min",
                     "beta_max")),
    "cld": (cld.CLD, ("beta", "m_inv", "gamma", "t_min", "t_max")),
}
"""``process.name`` -> (factory, the keys it takes): one entry per process family."""


_DISCRETE_PROCESSES = {"masked": ("vocab_size",),
                       "d3pm_uniform": ("vocab_size", "num_steps"),
                       "d3pm_absorbing": ("vocab_size", "num_steps"),
                       "d3pm_gaussian": ("vocab_size", "num_steps", "beta_start", "beta_end")}
"""Categorical processes (:mod:`diffax.discrete`) by ``process.name``; ``vocab_size`` (the
data tokens ``K``) is required."""


def _discrete_process(o: ProcessOptions) -> Any:
    from diffax import discrete

    opts_lib.check_keys(o.to_dict(), "process", {"name", *_DISCRETE_PROCESSES[o.name]})
    if "vocab_size" not in o.params:
        raise ConfigError("process.vocab_size", "config key `process.vocab_size` is required "
                          f"for process.name={o.name!r}.")
    vocab = int(o.params["vocab_size"])
    if o.name == "masked":
        return discrete.Masked(vocab_size=vocab)
    kw = {"num_steps": int(o.params.get("num_steps", 1000))}
    if o.name == "d3pm_gaussian":
        kw.update(_pick(o.params, ("beta_start", "beta_end")))
    return getattr(discrete.D3PM, o.name.removeprefix("d3pm_"))(vocab_size=vocab, **kw)


def _is_discrete(process: Any) -> bool:
    from diffax.discrete import DiscreteProcess

    return isinstance(process, DiscreteProcess)


def build_process(cfg: Mapping[str, Any] | ProcessOptions) -> Process:
    """The forward process of ``config.process`` (see the module docstring)."""
    o = _as(opts_lib.process_options, ProcessOptions, cfg)
    if o.name in _DISCRETE_PROCESSES:
        return _discrete_process(o)
    factory, keys = _PROCESSES[o.name]
    opts_lib.check_keys(o.to_dict(), "process", {"name", *keys})
    return factory(**_pick(o.params, keys))


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

_NOISE_INPUTS: dict[str, Callable[[float], parameterization.NoiseInput]] = {
    "time": lambda scale: parameterization.TimeInput(scale=scale),
    "log_snr": lambda scale: parameterization.LogSNRInput(),
    "edm": lambda scale: parameterization.EDMNoiseInput(),
    "index": lambda scale: parameterization.IndexInput(),
}


def build_parameterization(o: LossOptions) -> parameterization.Parameterization:
    """The network -> denoiser map of ``config.loss.prediction`` / ``noise_input``."""
    noise = _NOISE_INPUTS[o.resolved_noise_input](o.time_scale)
    if o.prediction == "edm":
        return parameterization.EDMPrecond(sigma_data=o.sigma_data, noise_input=noise)
    return parameterization.Predict(prediction=o.prediction, noise_input=noise)


def build_loss(cfg: Mapping[str, Any] | LossOptions, process: Process, *,
               conditional: bool = False, dropout_key: bool = False,
               null_label: int | None = None) -> losses.DenoisingLoss:
    """The :class:`diffax.losses.DenoisingLoss` of ``config.loss`` for ``process``.

    Args:
      cfg: the ``loss`` section (or its :class:`~diffax.train.options.LossOptions`).
      process: from :func:`build_process`.
      conditional: pass the batch's ``label`` to the network.
      dropout_key: pass a PRNG key to the network as ``key`` (dropout).
      null_label: the model's "no label" index, for ``loss.p_uncond``.
    """
    o = _as(opts_lib.loss_options, LossOptions, cfg)
    if _is_discrete(process):
        from diffax import discrete

        if isinstance(process, discrete.Masked):  # MDLM's loss
            return discrete.MaskedDiffusionLoss(process=process, t_eps=o.t_eps,
                                                low_discrepancy=o.low_discrepancy)
        return discrete.D3PMHybridLoss(process=process, hybrid_coeff=o.hybrid_coeff)
    if not getattr(process, "scalar_coefficients", True):  # a StateProcess (CLD)
        return _build_hsm_loss(o, process, conditional=conditional, dropout_key=dropout_key)
    weighting = _WEIGHTINGS[o.weighting](o.sigma_data)
    sampler_cls = _SAMPLERS[o.time_sampler]
    variates = _VARIATES[o.variates]
    if sampler_cls is losses.LogNormalSigma:
        sampler = sampler_cls(mean=o.lognormal_mean, std=o.lognormal_std,
                              truncate=o.truncate, **variates)
    else:
        sampler = sampler_cls(**variates)
    if o.p_uncond > 0 and (not conditional or null_label is None):
        raise ValueError("config.loss.p_uncond > 0 needs a conditional model "
                         "(config.model.conditional=True) with a null label.")
    return losses.DenoisingLoss(
        process=process, weighting=weighting, time_sampler=sampler,
        parameterization=build_parameterization(o), reduce_mean=o.reduce_mean,
        cond_keys=("label",) if conditional else (),
        key_arg="key" if dropout_key else None,
        p_uncond=o.p_uncond, null_label=null_label if o.p_uncond > 0 else None)


_HSM_WEIGHTINGS = {"eps": cld.EpsWeighting, "likelihood": cld.LikelihoodWeighting}


def _build_hsm_loss(o: LossOptions, process: Any, *, conditional: bool,
                    dropout_key: bool) -> cld.HSMLoss:
    """CLD's hybrid score matching (``config.loss``: ``weighting`` eps | likelihood,
    ``prediction`` eps | x0, ``time_scale``, ``reduce_mean``)."""
    if o.weighting not in _HSM_WEIGHTINGS:
        raise ValueError(f"config.loss.weighting={o.weighting!r} is not one of 'eps', "
                         f"'likelihood' (process.name='cld').")
    if o.prediction not in ("eps", "x0"):
        raise ValueError(f"config.loss.prediction={o.prediction!r} is not one of 'eps', 'x0' "
                         f"(process.name='cld').")
    par = cld.CLDPredict(prediction=o.prediction, time_scale=float(o.time_scale))
    return cld.HSMLoss(process=process, weighting=_HSM_WEIGHTINGS[o.weighting](),
                       parameterization=par, reduce_mean=o.reduce_mean,
                       cond_keys=("label",) if conditional else (),
                       key_arg="key" if dropout_key else None)


# --------------------------------------------------------------------------------------------
# model


def _model_overrides(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # JSON/ConfigDict round trips turn tuples into lists; model configs want tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(kwargs).items()}


def build_model(cfg: Mapping[str, Any] | ModelOptions, info: Any, process: Any = None, *,
                input_copies: int = 1) -> tuple[Any, bool]:
    """The Flax model of ``config.model`` for data described by ``info`` (a ``DataInfo``);
    ``transformer`` (tokens) takes its vocabulary from the discrete ``process``;
    ``input_copies`` data-shaped arrays enter concatenated on the channel axis (CLD's
    ``(x, v)``: 2).

    Returns:
      ``(model, conditional)``.
    """
    from diffax import models  # Flax networks: imported only when a model is built

    o = _as(opts_lib.model_options, ModelOptions, cfg)
    cls = {"unet": models.UNet, "mlp": models.MLP, "transformer": models.Transformer,
           "dit": models.Transformer}[o.name]
    conditional = o.conditional
    overrides = _model_overrides(o.kwargs)
    if conditional:
        if not info.num_classes:
            raise ValueError(f"config.model.conditional=True but dataset {info.name!r} has no "
                             "labels.")
        overrides.setdefault("num_classes", info.num_classes)
    if o.name == "transformer":
        if not _is_discrete(process) or len(info.shape) != 1:
            raise ValueError(f"config.model.name='transformer' needs a discrete process "
                             f"(process.name masked or d3pm_*) and token sequences [L]; dataset "
                             f"{info.name!r} has examples of shape {info.shape}.")
        overrides.setdefault("vocab_size", process.num_states)
        overrides.setdefault("num_outputs", process.vocab_size)
        overrides.setdefault("max_len", info.shape[0])
    elif cls is models.Transformer:
        if len(info.shape) != 3 or info.shape[0] != info.shape[1] or _is_discrete(process):
            raise ValueError(f"config.model.name='dit' needs a Gaussian process and square "
                             f"images [H, W, C]; dataset {info.name!r} has examples of shape "
                             f"{info.shape}.")
        overrides.setdefault("image_size", info.shape[0])
        overrides.setdefault("num_channels", info.shape[-1])
    elif cls is models.UNet:
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
    variant = o.variant
    try:
        model = cls.from_variant(variant, **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"config.model (name={o.name!r}, variant={variant!r}, "
                         f"kwargs={overrides}): {e}") from e
    return model, conditional


# --------------------------------------------------------------------------------------------
# optimizer


def build_optimizer(cfg: Mapping[str, Any] | OptimOptions, *, num_steps: int
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optimizer, schedule)`` of ``config.optim`` (see :func:`make_optimizer`)."""
    o = _as(opts_lib.optim_options, OptimOptions, cfg)
    decay_steps = max(int(num_steps) - o.warmup_steps, 1) if o.schedule == "cosine" else None
    try:
        return step_lib.make_optimizer(
            learning_rate=o.learning_rate, warmup_steps=o.warmup_steps,
            decay_steps=decay_steps, end_learning_rate=o.end_learning_rate, b1=o.b1, b2=o.b2,
            eps=o.eps, weight_decay=o.weight_decay, grad_clip=o.grad_clip)
    except ValueError as e:
        raise ValueError(f"config.optim: {e}") from e


# --------------------------------------------------------------------------------------------
# sampler


DISCRETE_SAMPLERS = ("ancestral", "tau_leaping")
"""``sample.solver`` of the discrete processes (the ``method`` of
:func:`diffax.discrete.sample`)."""


def _solvers(o: SampleOptions) -> dict[str, Callable[[], Any]]:
    def opts(*keys: str) -> dict[str, Any]:
        # The options the config sets; the rest (and order 0) keep the solver's defaults.
        return {k: getattr(o, k) for k in keys if getattr(o, k) is not None}

    order = {"order": o.order} if o.order else {}
    return {
        "euler": samplers.Euler,
        "heun": samplers.Heun,
        "ddim": lambda: samplers.DDIM(eta=o.eta),
        "ddpm": samplers.DDPM,
        "euler_maruyama": samplers.EulerMaruyama,
        "reverse_diffusion": samplers.ReverseDiffusion,
        "pc": lambda: samplers.PredictorCorrector(snr=o.snr),
        "edm_stochastic": lambda: samplers.EDMStochastic(S_churn=o.churn),
        "adaptive": lambda: samplers.Adaptive(rtol=o.rtol, atol=o.atol),
        "dpm_solver": lambda: samplers.DPMSolver(
            **order, **opts("method", "lower_order_final"),
            **{k: getattr(o, k) for k in ("rtol", "atol") if k in o.explicit}),
        "dpm_solver_pp": lambda: samplers.DPMSolverPP(
            **order, **opts("method", "lower_order_final", "sde")),
        "unipc": lambda: samplers.UniPC(
            **order, **opts("variant", "corrector", "lower_order_final")),
        "deis": lambda: samplers.DEIS(**order, **opts("lower_order_final")),
        "ipndm": lambda: samplers.IPNDM(**order, **opts("lower_order_final")),
        "lms": lambda: samplers.LMS(**order),
        # discrete processes: the `method` of diffax.discrete.sample
        **{name: (lambda name=name: name) for name in DISCRETE_SAMPLERS},
        "sscs": samplers.SSCS,
        # denoising diffusion GANs: the latent shape comes from config.gan (build_experiment)
        "ddgan": samplers.DDGAN,
    }


def build_solver(cfg: Mapping[str, Any] | SampleOptions) -> tuple[Any, int]:
    """``(solver, num_steps)`` of ``config.sample``.

    Example:
      >>> solver, n = build_solver({"solver": "unipc", "order": 3, "variant": "bh1",
      ...                           "num_steps": 10})
      >>> type(solver).__name__, solver.order, solver.variant, n
      ('UniPC', 3, 'bh1', 10)
      >>> build_solver({"solver": "ipndm"})[0].order  # the library's default order
      4
    """
    o = _as(opts_lib.sample_options, SampleOptions, cfg)
    return _solvers(o)[o.solver](), o.num_steps


_SCHEDULES: dict[str, Callable[[SampleOptions], Any]] = {
    "default": lambda o: None,
    "time_uniform": lambda o: schedules.TimeUniform(),
    "quadratic": lambda o: schedules.Quadratic(),
    "log_snr": lambda o: schedules.LogSNRUniform(),
    "karras": lambda o: schedules.Karras(rho=o.rho),
    "shift": lambda o: schedules.Shift(shift=o.shift),
}


def build_schedule(cfg: Mapping[str, Any] | SampleOptions) -> Any:
    """The :mod:`diffax.schedules` object of ``config.sample.schedule`` (``None``: the solver's
    own ``default_schedule``; a list of times: that grid as an array).

    Example:
      >>> build_schedule({"schedule": "karras", "rho": 5.0})
      Karras(rho=5.0, sigma_min=None, sigma_max=None)
      >>> build_schedule({}) is None
      True
      >>> build_schedule({"schedule": [1.0, 0.5, 0.001], "num_steps": 2})
      array([1.   , 0.5  , 0.001])
    """
    o = _as(opts_lib.sample_options, SampleOptions, cfg)
    if isinstance(o.schedule, tuple):
        return np.asarray(o.schedule, np.float64)
    return _SCHEDULES[o.schedule](o)


# --------------------------------------------------------------------------------------------
# data


def dataset_kwargs(cfg: Mapping[str, Any] | DataOptions) -> dict[str, Any]:
    """The keyword arguments of ``config.data`` that say which dataset and where
    (``data_dir``, ``folder``, ``image_size``, ...), for :func:`diffax.data.data_source`,
    :func:`diffax.data.dataset_info` and :func:`diffax.data.load_split`.

    Example:
      >>> dataset_kwargs({"name": "digits", "image_size": [8, 8], "shuffle": True})
      {'image_size': (8, 8)}
    """
    if isinstance(cfg, DataOptions):
        return cfg.source
    return opts_lib.DataOptions(name="", kwargs=opts_lib.data_kwargs(dict(cfg))).source


def build_dataset_info(cfg: Mapping[str, Any] | DataOptions) -> Any:
    """``diffax.data.dataset_info`` of ``config.data`` (prepares diffax's own datasets)."""
    from diffax import data

    o = _as(opts_lib.data_options, DataOptions, cfg)
    return data.dataset_info(o.name, **o.source)


def build_data_iterator(cfg: Mapping[str, Any] | DataOptions, *, seed: int, batch_size: int,
                        shard_index: int = 0, shard_count: int = 1) -> Any:
    """This process's training iterator (``get_state``/``set_state``) for ``config.data``.

    Args:
      cfg: the ``data`` section (or its :class:`~diffax.train.options.DataOptions`).
      seed: ``config.seed``.
      batch_size: this process's share of the global batch.
      shard_index: ``jax.process_index()``.
      shard_count: ``jax.process_count()``.
    """
    from diffax import data

    o = _as(opts_lib.data_options, DataOptions, cfg)
    return data.make_iterator(o.name, batch_size=batch_size, seed=int(seed),
                              shard_index=shard_index, shard_count=shard_count, **o.kwargs)


# --------------------------------------------------------------------------------------------
# latent diffusion: the autoencoder of stage 1, the latents of stage 2


def build_autoencoder_loss(o: opts_lib.AutoencoderLossOptions, model_name: str) -> Any:
    """The :mod:`diffax.latent` loss object of an autoencoder's ``config.loss``."""
    from diffax import latent

    power = {"l1": 1, "l2": 2}[o.reconstruction]
    if model_name == "autoencoder_kl":
        return latent.AutoencoderKLLoss(kl_weight=o.kl_weight, reconstruction_power=power)
    ema = (latent.CodebookEMA(decay=o.codebook_decay) if o.codebook_update == "ema"
           else None)
    return latent.AutoencoderVQLoss(commitment=o.commitment,
                                    codebook_weight=o.codebook_weight,
                                    reconstruction_power=power, ema=ema)


def _autoencoder_experiment(o: Options, cheap: _Cheap, info: Any) -> Experiment:
    from diffax import models
    from diffax.train import latent as latent_train

    if not info.is_image or info.shape[0] != info.shape[1]:
        raise ConfigError("data.name", f"config.model.name={o.model.name!r} needs square "
                          f"images [H, W, C]; dataset {info.name!r} has {info.shape}.")
    cls = {"autoencoder_kl": models.AutoencoderKL, "autoencoder_vq": models.AutoencoderVQ}
    overrides = _model_overrides(o.model.kwargs)
    overrides.setdefault("image_size", info.shape[0])
    overrides.setdefault("num_channels", info.shape[-1])
    ema = o.model.name == "autoencoder_vq" and o.loss.codebook_update == "ema"
    if ema:  # the codebook's EMA statistics live in the model's `vq_ema` collection
        if overrides.get("codebook_ema", True) is not True:
            raise ConfigError("model.kwargs.codebook_ema", "config.loss.codebook_update='ema' "
                              "needs the codebook statistics: remove "
                              "config.model.kwargs.codebook_ema=False.")
        overrides["codebook_ema"] = True
    try:
        model = cls[o.model.name].from_variant(o.model.variant, **overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError("model", f"config.model (name={o.model.name!r}, variant="
                          f"{o.model.variant!r}, kwargs={overrides}): {e}") from e

    def apply_fn(params, x, *, key=None, train=False):
        del train
        return model.apply(params, x, key=key)

    loss = build_autoencoder_loss(o.loss, o.model.name)
    post_update = None
    if o.model.name == "autoencoder_vq":  # codebook usage logged; the EMA codebook update
        post_update = functools.partial(_vq_post_update, loss.ema,
                                        model.config.codebook_size)
    exp = Experiment(
        process=None, loss=loss, model=model,
        apply_fn=apply_fn, train_apply_fn=apply_fn, optimizer=cheap.optimizer,
        schedule=cheap.lr_schedule, ema_decays=o.optim.ema_decays,
        ema_warmup=o.optim.ema_warmup, solver=None, sample_steps=0, data_info=info,
        conditional=False, options=o, post_update=post_update)
    if o.loss.discriminator:  # against a patch discriminator: its own two-network update
        trainer = _autoencoder_gan_trainer(o, cheap, model, loss, post_update)
        exp = dataclasses.replace(exp, loss=trainer.loss, model=trainer.model,
                                  optimizer=trainer.optimizer, trainer=trainer,
                                  post_update=None)
    return dataclasses.replace(
        exp, after_training=functools.partial(latent_train.write_scale_factor, exp))


def _autoencoder_gan_trainer(o: Options, cheap: _Cheap, model: Any, loss: Any,
                             post_update: Any) -> Any:
    """The :class:`diffax.patchgan.AutoencoderGANTrainer` of ``config.loss.disc_*``."""
    from diffax import models, patchgan

    lo = o.loss
    disc = models.PatchDiscriminator(channels=lo.disc_channels, num_layers=lo.disc_layers)
    side = disc.output_size(model.config.image_size)
    if side < 1:
        raise ConfigError("loss.disc_layers", f"config.loss.disc_layers={lo.disc_layers}: "
                          f"{model.config.image_size}x{model.config.image_size} images leave "
                          f"a patch grid of side {side}; use fewer layers.")
    lr = o.optim.learning_rate if lo.disc_learning_rate is None else lo.disc_learning_rate
    d_opt, _ = _wrap("loss", lambda: step_lib.make_optimizer(
        learning_rate=lr, b1=0.5, b2=0.9, grad_clip=None))  # taming's Adam betas
    d_loss = {"hinge": patchgan.hinge_d_loss, "vanilla": patchgan.vanilla_d_loss}
    return patchgan.AutoencoderGANTrainer(
        loss=patchgan.PatchGANLoss(autoencoder_loss=loss, disc_weight=lo.disc_weight,
                                   disc_start=lo.disc_start, disc_factor=lo.disc_factor,
                                   d_loss=d_loss[lo.disc_loss]),
        model=patchgan.AutoencoderGANModel(autoencoder=model, discriminator=disc),
        generator_optimizer=cheap.optimizer, discriminator_optimizer=d_opt,
        post_update=post_update)


def _vq_post_update(ema: Any, codebook_size: int, params: Any, aux: Any) -> tuple[Any, Any]:
    """After a VQ autoencoder's optimizer update: the EMA codebook update (``ema`` set) and the
    batch's codebook usage as metrics."""
    from diffax import latent

    if ema is None:
        return params, latent.codebook_metrics(aux["indices"], codebook_size)
    return ema.update(params, aux)


def _latent_model_info(o: Options, info: Any, latent_shape: tuple[int, ...]) -> Any:
    """``info`` with the latents' shape (what the stage-2 model sees); explicit model sizes
    that contradict it raise, naming the key."""
    for key, want in (("image_size", latent_shape[0]), ("num_channels", latent_shape[-1])):
        got = o.model.kwargs.get(key)
        if got is not None and got != want:
            raise ConfigError(f"model.kwargs.{key}", f"config.model.kwargs.{key}={got!r} "
                              f"does not match the latent shape {tuple(latent_shape)} of the "
                              f"autoencoder in config.latent.workdir (it would be {want}).")
    return dataclasses.replace(info, shape=tuple(latent_shape))


def _check_divae(o: Options) -> None:
    """The keys a DiVAE decoder (``config.latent.role="decoder"``) constrains."""
    if o.model.name != "unet":
        raise ConfigError("model.name", f"config.latent.role='decoder' (DiVAE) needs "
                          f"model.name='unet' (the codes enter as input channels), got "
                          f"{o.model.name!r}.")
    if o.train.sample_every:
        raise ConfigError("train.sample_every", "config.latent.role='decoder' (DiVAE) decodes "
                          "codes of held-out data (`diffax sample` / `eval`), it draws no "
                          "unconditional sample grids: set train.sample_every=0.")


def _divae_experiment(o: Options, cheap: _Cheap, info: Any, ae: Any, scale: float
                      ) -> Experiment:
    """DiVAE (``config.latent.role="decoder"``): a UNet on the data whose input is ``x_t``
    with the embedded codes of the frozen autoencoder concatenated on the channel axis. The
    caller has run :func:`_check_divae` (before restoring the stage-1 checkpoint)."""
    import jax.numpy as jnp

    from diffax import divae, models

    dv = _wrap("latent", lambda: divae.DiVAE(autoencoder=ae, process=cheap.process,
                                             scale_factor=scale))
    in_channels = info.shape[-1] + dv.latent_shape[-1]
    given = o.model.kwargs.get("in_channels")
    if given is not None and given != in_channels:
        raise ConfigError("model.kwargs.in_channels", f"config.model.kwargs.in_channels="
                          f"{given!r}: a DiVAE decoder sees the data's {info.shape[-1]} and the "
                          f"codes' {dv.latent_shape[-1]} channels, {in_channels}.")
    model_opts = dataclasses.replace(o.model, kwargs={**o.model.kwargs,
                                                      "in_channels": in_channels})
    model, conditional = build_model(model_opts, info, cheap.process)
    dropout = float(getattr(model.config, "dropout", 0.0)) > 0
    inner = _wrap("loss", lambda: build_loss(
        o.loss, cheap.process, conditional=conditional, dropout_key=dropout,
        null_label=getattr(model.config, "null_label", None)))
    inner = dataclasses.replace(inner, cond_keys=(*inner.cond_keys, "cond"))
    base = models.apply_fn(model)

    def apply_fn(params, x, t, *, cond=None, **kwargs):
        if cond is None:
            raise ValueError("a DiVAE decoder needs `cond` (the embedded codes, "
                             "diffax.divae.DiVAE.embed).")
        return base(params, jnp.concatenate([x, cond.astype(x.dtype)], axis=-1), t, **kwargs)

    return Experiment(
        process=cheap.process, loss=dv.loss(inner), model=model, apply_fn=apply_fn,
        train_apply_fn=functools.partial(apply_fn, train=True), optimizer=cheap.optimizer,
        schedule=cheap.lr_schedule, ema_decays=o.optim.ema_decays,
        ema_warmup=o.optim.ema_warmup, solver=cheap.solver, sample_steps=cheap.sample_steps,
        data_info=info, conditional=conditional, sample_schedule=cheap.sample_schedule,
        options=o, divae=dv)


# --------------------------------------------------------------------------------------------
# LSGM: encoder, decoder and latent score model trained together (diffax.train.lsgm)


def _build_lsgm(o: Options, cheap: _Cheap, info: Any) -> Experiment:
    """The experiment of a config with an ``lsgm`` section; errors name the key."""
    from diffax import losses as losses_lib
    from diffax import lsgm, models
    from diffax.train import lsgm as lsgm_train

    g = o.lsgm
    for name in ("gan", "latent"):
        if getattr(o, name) is not None:
            raise ConfigError(name, f"config.{name} does not combine with config.lsgm (LSGM "
                              f"trains its own autoencoder).")
    if o.is_autoencoder:
        raise ConfigError("model.name", f"config.lsgm: config.model is the latent score "
                          f"network (unet, ...), not {o.model.name!r}.")
    if _is_discrete(cheap.process) or not getattr(cheap.process, "scalar_coefficients", True):
        raise ConfigError("process.name", f"config.lsgm needs a Gaussian process (vp, ve, "
                          f"subvp, ...), not process.name={o.process.name!r}.")
    if o.loss.prediction != "eps":
        raise ConfigError("loss.prediction", f"config.lsgm: the mixed score needs "
                          f"loss.prediction='eps', got {o.loss.prediction!r}.")
    if o.model.conditional:
        raise ConfigError("model.conditional", "config.lsgm: class-conditional LSGM is not "
                          "supported; set model.conditional=False.")
    if not info.is_image or info.shape[0] != info.shape[1]:
        raise ConfigError("data.name", f"config.lsgm needs square images [H, W, C]; dataset "
                          f"{info.name!r} has {info.shape}.")
    overrides = _model_overrides(g.autoencoder_kwargs)
    overrides.setdefault("image_size", info.shape[0])
    overrides.setdefault("num_channels", info.shape[-1])
    try:
        autoencoder = models.AutoencoderKL.from_variant(g.autoencoder_variant, **overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError("lsgm.autoencoder_kwargs", f"config.lsgm.autoencoder_kwargs (variant="
                          f"{g.autoencoder_variant!r}, autoencoder_kwargs={overrides}): {e}"
                          ) from e
    latent_info = _latent_model_info(o, info, autoencoder.config.latent_shape)
    score, _ = build_model(o.model, latent_info, cheap.process)
    if g.autoencoder_learning_rate is None:
        ae_optimizer = cheap.optimizer
    else:
        ae_optimizer, _ = _wrap("lsgm", lambda: build_optimizer(
            dataclasses.replace(o.optim, learning_rate=g.autoencoder_learning_rate),
            num_steps=o.train.num_steps))
    sampler = {"importance": lsgm.NormalImportanceTime,
               "uniform": losses_lib.UniformTime}[g.time_sampler]()
    objective = _wrap("lsgm", lambda: lsgm.LSGMObjective(
        process=cheap.process, time_sampler=sampler,
        reconstruction=lsgm.GaussianReconstruction(std=g.decoder_std),
        kl_weight=g.kl_weight,
        score_weighting={"likelihood": None, "unweighted": lsgm.UnweightedScore(),
                         "reweighted": lsgm.ReweightedScore()}[g.score_weighting]))
    trainer = lsgm_train.LSGMTrainer(
        objective=objective,
        model=lsgm_train.LSGMModel(autoencoder=autoencoder, score=score,
                                   mixing_init=g.mixing_init),
        parameterization=build_parameterization(o.loss), score_optimizer=cheap.optimizer,
        autoencoder_optimizer=ae_optimizer,
        dropout=float(getattr(score.config, "dropout", 0.0)) > 0)

    def apply_fn(params, x, t, **kwargs):  # the mixed score's eps-prediction on latents
        return trainer.eps_fn(params)(x, t)

    return Experiment(
        process=cheap.process, loss=objective, model=trainer.model, apply_fn=apply_fn,
        train_apply_fn=apply_fn, optimizer=trainer.optimizer, schedule=cheap.lr_schedule,
        ema_decays=o.optim.ema_decays, ema_warmup=o.optim.ema_warmup, solver=cheap.solver,
        sample_steps=cheap.sample_steps, data_info=info, conditional=False,
        sample_schedule=cheap.sample_schedule, options=o, trainer=trainer, latent=trainer)


# --------------------------------------------------------------------------------------------
# everything


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The objects a training run needs, built from a config's :class:`Options`."""

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
    options: Options | None = None
    """The checked config this experiment was built from."""
    trainer: Any = None
    """A :class:`diffax.ddgan.DDGANTrainer` for a config with a ``gan`` section (its own train
    step; :meth:`denoiser` is then its generator); ``None`` for denoisers."""
    latent: Any = None
    """Stage 2 of latent diffusion: the :class:`diffax.Latent` whose scaled latents the model
    denoises (samples are decoded with it); ``None`` in pixel space."""
    after_training: Any = None
    """``after_training(state, workdir)``, run once when a run finishes (an autoencoder
    measures its latent scale, :func:`diffax.train.latent.write_scale_factor`)."""
    post_update: Any = None
    """``post_update(params, aux) -> (params, metrics)`` after each optimizer update
    (:func:`diffax.train.make_train_step`'s ``post_update``): a VQ autoencoder's EMA codebook
    update and codebook usage; ``None`` for the others."""
    divae: Any = None
    """A :class:`diffax.divae.DiVAE` when the model is a diffusion decoder conditioned on a
    frozen autoencoder's codes (``config.latent.role="decoder"``); ``None`` otherwise."""

    def denoiser(self, params: Any, **cond: Any) -> Any:
        """The denoiser ``D(x, t)`` of the network with ``params`` (inference mode)."""
        if self.trainer is not None:
            return self.trainer.denoiser(params, **cond)
        return self.loss.parameterization.denoiser(self.apply_fn, params, self.process, **cond)


@dataclasses.dataclass(frozen=True)
class _Cheap:
    process: Process
    optimizer: Any
    lr_schedule: Any
    solver: Any
    sample_steps: int
    sample_schedule: Any


def _build_cheap(o: Options) -> _Cheap:
    """Process, optimizer, solver and schedule: built once, errors name their section."""
    if o.is_autoencoder:  # stage 1 of latent diffusion: an optimizer and its own loss only
        optimizer, lr = _wrap("optim", lambda: build_optimizer(o.optim,
                                                               num_steps=o.train.num_steps))
        _wrap("loss", lambda: build_autoencoder_loss(o.loss, o.model.name))
        return _Cheap(None, optimizer, lr, None, 0, None)
    process = _wrap("process", lambda: build_process(o.process))
    t_min, t_max = float(process.t_min), float(process.t_max)
    if not t_min < t_max:
        key = "process.t_min" if "t_min" in o.process.params else "process.t_max"
        raise ConfigError(key, f"config.process: t_min={t_min:g} must be below "
                          f"t_max={t_max:g} ({key} is set).")
    optimizer, lr = _wrap("optim", lambda: build_optimizer(o.optim,
                                                           num_steps=o.train.num_steps))
    solver, steps = _wrap("sample", lambda: build_solver(o.sample))
    if _is_discrete(process) != isinstance(solver, str):
        raise ConfigError("sample.solver", f"config.sample.solver={o.sample.solver!r} does not "
                          f"fit process {type(process).__name__}: discrete processes take "
                          f"{' or '.join(map(repr, DISCRETE_SAMPLERS))}, the others a "
                          f"Gaussian solver.")
    schedule = _wrap("sample", lambda: build_schedule(o.sample))
    _check_gan(o, process)
    # The loss's own checks, before any data or model (the null label comes from the model;
    # any index stands in for it here).
    _wrap("loss", lambda: build_loss(o.loss, process, conditional=o.model.conditional,
                                     null_label=0 if o.model.conditional else None))
    return _Cheap(process, optimizer, lr, solver, steps, schedule)


def _check_gan(o: Options, process: Any) -> None:
    """A ``gan`` section needs the ``ddpm`` process, the ``ddgan`` solver on its T steps and an
    unconditional model; the ``ddgan`` solver needs a ``gan`` section."""
    if o.gan is None:
        if o.sample.solver == "ddgan":
            raise ConfigError("sample.solver", "config.sample.solver='ddgan' samples a denoising "
                              "diffusion GAN: it needs a `gan` section.")
        return
    if not isinstance(process, processes.DiscreteVP):
        raise ConfigError("process.name", f"config.gan needs process.name='ddpm' (DDGAN's T "
                          f"steps), got {o.process.name!r}.")
    if o.sample.solver != "ddgan":
        raise ConfigError("sample.solver", f"config.gan needs sample.solver='ddgan', got "
                          f"{o.sample.solver!r}.")
    if o.sample.num_steps != process.num_steps:
        raise ConfigError("sample.num_steps", f"config.sample.num_steps={o.sample.num_steps} "
                          f"must equal process.num_steps={process.num_steps} (DDGAN's T).")
    if o.model.conditional:
        raise ConfigError("model.conditional", "config.gan: class-conditional DDGAN is not "
                          "supported; set model.conditional=False.")


def _build_gan(o: Options, cheap: _Cheap, info: Any) -> Experiment:
    """The experiment of a config with a ``gan`` section (:mod:`diffax.ddgan`)."""
    from diffax import ddgan

    g = o.gan
    net, _ = build_model(o.model, info, cheap.process)
    if len(info.shape) == 1:
        disc = ddgan.MLPDiscriminator(width=g.d_width, depth=g.d_depth)
    else:
        disc = ddgan.ConvDiscriminator(channels=g.d_channels, ch_mult=g.d_ch_mult)
    model = ddgan.GANModel(
        generator=ddgan.Generator(net=net, latent_dim=g.latent_dim,
                                  mapping_layers=g.mapping_layers),
        discriminator=disc, data_shape=tuple(info.shape))
    d_opt, _ = _wrap("gan", lambda: step_lib.make_optimizer(
        learning_rate=g.d_learning_rate, b1=g.d_b1, b2=g.d_b2, grad_clip=g.d_grad_clip))
    trainer = ddgan.DDGANTrainer(
        loss=ddgan.GANLoss(process=cheap.process, r1_gamma=g.r1_gamma,
                           latent_shape=(g.latent_dim,)),
        model=model, generator_optimizer=cheap.optimizer, discriminator_optimizer=d_opt)

    def apply_fn(params, x, t, **kwargs):  # the generator at z = 0
        return trainer.denoiser(params)(x, t)

    return Experiment(
        process=cheap.process, loss=trainer.loss, model=model, apply_fn=apply_fn,
        train_apply_fn=apply_fn, optimizer=trainer.optimizer, schedule=cheap.lr_schedule,
        ema_decays=o.optim.ema_decays, ema_warmup=o.optim.ema_warmup,
        solver=samplers.DDGAN(latent_shape=(g.latent_dim,)), sample_steps=cheap.sample_steps,
        data_info=info, conditional=False, sample_schedule=cheap.sample_schedule, options=o,
        trainer=trainer)


def check_config(config: Any, *, num_devices: int | None = None) -> TrainOptions:
    """Validates a training config before anything is computed or written.

    Parses it once (:func:`diffax.train.options.parse_config`: unknown keys, wrong types,
    impossible values such as a non-positive learning rate, a global batch size not
    divisible by the device count, ``sample.order`` outside :data:`SOLVER_ORDERS`) and builds
    the cheap objects (process, loss, optimizer, solver) once, but neither the dataset nor
    the model's parameters.

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
    o = parse_config(config, num_devices=num_devices)
    _build_cheap(o)
    return o.train


def _check_sample(cfg: Mapping[str, Any]) -> SampleOptions:
    """``config.sample`` checked and its solver and schedule built (errors name the key)."""
    o = opts_lib.sample_options(cfg)
    _wrap("sample", lambda: build_solver(o))
    _wrap("sample", lambda: build_schedule(o))
    return o


def build_experiment(config: Any) -> Experiment:
    """Builds every object of a config (prepares the dataset if it is diffax's own).

    Args:
      config: the training config, or its :class:`Options` (then nothing is parsed again).

    Raises:
      ValueError: naming the config key, for unknown keys or values.
    """
    from diffax import models

    o = config if isinstance(config, Options) else parse_config(config, num_devices=1)
    cheap = _build_cheap(o)
    info = build_dataset_info(o.data)
    if o.lsgm is not None:
        return _build_lsgm(o, cheap, info)
    if o.gan is not None:
        return _build_gan(o, cheap, info)
    if o.is_autoencoder:
        return _autoencoder_experiment(o, cheap, info)
    lat = None
    model_info = info
    if o.latent is not None:
        from diffax import latent as latent_lib
        from diffax.train import latent as latent_train

        if _is_discrete(cheap.process) or not getattr(cheap.process, "scalar_coefficients",
                                                      True):
            raise ConfigError("process.name", f"config.latent needs a Gaussian process "
                              f"(vp, ve, edm, ...), not process.name={o.process.name!r}.")
        if o.latent.role == "decoder":  # DiVAE: a diffusion decoder p(x | z) on the data
            _check_divae(o)  # before the stage-1 checkpoint is restored
            ae, scale, _ = latent_train.load_autoencoder(o.latent, o.data.name)
            return _divae_experiment(o, cheap, info, ae, scale)
        ae, scale, _ = latent_train.load_autoencoder(o.latent, o.data.name)
        lat = latent_lib.Latent(autoencoder=ae, process=cheap.process, scale_factor=scale)
        model_info = _latent_model_info(o, info, ae.latent_shape)
    model, conditional = build_model(
        o.model, model_info, cheap.process,
        input_copies=getattr(cheap.process, "state_size", 1))
    dropout = float(getattr(model.config, "dropout", 0.0)) > 0
    loss = _wrap("loss", lambda: build_loss(
        o.loss, cheap.process, conditional=conditional, dropout_key=dropout,
        null_label=getattr(model.config, "null_label", None)))
    apply_fn = models.apply_fn(model)
    if lat is not None:
        loss = lat.loss(loss, sample_posterior=o.latent.sample_posterior)
    return Experiment(
        process=cheap.process, loss=loss, model=model, apply_fn=apply_fn,
        train_apply_fn=functools.partial(apply_fn, train=True), optimizer=cheap.optimizer,
        schedule=cheap.lr_schedule, ema_decays=o.optim.ema_decays,
        ema_warmup=o.optim.ema_warmup, solver=cheap.solver, sample_steps=cheap.sample_steps,
        data_info=info, conditional=conditional, sample_schedule=cheap.sample_schedule,
        options=o, latent=lat)
