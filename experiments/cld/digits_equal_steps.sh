#!/bin/bash
# CLD vs VP on 8x8 digits at equal training steps and equal sampler NFE (experiments/cld/README.md).
# Usage: bash experiments/cld/digits_equal_steps.sh STEPS OUT_DIR   (from the repository root)
# Trains configs/digits_cld.py and configs/digits_vp_continuous.py for STEPS steps each (the same
# UNet, batch 128, Adam 1e-3 constant after 500 warm-up steps, EMA 0.9995), then scores
# NUM_SAMPLES (default 500)
# samples of each with `diffax eval` (FD in a 16-component PCA space and sliced W2 against the
# 300 test digits, as for the other digit models) at 50 and 100 NFE, and the likelihood of 64
# test digits (CLD: the paper's bound) in bits/dim.
set -e
STEPS=${1:?steps}; OUT=${2:?out dir}
mkdir -p "$OUT"
train() {  # config workdir
  nice -n 10 diffax train --config "configs/$1.py" --workdir "$OUT/$1" \
    --config.train.num_steps="$STEPS" --config.train.checkpoint_every="$STEPS" \
    --config.train.sample_every=0 --config.train.log_every=100 > "$OUT/$1.train.log" 2>&1
}
evaluate() {  # config tag solver steps
  nice -n 10 diffax eval --workdir "$OUT/$1" --config.eval.num_samples="${NUM_SAMPLES:-500}" \
    --config.eval.likelihood=False --config.sample.solver="$3" --config.sample.num_steps="$4" \
    > "$OUT/$1.$2.eval.log" 2>&1
  cp "$OUT/$1/eval/metrics.json" "$OUT/$1.$2.metrics.json"
}
likelihood() {  # config
  nice -n 10 diffax likelihood --workdir "$OUT/$1" --config.eval.likelihood_examples=64 \
    --config.eval.divergence=hutchinson --config.eval.rtol=1e-3 --config.eval.atol=1e-3 \
    > "$OUT/$1.likelihood.log" 2>&1
  cp "$OUT/$1/eval/likelihood.json" "$OUT/$1.likelihood.json"
}
if [ -z "$SKIP_TRAIN" ]; then train digits_cld & train digits_vp_continuous & wait; fi
(evaluate digits_cld sscs100 sscs 100; evaluate digits_cld sscs50 sscs 50; likelihood digits_cld) &
(evaluate digits_vp_continuous heun50 heun 50; evaluate digits_vp_continuous heun25 heun 25;
 likelihood digits_vp_continuous; evaluate digits_vp_continuous em100 euler_maruyama 100) &
wait
python experiments/cld/digits_table.py "$OUT"
