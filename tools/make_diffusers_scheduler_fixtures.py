"""Writes diffusers' scheduler trajectories on an exact Gaussian mixture, for the parity tests
of ``diffax.interop.load_scheduler`` (tests/interop/test_schedulers.py).

Run by hand where torch and diffusers are installed (never in CI; diffax never imports
torch)::

  python tools/make_diffusers_scheduler_fixtures.py \
      --out tests/interop/fixtures/diffusers_schedulers.npz

For each scheduler config and step count it runs diffusers' own loop
(``set_timesteps(N)``; ``for k in timesteps: x = step(model(x, k), k, x).prev_sample``) in
float64 from fixed initial noise, with ``model`` the exact eps / v / x0 prediction of a
3-component Gaussian mixture in 4-D computed here in NumPy from ``alphas_cumprod[k]`` (an
implementation independent of ``diffax.testing``), and stores the config (JSON), the mixture,
the initial noise, the timesteps and the state after every step (for the stochastic
``DDPMScheduler`` also the standard normal noise of every step, drawn from a seeded
generator).
"""

from __future__ import annotations

import argparse
import json

import diffusers
import numpy as np
import torch

MEANS = np.array([[1.0, -0.5, 0.3, 0.8], [-1.2, 0.7, -0.4, 0.1], [0.2, 1.1, 0.9, -1.0]])
STDS = np.array([0.15, 0.3, 0.2])
WEIGHTS = np.array([0.3, 0.45, 0.25])
BATCH = 16

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
CASES = [
    # name, class, config, step counts
    ("ddim_leading_offset1_eps", "DDIMScheduler",
     {**SD, "steps_offset": 1, "set_alpha_to_one": False, "clip_sample": False}, (10, 25)),
    ("ddim_trailing_v", "DDIMScheduler",
     {"timestep_spacing": "trailing", "prediction_type": "v_prediction", "clip_sample": False},
     (10, 50)),
    ("dpmpp2_linspace_zero_eps", "DPMSolverMultistepScheduler", {}, (10, 25)),
    ("dpmpp2_leading_offset1_sigmamin_eps", "DPMSolverMultistepScheduler",
     {**SD, "timestep_spacing": "leading", "steps_offset": 1, "final_sigmas_type": "sigma_min"},
     (10, 25)),
    ("dpmpp2_trailing_zero_v", "DPMSolverMultistepScheduler",
     {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}, (10, 25)),
    ("dpmpp2_cosine_linspace_x0", "DPMSolverMultistepScheduler",
     {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"}, (10, 25)),
    ("unipc2_linspace_zero_eps", "UniPCMultistepScheduler", {}, (10, 25)),
    ("unipc2_bh1_trailing_sigmamin_eps", "UniPCMultistepScheduler",
     {"solver_type": "bh1", "timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"},
     (10, 25)),
    ("unipc3_leading_offset1_v", "UniPCMultistepScheduler",
     {**SD, "solver_order": 3, "timestep_spacing": "leading", "steps_offset": 1,
      "prediction_type": "v_prediction"}, (10, 25)),
    # DEIS (logrho, ends at t_min; lower orders on the last steps below 15 steps).
    # Its third-order coefficients lose digits to cancellation in diffusers' float32 sigmas:
    # the same loop with the sigmas in float64 is stored too ("__trajectory_sigmas64").
    ("deis2_linspace_eps", "DEISMultistepScheduler", {}, (25,)),
    ("deis3_trailing_v", "DEISMultistepScheduler",
     {"solver_order": 3, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
     (25,)),
    ("deis3_leading_offset1_x0", "DEISMultistepScheduler",
     {**SD, "solver_order": 3, "timestep_spacing": "leading", "steps_offset": 1,
      "prediction_type": "sample"}, (10,)),
    # DDPM (stochastic: the noise of every step is stored with the trajectory).
    ("ddpm_leading_clip_eps", "DDPMScheduler", {}, (10,)),
    ("ddpm_trailing_v", "DDPMScheduler",
     {**SD, "timestep_spacing": "trailing", "prediction_type": "v_prediction",
      "clip_sample": False}, (25,)),
]
NOISE_SEED = 1


def mixture_x0(x: np.ndarray, abar: float) -> np.ndarray:
    """E[x0 | x_t = x] for x_t = sqrt(abar) x0 + sqrt(1 - abar) eps."""
    a, s2 = np.sqrt(abar), 1.0 - abar
    var = a**2 * STDS**2 + s2  # [C]
    diff = x[:, None, :] - a * MEANS[None]  # [B, C, D]
    logp = (np.log(WEIGHTS) - 0.5 * MEANS.shape[1] * np.log(var)
            - 0.5 * np.sum(diff**2, -1) / var)  # [B, C]
    resp = np.exp(logp - logp.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    post = MEANS[None] + (a * STDS**2 / var)[None, :, None] * diff  # [B, C, D]
    return np.einsum("bc,bcd->bd", resp, post)


def model(x: np.ndarray, abar: float, prediction: str) -> np.ndarray:
    x0 = mixture_x0(x, abar)
    a, s = np.sqrt(abar), np.sqrt(1.0 - abar)
    eps = (x - a * x0) / s
    return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[prediction]


def run(cls_name: str, config: dict, num_steps: int, x_init: np.ndarray,
        sigmas64: bool = False):
    """diffusers' loop (with ``sigmas64`` its ``sigmas`` cast to float64 after
    ``set_timesteps``); for DDPM with a seeded generator, whose draws (one per step with
    ``k > 0``, as DDPMScheduler.step makes them) a twin generator records."""
    sched = getattr(diffusers, cls_name)(**config)
    sched.set_timesteps(num_steps)
    if sigmas64:
        sched.sigmas = sched.sigmas.double()
    abar = sched.alphas_cumprod.double().numpy()
    prediction = sched.config.prediction_type
    stochastic = cls_name == "DDPMScheduler"
    gen = torch.Generator().manual_seed(NOISE_SEED)
    twin = torch.Generator().manual_seed(NOISE_SEED)
    x = torch.from_numpy(x_init.copy())
    traj, noise = [x_init.copy()], []
    for k in sched.timesteps:
        out = torch.from_numpy(model(x.numpy(), float(abar[int(k)]), prediction))
        if stochastic:
            if int(k) > 0:
                noise.append(torch.randn(out.shape, generator=twin, dtype=out.dtype).numpy())
            x = sched.step(out, k, x, generator=gen).prev_sample
        else:
            x = sched.step(out, k, x).prev_sample
        traj.append(x.numpy().astype(np.float64))
    noise = np.stack(noise) if stochastic else None
    return sched, np.asarray(sched.timesteps.numpy(), np.int64), np.stack(traj), noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/interop/fixtures/diffusers_schedulers.npz")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x_init = rng.standard_normal((BATCH, MEANS.shape[1]))
    data = {"means": MEANS, "stds": STDS, "weights": WEIGHTS, "x_init": x_init,
            "diffusers_version": np.array(diffusers.__version__)}
    for name, cls_name, config, steps in CASES:
        for n in steps:
            sched, ks, traj, noise = run(cls_name, config, n, x_init)
            full = {"_class_name": cls_name, **dict(sched.config)}
            key = f"{name}__{n}"
            data[f"{key}__config"] = np.array(json.dumps(full, default=str))
            data[f"{key}__timesteps"] = ks
            data[f"{key}__trajectory"] = traj
            if noise is not None:
                data[f"{key}__noise"] = noise
            if cls_name == "DEISMultistepScheduler":
                data[f"{key}__trajectory_sigmas64"] = run(cls_name, config, n, x_init,
                                                          sigmas64=True)[2]
            print(f"{key}: {len(ks)} steps, |x_final| max {np.abs(traj[-1]).max():.3f}")
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
