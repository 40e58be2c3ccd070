"""DDGAN vs a diffusion model at the same NFE on the 2-D 25-Gaussian grid.

Data: 25 isotropic Gaussians (std 0.05) with equal weights at the grid {-2, -1, 0, 1, 2}^2
(the grid of the mode-collapse literature, scaled to unit spacing). Every model trains for the
same wall time (``--seconds``, in this process, one after the other, batch 512, 50 updates
per compiled call) from fresh batches of the exact mixture; the budget is CPU time of this
process (``time.process_time``), so that models trained one after the other on a shared machine
get the same compute:

* DDGAN (diffax.ddgan) at T = 1 (a plain GAN), 2 and 4: residual MLP generator (toy2d
  variant, 16-D latent), MLP discriminator, non-saturating loss + R1 (gamma 0.05), Adam(0.5,
  0.9) at 2e-4 (generator) and 1e-4 (discriminator); sampled with T generator calls from the
  EMA (0.999) generator.
* Diffusion: the same MLP on score_sde's VP (beta 0.1 -> 20), v-prediction, v-MSE loss at
  uniform times, Adam 2e-3 with EMA 0.999; sampled at NFE = 1, 2, 4 by each of DDIM,
  DPM-Solver++(2M), UniPC(2) and DPM-Solver++(2M) on the log-SNR grid; the best solver per NFE
  (by sliced Wasserstein distance to exact samples) is reported.

Metrics on ``--samples`` samples: a sample is *high quality* when it lies within 3 std (0.15)
of its nearest mode; a mode is *covered* when at least 10 high-quality samples fall on it
(the expected count per mode is samples / 25). Also the sliced Wasserstein distance to exact
samples (and that distance between two exact sample sets: the noise floor).

    nice -n 10 python tools/bench_ddgan.py --seconds 40 --seeds 2 --samples 5000 \
        --out tools/bench_ddgan.md
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import diffax
from diffax import ddgan, losses, models, parameterization, samplers
from diffax.evaluation.metrics import sliced_wasserstein
from diffax.testing import GaussianMixture
from diffax.train import TrainState, make_optimizer, make_train_step

STD = 0.05
MEANS = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], np.float32)
BATCH = 512
CALL = 50  # updates per compiled call
LATENT = 16


def mixture() -> GaussianMixture:
    return GaussianMixture(means=jnp.asarray(MEANS), stds=jnp.full((25,), STD, jnp.float32),
                           weights=jnp.full((25,), 1 / 25, jnp.float32))


def scores(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x).all(1)
    d = np.linalg.norm(x[:, None, :] - MEANS[None].astype(np.float64), axis=-1)
    nearest, dist = d.argmin(1), d.min(1)
    hq = finite & (dist < 3 * STD)
    counts = np.bincount(nearest[hq], minlength=25)
    return {"modes": int((counts >= 10).sum()), "hq": float(hq.mean())}


def batches(key: jax.Array, gm: GaussianMixture):
    step = jax.jit(lambda k: gm.sample_data(k, CALL * BATCH).reshape(CALL, BATCH, 2))
    i = 0
    while True:
        yield {"x": step(jax.random.fold_in(key, i))}
        i += 1


def train_for(seconds: float, state, step_fn, data) -> tuple[TrainState, int, float]:
    """Trains for ``seconds`` of this process's CPU time (``time.process_time``: the same budget
    for every model however busy the shared machine is), compilation excluded."""
    state, _ = step_fn(state, next(data))  # compile outside the budget
    jax.block_until_ready(state)
    n, t0 = CALL, time.process_time()
    while time.process_time() - t0 < seconds:
        state, metrics = step_fn(state, next(data))
        jax.block_until_ready(state)
        n += CALL
    return state, n, float(metrics["loss"])


def train_ddgan(T: int, seed: int, seconds: float, gm: GaussianMixture):
    p = diffax.DiscreteVP.from_continuous(diffax.VP(), num_steps=T)
    model = ddgan.GANModel(
        generator=ddgan.Generator(net=models.MLP.from_variant("toy2d", init_scale=1.0),
                                  latent_dim=LATENT),
        discriminator=ddgan.MLPDiscriminator(width=128, depth=3), data_shape=(2,))
    trainer = ddgan.DDGANTrainer(
        loss=ddgan.GANLoss(process=p, r1_gamma=0.05, latent_shape=(LATENT,)), model=model,
        generator_optimizer=optax.adam(2e-4, b1=0.5, b2=0.9),
        discriminator_optimizer=optax.adam(1e-4, b1=0.5, b2=0.9))
    key = jax.random.key(seed)
    state = TrainState.create(params=model.init_params(key), optimizer=trainer.optimizer,
                              key=jax.random.fold_in(key, 1), ema_decays=(0.999,))
    step = jax.jit(trainer.train_step(n_steps=CALL, ema_warmup=True), donate_argnums=0)
    state, n, _ = train_for(seconds, state, step, batches(jax.random.fold_in(key, 2), gm))
    G = trainer.denoiser(state.ema())
    solver = samplers.DDGAN(latent_shape=(LATENT,))
    fn = jax.jit(lambda k, x: diffax.sample(k, p, G, x, solver=solver, num_steps=T).x)
    return fn, p, n


def train_diffusion(seed: int, seconds: float, gm: GaussianMixture):
    p = diffax.VP()
    model = models.MLP.from_variant("toy2d")
    loss = losses.DenoisingLoss(
        process=p, weighting=losses.VMSE(), time_sampler=losses.UniformTime(),
        parameterization=parameterization.Predict(prediction="v"))
    apply_fn = models.apply_fn(model)
    opt, _ = make_optimizer(learning_rate=2e-3, warmup_steps=100)
    key = jax.random.key(seed)
    state = TrainState.create(params=model.init_params(key), optimizer=opt,
                              key=jax.random.fold_in(key, 1), ema_decays=(0.999,))
    step = jax.jit(make_train_step(loss.bind(apply_fn), opt, n_steps=CALL, ema_warmup=True),
                   donate_argnums=0)
    state, n, _ = train_for(seconds, state, step, batches(jax.random.fold_in(key, 2), gm))
    D = loss.parameterization.denoiser(apply_fn, state.ema(), p)
    return D, p, n


SOLVERS = {
    "DDIM": (samplers.DDIM(), None),
    "DPM-Solver++(2M)": (samplers.DPMSolverPP(order=2), None),
    "UniPC(2)": (samplers.UniPC(order=2), None),
    "DPM-Solver++(2M), log-SNR grid": (samplers.DPMSolverPP(order=2),
                                       diffax.schedules.LogSNRUniform()),
}


def solve(p, D, x_init, solver, schedule, nfe):
    run = jax.jit(lambda x: diffax.sample(None, p, D, x, solver=solver, num_steps=nfe,
                                          schedule=schedule).x)
    return run(x_init)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0,
                    help="training budget per model, CPU seconds of this process")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    gm = mixture()
    n = args.samples
    floor = sliced_wasserstein(np.asarray(gm.sample_data(jax.random.key(10), n)),
                               np.asarray(gm.sample_data(jax.random.key(11), n)))
    ref = np.asarray(gm.sample_data(jax.random.key(12), n))
    exact = scores(np.asarray(gm.sample_data(jax.random.key(13), n)))
    rows = []  # (method, NFE, seed, modes, hq, sw, steps)

    def table() -> str:
        lines = [f"DDGAN vs diffusion (best ODE solver per NFE) on the 25-Gaussian grid (std "
                 f"{STD}); {args.seconds:g} CPU-seconds of training per model, batch {BATCH}, "
                 f"{args.seeds} seed(s), {n} samples; high quality = within 3 std of a mode; "
                 f"covered = >= 10 high-quality samples. Exact samples: {exact['modes']}/25 "
                 f"modes, hq {exact['hq']:.3f}; sliced W floor (two exact sets) {floor:.4f}.",
                 "", "| method | NFE | seed | updates | modes (of 25) | high-quality fraction "
                 "| sliced W |", "|---|---|---|---|---|---|---|"]
        for method, nfe, seed, modes, hq, sw, steps in sorted(rows, key=lambda r: (r[1], r[0],
                                                                                  r[2])):
            lines.append(f"| {method} | {nfe} | {seed} | {steps} | {modes} | {hq:.3f} | "
                         f"{sw:.4f} |")
        return "\n".join(lines)

    def write() -> None:
        if args.out:
            with open(args.out, "w") as f:
                f.write(f"Command: nice -n 10 python tools/bench_ddgan.py --seconds "
                        f"{args.seconds:g} --seeds {args.seeds} --samples {n} --out {args.out}"
                        f"\n\n{table()}\n")

    for seed in range(args.seeds):
        for T in (1, 2, 4):
            fn, p, steps = train_ddgan(T, seed, args.seconds, gm)
            x_init = p.prior_sample(jax.random.key(100 + seed), (n, 2))
            x = np.asarray(fn(jax.random.key(200 + seed), x_init))
            s = scores(x)
            rows.append((f"DDGAN T={T}", T, seed, s["modes"], s["hq"],
                         sliced_wasserstein(x, ref), steps))
            print(rows[-1], flush=True)
            write()
        D, p, steps = train_diffusion(seed, args.seconds, gm)
        x_init = p.prior_sample(jax.random.key(100 + seed), (n, 2))
        for nfe in (1, 2, 4):
            best = None
            for name, (solver, schedule) in SOLVERS.items():
                x = np.asarray(solve(p, D, x_init, solver, schedule, nfe))
                s = scores(x)
                cand = (f"diffusion, {name}", nfe, seed, s["modes"], s["hq"],
                        sliced_wasserstein(x, ref), steps)
                if best is None or cand[5] < best[5]:
                    best = cand
            rows.append(best)
            print(rows[-1], flush=True)
            write()
    print(table())
    write()


if __name__ == "__main__":
    main()
