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
# workload = the CPU-scale training step of docs/results.md (configs/cpu-mcl.yaml: ResNet-18 width
# 16, projector 512, 64 images x 4 rotations x 2 views = 512 views, official MCL loss, SGD), the
# whole step including augmentation and the loss, WSTEPS steps (median of the steps after the
# first 2): mcl-dist `train` with THREADS threads and under `mpirun -np THREADS` x 1 thread (step_s
# of metrics.jsonl; data/cifar10-train-1k.mcld from scripts/prepare-data.sh); PyTorch
# bench/pytorch_reference_train.py with THREADS threads, torchvision augmentation in the training
# loop of the one process (no DataLoader workers: they would compete with the 2 compute threads),
# and with --fixed (one batch augmented once: network + loss only). Needs torchvision and PIL.
# With AVX512=1 the OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE variables are unset for the mcl-dist
# runs, so OpenBLAS picks its own (AVX-512) kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
if [ ! -x $VENV/bin/python ]; then
  python3 -m venv $VENV
  $VENV/bin/pip install -q --upgrade pip
  $VENV/bin/pip install -q torch torchvision pillow numpy
fi
BIN=.build/release/mcl-dist
[ -x $BIN ] || swift build -c release --product mcl-dist
MODELS=${MODELS:-resnet18}; BATCHES=${BATCHES:-"64 256"}; THREADS=${THREADS:-2}; REPEAT=${REPEAT:-3}
ENVPREFIX=""
[ "${AVX512:-0}" = 1 ] && ENVPREFIX="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "mcl-dist GEMM: $($ENVPREFIX $BIN info | grep -E "^gemm|^openblas_core" | tr "\n" " ")"
MODES=${MODES:-train}
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to core -np $THREADS -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1"
ips() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["images_per_s"])'; }
WSTEPS=${WSTEPS:-12}
median_step() { python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(statistics.median([r["step_s"] for r in rows[2:]]))' "$1"; }
workload() {
  [ -f data/cifar10-train-1k.mcld ] || bash scripts/prepare-data.sh >/dev/null
  local out; out=$(mktemp -d)
  local ours1=() oursN=() theirs=() fixed=()
  for r in $(seq 1 $REPEAT); do
    $ENVPREFIX $BIN train --config configs/cpu-mcl.yaml --threads $THREADS --out $out/np1 --fresh \
      --set train.max_steps=$WSTEPS --set eval.after_train=false --set train.checkpoint_every=0 >/dev/null 2>&1
    ours1+=("$(median_step $out/np1/metrics.jsonl)")
    $ENVPREFIX $MPIRUN $BIN train --config configs/cpu-mcl.yaml --threads 1 --out $out/npN --fresh \
      --set train.max_steps=$WSTEPS --set eval.after_train=false --set train.checkpoint_every=0 >/dev/null 2>&1
    oursN+=("$(median_step $out/npN/metrics.jsonl)")
    OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_reference_train.py --threads $THREADS --steps $WSTEPS --every 1 > $out/pt.jsonl
    theirs+=("$(median_step $out/pt.jsonl)")
    OMP_NUM_THREADS=$THREADS $VENV/bin/python bench/pytorch_reference_train.py --threads $THREADS --steps $WSTEPS --every 1 --fixed > $out/ptf.jsonl
    fixed+=("$(median_step $out/ptf.jsonl)")
  done
  rm -rf "$out"
  python3 - "$THREADS" "${ours1[*]}" "${oursN[*]}" "${theirs[*]}" "${fixed[*]}" <<'PY'
import sys, statistics as st
t = sys.argv[1]
o1, oN, p, pf = ([512 / float(x) for x in a.split()] for a in sys.argv[2:])
m = st.median
print(f"workload cpu-mcl (512 views/step, whole step): mcl-dist 1 process x {t} threads {m(o1):.1f} views/s, "
      f"mpirun -np {t} x 1 thread {m(oN):.1f} views/s; pytorch {t} threads with augmentation {m(p):.1f} views/s, "
      f"on a fixed batch {m(pf):.1f} views/s; ratios vs pytorch with augmentation {m(o1)/m(p):.2f} (np=1), {m(oN)/m(p):.2f} (np={t}); "
      f"vs fixed batch {m(o1)/m(pf):.2f}, {m(oN)/m(pf):.2f}")
print(f"  runs (views/s): np=1 {[round(x,1) for x in o1]}, np={t} {[round(x,1) for x in oN]}, pytorch {[round(x,1) for x in p]}, fixed {[round(x,1) for x in pf]}")
PY
}
for mode in $MODES; do
  if [ "$mode" = workload ]; then workload; continue; fi
  for m in $MODELS; do for b in $BATCHES; do
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
