#!/bin/bash
# The DiVAE measurement of experiments/digits_divae/README.md: stage 1 (VQ autoencoder), stage 2
# (the diffusion decoder on its codes), then `diffax eval` (DiVAE vs the VQ decoder on the codes
# of the 300 held-out digits). RUNS= sets where the workdirs go (default /tmp/divae_runs).
# Each stage is one job of the shared heavy queue when run through /work/notes/heavy.
set -euo pipefail
RUNS=${RUNS:-/tmp/divae_runs}
stage=${1:-all}
if [[ $stage == all || $stage == 1 ]]; then
  diffax train --config configs/digits_divae.py:autoencoder --workdir "$RUNS/vq" \
    --config.model.variant=tiny --config.train.num_steps=400 --config.train.batch_size=32 \
    --config.train.checkpoint_every=400 --config.train.log_every=100
fi
if [[ $stage == all || $stage == 2 ]]; then
  diffax train --config configs/digits_divae.py --workdir "$RUNS/divae" \
    --config.latent.workdir="$RUNS/vq" --config.train.num_steps=400 \
    --config.train.checkpoint_every=400
fi
if [[ $stage == all || $stage == eval ]]; then
  diffax eval --workdir "$RUNS/vq"
  diffax sample --workdir "$RUNS/divae" --config.sample.num_steps=10
  diffax eval --workdir "$RUNS/divae" --config.sample.num_steps=10
fi
