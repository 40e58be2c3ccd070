"""Read a diffusers model folder (``config.json`` + safetensors) into a Flax module and params.

Supported classes (``_class_name`` in ``config.json``): ``UNet2DModel`` (DDPM and score-SDE
configs: ``DownBlock2D``, ``AttnDownBlock2D``, ``SkipDownBlock2D``, ``AttnSkipDownBlock2D`` and
their up counterparts, ``UNetMidBlock2D``, positional or Fourier time embedding, optional class
embedding), ``UNet2DConditionModel`` (Stable-Diffusion-shaped: ``CrossAttnDownBlock2D`` /
``DownBlock2D`` / ``UNetMidBlock2DCrossAttn`` / ``CrossAttnUpBlock2D`` / ``UpBlock2D``) and
``AutoencoderKL``. Anything else raises a ValueError naming the config key.

The weights are read with ``safetensors.numpy`` (no torch); nothing is ever downloaded. All layout
conversion is :func:`convert_tensor` (one place): conv kernels ``[O, I, kh, kw] -> [kh, kw, I, O]``
(NCHW -> NHWC networks), linear weights ``[O, I] -> [I, O]``, legacy 1x1-conv attention
projections ``[O, I, 1, 1] -> [I, O]``, norm weights -> ``scale``; legacy attention names
(``query``/``key``/``value``/``proj_attn``) are renamed by :func:`flax_path`. Norm epsilons,
group counts and scale factors come from the config, resolved once into the specs of
:mod:`diffax.interop.diffusers_models` by :func:`spec_from_config`.

Example:
    >>> import diffax.interop as interop
    >>> interop.flax_path("down_blocks.0.attentions.1.to_out.0.weight")
    ('down_blocks_0', 'attentions_1', 'to_out_0', 'weight')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from diffax.interop.diffusers_models import (
    AutoencoderKL,
    AutoencoderSpec,
    BlockSpec,
    BlockType,
    DiffusersUNet,
    Resampling,
    TimeEmbedding,
    UNetSpec,
)

__all__ = [
    "Pretrained",
    "convert_state_dict",
    "convert_tensor",
    "flax_path",
    "load_pretrained",
    "read_folder",
    "spec_from_config",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
INDEX_FILE = "diffusion_pytorch_model.safetensors.index.json"

_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v",
                         "proj_attn": "to_out_0"}


# --------------------------------------------------------------------------------------------
# Files


def read_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(config, state_dict)`` of a diffusers model folder, weights as NumPy arrays.

    Reads ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or the shards listed in
    ``diffusion_pytorch_model.safetensors.index.json``). Never touches the network.

    Raises:
        ValueError: the folder, the config or the weights file is missing, or unreadable.

    Example:
        >>> read_folder("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: folder: '/nonexistent' is not a directory (a local diffusers model folder ...
    """
    from safetensors.numpy import load_file

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"folder: {folder!r} is not a directory (a local diffusers model folder "
                         f"holding {CONFIG_FILE} and {WEIGHTS_FILE})")
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"folder: {CONFIG_FILE} missing in {folder!r}")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"folder: {config_path} is not valid JSON: {e}") from None
    weights = os.path.join(folder, WEIGHTS_FILE)
    index = os.path.join(folder, INDEX_FILE)
    if os.path.isfile(weights):
        files = [weights]
    elif os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(folder, s) for s in shards]
        for path in files:
            if not os.path.isfile(path):
                raise ValueError(f"folder: shard {path!r} listed in {INDEX_FILE} is missing")
    else:
        other = [n for n in sorted(os.listdir(folder)) if n.endswith((".bin", ".safetensors"))]
        hint = (f" (found {other}: only diffusers' safetensors layout is read; a .bin needs torch "
                f"to convert)" if other else "")
        raise ValueError(f"folder: {WEIGHTS_FILE} missing in {folder!r}{hint}")
    state: dict[str, np.ndarray] = {}
    for path in files:
        try:
            state.update(load_file(path))
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"folder: cannot read {path!r}: {e}") from None
    return config, state


# --------------------------------------------------------------------------------------------
# The layout mapping


