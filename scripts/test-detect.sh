#!/usr/bin/env bash
# The detector end to end on a tiny Fashion-MNIST model (issue 15): `evaluate` writes
# detector.safetensors; `detect` gives, image by image, exactly evaluate's scores, the same output
# at 1 and 2 ranks, takes images of any size; bad input (a detector of another checkpoint, a
# corrupt detector, an unreadable image, an empty folder) is a clear error or a named skip;
# `embed` writes features of the stated shapes.
# Prints "detect <check> ok|FAIL ..." lines; exit status non-zero on any failure.
set -uo pipefail
BIN=${1:?usage: test-detect.sh path/to/mcl-dist}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MCL_PROGRESS=plain MCL_THREADS=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
status=0
ok() { echo "detect $1 ok $2"; }
fail() { echo "detect $1 FAIL $2"; status=1; }
MPI="mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 -x MCL_PROGRESS"
SRC=/usr/share/datasets/fashion-mnist
$BIN data prepare $SRC --split train --classes 0,1,2 --limit 40 --out "$W/train.mcld" >/dev/null &&
$BIN data prepare $SRC --split test --classes 0,1,2 --limit 20 --out "$W/test.mcld" >/dev/null &&
$BIN data prepare $SRC --split test --classes 7,8 --limit 20 --out "$W/ood.mcld" >/dev/null || { fail prepare "data prepare failed"; exit 1; }
cat > "$W/tiny.yaml" <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16}
data: {train: $W/train.mcld, test: $W/test.mcld, ood: {ood: $W/ood.mcld}, rotations: 4}
train: {batch_size: 32, epochs: 2, max_steps: 18, lr: 0.1, seed: 3, checkpoint_every: 1}
eval: {sei_ways: [1, 8], aggregations: [wavg], calibration_fraction: 0.25}
YAML
$MPI $BIN train --config "$W/tiny.yaml" --out "$W/run" >"$W/train.log" 2>&1 || { fail train "training failed: $(tail -3 "$W/train.log")"; exit 1; }
DET=$W/run/eval/detector.safetensors
CK=$(ls "$W/run/checkpoints/"*.safetensors | tail -1)

# 1. detect on the test set = evaluate's score file, image by image; the threshold's TPR on the
#    held-out images is the one logged.
$MPI $BIN detect --detector "$DET" "$W/test.mcld" --out "$W/test.csv" 2>"$W/det.err"; rc=$?
cmpout=$(python3 - "$W/test.csv" "$W/run/eval/scores-8way-wavg-in.txt" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]))); ref = [float(l) for l in open(sys.argv[2]) if l.strip()]
if len(rows) != len(ref): print("rows %d vs %d scores" % (len(rows), len(ref))); sys.exit(1)
d = max(abs(float(r["score"]) - x) for r, x in zip(rows, ref))
print("%d images, max |score difference| %.3g" % (len(rows), d)); sys.exit(0 if d == 0 else 1)
PY
); crc=$?
if [ $rc -eq 0 ] && [ $crc -eq 0 ] && echo "$cmpout" | grep -q "difference| 0$"; then
  ok scores-equal-evaluate "$cmpout; $(grep -o 'detect: .*out' "$W/det.err")"
else fail scores-equal-evaluate "exit $rc: $cmpout $(tail -1 "$W/det.err")"; fi

# 1b. evaluate drew the decision gallery (a PNG of the stated layout).
if python3 - "$W/run/eval/gallery.png" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR"
w, h = struct.unpack(">II", b[16:24]); print("%dx%d" % (w, h)); sys.exit(0 if w > 500 and h > 600 else 1)
PY
then ok gallery "eval/gallery.png $(python3 -c "import struct,sys;b=open(sys.argv[1],'rb').read();print('%dx%d'%struct.unpack('>II',b[16:24]))" "$W/run/eval/gallery.png")"
else fail gallery "no gallery.png of the expected size in $W/run/eval"; fi

