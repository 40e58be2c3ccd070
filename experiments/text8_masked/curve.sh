#!/bin/bash
set -euo pipefail
# Held-out NELBO of the intermediate checkpoints (2 draws per sequence, all 73 sequences of the
# test split, or SPLIT=validation),
# one line per step: step, bits/char, standard error. Usage: curve.sh 200 400 600
cd "$(dirname "$0")/../.."; export PYTHONPATH=$PWD   # run with the environment diffax is installed in
WD=${WORKDIR:-/tmp/text8_masked}; SPLIT=${SPLIT:-}
for s in "$@"; do
  nice -n 10 diffax eval --workdir $WD --step $s --config.eval.num_probes=2 \
    --config.sample.num_steps=32 --config.eval.num_samples=2 ${SPLIT:+--config.eval.split=$SPLIT} > /dev/null 2>&1
  python -c "import json; m = json.load(open('$WD/eval/metrics.json'))['nelbo']; \
print($s, round(m['bits_per_token'], 3), round(m['stderr'], 3))"
  cp $WD/eval/metrics.json $WD/eval/metrics_step$s.json
done
