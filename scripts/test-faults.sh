#!/usr/bin/env bash
# Faults a long training job meets and hostile input it is given (issue 18), end to end on the
# binary, with a tiny Fashion-MNIST subset (1 or 2 ranks):
#   resume never destroys a run (changed keys refused naming them, byte-identical files after;
#   more epochs continue; --fresh keeps the old run), one job per run folder (lock, stale lock),
#   a full disk (checkpoint and metrics.jsonl on a small tmpfs: exit 6, a message naming the file,
#   the previous checkpoint intact and evaluated), a corrupt checkpoint skipped by --resume auto,
#   non-finite weights stopped and refused, images of another size refused, unclear inputs named.
# Prints "fault <check> ok|FAIL|skipped ..." lines; exit status non-zero on any failure.
set -uo pipefail
BIN=${1:?usage: test-faults.sh path/to/mcl-dist}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MCL_PROGRESS=plain MCL_THREADS=1
W=$(mktemp -d)
MOUNTS=()
cleanup() { for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT
status=0
ok() { echo "fault $1 ok $2"; }
fail() { echo "fault $1 FAIL $2"; status=1; }
skip() { echo "fault $1 skipped $2"; }
MPI="mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 -x MCL_PROGRESS"
# sha256 of every file of a run folder but the lock, by relative path.
digest() { (cd "$1" && find . -type f ! -name .mcl-dist.lock | sort | xargs sha256sum); }
# Mounts a tmpfs of SIZE at DIR (root only); returns non-zero when it cannot.
small_disk() { mkdir -p "$2" && mount -t tmpfs -o "size=$1" tmpfs "$2" 2>/dev/null && MOUNTS+=("$2"); }

$BIN data prepare /usr/share/datasets/fashion-mnist --split train --classes 0,1,2,3,4,5 --limit 16 --out "$W/tiny.mcld" >/dev/null \
  || { fail prepare "data prepare failed"; exit 1; }
cat > "$W/tiny.yaml" <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16}
data: {train: $W/tiny.mcld, rotations: 4}
train: {batch_size: 32, epochs: 2, lr: 0.1, seed: 3, checkpoint_every: 1}
eval: {after_train: false}
YAML
# The reference run: 2 ranks, 24 steps, checkpoints at steps 12 and 24.
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/run" >"$W/run.log" 2>&1 || { fail reference "training failed: $(tail -3 "$W/run.log")"; exit 1; }