def flax_path(key: str) -> tuple[str, ...]:
    """A state-dict key as a path in the Flax tree: ``a.0.b`` -> ``('a_0', 'b')``.

    Legacy attention names (``query``, ``key``, ``value``, ``proj_attn``) become ``to_q``,
    ``to_k``, ``to_v``, ``to_out_0``. The leaf keeps its torch name (``weight``/``bias``).

    Example:
        >>> flax_path("mid_block.attentions.0.proj_attn.bias")
        ('mid_block', 'attentions_0', 'to_out_0', 'bias')
    """
    parts: list[str] = []
    for p in key.split("."):
        if p.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{p}"
        else:
            parts.append(p)
    if len(parts) >= 2 and parts[-2] in _DEPRECATED_ATTENTION:
        parts[-2] = _DEPRECATED_ATTENTION[parts[-2]]
    return tuple(parts)


def convert_tensor(leaf: str, value: np.ndarray, target_ndim: int) -> np.ndarray:
    """One torch tensor in the layout of the Flax leaf ``leaf`` (of rank ``target_ndim``).

    * ``kernel`` of rank 4 (conv): ``[O, I, kh, kw] -> [kh, kw, I, O]``;
    * ``kernel`` of rank 2 (dense): ``[O, I] -> [I, O]``, also from a legacy 1x1 conv
      ``[O, I, 1, 1]``;
    * ``scale`` (group/layer norm weight), ``bias``, ``embedding`` and other leaves: unchanged.

    Example:
        >>> convert_tensor("kernel", np.zeros((8, 3, 3, 3)), 4).shape
        (3, 3, 3, 8)
        >>> convert_tensor("kernel", np.zeros((8, 4)), 2).shape
        (4, 8)
    """
    if leaf != "kernel":
        return value
    if value.ndim == 4 and target_ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 4 and target_ndim == 2 and value.shape[2:] == (1, 1):
        return np.transpose(value[:, :, 0, 0])
    if value.ndim == 2 and target_ndim == 2:
        return np.transpose(value)
    raise ValueError(f"cannot map a tensor of shape {value.shape} to a rank-{target_ndim} kernel")


def convert_state_dict(state: Mapping[str, np.ndarray], shapes: Any, *,
                       dtype: Any = jnp.float32) -> dict[str, Any]:
    """A diffusers state dict as Flax params shaped like ``shapes`` (``model.init``'s tree).

    Every key must land on exactly one leaf and every leaf must be filled, with equal shapes.

    Raises:
        ValueError: keys the model does not have, leaves the checkpoint lacks, or shape
            mismatches (each listed, up to 10).

    Example:
        >>> shapes = {"params": {"proj": {"kernel": jax.ShapeDtypeStruct((4, 8), jnp.float32),
        ...                               "bias": jax.ShapeDtypeStruct((8,), jnp.float32)}}}
        >>> p = convert_state_dict({"proj.weight": np.ones((8, 4)), "proj.bias": np.zeros(8)},
        ...                        shapes)
        >>> p["params"]["proj"]["kernel"].shape
        (4, 8)
    """
    flat = traverse_util.flatten_dict(shapes["params"])
    out: dict[tuple[str, ...], Any] = {}
    unexpected, mismatched = [], []
    for key, value in state.items():
        path = flax_path(key)
        module, leaf = path[:-1], path[-1]
        candidates = ("kernel", "scale", "embedding", "weight") if leaf == "weight" else (leaf,)
        target = next((module + (c,) for c in candidates if module + (c,) in flat), None)
        if target is None:
            unexpected.append(key)
            continue
        want = tuple(flat[target].shape)
        value = np.asarray(value)
        try:
            got = convert_tensor(target[-1], value, len(want))
        except ValueError as e:
            mismatched.append(f"{key}: {e}")
            continue
        if got.shape != want:
            mismatched.append(f"{key}: checkpoint {value.shape} -> {got.shape}, model wants {want}")
            continue
        out[target] = jnp.asarray(got, dtype)
    missing = ["/".join(p) for p in flat if p not in out]
    problems = []
    if mismatched:
        problems.append("shape mismatches (config.json and weights disagree): "
                        + "; ".join(mismatched[:10]))
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint keys the model does not have: "
                        + ", ".join(sorted(unexpected)[:10]))
    if missing:
        problems.append(f"{len(missing)} model parameters missing from the checkpoint: "
                        + ", ".join(sorted(missing)[:10]))
    if problems:
        raise ValueError("weights: " + " | ".join(problems))
    return {"params": traverse_util.unflatten_dict(out)}


# --------------------------------------------------------------------------------------------
# Configs -> typed specs


