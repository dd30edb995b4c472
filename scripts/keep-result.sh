#!/usr/bin/env bash
# Copies a finished run's evidence into docs/results/NAME: report.json/md, config.yaml, loss.csv
# (from metrics.jsonl), loss.png, the 8-way wavg ROC (1-way without SEI) and the histograms;
# with the run's console log (optionally under /usr/bin/time -v) also run-log.txt: the log without
# its per-step lines (training time and images/s, evaluation timings, elapsed time, peak RSS).
# Usage: bash scripts/keep-result.sh runs/cpu-mcl docs/results/cpu-mcl [runs/cpu-mcl.log]
set -euo pipefail
RUN=$1; OUT=$2; LOG=${3:-}
mkdir -p "$OUT"
cp "$RUN/eval/report.json" "$RUN/eval/report.md" "$RUN/config.yaml" "$RUN/loss.png" "$OUT/"
cp "$RUN"/eval/hist-*.png "$OUT/"
if [ -f "$RUN/eval/roc-8way-wavg.png" ]; then cp "$RUN/eval/roc-8way-wavg.png" "$OUT/"; else cp "$RUN"/eval/roc-1way.png "$OUT/"; fi
python3 - "$RUN/metrics.jsonl" "$OUT/loss.csv" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    rows = [json.loads(line) for line in open(sys.argv[1])]
    ce = any("loss_ce" in r for r in rows)  # the cross-entropy objectives log their terms too
    f.write("step,epoch,loss,loss_ccm,loss_spa," + ("loss_ce,loss_rotation," if ce else "") + "lr,images_per_s,step_s\n")
    for r in rows:
        extra = f"{r.get('loss_ce', 0)},{r.get('loss_rotation', 0)}," if ce else ""
        f.write(f"{r['step']},{r['epoch']},{r['loss']},{r['loss_ccm']},{r['loss_spa']},{extra}{r['lr']},{r['images_per_s']},{r['step_s']}\n")
PY
if [ -n "$LOG" ]; then grep -v -E "^epoch [0-9]+/[0-9]+ step " "$LOG" > "$OUT/run-log.txt"; fi
echo "kept $RUN -> $OUT"