# 1. --resume auto with a changed training key: refused naming the key, old -> new; every file of
#    the run byte-identical afterwards (before: a fresh start overwrote checkpoints and config).
cp -a "$W/run" "$W/keep"
before=$(digest "$W/keep")
out=$($BIN train --config "$W/tiny.yaml" --out "$W/keep" --resume auto --set train.lr=0.2 --set train.seed=5 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "train.lr: 0.1 -> 0.2; train.seed: 3 -> 5" && [ "$before" = "$(digest "$W/keep")" ]; then
  ok resume-refuses-changed-keys "exit $rc, $(digest "$W/keep" | wc -l) files unchanged: $(echo "$out" | grep -o 'these keys differ: train.lr[^C]*' | head -1)"
else fail resume-refuses-changed-keys "exit $rc: $(echo "$out" | tail -2)"; fi

# 2. ... but more epochs continue the run (logged), keeping the old checkpoints.
old12=$(sha256sum < "$W/keep/checkpoints/step-00000012.safetensors")
out=$($BIN train --config "$W/tiny.yaml" --out "$W/keep" --resume auto --set train.epochs=3 --set train.max_steps=26 2>&1); rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "changed keys: train.epochs: 2 -> 3; train.max_steps: 0 -> 26" \
   && echo "$out" | grep -q "resumed from .*step-00000024.safetensors at step 24" && [ -f "$W/keep/checkpoints/step-00000026.json" ] \
   && [ "$old12" = "$(sha256sum < "$W/keep/checkpoints/step-00000012.safetensors")" ]; then
  ok resume-extends-run "exit 0: $(echo "$out" | grep -o 'changed keys: .*' | head -1); steps 24 -> 26, step 12 and 24 kept"
else fail resume-extends-run "exit $rc: $(echo "$out" | grep -E 'resum|error' | head -3)"; fi

# 3. A plain train into a folder holding a run is refused; --fresh moves the run aside intact.
before=$(digest "$W/keep")
out=$($BIN train --config "$W/tiny.yaml" --out "$W/keep" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "already holds a run" && [ "$before" = "$(digest "$W/keep")" ]; then
  out=$($BIN train --config "$W/tiny.yaml" --out "$W/keep" --fresh --set train.max_steps=1 2>&1); rc=$?
  moved=$(ls -d "$W/keep"/superseded-* 2>/dev/null | head -1)
  if [ $rc -eq 0 ] && [ -n "$moved" ] && [ "$before" = "$(digest "$moved")" ] && [ -f "$W/keep/checkpoints/step-00000001.json" ]; then
    ok fresh-keeps-old-run "refused without --fresh (exit 2); with --fresh the old run's $(echo "$before" | wc -l) files are byte-identical in $(basename "$moved")"
  else fail fresh-keeps-old-run "exit $rc: $(echo "$out" | tail -2)"; fi
else fail fresh-keeps-old-run "not refused (exit $rc): $(echo "$out" | tail -1)"; fi

# 4. One job per run folder: a second one is refused naming the first's PID; after the first is
#    killed, its stale lock is reported and taken over.
$BIN train --config "$W/tiny.yaml" --out "$W/lock" --set train.epochs=50 >"$W/lock.log" 2>&1 &
first=$!
for i in $(seq 1 600); do [ -s "$W/lock/metrics.jsonl" ] && break; kill -0 $first 2>/dev/null || break; sleep 0.1; done
# (bounded: were the lock ignored, this second job would train its 50 epochs)
out=$(timeout 120 $BIN train --config "$W/tiny.yaml" --out "$W/lock" --resume auto --set train.epochs=50 2>&1); rc=$?
kill -KILL $first 2>/dev/null; wait $first 2>/dev/null
out2=$($BIN train --config "$W/tiny.yaml" --out "$W/lock" --resume auto --set train.epochs=50 --set train.max_steps=1 2>&1); rc2=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "in use by another training job (pid $first on host" \
   && [ $rc2 -eq 0 ] && echo "$out2" | grep -q "stale lock .*pid $first"; then
  ok run-folder-lock "second job refused (exit $rc): $(echo "$out" | grep -o 'in use by .*' | cut -c1-90); after kill -9: $(echo "$out2" | grep -o 'a stale lock.*' | cut -c1-60)"
else fail run-folder-lock "exit $rc / $rc2: $(echo "$out" | tail -1) / $(echo "$out2" | grep -iE 'lock|error' | head -2)"; fi

# 5. A full disk at a checkpoint (a 2.2 MB tmpfs holds one 1.4 MB checkpoint, not two): exit 6 on
#    2 ranks, a message naming the file and the reason, no temporary file left, the step-12
#    checkpoint intact: verified, then evaluated (report written elsewhere).
if small_disk 2200k "$W/disk"; then
  $MPI $BIN train --config "$W/tiny.yaml" --out "$W/disk/run" >"$W/disk.log" 2>&1; rc=$?
  ck="$W/disk/run/checkpoints/step-00000012.safetensors"
  left=$(find "$W/disk" -name '*.tmp-*' | wc -l)
  if [ $rc -eq 6 ] && grep -q "step-00000024.safetensors: write failed .*No space left on device" "$W/disk.log" && [ "$left" -eq 0 ] \
     && $BIN checkpoint verify "$ck" >/dev/null 2>&1 \
     && $BIN evaluate --config "$W/tiny.yaml" --checkpoint "$ck" --test "$W/tiny.mcld" --out "$W/disk-eval" --set eval.sei_ways=[1] >"$W/disk-eval.log" 2>&1 \
     && [ -f "$W/disk-eval/report.md" ]; then
    ok full-disk-checkpoint "exit $rc: '$(grep -o 'the checkpoint of step 24.*' "$W/disk.log" | cut -c1-150)...'; step 12 verified and evaluated"
  else fail full-disk-checkpoint "exit $rc, $left temp files: $(grep -E 'mcl-dist' "$W/disk.log" | head -2) $(tail -1 "$W/disk-eval.log" 2>/dev/null)"; fi
  # ... and at metrics.jsonl (a 64 KB tmpfs nearly filled): exit 6 naming the file, every line whole.
  if small_disk 64k "$W/small"; then
    dd if=/dev/zero of="$W/small/fill" bs=4k count=13 2>/dev/null
    $BIN train --config "$W/tiny.yaml" --out "$W/small/run" --set train.checkpoint_every=0 --set train.epochs=5 >"$W/small.log" 2>&1; rc=$?
    lines=$(wc -l < "$W/small/run/metrics.jsonl" 2>/dev/null || echo 0)
    if [ $rc -eq 6 ] && grep -q "metrics.jsonl: cannot write the line of step [0-9]*: No space left on device" "$W/small.log" \
       && python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]; b=open(sys.argv[1],'rb').read(); sys.exit(0 if b == b'' or b.endswith(b'\n') else 1)" "$W/small/run/metrics.jsonl"; then
      ok full-disk-metrics "exit $rc after $lines whole lines: $(grep -o 'metrics.jsonl: cannot.*device' "$W/small.log" | head -1)"
    else fail full-disk-metrics "exit $rc, $lines lines: $(grep mcl-dist "$W/small.log" | tail -2)"; fi
  else skip full-disk-metrics "cannot mount a tmpfs (needs root)"; fi
else skip full-disk-checkpoint "cannot mount a tmpfs (needs root)"; skip full-disk-metrics "cannot mount a tmpfs (needs root)"; fi

# 6. A corrupt checkpoint (one flipped payload bit): `checkpoint verify` names the tensor and the
#    checksum; --resume auto skips it (saying why) and resumes from the one before.
cp -a "$W/run" "$W/corrupt"
python3 - "$W/corrupt/checkpoints/step-00000024.safetensors" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-5] ^= 0x10; open(sys.argv[1], "wb").write(b)
PY
out=$($BIN checkpoint verify "$W/corrupt/checkpoints/step-00000024.safetensors" 2>&1); rc=$?
out2=$($BIN train --config "$W/tiny.yaml" --out "$W/corrupt" --resume auto --set train.max_steps=13 2>&1); rc2=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "checksum mismatch" && [ $rc2 -eq 0 ] \
   && echo "$out2" | grep -q "skipping checkpoint step-00000024: .*checksum mismatch" && echo "$out2" | grep -q "resumed from .*step-00000012.safetensors at step 12"; then
  ok corrupt-checkpoint "verify exit $rc: $(echo "$out" | grep -o "tensor '.*" | cut -c1-90); resume auto fell back to step 12"