def _kind(value: Any, key: str, allowed: tuple[BlockType, ...]) -> BlockType:
    try:
        kind = BlockType(value)
    except ValueError:
        kind = None
    if kind not in allowed:
        names = ", ".join(k.value for k in allowed)
        raise ValueError(f"config.json: {key} = {value!r} is not a supported block type "
                         f"(supported here: {names})")
    return kind


def _per_block(conf: Mapping[str, Any], key: str, default: Any, n: int) -> tuple[Any, ...]:
    value = conf.get(key, default)
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(f"config.json: {key} has {len(value)} entries for {n} blocks")
        return tuple(value)
    return (value,) * n


def _require(conf: Mapping[str, Any], key: str, ok: Any, default: Any = None) -> None:
    value = conf.get(key, default)
    allowed = ok if isinstance(ok, tuple) else (ok,)
    if value not in allowed:
        raise ValueError(f"config.json: {key} = {value!r} is not supported (supported: "
                         f"{', '.join(repr(a) for a in allowed)})")


def _blocks(conf: Mapping[str, Any], n_default: tuple[str, ...], key: str) -> tuple[str, ...]:
    value = conf.get(key, n_default)
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"config.json: {key} must be a non-empty list of block names")
    return tuple(value)


_UNET2D_DOWN = (BlockType.DOWN, BlockType.ATTN_DOWN, BlockType.SKIP_DOWN,
                BlockType.ATTN_SKIP_DOWN)
_UNET2D_UP = (BlockType.UP, BlockType.ATTN_UP, BlockType.SKIP_UP, BlockType.ATTN_SKIP_UP)


