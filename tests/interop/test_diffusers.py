"""diffax.interop.diffusers: every layout mapping against a NumPy oracle of torch's definition,
and whole converted models against diffusers' own outputs (fixtures made by
tools/make_diffusers_fixtures.py with torch + diffusers, stored in tests/interop/fixtures/).

Tolerance of the fixture tests: max |diffax - diffusers| <= 1e-5 * max |diffusers| per output
(float32 on both sides). Measured when the fixtures were made: 3e-7 .. 9e-7, so the bound has a
10x margin over float32 reassociation noise; a wrong transpose, epsilon or scale/bias swap moves
the outputs by 1e-3 or more (the fixtures' norm scales and biases are perturbed away from 1/0).
"""

import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from diffax import interop
from diffax.interop import diffusers as dif
from diffax.interop import diffusers_models
from diffax.interop.diffusers_models import BlockType, fir_downsample, fir_upsample

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
UNETS = ["ddpm_unet", "unet_variant", "ncsnpp_unet", "sd_unet", "sd2_unet"]
RTOL = 1e-5


def _nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------------------------
# Whole models vs diffusers


@pytest.mark.parametrize("name", UNETS)
def test_unet_matches_diffusers(name, monkeypatch):
    if name == "sd_unet":  # this one runs its attention in blocks of queries (big-input path)
        monkeypatch.setattr(diffusers_models, "_LOGITS_BLOCK", 2 ** 10)
    pre = interop.load_pretrained(os.path.join(FIXTURES, name))
    io = np.load(os.path.join(FIXTURES, name, "io.npz"))
    ts, x, ref = io["t"], _nhwc(io["x"]), io["out"]
    k, b = ref.shape[:2]
    # All timesteps in one batch: one compile per fixture.
    xs = np.concatenate([x] * k)
    t = np.repeat(ts.astype(np.float32), b)
    ctx = np.concatenate([io["context"]] * k) if "context" in io else None
    label = np.concatenate([io["label"]] * k) if "label" in io else None
    out = np.asarray(jax.jit(pre.module.apply)(pre.params, xs, t, ctx, label))
    for i in range(k):
        err = _rel(out[i * b:(i + 1) * b], _nhwc(ref[i]))
        assert err <= RTOL, (name, float(ts[i]), err)


def test_autoencoder_matches_diffusers():
    pre = interop.load_pretrained(os.path.join(FIXTURES, "vae"))
    io = np.load(os.path.join(FIXTURES, "vae", "io.npz"))
    mean, logvar = pre.module.apply(pre.params, _nhwc(io["x"]), method="encode")
    decoded = pre.module.apply(pre.params, _nhwc(io["z"]), method="decode")
    assert _rel(mean, _nhwc(io["mean"])) <= RTOL
    assert _rel(logvar, _nhwc(io["logvar"])) <= RTOL
    assert _rel(decoded, _nhwc(io["decoded"])) <= RTOL
    assert pre.scaling_factor == 0.5  # read from config.json, not the 0.18215 default


# ---------------------------------------------------------------------------------------------
# Each mapping against torch's definition written in NumPy (float64)


def _torch_conv2d(x, w, b, stride, pad):
    """torch.nn.functional.conv2d on NCHW (cross-correlation), written out."""
    x = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]))
    o, _, kh, kw = w.shape
    hh = (x.shape[2] - kh) // stride + 1
    ww = (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], o, hh, ww))
    for i in range(hh):
        for j in range(ww):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, w) + b
    return out


@pytest.mark.parametrize("stride,pad", [(1, ((1, 1), (1, 1))), (2, ((0, 1), (0, 1)))])
def test_conv_kernel_mapping(x64, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6))
    w, b = rng.normal(size=(5, 3, 3, 3)), rng.normal(size=5)
    ref = _torch_conv2d(x, w, b, stride, pad)
    conv = nn.Conv(5, (3, 3), strides=stride, padding=pad, param_dtype=jnp.float64)
    params = {"params": {"kernel": dif.convert_tensor("kernel", w, 4), "bias": b}}
    out = conv.apply(params, jnp.asarray(_nhwc(x)))
    np.testing.assert_allclose(out, _nhwc(ref), rtol=1e-12, atol=1e-12)


def test_linear_and_legacy_attention_mapping(x64):
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=5)
    ref = x @ w.T + b  # torch.nn.Linear
    dense = nn.Dense(5, param_dtype=jnp.float64)
    for weight in (w, w[:, :, None, None]):  # a Linear, and a legacy 1x1-conv projection
        params = {"params": {"kernel": dif.convert_tensor("kernel", weight, 2), "bias": b}}
        np.testing.assert_allclose(dense.apply(params, x), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="rank-2 kernel"):
        dif.convert_tensor("kernel", np.zeros((5, 3, 3, 3)), 2)