# 2. 1 rank and 2 ranks give byte-identical output; images of any size are taken.
mkdir -p "$W/imgs/sub"
python3 - "$W/imgs" <<'PY'
import struct, sys, zlib
def png(path, w, h, gray=False):
    ch = 1 if gray else 3
    raw = b"".join(b"\0" + bytes(((x * 7 + y * 3 + c * 50) % 256) for x in range(w) for c in range(ch)) for y in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if gray else 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i, (w, h, g) in enumerate([(32, 32, False), (28, 28, True), (64, 48, False), (200, 90, True), (17, 33, False)]):
    png("%s/%s%d.png" % (sys.argv[1], "sub/" if i % 2 else "", i), w, h, g)
PY
# An unreadable file among them (skipped): the blocks are blocks of the input list, not of the
# readable images, so the skip must not shift which images share a forward pass.
printf 'not a PNG' > "$W/unreadable.png"
$BIN detect --detector "$DET" "$W/imgs" "$W/unreadable.png" "$W/ood.mcld" --on-unreadable skip --format jsonl --views --out "$W/one.jsonl" 2>/dev/null; r1=$?
$MPI $BIN detect --detector "$DET" "$W/imgs" "$W/unreadable.png" "$W/ood.mcld" --on-unreadable skip --format jsonl --views --out "$W/two.jsonl" 2>/dev/null; r2=$?
# 1 rank and 2 ranks: byte-identical. Each rank forwards whole blocks of the input list (the
# images of one forward pass), so its GEMMs see exactly the batches of a single rank (a GEMM may
# round a column differently with the batch size: 4.9e-6 relative when the shards were not aligned,
# on an AMD EPYC). On a difference the largest relative one is shown.
diff=$(python3 - "$W/one.jsonl" "$W/two.jsonl" <<'PY'
import json, sys
try:
    a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
    worst = max([abs(p["score"] - q["score"]) / max(1.0, abs(p["score"])) for p, q in zip(a, b)]
                + [abs(x - y) / max(1.0, abs(x)) for p, q in zip(a, b) for x, y in zip(p["view_distances"], q["view_distances"])] + [0.0])
    print("%d vs %d lines, largest relative difference %.1e" % (len(a), len(b), worst))
except Exception as e:
    print("unreadable output: %s" % e)
PY
)
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$(wc -l < "$W/one.jsonl")" = 45 ] && cmp -s "$W/one.jsonl" "$W/two.jsonl"; then
  ok ranks-and-sizes "45 images (PNG 32x32, 28x28 gray, 64x48, 200x90, 17x33 + 40 packed) and 1 unreadable (skipped): 1 rank and 2 ranks give byte-identical JSON Lines (8 view distances each)"
else fail ranks-and-sizes "exits $r1 $r2, not byte-identical: $diff"; fi

# 3. Bad input: a detector of another checkpoint, a corrupt detector, an unreadable image
#    (skipped and named, or fatal with --on-unreadable fail), an empty folder.
other=$(ls "$W/run/checkpoints/"*.safetensors | head -1)
o1=$($BIN detect --detector "$DET" --checkpoint "$other" "$W/imgs" 2>&1 >/dev/null); c1=$?
cp "$DET" "$W/bad.safetensors"; cp "$W/run/eval/detector.json" "$W/bad.json"
python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[-3]^=0x40; open(sys.argv[1],'wb').write(b)" "$W/bad.safetensors"
o2=$($BIN detect --detector "$W/bad.safetensors" "$W/imgs" 2>&1 >/dev/null); c2=$?
printf 'not an image' > "$W/imgs/broken.jpg"
o3=$($BIN detect --detector "$DET" "$W/imgs" 2>&1 >"$W/skip.csv"); c3=$?
o4=$($BIN detect --detector "$DET" "$W/imgs" --on-unreadable fail 2>&1 >/dev/null); c4=$?
mkdir -p "$W/empty"
o5=$($BIN detect --detector "$DET" "$W/empty" 2>&1 >/dev/null); c5=$?
if [ $c1 -eq 2 ] && echo "$o1" | grep -q "was fitted on the checkpoint .*not on $other" \
   && [ $c2 -eq 2 ] && echo "$o2" | grep -q "checksum mismatch" \
   && [ $c3 -eq 0 ] && echo "$o3" | grep -q "skipping $W/imgs/broken.jpg: .*not a JPEG or PNG" && echo "$o3" | grep -q "1 unreadable skipped" \
   && [ "$(wc -l < "$W/skip.csv")" -eq 6 ] && [ $c4 -eq 2 ] && echo "$o4" | grep -q "cannot read $W/imgs/broken.jpg" \
   && [ $c5 -eq 2 ] && echo "$o5" | grep -q "no images in"; then
  ok bad-input "other checkpoint, corrupt detector, unreadable image (skipped / fatal), empty folder: each named"
else fail bad-input "exits $c1 $c2 $c3 $c4 $c5: $(echo "$o1" | tail -1) | $(echo "$o2" | tail -1) | $(echo "$o3" | tail -1) | $(echo "$o4" | tail -1) | $(echo "$o5" | tail -1)"; fi

# 4. embed: [N, V, d] projection (unit rows) and backbone features with the labels.
$MPI $BIN embed --config "$W/tiny.yaml" --checkpoint "$CK" --data "$W/test.mcld" --views 4 --out "$W/emb.safetensors" 2>"$W/emb.err"; rc=$?
if [ $rc -eq 0 ] && python3 - "$W/emb.safetensors" <<'PY'
import json, math, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n
assert h["projection"]["shape"] == [60, 4, 16] and h["backbone"]["shape"] == [60, 4, 64] and h["labels"]["shape"] == [60], h
s, e = h["projection"]["data_offsets"]; p = struct.unpack("<%df" % ((e - s) // 4), b[base + s:base + e])
assert all(abs(math.sqrt(sum(x * x for x in p[i:i + 16])) - 1) < 1e-4 for i in range(0, len(p), 16))
assert json.loads(h["__metadata__"]["class_names"]) == ["T-shirt/top", "Trouser", "Pullover"]
PY
then ok embed "$(cat "$W/emb.err")"; else fail embed "exit $rc: $(tail -2 "$W/emb.err")"; fi
exit $status