def _unet2d_spec(conf: Mapping[str, Any]) -> UNetSpec:
    boc = tuple(int(c) for c in conf.get("block_out_channels", (224, 448, 672, 896)))
    downs = _blocks(conf, ("DownBlock2D",) + ("AttnDownBlock2D",) * 3, "down_block_types")
    ups = _blocks(conf, ("AttnUpBlock2D",) * 3 + ("UpBlock2D",), "up_block_types")
    if not len(downs) == len(ups) == len(boc):
        raise ValueError("config.json: down_block_types, up_block_types and block_out_channels "
                         f"must have equal lengths; got {len(downs)}, {len(ups)}, {len(boc)}")
    _require(conf, "act_fn", ("silu", "swish"), "silu")
    _require(conf, "class_embed_type", None)
    _require(conf, "resnet_time_scale_shift", ("default", "scale_shift"), "default")
    _require(conf, "downsample_type", ("conv", "resnet"), "conv")
    _require(conf, "upsample_type", ("conv", "resnet"), "conv")
    _require(conf, "mid_block_type", ("UNetMidBlock2D", None), "UNetMidBlock2D")
    try:
        time = TimeEmbedding(conf.get("time_embedding_type", "positional"))
    except ValueError:
        raise ValueError(f"config.json: time_embedding_type = "
                         f"{conf.get('time_embedding_type')!r} is not supported (positional, "
                         "fourier)") from None
    lpb = int(conf.get("layers_per_block", 2))
    groups = conf.get("norm_num_groups", 32)
    eps = float(conf.get("norm_eps", 1e-5))
    shift = conf.get("resnet_time_scale_shift", "default") == "scale_shift"
    head = conf.get("attention_head_dim", 8)
    pad = int(conf.get("downsample_padding", 1))
    down_t = Resampling(conf.get("downsample_type", "conv"))
    up_t = Resampling(conf.get("upsample_type", "conv"))
    n = len(boc)
    down, out = [], boc[0]
    for i, name in enumerate(downs):
        kind = _kind(name, f"down_block_types[{i}]", _UNET2D_DOWN)
        cin, out = out, boc[i]
        down.append(BlockSpec(
            kind, cin, out, lpb, resample=i < n - 1,
            resample_type=down_t if kind is BlockType.ATTN_DOWN else Resampling.CONV, eps=eps,
            groups=groups, attn_groups=groups,
            output_scale_factor=math.sqrt(2.0) if kind.skip else 1.0, scale_shift=shift,
            downsample_padding=pad, attention_head_dim=head or out))
    mid = None
    if conf.get("mid_block_type", "UNetMidBlock2D") is not None:
        c = boc[-1]
        mid_groups = groups if groups is not None else min(c // 4, 32)
        attn_groups = conf.get("attn_norm_num_groups")
        if attn_groups is None:
            attn_groups = mid_groups if not shift else None
        mid = BlockSpec(BlockType.MID, c, c, 1, eps=eps, groups=mid_groups,
                        attn_groups=attn_groups,
                        output_scale_factor=float(conf.get("mid_block_scale_factor", 1.0)),
                        scale_shift=shift, attention_head_dim=head or c,
                        add_attention=bool(conf.get("add_attention", True)))
    up, rev = [], boc[::-1]
    out = rev[0]
    for i, name in enumerate(ups):
        kind = _kind(name, f"up_block_types[{i}]", _UNET2D_UP)
        prev, out = out, rev[i]
        up.append(BlockSpec(
            kind, rev[min(i + 1, n - 1)], out, lpb + 1, prev_channels=prev, resample=i < n - 1,
            resample_type=up_t if kind is BlockType.ATTN_UP else Resampling.CONV, eps=eps,
            groups=groups, attn_groups=groups,
            output_scale_factor=math.sqrt(2.0) if kind.skip else 1.0, scale_shift=shift,
            attention_head_dim=head or out))
    return UNetSpec(
        in_channels=int(conf.get("in_channels", 3)), out_channels=int(conf.get("out_channels", 3)),
        block_out_channels=boc, down=tuple(down), mid=mid, up=tuple(up), time_embedding=time,
        time_embed_dim=int(conf.get("time_embedding_dim") or boc[0] * 4),
        flip_sin_to_cos=bool(conf.get("flip_sin_to_cos", True)),
        freq_shift=float(conf.get("freq_shift", 0)),
        center_input_sample=bool(conf.get("center_input_sample", False)),
        out_groups=groups, norm_eps=eps, num_class_embeds=conf.get("num_class_embeds"),
        divide_by_time=time is TimeEmbedding.FOURIER)


def _unet2d_condition_spec(conf: Mapping[str, Any]) -> UNetSpec:
    boc = tuple(int(c) for c in conf.get("block_out_channels", (320, 640, 1280, 1280)))
    downs = _blocks(conf, ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), "down_block_types")
    ups = _blocks(conf, ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, "up_block_types")
    n = len(boc)
    if not len(downs) == len(ups) == n:
        raise ValueError("config.json: down_block_types, up_block_types and block_out_channels "
                         f"must have equal lengths; got {len(downs)}, {len(ups)}, {n}")
    _require(conf, "act_fn", ("silu", "swish"), "silu")
    for key in ("num_attention_heads", "class_embed_type", "num_class_embeds",
                "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim",
                "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm",
                "reverse_transformer_layers_per_block"):
        _require(conf, key, None)
    for key in ("dual_cross_attention", "resnet_skip_time_act", "class_embeddings_concat"):
        _require(conf, key, False, False)
    if any(_per_block(conf, "only_cross_attention", False, n)):
        raise ValueError("config.json: only_cross_attention = True is not supported")
    _require(conf, "attention_type", "default", "default")
    _require(conf, "time_embedding_type", "positional", "positional")
    _require(conf, "resnet_time_scale_shift", ("default", "scale_shift"), "default")
    _require(conf, "mid_block_type", ("UNetMidBlock2DCrossAttn", None), "UNetMidBlock2DCrossAttn")
    heads = tuple(int(h) for h in _per_block(conf, "attention_head_dim", 8, n))
    lpb = tuple(int(v) for v in _per_block(conf, "layers_per_block", 2, n))
    cad = tuple(int(v) for v in _per_block(conf, "cross_attention_dim", 1280, n))
    if len(set(cad)) != 1:
        raise ValueError(f"config.json: cross_attention_dim must be one value; got {cad}")
    tl = _per_block(conf, "transformer_layers_per_block", 1, n)
    if not all(isinstance(v, int) for v in tl):
        raise ValueError("config.json: transformer_layers_per_block must hold integers")
    groups = conf.get("norm_num_groups", 32)
    eps = float(conf.get("norm_eps", 1e-5))
    shift = conf.get("resnet_time_scale_shift", "default") == "scale_shift"
    linear = bool(conf.get("use_linear_projection", False))
    pad = int(conf.get("downsample_padding", 1))
    common = dict(eps=eps, groups=groups, scale_shift=shift, use_linear_projection=linear,
                  cross_attention_dim=cad[0])
    down, out = [], boc[0]
    for i, name in enumerate(downs):
        kind = _kind(name, f"down_block_types[{i}]",
                     (BlockType.DOWN, BlockType.CROSS_ATTN_DOWN))
        cin, out = out, boc[i]
        down.append(BlockSpec(kind, cin, out, lpb[i], resample=i < n - 1, downsample_padding=pad,
                              heads=heads[i], transformer_layers=(tl[i],) * lpb[i], **common))
    mid = None
    if conf.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None:
        mid = BlockSpec(BlockType.CROSS_ATTN_MID, boc[-1], boc[-1], 1, heads=heads[-1],
                        transformer_layers=(tl[-1],),
                        output_scale_factor=float(conf.get("mid_block_scale_factor", 1.0)),
                        **common)
    up, rev = [], boc[::-1]
    out = rev[0]
    for i, name in enumerate(ups):
        kind = _kind(name, f"up_block_types[{i}]", (BlockType.UP, BlockType.CROSS_ATTN_UP))
        prev, out = out, rev[i]
        layers = lpb[::-1][i] + 1
        up.append(BlockSpec(kind, rev[min(i + 1, n - 1)], out, layers, prev_channels=prev,
                            resample=i < n - 1, heads=heads[::-1][i],
                            transformer_layers=(tl[::-1][i],) * layers, **common))
    return UNetSpec(
        in_channels=int(conf.get("in_channels", 4)), out_channels=int(conf.get("out_channels", 4)),
        block_out_channels=boc, down=tuple(down), mid=mid, up=tuple(up),
        time_embed_dim=int(conf.get("time_embedding_dim") or boc[0] * 4),
        flip_sin_to_cos=bool(conf.get("flip_sin_to_cos", True)),
        freq_shift=float(conf.get("freq_shift", 0)),
        center_input_sample=bool(conf.get("center_input_sample", False)),
        out_groups=0 if groups is None else groups, norm_eps=eps,
        conv_in_kernel=int(conf.get("conv_in_kernel", 3)),
        conv_out_kernel=int(conf.get("conv_out_kernel", 3)))