def test_norm_weight_maps_to_scale_and_epsilon_is_the_configs(x64):
    """GroupNorm ``weight`` -> ``scale`` (not swapped with ``bias``); the epsilon comes from
    config.json (variance of 1e-6 makes 1e-5 and 1e-6 differ by a factor ~3)."""
    rng = np.random.default_rng(2)
    x = 1e-3 * rng.normal(size=(2, 4, 3, 3))
    w, b = rng.normal(size=4), rng.normal(size=4)
    for eps in (1e-5, 1e-6):
        g = x.reshape(2, 2, -1)
        ref = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps))
        ref = ref.reshape(x.shape) * w[None, :, None, None] + b[None, :, None, None]
        shapes = {"params": {"n": {"scale": jax.ShapeDtypeStruct((4,), jnp.float64),
                                   "bias": jax.ShapeDtypeStruct((4,), jnp.float64)}}}
        params = dif.convert_state_dict({"n.weight": w, "n.bias": b}, shapes,
                                        dtype=jnp.float64)
        gn = nn.GroupNorm(num_groups=2, epsilon=eps, use_fast_variance=False,
                          param_dtype=jnp.float64)
        out = gn.apply({"params": params["params"]["n"]}, jnp.asarray(_nhwc(x)))
        np.testing.assert_allclose(out, _nhwc(ref), rtol=1e-10, atol=1e-12)


def test_config_epsilons_and_groups():
    unet = dif.spec_from_config({"_class_name": "UNet2DModel", "norm_eps": 1e-6,
                                 "block_out_channels": [32, 64], "norm_num_groups": 8,
                                 "down_block_types": ["DownBlock2D", "AttnSkipDownBlock2D"],
                                 "up_block_types": ["SkipUpBlock2D", "UpBlock2D"]})
    assert [b.eps for b in unet.down] == [1e-6, 1e-6] and unet.mid.eps == 1e-6
    assert unet.down[1].output_scale_factor == pytest.approx(2 ** 0.5)  # skip blocks' default
    cond = dif.spec_from_config({"_class_name": "UNet2DConditionModel"})  # SD 1.x defaults
    assert cond.down[0].eps == 1e-5 and cond.down[0].heads == 8 and cond.mid.heads == 8
    assert cond.down[0].kind is BlockType.CROSS_ATTN_DOWN and cond.time_embed_dim == 1280
    vae = dif.spec_from_config({"_class_name": "AutoencoderKL"})
    assert vae.mid.eps == 1e-6 and vae.down[0].downsample_padding == 0


def test_flax_path_renames():
    assert dif.flax_path("up_blocks.1.attentions.0.transformer_blocks.1.ff.net.0.proj.weight") \
        == ("up_blocks_1", "attentions_0", "transformer_blocks_1", "ff", "net_0", "proj",
            "weight")
    assert dif.flax_path("time_embedding.linear_1.bias") == ("time_embedding", "linear_1",
                                                             "bias")
    for old, new in [("query", "to_q"), ("key", "to_k"), ("value", "to_v"),
                     ("proj_attn", "to_out_0")]:
        assert dif.flax_path(f"mid_block.attentions.0.{old}.weight")[-2] == new


