#!/usr/bin/env bash
# Side-by-side training-step throughput: mcl-dist vs PyTorch (CPU) on the same model, batch and
# threads, alternating runs in one session so machine noise hits both. PyTorch is installed into
# bench/.venv (never part of the tests). Usage:
#   bash bench/compare.sh                       # ResNet-18, batch 64 and 256, 2 threads
#   MODELS="resnet18 resnet34" BATCHES="64" THREADS=2 REPEAT=3 bash bench/compare.sh
#   MODES="train mpi inference" bash bench/compare.sh
# MODES: train = one mcl-dist process with THREADS threads; mpi = `mpirun -np THREADS` ranks of one
# thread each (the batch split across ranks, gradients summed with MPI_Allreduce); inference =
# eval-mode forward. PyTorch always runs one process with THREADS threads on the same global batch.
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
MODES=${MODES:-train}
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to core -np $THREADS -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1"
ips() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["images_per_s"])'; }
for mode in $MODES; do for m in $MODELS; do for b in $BATCHES; do
  ours=(); theirs=()
  for r in $(seq 1 $REPEAT); do
    case $mode in
      train) ours+=("$($ENVPREFIX $BIN bench --model $m --batch $b --threads $THREADS --json | ips)")
             theirs+=("$(OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_resnet.py --model $m --batch $b --threads $THREADS | ips)");;
      mpi) ours+=("$($ENVPREFIX $MPIRUN $BIN bench --model $m --batch $b --threads 1 --json | ips)")
           theirs+=("$(OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_resnet.py --model $m --batch $b --threads $THREADS | ips)");;
      inference) ours+=("$($ENVPREFIX $BIN bench --inference --model $m --batch $b --threads $THREADS --json | ips)")
                 theirs+=("$(OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_resnet.py --inference --model $m --batch $b --threads $THREADS | ips)");;
    esac
  done
  python3 - "$mode" "$m" "$b" "$THREADS" "${ours[*]}" "${theirs[*]}" <<'PY'
import sys, statistics as st
mode, m, b, t, o, p = sys.argv[1:]
o = [float(x) for x in o.split()]; p = [float(x) for x in p.split()]
who = f"mpirun -np {t} x 1 thread" if mode == "mpi" else f"{t} threads"
print(f"{mode:9s} {m} batch {b}: mcl-dist ({who}) {st.median(o):.1f} img/s, pytorch ({t} threads) {st.median(p):.1f} img/s, ratio {st.median(o)/st.median(p):.2f}  (runs {[round(x,1) for x in o]} vs {[round(x,1) for x in p]})")
PY
done; done; done