def _autoencoder_spec(conf: Mapping[str, Any]) -> AutoencoderSpec:
    boc = tuple(int(c) for c in conf.get("block_out_channels", (64,)))
    downs = _blocks(conf, ("DownEncoderBlock2D",), "down_block_types")
    ups = _blocks(conf, ("UpDecoderBlock2D",), "up_block_types")
    n = len(boc)
    if not len(downs) == len(ups) == n:
        raise ValueError("config.json: down_block_types, up_block_types and block_out_channels "
                         f"must have equal lengths; got {len(downs)}, {len(ups)}, {n}")
    _require(conf, "act_fn", ("silu", "swish"), "silu")
    lpb = int(conf.get("layers_per_block", 1))
    groups = int(conf.get("norm_num_groups", 32))
    common = dict(eps=1e-6, groups=groups, attn_groups=groups, temb=False)
    down, out = [], boc[0]
    for i, name in enumerate(downs):
        _kind(name, f"down_block_types[{i}]", (BlockType.DOWN_ENCODER,))
        cin, out = out, boc[i]
        down.append(BlockSpec(BlockType.DOWN_ENCODER, cin, out, lpb, resample=i < n - 1,
                              downsample_padding=0, **common))
    up, rev = [], boc[::-1]
    out = rev[0]
    for i, name in enumerate(ups):
        _kind(name, f"up_block_types[{i}]", (BlockType.UP_DECODER,))
        prev, out = out, rev[i]
        up.append(BlockSpec(BlockType.UP_DECODER, prev, out, lpb + 1, resample=i < n - 1,
                            **common))
    mid = BlockSpec(BlockType.MID, boc[-1], boc[-1], 1, attention_head_dim=boc[-1],
                    add_attention=bool(conf.get("mid_block_add_attention", True)), **common)
    return AutoencoderSpec(
        in_channels=int(conf.get("in_channels", 3)), out_channels=int(conf.get("out_channels", 3)),
        latent_channels=int(conf.get("latent_channels", 4)), block_out_channels=boc,
        down=tuple(down), up=tuple(up), mid=mid, groups=groups,
        use_quant_conv=bool(conf.get("use_quant_conv", True)),
        use_post_quant_conv=bool(conf.get("use_post_quant_conv", True)))


_SPECS = {"UNet2DModel": _unet2d_spec, "UNet2DConditionModel": _unet2d_condition_spec,
          "AutoencoderKL": _autoencoder_spec}


