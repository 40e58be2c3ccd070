"""Config dataclasses: validation, variants, parameter counts (via jax.eval_shape)."""

import dataclasses

import jax.numpy as jnp
import pytest

from diffax.models import (
    MLP,
    MLP_VARIANTS,
    UNET_VARIANTS,
    BlockType,
    Embedding,
    MLPConfig,
    UNet,
    UNetConfig,
    count_params,
)

# Exact parameter counts, measured with count_params (jax.eval_shape: no memory, no compile).
# score_sde reports about 62M for DDPM++ cont. on CIFAR-10 and about 108M for its deep version.
CIFAR10_PARAMS = 61_804_419
CIFAR10_DEEP_PARAMS = 106_632_579


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(ch_mult=()), "ch_mult"),
        (dict(ch_mult=(1, 0)), r"ch_mult\[1\]"),
        (dict(ch_mult=3), "ch_mult"),
        (dict(image_size=12, ch_mult=(1, 2, 2, 2)), "image_size"),
        (dict(image_size=0), "image_size"),
        (dict(image_size=8, ch_mult=(1, 2), attn_resolutions=(16,)), "attn_resolutions"),
        (dict(image_size=32, ch_mult=(1, 2), attn_resolutions=(8,)), "attn_resolutions"),
        (dict(nf=0), "nf"),
        (dict(nf=16.5), "nf"),
        (dict(num_channels=0), "num_channels"),
        (dict(num_res_blocks=0), "num_res_blocks"),
        (dict(num_heads=3), "num_heads"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(resblock_type="resnet"), "resblock_type"),
        (dict(embedding_type="learned"), "embedding_type"),
        (dict(fourier_scale=0.0), "fourier_scale"),
        (dict(time_scale=-1.0), "time_scale"),
        (dict(init_scale=-1.0), "init_scale"),
        (dict(num_classes=0), "num_classes"),
        (dict(num_classes=True), "num_classes"),
        (dict(dtype="int32"), "dtype"),
        (dict(dtype="not-a-dtype"), "dtype"),
    ],
)
def test_unet_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        UNetConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(dim=0), "dim"),
        (dict(width=0), "width"),
        (dict(depth=-1), "depth"),
        (dict(emb_dim=0), "emb_dim"),
        (dict(embedding_type="gaussian"), "embedding_type"),
        (dict(dropout=1.5), "dropout"),
        (dict(num_classes=0), "num_classes"),
        (dict(dtype=jnp.int8), "dtype"),
    ],
)
def test_mlp_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MLPConfig(**kwargs)


def test_unet_config_normalises_types():
    # As they come from ml_collections: lists and strings.
    cfg = UNetConfig(image_size=16, ch_mult=[1, 2], attn_resolutions=[8], resblock_type="ddpm",
                     embedding_type="fourier", dtype="bfloat16")
    assert cfg.ch_mult == (1, 2) and cfg.attn_resolutions == (8,)
    assert cfg.resblock_type is BlockType.DDPM and cfg.embedding_type is Embedding.FOURIER
    assert cfg.dtype == jnp.bfloat16
    assert cfg.resolutions == (16, 8) and cfg.input_shape == (16, 16, 3)
    hash(cfg)  # usable as a static argument / module field
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nf = 3
    with pytest.raises(TypeError):
        UNetConfig(16)  # keyword-only


def test_unet_variants():
    assert {"tiny", "digits", "mid", "cifar10"} <= set(UNET_VARIANTS)
    tiny = UNET_VARIANTS["tiny"]
    assert tiny.image_size == 8 and tiny.nf == 16 and len(tiny.ch_mult) <= 2
    digits = UNET_VARIANTS["digits"]
    assert digits.input_shape == (8, 8, 1)
    c = UNET_VARIANTS["cifar10"]
    assert (c.nf, c.ch_mult, c.num_res_blocks, c.attn_resolutions) == (128, (1, 2, 2, 2), 4, (16,))
    assert c.resblock_type is BlockType.BIGGAN and c.embedding_type is Embedding.POSITIONAL
    assert c.skip_rescale and c.init_scale == 0.0 and c.dropout == 0.1
    assert c.input_shape == (32, 32, 3)


def test_from_variant_overrides_and_unknown_names():
    model = UNet.from_variant("tiny", num_classes=10, dropout=0.0)
    assert model.config.num_classes == 10 and model.config.null_label == 10
    assert model.config.nf == UNET_VARIANTS["tiny"].nf
    with pytest.raises(ValueError, match="attn_resolutions"):
        UNet.from_variant("tiny", attn_resolutions=(2,))
    with pytest.raises(ValueError, match="unknown UNet variant"):
        UNet.from_variant("huge")
    with pytest.raises(ValueError, match="unknown MLP variant"):
        MLP.from_variant("huge")
    assert MLP.from_variant("tabular", dim=7).config.dim == 7
    assert set(MLP_VARIANTS) >= {"tiny", "toy2d"}


def test_cifar10_parameter_count():
    n = count_params(UNet.from_variant("cifar10"))
    print(f"cifar10 (DDPM++ cont.): {n:,} parameters")
    assert n == CIFAR10_PARAMS
    assert abs(n - 62e6) / 62e6 < 0.03
    n_deep = count_params(UNet.from_variant("cifar10_deep"))
    print(f"cifar10_deep (DDPM++ cont. deep): {n_deep:,} parameters")
    assert n_deep == CIFAR10_DEEP_PARAMS


def test_small_variants_are_small():
    counts = {name: count_params(UNet.from_variant(name)) for name in ("tiny", "digits", "mid")}
    print(counts)
    assert counts["tiny"] < 300_000
    assert counts["digits"] < 2_000_000
    assert counts["mid"] < 10_000_000
    # Class conditioning adds (num_classes + 1) * 4 * nf embedding parameters.
    assert count_params(UNet.from_variant("tiny", num_classes=10)) == counts["tiny"] + 11 * 64
