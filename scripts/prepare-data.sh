#!/usr/bin/env bash
# Unpacks the CIFAR-10 JPEGs and the Tiny-ImageNet 32x32 OOD set from ../shared/data (or $DATA_SRC)
# and packs them with `mcl-dist data prepare` into data/*.mcld for the paper and cpu-* configs.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${DATA_SRC:-../shared/data}
BIN=${BIN:-.build/release/mcl-dist}
mkdir -p data/raw
[ -d data/raw/cifar10 ] || { mkdir -p data/raw/cifar10 && tar -xzf "$SRC/cifar10-jpg.tar.gz" -C data/raw/cifar10; }
[ -d data/raw/tinyimagenet ] || { mkdir -p data/raw/tinyimagenet && tar -xzf "$SRC/tinyimagenet32-test-jpg.tar.gz" -C data/raw/tinyimagenet; }
C10=$(dirname "$(find data/raw/cifar10 -type d -name train | head -1)")
TIN=$(find data/raw/tinyimagenet -type d -name images | head -1)
[ -n "$TIN" ] || TIN=$(find data/raw/tinyimagenet -mindepth 1 -maxdepth 2 -type d | tail -1)
[ -f data/cifar10-train.mcld ] || $BIN data prepare "$C10/train" --out data/cifar10-train.mcld
[ -f data/cifar10-test.mcld ] || $BIN data prepare "$C10/test" --out data/cifar10-test.mcld
[ -f data/cifar10-train-1k.mcld ] || $BIN data prepare "$C10/train" --limit 1000 --out data/cifar10-train-1k.mcld
[ -f data/cifar10-test-2k.mcld ] || $BIN data prepare "$C10/test" --limit 200 --out data/cifar10-test-2k.mcld
[ -f data/tinyimagenet32-test.mcld ] || $BIN data prepare "$TIN" --out data/tinyimagenet32-test.mcld
[ -f data/tinyimagenet32-test-2k.mcld ] || $BIN data prepare "$TIN" --limit 2000 --out data/tinyimagenet32-test-2k.mcld
for f in data/*.mcld; do echo "$f: $($BIN data info "$f" --json | tr -d '\n' | cut -c1-160)"; done
