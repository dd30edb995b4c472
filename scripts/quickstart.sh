#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine, install and build, prepare Fashion-MNIST
# (from Debian's dataset-fashion-mnist) as an open-set problem (classes 0-5 in, 6-9 out), train a
# small ResNet-18 with MCL on 2 ranks for a few minutes, evaluate with SEI and print the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN=.build/release/mcl-dist
SRC=/usr/share/datasets/fashion-mnist
mkdir -p data runs
[ -f data/fmnist-train-0to5.mcld ] || $BIN data prepare "$SRC" --split train --classes 0,1,2,3,4,5 --limit 1000 --out data/fmnist-train-0to5.mcld
[ -f data/fmnist-test-0to5.mcld ]  || $BIN data prepare "$SRC" --split test --classes 0,1,2,3,4,5 --out data/fmnist-test-0to5.mcld
[ -f data/fmnist-test-6to9.mcld ]  || $BIN data prepare "$SRC" --split test --classes 6,7,8,9 --out data/fmnist-test-6to9.mcld
RANKS=${RANKS:-2}
CORES=$(nproc)
THREADS=$(( CORES / RANKS > 0 ? CORES / RANKS : 1 ))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Run again, it starts over (the earlier run is kept in runs/quickstart/superseded-<time>/);
# extra arguments (e.g. --resume auto) replace that.
ARGS=("$@"); [ $# -eq 0 ] && ARGS=(--fresh)
start=$(date +%s)
mpirun -np "$RANKS" --oversubscribe --bind-to none -x MCL_THREADS=$THREADS -x OPENBLAS_NUM_THREADS=1 \
  $BIN train --config configs/quickstart.yaml --out runs/quickstart "${ARGS[@]}"
echo "quickstart: done in $(( $(date +%s) - start )) s; report: runs/quickstart/eval/report.md, figures: runs/quickstart/eval/*.png"