else fail corrupt-checkpoint "verify exit $rc: $(echo "$out" | tail -1) / resume exit $rc2: $(echo "$out2" | grep -E 'skipping|resumed|error' | head -2)"; fi

# 7. Non-finite weights: lr 1e12 stops the run (exit 4) and saves no non-finite tensor; a
#    checkpoint with a NaN weight (checksum updated, so only the value is wrong) is refused.
out=$($BIN train --config "$W/tiny.yaml" --out "$W/lr" --set train.lr=1e12 --set train.max_steps=6 2>&1); rc=$?
bad=0; for f in "$W/lr/checkpoints"/*.safetensors; do [ -f "$f" ] && { $BIN checkpoint verify "$f" >/dev/null 2>&1 || bad=$((bad + 1)); }; done
if [ $rc -eq 4 ] && echo "$out" | grep -qE "non-finite (weights|loss)" && [ $bad -eq 0 ]; then
  ok nonfinite-stops "exit $rc: $(echo "$out" | grep -oE 'non-finite (weights|loss).*' | head -1 | cut -c1-110)"
else fail nonfinite-stops "exit $rc, $bad bad checkpoints: $(echo "$out" | tail -2)"; fi
python3 - "$W/run/checkpoints/step-00000012.safetensors" "$W/nan.safetensors" <<'PY'
import json, struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
name = "enc.conv1.weight"; s, e = h[name]["data_offsets"]; base = 8 + n
b[base + s:base + s + 4] = struct.pack("<f", float("nan"))
h["__metadata__"]["crc32:" + name] = "%08x" % zlib.crc32(bytes(b[base + s:base + e]))
hj = json.dumps(h, separators=(",", ":")).encode(); hj += b" " * (-len(hj) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hj)) + hj + bytes(b[base:]))
PY
out=$($BIN evaluate --config "$W/tiny.yaml" --checkpoint "$W/nan.safetensors" --test "$W/tiny.mcld" --out "$W/nan-eval" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "tensor 'enc.conv1.weight' holds NaN or infinity"; then
  ok nonfinite-refused "exit $rc: $(echo "$out" | grep -o "tensor 'enc.conv1.weight'.*" | head -1)"
else fail nonfinite-refused "exit $rc: $(echo "$out" | tail -1)"; fi

# 8. A valid packed file of 16x16 images: `data info` shows it, training refuses it naming the
#    sizes (before: a segfault in the step, or misread bytes for 64x64).
python3 - "$W/small16.mcld" <<'PY'
import struct, sys, zlib
n, side, names = 4, 16, b"a\nb\n"
header = (108 + len(names) + 63) // 64 * 64
images = bytes((i * 7) % 256 for i in range(n * 3 * side * side))
labels_at = (header + len(images) + 7) // 8 * 8
b = bytearray(labels_at + 4 * n)
b[0:8] = b"MCLDSET\0"; struct.pack_into("<IIQIIII", b, 8, 1, header, n, 3, side, side, 2)
struct.pack_into("<6d", b, 56, *([0.5] * 3 + [0.25] * 3)); struct.pack_into("<I", b, 104, len(names)); b[108:108 + len(names)] = names
b[header:header + len(images)] = images; struct.pack_into("<4i", b, labels_at, 0, 1, 0, 1)
struct.pack_into("<Q", b, 40, zlib.crc32(bytes(b[48:]), zlib.crc32(bytes(b[:40]))))
open(sys.argv[1], "wb").write(b)
PY
info=$($BIN data info "$W/small16.mcld" 2>&1); irc=$?
out=$($BIN train --config "$W/tiny.yaml" --out "$W/geo" --set data.train="$W/small16.mcld" 2>&1); rc=$?
if [ $irc -eq 0 ] && echo "$info" | grep -q "\[3, 16, 16\]" && [ $rc -eq 2 ] && echo "$out" | grep -q "data.train: holds images of \[3, 16, 16\] but the model reads \[3, 32, 32\]"; then
  ok other-image-size "data info ok, train exit $rc: $(echo "$out" | grep -o 'data.train: holds.*32\]')"
else fail other-image-size "info exit $irc, train exit $rc: $(echo "$out" | tail -1)"; fi

# 9. Unclear inputs get clear messages: data.train a folder, --out an existing file, a value
#    beyond its bound, a duplicated section, and nothing is left behind.
out=$($BIN train --config "$W/tiny.yaml" --out "$W/m1" --set data.train="$W" 2>&1); rc1=$?
out2=$($BIN train --config "$W/tiny.yaml" --out "$W/tiny.yaml" 2>&1); rc2=$?
out3=$($BIN train --config "$W/tiny.yaml" --out "$W/m3" --set model.width=100000 2>&1); rc3=$?
printf 'train: {lr: 0.5, seed: 9}\n' | cat "$W/tiny.yaml" - > "$W/dup.yaml"
out4=$($BIN train --config "$W/dup.yaml" --out "$W/m4" 2>&1); rc4=$?
if [ $rc1 -eq 2 ] && echo "$out" | grep -q "$W: is a folder, not a packed data set file" && [ $rc2 -eq 2 ] && echo "$out2" | grep -q "is a file, not a folder" \
   && [ $rc3 -eq 2 ] && echo "$out3" | grep -q "model.width: expected an integer from 1 to 1024, got '100000'" \
   && [ $rc4 -eq 2 ] && echo "$out4" | grep -q "duplicate key 'train'" && [ ! -e "$W/m1" ] && [ ! -e "$W/m3" ] && [ ! -e "$W/m4" ]; then
  ok clear-messages "folder as data, file as --out, width 100000, duplicated train: section: each exit 2 naming it, nothing written"
else fail clear-messages "exits $rc1 $rc2 $rc3 $rc4: $(echo "$out" | tail -1) | $(echo "$out2" | tail -1) | $(echo "$out3" | tail -1) | $(echo "$out4" | tail -1)"; fi
exit $status
