#!/bin/bash
# One call on a lent GPU: the fast thesis Depth-Net trained for EPOCHS epochs on synthetic data of NYU's exact
# sizes (72,757 / 8,252 frames, prepped at 128x128), timed epoch by epoch, then the benchmark (its projection of a
# 100-epoch NYU run, now counting one-off costs once) to compare with.  Everything under $OUT.
set -u
export PYTHONUNBUFFERED=1
PY="${PY:-python3}"
TRAIN="${TRAIN:-72757}" TEST="${TEST:-8252}" EPOCHS="${EPOCHS:-8}" PRESET="${PRESET:-experiments/presets/nyu-fast.toml}"
WORK="${WORK:-$PWD/data/nyusize}"
if ls .gpu/*.whl >/dev/null 2>&1 && ! $PY -c "import imagecodecs" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s)
step() { echo "$1 rc=$2 at $(( $(date +%s) - t0 )) s" | tee -a "$OUT/steps.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/card.txt" 2>&1
{ echo "nproc $(nproc)"; free -g | head -2; df -h "$PWD" | tail -1;
  $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__)"; } >> "$OUT/card.txt" 2>&1
rm -rf "$WORK"; mkdir -p "$WORK"
timeout 200 $PY -m hpe synth "$WORK/nyu" --train "$TRAIN" --test "$TEST" --quiet > "$OUT/synth.txt" 2>&1; step synth $?
timeout 150 $PY -m hpe prep "$WORK/nyu" "$WORK/nyu.h5" --quiet > "$OUT/prep.json" 2> "$OUT/prep-log.txt"; step prep $?
timeout 240 $PY -m hpe train experiments/fig4.7/depthnet.toml --preset "$PRESET" --data "$WORK/nyu.h5" \
  --out "$WORK/run" --progress epochs --set max_epochs="$EPOCHS" --set require_learning=false \
  > "$OUT/train.txt" 2>&1; step train $?
cp "$WORK/run/log.csv" "$WORK/run/result.json" "$WORK/run/config.json" "$OUT/" 2>/dev/null
timeout 180 $PY -m hpe bench ${BENCH_ARGS:-} --json "$OUT/bench.json" > /dev/null 2> "$OUT/bench-log.txt"; step bench $?
rm -rf "$WORK"
