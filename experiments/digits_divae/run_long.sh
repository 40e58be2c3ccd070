#!/bin/bash
# The longer DiVAE measurement of README.md ("Measured"): stage 1 for 1500 steps, stage 2 to
# 4000 and then on to 12000 steps (resumed in the same workdir; the learning rate is constant
# after its warmup, and a resumed run is bitwise the run without the stop), `diffax eval` with
# Heun 10 and 25 steps at both. RUNS= sets where the workdirs go (default /tmp/divae_long).
set -euo pipefail
RUNS=${RUNS:-/tmp/divae_long}
diffax train --config configs/digits_divae.py:autoencoder --workdir "$RUNS/vq" \
    --config.model.variant=tiny --config.train.num_steps=1500 --config.train.batch_size=32 \
    --config.train.checkpoint_every=1500 --config.train.log_every=500
diffax eval --workdir "$RUNS/vq"
for steps in 4000 12000; do
  diffax train --config configs/digits_divae.py --workdir "$RUNS/divae" \
      --config.latent.workdir="$RUNS/vq" --config.train.num_steps=$steps \
      --config.train.checkpoint_every=4000 --config.train.log_every=1000
  for n in 10 25; do
    diffax sample --workdir "$RUNS/divae" --config.sample.num_steps=$n
    diffax eval --workdir "$RUNS/divae" --config.sample.num_steps=$n
    cp "$RUNS/divae/eval/metrics.json" "$RUNS/metrics_${steps}_heun$n.json"
  done
done