def spec_from_config(config: Mapping[str, Any]) -> UNetSpec | AutoencoderSpec:
    """The typed spec of a diffusers ``config.json`` (a dict), by its ``_class_name``.

    Raises:
        ValueError: an unsupported class, block type or option (naming the config key).

    Example:
        >>> spec = spec_from_config({"_class_name": "AutoencoderKL", "block_out_channels": [8],
        ...                          "norm_num_groups": 4})
        >>> spec.latent_channels, spec.mid.eps
        (4, 1e-06)
    """
    conf = config
    name = conf.get("_class_name")
    if name not in _SPECS:
        raise ValueError(f"config.json: _class_name = {name!r} is not supported "
                         f"(supported: {', '.join(_SPECS)})")
    return _SPECS[name](conf)


# --------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A converted diffusers model: ``module.apply(params, ...)`` computes diffusers' function.

    UNets: ``module.apply(params, x, t, context=None, label=None)`` with ``x`` ``[B, H, W, C]``
    and ``t`` in the model's own timestep units. Autoencoders: ``module.apply(params, x,
    method="encode")`` -> ``(mean, logvar)``, ``method="decode"`` on unscaled latents.
    """

    module: nn.Module
    params: Any
    config: Mapping[str, Any]

    @property
    def class_name(self) -> str:
        """diffusers' class name (``UNet2DModel``, ``UNet2DConditionModel``, ``AutoencoderKL``)."""
        return self.config["_class_name"]

    @property
    def scaling_factor(self) -> float:
        """``AutoencoderKL``'s latent scale (diffusion runs on ``scaling_factor * z``)."""
        if self.class_name != "AutoencoderKL":
            raise ValueError(f"scaling_factor: a {self.class_name} has none (AutoencoderKL only)")
        return float(self.config.get("scaling_factor", 0.18215))

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one input, from ``sample_size`` and ``in_channels``."""
        size = self.config.get("sample_size")
        if size is None:
            raise ValueError("sample_shape: config.json has no sample_size")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(h), int(w), int(self.module.spec.in_channels)


def module_from_spec(spec: UNetSpec | AutoencoderSpec) -> nn.Module:
    """The Flax module of a spec (``DiffusersUNet`` or ``AutoencoderKL``).

    Example:
        >>> m = module_from_spec(spec_from_config({"_class_name": "AutoencoderKL"}))
        >>> type(m).__name__
        'AutoencoderKL'
    """
    return AutoencoderKL(spec) if isinstance(spec, AutoencoderSpec) else DiffusersUNet(spec)


def _param_shapes(module: nn.Module) -> Any:
    """The parameter tree of ``module`` as ShapeDtypeStructs (traced, nothing computed)."""
    spec = module.spec
    n = sum(b.resample for b in spec.down)
    size = 2 ** n
    x = jnp.zeros((1, size, size, spec.in_channels), jnp.float32)
    if isinstance(spec, AutoencoderSpec):
        return jax.eval_shape(module.init, jax.random.key(0), x)
    blocks = (*spec.down, *spec.up) + ((spec.mid,) if spec.mid is not None else ())
    cad = next((b.cross_attention_dim for b in blocks if b.kind.cross_attention), 0)
    context = jnp.zeros((1, 1, cad), jnp.float32) if cad else None
    label = jnp.zeros((1,), jnp.int32) if spec.num_class_embeds is not None else None
    t = jnp.ones((1,), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), x, t, context, label)


def load_pretrained(folder: str | os.PathLike, *, dtype: Any = jnp.float32) -> Pretrained:
    """Loads a local diffusers model folder as a Flax module and params (no torch, no network).

    Args:
        folder: a directory with ``config.json`` and ``diffusion_pytorch_model.safetensors``
            (a ``UNet2DModel``, ``UNet2DConditionModel`` or ``AutoencoderKL``).
        dtype: parameter dtype (weights stored in float16 are upcast).

    Returns:
        A :class:`Pretrained` (``module``, ``params``, ``config``).

    Raises:
        ValueError: missing files, unsupported classes/blocks/options, or weights that do not
            fit the config (unknown or missing keys, shape mismatches).

    Example:
        >>> load_pretrained("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: folder: '/nonexistent' is not a directory ...
    """
    config, state = read_folder(folder)
    module = module_from_spec(spec_from_config(config))
    params = convert_state_dict(state, _param_shapes(module), dtype=dtype)
    return Pretrained(module=module, params=params, config=config)