def test_fir_resampling_matches_upfirdn2d(x64):
    """FIR up/down against diffusers' upfirdn2d_native written out in NumPy."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 4, 2))
    k1 = np.array([1.0, 3.0, 3.0, 1.0])
    k = np.outer(k1, k1) / 64.0

    def upfirdn(x, kernel, up, down, p0, p1):
        b, h, w, c = x.shape
        z = np.zeros((b, h * up, w * up, c))
        z[:, ::up, ::up] = x
        z = np.pad(z, ((0, 0), (p0, p1), (p0, p1), (0, 0)))
        kh = kernel.shape[0]
        f = np.flip(kernel)
        oh = z.shape[1] - kh + 1
        out = np.zeros((b, oh, oh, c))
        for i in range(oh):
            for j in range(oh):
                out[:, i, j] = np.einsum("bhwc,hw->bc", z[:, i:i + kh, j:j + kh], f)
        return out[:, ::down, ::down]

    np.testing.assert_allclose(fir_upsample(jnp.asarray(x)), upfirdn(x, 4 * k, 2, 1, 2, 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fir_downsample(jnp.asarray(x)), upfirdn(x, k, 1, 2, 1, 1),
                               rtol=1e-12, atol=1e-12)


def test_legacy_attention_checkpoint_loads_identically(tmp_path):
    """Old diffusers checkpoints name the attention projections query/key/value/proj_attn
    (and older VAEs store them as 1x1 convs): same parameters after conversion."""
    src = os.path.join(FIXTURES, "vae")
    state = load_file(os.path.join(src, dif.WEIGHTS_FILE))
    legacy = {}
    for key, value in state.items():
        for new, old in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"),
                         ("to_out.0", "proj_attn")]:
            if f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
                value = value[:, :, None, None] if value.ndim == 2 else value
        legacy[key] = value
    assert any(".proj_attn." in k for k in legacy)
    shutil.copy(os.path.join(src, "config.json"), tmp_path / "config.json")
    save_file(legacy, str(tmp_path / dif.WEIGHTS_FILE))
    a = interop.load_pretrained(src).params
    b = interop.load_pretrained(tmp_path).params
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------------------------
# Errors: clear, named, before any compute


def _copy(tmp_path, name="vae"):
    dst = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), dst)
    return dst


def _edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_missing_files(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        interop.load_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="config.json missing"):
        interop.load_pretrained(tmp_path)
    folder = _copy(tmp_path)
    os.remove(folder / dif.WEIGHTS_FILE)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"safetensors missing .*\.bin needs torch"):
        interop.load_pretrained(folder)


def test_unknown_class_and_block_types(tmp_path):
    folder = _copy(tmp_path)
    _edit_config(folder, _class_name="VQModel")
    with pytest.raises(ValueError, match="_class_name = 'VQModel' is not supported"):
        interop.load_pretrained(folder)
    folder = _copy(tmp_path, "ddpm_unet")
    _edit_config(folder, down_block_types=["DownBlock2D", "KDownBlock2D", "DownBlock2D"])
    with pytest.raises(ValueError, match=r"down_block_types\[1\] = 'KDownBlock2D'"):
        interop.load_pretrained(folder)
    _edit_config(folder, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])
    with pytest.raises(ValueError, match=r"down_block_types\[1\] = 'CrossAttnDownBlock2D'"):
        interop.load_pretrained(folder)
    with pytest.raises(ValueError, match="time_embedding_type = 'learned'"):
        dif.spec_from_config({"_class_name": "UNet2DModel", "time_embedding_type": "learned"})
    with pytest.raises(ValueError, match="addition_embed_type"):
        dif.spec_from_config({"_class_name": "UNet2DConditionModel",
                              "addition_embed_type": "text_time"})


def test_weights_that_do_not_fit_the_config(tmp_path):
    folder = _copy(tmp_path)
    _edit_config(folder, latent_channels=3)
    with pytest.raises(ValueError, match=r"shape mismatches .*quant_conv"):
        interop.load_pretrained(folder)
    folder = tmp_path / "extra"
    shutil.copytree(os.path.join(FIXTURES, "vae"), folder)
    state = load_file(os.path.join(folder, dif.WEIGHTS_FILE))
    state["encoder.extra.weight"] = np.zeros(3, np.float16)
    del state["decoder.conv_out.bias"]
    save_file(state, str(folder / dif.WEIGHTS_FILE))
    with pytest.raises(ValueError, match=r"1 checkpoint keys the model does not have: "
                                         r"encoder.extra.weight .*1 model parameters missing "
                                         r"from the checkpoint: decoder/conv_out/bias"):
        interop.load_pretrained(folder)


def test_blocked_attention_equals_one_block():
    """Attention computed a block of queries at a time (big inputs) is the same function."""
    from diffax.interop.diffusers_models import _attention

    rng = np.random.default_rng(4)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 64, 12)), jnp.float32) for _ in range(3))
    whole = _attention(q, k, v, 3)
    # The oracle: softmax(q k^T / sqrt(d)) v per head, in float64.
    qh, kh, vh = (np.asarray(a, np.float64).reshape(2, 64, 3, 4) for a in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", qh, kh) / 2.0
    w = np.exp(logits - logits.max(-1, keepdims=True))
    ref = np.einsum("bhqk,bkhd->bqhd", w / w.sum(-1, keepdims=True), vh).reshape(2, 64, 12)
    np.testing.assert_allclose(whole, ref, rtol=1e-5, atol=1e-6)
    for block in (8, 16):
        np.testing.assert_allclose(_attention(q, k, v, 3, block=block), whole, rtol=1e-6,
                                   atol=1e-6)
