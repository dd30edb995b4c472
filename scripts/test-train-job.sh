#!/usr/bin/env bash
# End-to-end checks of `mcl-dist train` with 2 ranks on a tiny Fashion-MNIST subset:
#  1. resume is bit-exact: a run stopped by SIGTERM and resumed with --resume auto gives the same
#     loss at every step and a byte-identical final checkpoint as an uninterrupted run;
#  2. killing one rank ends the job (non-zero, naming the rank; a job alive 60 s later fails);
#  3. bad config values are rejected naming the key;
#  also: resume agreement across ranks, a stalled rank ends the job, NaN loss, checkpoint mismatch,
#  the supervised baselines (--init of another width, a classifier scorer without a classifier, a run).
# Prints "train-job <check> ok|FAIL ..." lines; exit status non-zero on any failure.
set -uo pipefail
BIN=${1:?usage: test-train-job.sh path/to/mcl-dist}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MCL_PROGRESS=plain
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
status=0
ok() { echo "train-job $1 ok $2"; }
fail() { echo "train-job $1 FAIL $2"; status=1; }
MPI="mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 -x MCL_PROGRESS"
# The rank processes of an mpirun (its children running mcl-dist), by PID.
ranks_of() { for p in $(pgrep -P "$1"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = "mcl-dist" ] && echo "$p"; done; }
# Waits until FILE has at least N lines while process PID runs (a state, not a time; the
# 600-s bound only guards against a hang).
wait_lines() {
  local i
  for i in $(seq 1 6000); do
    [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

$BIN data prepare /usr/share/datasets/fashion-mnist --split train --classes 0,1,2,3,4,5 --limit 16 --out "$W/tiny.mcld" >/dev/null \
  || { fail prepare "data prepare failed"; exit 1; }
cat > "$W/tiny.yaml" <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16}
data: {train: $W/tiny.mcld, rotations: 4}
train: {batch_size: 32, epochs: 2, lr: 0.1, seed: 3, checkpoint_every: 1}
eval: {after_train: false}
YAML

# 1. bit-exact resume
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/full" >"$W/full.log" 2>&1 || fail resume-reference "uninterrupted run failed: $(tail -3 "$W/full.log")"
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/int" >"$W/int.log" 2>&1 &
mp=$!
# Stop it the way Slurm does (SIGTERM to every task) once it has logged 3 steps: wait for that
# state, not for a time. Signalling mpirun instead would let its own kill timer race the ranks'
# last step and checkpoint on a busy machine.
wait_lines "$W/int/metrics.jsonl" 3 $mp
kill -TERM $(ranks_of $mp) 2>/dev/null; wait $mp; rc=$?
stopped=$(wc -l < "$W/int/metrics.jsonl")
if [ $rc -eq 15 ] && grep -q "stopped by signal" "$W/int.log"; then :; else
  fail resume-stop "exit $rc after step $stopped, no 'stopped by signal' message: $(tail -3 "$W/int.log")"; fi
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/int" --resume auto >"$W/res.log" 2>&1 || fail resume-continue "resumed run failed: $(tail -3 "$W/res.log")"
if python3 - "$W/full/metrics.jsonl" "$W/int/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if len(a) == len(b) > 0 and all(x["step"] == y["step"] and x["loss"] == y["loss"] for x, y in zip(a, b)) else 1)
PY
then
  last=$(ls "$W/full/checkpoints" | grep safetensors | tail -1)
  if cmp -s "$W/full/checkpoints/$last" "$W/int/checkpoints/$last"; then
    ok resume-bit-exact "stopped after step $stopped of $(wc -l < "$W/full/metrics.jsonl"), resumed: every loss equal, $last byte-identical"
  else fail resume-bit-exact "final checkpoints differ"; fi
else fail resume-bit-exact "losses differ after resume"; fi

# 1b. resume agreement: rank 0 chooses the checkpoint, every rank loads that file. Rank 1 runs in
# its own mount namespace where the run's checkpoints folder shows an extra, newer checkpoint
# (as a rank with a stale or different view of a shared file system could see): $W/agree/checkpoints
# shows $W/agree-r1/checkpoints there. A 30-s stall deadline and a 300-s bound end a stuck job.
resume_split_view() {
  timeout 300 mpirun --oversubscribe --bind-to none -x MCL_THREADS=1 -x MCL_PROGRESS \
    -np 1 $BIN train --config "$W/tiny.yaml" --out "$W/agree" --resume auto --set job.stall_timeout=30 : \
    -np 1 sh -c "unshare -m sh -c 'mount --bind $W/agree-r1/checkpoints $W/agree/checkpoints && exec $BIN train --config $W/tiny.yaml --out $W/agree --resume auto --set job.stall_timeout=30'"
}
mkdir -p "$W/agree/checkpoints" "$W/agree-r1"
cp "$W/full/config.yaml" "$W/agree/"
cp "$W/full/checkpoints/step-00000012".* "$W/agree/checkpoints/"
cp -r "$W/full/checkpoints" "$W/agree-r1/checkpoints"     # step 12 and the newer step 24
resume_split_view >"$W/agree.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "resumed from .*step-00000012.safetensors at step 12" "$W/agree.log" \
   && cmp -s "$W/full/checkpoints/step-00000024.safetensors" "$W/agree/checkpoints/step-00000024.safetensors"; then
  ok resume-agreement "rank 1 also saw step 24, both loaded rank 0's step 12; final checkpoint byte-identical to the uninterrupted run"
else fail resume-agreement "exit $rc: $(grep -E 'resumed|error' "$W/agree.log" | head -3)"; fi
# ... and a rank whose view of the chosen checkpoint differs ends the job, naming itself and the file.
rm -rf "$W/agree" "$W/agree-r1"; mkdir -p "$W/agree/checkpoints" "$W/agree-r1/checkpoints"
cp "$W/full/checkpoints/step-00000012".* "$W/agree/checkpoints/"
cp "$W/full/checkpoints/step-00000012.json" "$W/agree-r1/checkpoints/"
cp "$W/full/checkpoints/step-00000024.safetensors" "$W/agree-r1/checkpoints/step-00000012.safetensors"   # other bytes under the same name
out=$(resume_split_view 2>&1); rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "rank 1 cannot use the checkpoint rank 0 chose, .*step-00000012.json"; then
  ok resume-disagreement "exit $rc: $(echo "$out" | grep -o 'rank 1 cannot use.*' | head -1 | cut -c1-160)"
else fail resume-disagreement "exit $rc: $(echo "$out" | tail -3)"; fi

# 1c. a stalled rank (SIGSTOP) ends the job: the watchdog's deadline (job.stall_timeout, here 10 s)
# plus rank 0's report; the job must be gone within 60 s (a hang guard, not a timing check). The
# stop lands before or inside the rank's next collective, so the report says it never reached it
# or reached it and fell silent (both the watchdog's designed messages; which one is timing).
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/stall" --set train.epochs=50 --set job.stall_timeout=10 >"$W/stall.log" 2>&1 &
mp=$!
wait_lines "$W/stall/metrics.jsonl" 3 $mp
victim=$(ranks_of $mp | tail -1)
t0=$(date +%s)
kill -STOP "$victim" 2>/dev/null
( sleep 90; kill -KILL $mp 2>/dev/null ) & guard=$!
wait $mp; rc=$?
kill $guard 2>/dev/null
dt=$(( $(date +%s) - t0 ))
if [ $rc -ne 0 ] && [ $dt -lt 60 ] && grep -qE "stall: no progress for [0-9]+ s in .* during step [0-9]+.*(never reached it|reached it and then fell silent|rank 0 did not report)" "$W/stall.log"; then
  ok stalled-rank "exit $rc after ${dt} s: $(grep -o 'rank [0-9]: stall.*' "$W/stall.log" | head -1 | cut -c1-180)"
else fail stalled-rank "exit $rc after ${dt} s: $(grep -i stall "$W/stall.log" | head -2)"; fi
kill -KILL "$victim" 2>/dev/null

# 2. a killed rank ends the job
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/kill" --set train.epochs=50 >"$W/kill.log" 2>&1 &
mp=$!
wait_lines "$W/kill/metrics.jsonl" 2 $mp
victim=$(ranks_of $mp | tail -1)
t0=$(date +%s)
kill -KILL "$victim" 2>/dev/null
( sleep 90; kill -KILL $mp 2>/dev/null ) & guard=$!   # a hang guard, not a timing check
wait $mp; rc=$?
kill $guard 2>/dev/null
dt=$(( $(date +%s) - t0 ))
if [ $rc -ne 0 ] && [ $dt -lt 60 ] && grep -qiE "rank [01]|process rank" "$W/kill.log"; then
  ok kill-one-rank "exit $rc after ${dt} s: $(grep -iE 'rank [01]|process rank' "$W/kill.log" | head -1 | tr -s ' ')"
else fail kill-one-rank "exit $rc after ${dt} s"; tail -5 "$W/kill.log"; fi

# 3. bad config values name the key
out=$($BIN train --config "$W/tiny.yaml" --out "$W/bad" --set train.batch_size=30 2>&1); rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "train.batch_size" && ok bad-config "exit $rc: $(echo "$out" | tail -1)" || fail bad-config "exit $rc: $out"
out=$($BIN train --config "$W/tiny.yaml" --out "$W/bad" --set train.bogus=1 2>&1); rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "train.bogus" && ok unknown-key "exit $rc: $(echo "$out" | tail -1)" || fail unknown-key "exit $rc: $out"
# 4. a non-finite loss (or weights) stops the run, naming the step and the last good checkpoint
out=$($MPI $BIN train --config "$W/tiny.yaml" --out "$W/nan" --set train.lr=1e30 2>&1); rc=$?
# (lr 1e30 makes either the loss or, first, the updated weights non-finite: both stop with exit 4.)
if [ $rc -eq 4 ] && echo "$out" | grep -qE "non-finite (loss .* at step [0-9]+|weights after step [0-9]+).*Last good checkpoint"; then
  ok nan-loss "exit $rc: $(echo "$out" | grep 'non-finite' | head -1)"
else fail nan-loss "exit $rc: $(echo "$out" | grep -iE "non-finite|error" | head -3) $(echo "$out" | tail -2)"; fi

# 5. evaluate with a checkpoint of another model: a clear error naming the tensor and the file
ck=$(ls "$W/full/checkpoints/"*.safetensors | tail -1)
out=$($BIN evaluate --config "$W/tiny.yaml" --checkpoint "$ck" --test "$W/tiny.mcld" --out "$W/ev" --set model.width=16 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "enc.conv1.weight" && echo "$out" | grep -q "$ck"; then
  ok checkpoint-mismatch "exit $rc: $(echo "$out" | tail -1 | cut -c1-200)"
else fail checkpoint-mismatch "exit $rc: $(echo "$out" | tail -2)"; fi

# 7. the supervised baselines end to end (outputs are matched with here-strings: under pipefail,
# `echo "$out" | grep -q` fails when grep exits before echo has written a long output): --init refuses an encoder of another width naming the
# tensor and the file; a classifier scorer asked of a model without a classifier names the scorer
# and the checkpoint; a ce-rotation run from the MCL encoder reports every scorer.
$BIN data prepare /usr/share/datasets/fashion-mnist --split test --classes 6,7,8,9 --limit 8 --out "$W/ood.mcld" >/dev/null \
  || fail prepare-ood "data prepare of the OOD set failed"
cat > "$W/ce.yaml" <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16, classes: 6}
data: {train: $W/tiny.mcld, test: $W/tiny.mcld, ood: {fmnist69: $W/ood.mcld}, rotations: 4}
loss: {kind: ce-rotation}
train: {batch_size: 32, epochs: 1, lr: 0.1, seed: 3, checkpoint_every: 1}
eval: {sei_ways: [1, 4], feature: backbone, scorers: [sei, msp, odin, mahalanobis, rotation], calibration_fraction: 0}
YAML
out=$($BIN train --config "$W/ce.yaml" --out "$W/ce-wide" --init "$ck" --set model.width=16 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "enc.conv1.weight" <<< "$out" && grep -q "$ck" <<< "$out" && [ ! -d "$W/ce-wide/checkpoints" ]; then
  ok init-other-width "exit $rc: $(echo "$out" | grep -m1 train.init | cut -c1-220)"
else fail init-other-width "exit $rc: $(echo "$out" | tail -2)"; fi
out=$($BIN evaluate --config "$W/tiny.yaml" --checkpoint "$ck" --test "$W/tiny.mcld" --out "$W/ev-msp" --set 'eval.scorers=[sei, msp]' 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "'msp'" <<< "$out" && grep -q "$ck" <<< "$out"; then
  ok scorer-needs-classifier "exit $rc: $(echo "$out" | tail -1 | cut -c1-220)"
else fail scorer-needs-classifier "exit $rc: $(echo "$out" | tail -2)"; fi
out=$($BIN train --config "$W/tiny.yaml" --out "$W/msp-mcl" --set eval.after_train=true --set data.test="$W/tiny.mcld" --set 'eval.scorers=[sei, msp]' 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "'msp'" <<< "$out" && [ ! -d "$W/msp-mcl/checkpoints" ]; then
  ok scorer-checked-before-training "exit $rc, nothing trained: $(echo "$out" | tail -1 | cut -c1-160)"
else fail scorer-checked-before-training "exit $rc: $(echo "$out" | tail -2)"; fi
out=$($MPI $BIN train --config "$W/ce.yaml" --out "$W/ce" --init "$ck" 2>&1); rc=$?
rows=$(grep -cE "^\| (msp|odin T=1000 eps=0.0014|mahalanobis|rotation) \| [0-9]" "$W/ce/eval/report.md" 2>/dev/null)
if [ $rc -eq 0 ] && grep -q "train.init: [0-9]* tensors from $ck" <<< "$out" && [ "$rows" = 4 ] && grep -q '"loss_rotation"' "$W/ce/metrics.jsonl"; then
  ok baseline-run "ce-rotation from the MCL encoder, 2 ranks: 4 scorer rows; $(grep -E '^\| msp' "$W/ce/eval/report.md")"
else fail baseline-run "exit $rc, $rows scorer rows: $(echo "$out" | tail -3)"; fi
# evaluate with every post-hoc scorer on 1 rank and on 2 ranks: byte-identical report and score
# files. Each rank scores whole passes (batch / 4 images) and encodes the Mahalanobis training
# features in whole upright forwards, so its GEMMs see a single rank's batches (20 test images,
# 8 OOD and 16 training images: unaligned halves would split passes of 8 and of 32).
$BIN data prepare /usr/share/datasets/fashion-mnist --split test --classes 0,1,2,3,4,5 --limit 20 --out "$W/test20.mcld" >/dev/null \
  || fail prepare-test20 "data prepare of the 20-image test set failed"
ckce=$(ls "$W/ce/checkpoints/"*.safetensors 2>/dev/null | tail -1)
$BIN evaluate --config "$W/ce.yaml" --checkpoint "$ckce" --test "$W/test20.mcld" --out "$W/ev-one" >/dev/null 2>&1; r1=$?
$MPI $BIN evaluate --config "$W/ce.yaml" --checkpoint "$ckce" --test "$W/test20.mcld" --out "$W/ev-two" >/dev/null 2>&1; r2=$?
files="report.json"; for t in 4way-wavg msp odin mahalanobis rotation; do files="$files scores-$t-in.txt scores-$t-fmnist69.txt"; done
same=0; for f in $files; do cmp -s "$W/ev-one/$f" "$W/ev-two/$f" && same=$((same + 1)); done
# On a difference: the largest relative one over the score files (missing files are named).
diff=$(python3 - "$W/ev-one" "$W/ev-two" $files <<'PY'
import os, sys
a, b, names = sys.argv[1], sys.argv[2], sys.argv[4:]
worst, missing = 0.0, []
for n in names:
    try:
        x = [float(v) for v in open(os.path.join(a, n))]; y = [float(v) for v in open(os.path.join(b, n))]
        worst = max([worst] + [abs(p - q) / max(1.0, abs(p)) for p, q in zip(x, y)] + ([float("inf")] if len(x) != len(y) else []))
    except OSError:
        missing.append(n)
print("largest relative score difference %.1e%s" % (worst, "; missing: " + " ".join(missing) if missing else ""))
PY
)
rows=$(grep -cE "^\| (msp|odin T=1000 eps=0.0014|mahalanobis|rotation) \| [0-9]" "$W/ev-one/report.md" 2>/dev/null)
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$rows" = 4 ] && [ $same = 11 ]; then
  ok posthoc-ranks "evaluate with sei, msp, odin, mahalanobis, rotation on 20 test / 8 OOD images: 1 rank and 2 ranks give byte-identical report.json and 10 score files"
else fail posthoc-ranks "exits $r1 $r2, $rows scorer rows, $same of 11 files identical: $diff"; fi

# 6. `mcl-dist metrics` agrees with the golden metrics on the golden scores
GD=${MCL_GOLDEN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/Tests/golden}
for case in $(grep -E "^metrics-" "$GD/CASES.txt"); do
  f=$GD/$case.safetensors
  python3 - "$f" "$W/$case" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n
def arr(name):
    e = h[name]; s, t = e["data_offsets"]; fmt = {"F32": "f", "F64": "d"}[e["dtype"]]
    return struct.unpack("<%d%s" % ((t - s) // struct.calcsize(fmt), fmt), b[base + s:base + t])
for k in ["ind_scores", "ood_scores"]:
    open(sys.argv[2] + "." + k, "w").write("\n".join(repr(float(v)) for v in arr(k)) + "\n")
json.dump({k: arr(k)[0] for k in ["auroc", "aupr_in", "aupr_out", "fpr95"]}, open(sys.argv[2] + ".want", "w"))
PY
  $BIN metrics --in "$W/$case.ind_scores" --ood "$W/$case.ood_scores" --json > "$W/$case.got" 2>&1
  if python3 - "$W/$case.got" "$W/$case.want" <<'PY'
import json, sys
g = json.load(open(sys.argv[1])); w = json.load(open(sys.argv[2]))
err = max(abs(g[k] - w[k]) / max(abs(w[k]), 1e-9) for k in w)
print("%.3e" % err); sys.exit(0 if err <= 1e-5 else 1)
PY
  then ok "metrics-cli-$case" "max rel err $(python3 -c "import json;g=json.load(open('$W/$case.got'));w=json.load(open('$W/$case.want'));print('%.2e'%max(abs(g[k]-w[k])/max(abs(w[k]),1e-9) for k in w))")"
  else fail "metrics-cli-$case" "$(cat "$W/$case.got")"; fi
done
exit $status
