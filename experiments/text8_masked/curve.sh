#!/bin/bash
# Held-out NELBO of the intermediate checkpoints (2 draws per sequence, all 73 test sequences).
cd /work/wt/discrete; source /work/venv/bin/activate; export PYTHONPATH=$PWD DIFFAX_DATA_DIR=/tmp/discrete_data
for s in "$@"; do
  nice -n 10 diffax eval --workdir ${WORKDIR:-/tmp/text8_masked} --step $s --config.eval.num_probes=2 \
    --config.eval.batch_size=8 --config.sample.num_steps=32 --config.eval.num_samples=2 2>&1 | grep -v WARN | grep -A3 "^model"
  cp ${WORKDIR:-/tmp/text8_masked}/eval/metrics.json /tmp/runs/metrics_step$s.json
done
