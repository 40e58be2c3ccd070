"""Creates tests/interop/fixtures/: tiny random diffusers models and their outputs (torch).

Run by hand where torch + diffusers are installed (never in CI, never imported by diffax):

    /work/venv-torch/bin/python tools/make_diffusers_fixtures.py [--out tests/interop/fixtures]

Each fixture is a diffusers model folder (``config.json`` +
``diffusion_pytorch_model.safetensors``, weights stored in float16 to keep the files small) and
``io.npz`` with fixed inputs and diffusers' float32 outputs. The float32 model that produced the
outputs has exactly the float16-representable weights that are stored, so loading them back
(upcast to float32) gives the same function. Every parameter is perturbed from diffusers'
initialisation (norm scales away from 1, biases away from 0), so a scale/bias mix-up or a
transposed kernel changes the outputs.

Fixtures (every supported block type at least once):
  ddpm_unet      UNet2DModel as google/ddpm-cifar10-32 (Down/AttnDown/Up/AttnUp blocks,
                 flip_sin_to_cos=False, freq_shift=1, eps 1e-6, attention_head_dim=None)
  unet_variant   UNet2DModel with scale-shift norm, resnet up/downsampling, class labels,
                 8-wide heads, centred input, mid block without attention
  ncsnpp_unet    UNet2DModel as score-SDE NCSN++ (Skip/AttnSkip blocks, FIR resampling, Fourier
                 time embedding of sigma, output divided by sigma)
  sd_unet        UNet2DConditionModel shaped like SD 1.x (CrossAttn blocks, conv proj_in)
  sd2_unet       UNet2DConditionModel shaped like SD 2.x (linear proj_in, per-block heads,
                 2 transformer layers, 2 layers per block)
  vae            AutoencoderKL (encoder/decoder, mid attention, scaling_factor 0.5)
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

FIXTURES = {
    "ddpm_unet": (UNet2DModel, dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
        norm_num_groups=4, norm_eps=1e-6, attention_head_dim=None, flip_sin_to_cos=False,
        freq_shift=1, downsample_padding=0)),
    "unet_variant": (UNet2DModel, dict(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16),
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
        norm_num_groups=4, attention_head_dim=8, resnet_time_scale_shift="scale_shift",
        downsample_type="resnet", upsample_type="resnet", num_class_embeds=3,
        center_input_sample=True, add_attention=False, mid_block_scale_factor=1.5)),
    "ncsnpp_unet": (UNet2DModel, dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(32, 32),
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), layers_per_block=1,
        norm_num_groups=8, time_embedding_type="fourier", mid_block_scale_factor=2 ** 0.5,
        attention_head_dim=None, norm_eps=1e-6, flip_sin_to_cos=True)),
    "sd_unet": (UNet2DConditionModel, dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, cross_attention_dim=12, attention_head_dim=4, norm_num_groups=4)),
    "sd2_unet": (UNet2DConditionModel, dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=2,
        cross_attention_dim=8, attention_head_dim=(2, 4), norm_num_groups=4,
        use_linear_projection=True, transformer_layers_per_block=2, flip_sin_to_cos=False,
        freq_shift=1)),
    "vae": (AutoencoderKL, dict(
        in_channels=3, out_channels=3, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16,
        scaling_factor=0.5)),
}

BATCH = 2
TIMESTEPS = (0.0, 10.0, 537.0, 999.0)
SIGMAS = (0.01, 1.0, 50.0)


def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Moves every parameter off its initial value; rounds all to float16-representable."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.add_(0.5 * p.std() * torch.randn(p.shape, generator=gen))
            p.copy_(p.half().float())


def make(name: str, out_dir: str, seed: int) -> int:
    cls, kwargs = FIXTURES[name]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = cls(**kwargs).eval()
    perturb(model, gen)
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    model.half().save_pretrained(folder, safe_serialization=True)
    model.float()
    io: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if cls is AutoencoderKL:
            size = kwargs["sample_size"]
            x = torch.randn(BATCH, kwargs["in_channels"], size, size, generator=gen)
            dist = model.encode(x).latent_dist
            z = torch.randn(dist.mean.shape, generator=gen)
            io.update(x=x, mean=dist.mean, logvar=dist.logvar, z=z, decoded=model.decode(z).sample)
        else:
            size = kwargs["sample_size"]
            x = torch.randn(BATCH, kwargs["in_channels"], size, size, generator=gen)
            fourier = kwargs.get("time_embedding_type") == "fourier"
            ts = SIGMAS if fourier else TIMESTEPS
            extra = {}
            if cls is UNet2DConditionModel:
                context = torch.randn(BATCH, 5, kwargs["cross_attention_dim"], generator=gen)
                extra["encoder_hidden_states"] = context
                io["context"] = context
            if kwargs.get("num_class_embeds"):
                label = torch.tensor([2, 0])
                extra["class_labels"] = label
                io["label"] = label
            outs = []
            for t in ts:
                tt = torch.full((BATCH,), t) if fourier else torch.full((BATCH,), int(t))
                outs.append(model(x, tt, **extra).sample)
            io.update(x=x, t=torch.tensor(ts), out=torch.stack(outs))
    np.savez_compressed(os.path.join(folder, "io.npz"),
                        **{k: v.numpy().astype(np.float32 if v.is_floating_point() else np.int64)
                           for k, v in io.items()})
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/interop/fixtures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    total = 0
    for i, name in enumerate(FIXTURES):
        size = make(name, args.out, args.seed + i)
        total += size
        print(f"{name:14s} {size / 1e3:8.1f} kB")
    print(f"{'total':14s} {total / 1e3:8.1f} kB")
    with open(os.path.join(args.out, "versions.json"), "w") as f:
        import diffusers
        json.dump({"torch": torch.__version__, "diffusers": diffusers.__version__}, f)


if __name__ == "__main__":
    main()
