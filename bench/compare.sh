#!/usr/bin/env bash
# Side-by-side training-step throughput: mcl-dist vs PyTorch (CPU) on the same model, batch and
# threads, alternating runs in one session so machine noise hits both. PyTorch is installed into
# bench/.venv (never part of the tests). Usage:
#   bash bench/compare.sh                       # ResNet-18, batch 64 and 256, 2 threads
#   MODELS="resnet18 resnet34" BATCHES="64" THREADS=2 REPEAT=3 bash bench/compare.sh
# With AVX512=1 the OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE variables are unset for the mcl-dist
# runs, so OpenBLAS picks its own (AVX-512) kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
if [ ! -x $VENV/bin/python ]; then
  python3 -m venv $VENV
  $VENV/bin/pip install -q --upgrade pip
  $VENV/bin/pip install -q torch
fi
BIN=.build/release/mcl-dist
[ -x $BIN ] || swift build -c release --product mcl-dist
MODELS=${MODELS:-resnet18}; BATCHES=${BATCHES:-"64 256"}; THREADS=${THREADS:-2}; REPEAT=${REPEAT:-3}
ENVPREFIX=""
[ "${AVX512:-0}" = 1 ] && ENVPREFIX="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "OpenBLAS core for mcl-dist: $($ENVPREFIX $BIN info | grep openblas_core)"
for m in $MODELS; do for b in $BATCHES; do
  ours=(); theirs=()
  for r in $(seq 1 $REPEAT); do
    ours+=("$($ENVPREFIX $BIN bench --model $m --batch $b --threads $THREADS --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])')")
    theirs+=("$(OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_resnet.py --model $m --batch $b --threads $THREADS | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])')")
  done
  python3 - "$m" "$b" "$THREADS" "${ours[*]}" "${theirs[*]}" <<'PY'
import sys, statistics as st
m, b, t, o, p = sys.argv[1:]
o = [float(x) for x in o.split()]; p = [float(x) for x in p.split()]
print(f"{m} batch {b} threads {t}: mcl-dist {st.median(o):.1f} img/s, pytorch {st.median(p):.1f} img/s, ratio {st.median(o)/st.median(p):.2f}  (runs {o} vs {p})")
PY
done; done
