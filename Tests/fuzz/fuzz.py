#!/usr/bin/env python3
"""File-format fuzzer for mcl-dist: seeded, deterministic, time-bounded. Python 3 stdlib only.

USAGE
  python3 Tests/fuzz/fuzz.py --bin PATH/mcl-dist [--seed 1] [--seconds 180] [--per-format 200]
                             [--work DIR] [--formats idx,cifar,...] [--keep] [--mem-limit-mb 4096] [-v]

  --seconds is the wall-time budget of the whole fuzzing phase (seed making excluded). It is
  split evenly across the selected formats (each format gets (time left) / (formats left), so a
  format that finishes early under --per-format leaves its time to the next ones). A format stops
  when its share is used or --per-format inputs were tried. A run that is still going when the
  budget ends is cut (killed) 10 s after the budget, reported as "cut" and not counted.
  --work DIR keeps everything in DIR; without it a temporary folder is used and removed at the
  end, unless --keep is given or some input failed (then the failures must survive).
  Each mutated input i of a format is generated from its own random.Random seeded by the i-th
  64-bit draw of random.Random(seed ^ crc32(format name)), so a given --seed always produces the
  same inputs, independent of timing (only the number of inputs tried depends on the time).

RUNS
  Every run is one process (no mpirun) started in a fresh case folder (inputs under in/, outputs
  under out/), in its own session (start_new_session) so that a timeout kills the whole process
  group, with stdin=/dev/null, an address-space limit (--mem-limit-mb, so that a huge allocation
  cannot take the machine down) and the environment MCL_THREADS=1 OPENBLAS_NUM_THREADS=1
  MCL_PROGRESS=plain OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  OMPI_MCA_rmaps_base_oversubscribe=1. Timeout: 20 s (train / evaluate: 60 s).
  The first inputs of every format are the unmutated seeds (a "note:" line is printed when a seed
  is not accepted: that usually means the driver, not the binary, needs attention).

CLASSIFICATION (per run)
  hang      the timeout expired (the process group was killed).
  crash     killed by a signal (returncode < 0), or exit >= 126 (Swift traps give 132/133/134/139;
            MPI_Abort of a singleton other codes), or a crash marker in stderr/stdout of a failing
            run ("Fatal error", "Illegal instruction", "Stack dump", "Segmentation fault",
            "Current stack trace", "precondition", "Assertion failed", "arithmetic overflow",
            "Not enough bits", "Aborted", "core dumped", "signal"), or exit 1..125 with an empty
            stderr or a stderr without a human message (no line containing "error" or
            "mcl-dist:", any case) -- reported as "no-message" --, or an error message that echoes
            too much input (a stderr line > 2000 characters or > 64 KB of stderr; reported as
            "long-message"; checked for every format, it was asked for yaml).
  partial   after a NON-zero exit, the command's output file exists (data prepare: out/o.mcld), or
            at any exit, a temporary file ".*.tmp-*" is left anywhere in the case folder (e.g. in
            out/ev after a failed evaluate or in the run folder after a failed train).
  clean-error  exit 1..125 with a human message and none of the above.
  accepted  exit 0 (and no leftover temporary file).
  crash, no-message, long-message count as "crashes"; crashes + hangs + partial > 0 is a FAIL.

OUTPUT (stdout; progress goes sparsely to stderr)
  Per format exactly one line starting with "fuzz ", then indented detail lines:
    fuzz <format> ok tried 150 clean-errors 120 accepted 30 crashes 0 hangs 0 partial 0 (12.3 s)
    fuzz <format> FAIL tried 150 clean-errors 118 accepted 30 crashes 2 hangs 0 partial 0 (12.3 s)
      crash: WORK/failures/<format>-<n>.<ext>: exit 132 (killed by SIGILL): <most telling stderr line> [at File.swift:L]
        mutation: <what was done to the seed>
        repro: (cd WORK/failures/<format>-<n> && ... mcl-dist ...)
        (3 more like it: <format>-4.<ext>, ...)
  and finally
    fuzz-total tried N clean-errors .. accepted .. crashes .. hangs .. partial .. wall S s
  The detail lines show the first failure of each distinct kind (kind + the first project source
  location of the Swift backtrace, or the message with its numbers blanked), at most 5 kinds.
  A signal death is shown as its shell exit status 128 + N. "note:" lines report a seed that was
  not accepted, and a run cut at the end of the budget. With -v, one stderr line per input.
  Exit status: 0 iff no failures (2 for a setup error, e.g. a seed that cannot be made).
  Every failing input is saved as WORK/failures/<format>-<n>.<ext> (the mutated file) and
  WORK/failures/<format>-<n>/ (the whole case folder, pristine inputs, plus _stdout.log /
  _stderr.log of the failing run); WORK/failures/INDEX.txt lists them all with their repro lines.

FORMATS, SEEDS AND COMMANDS (seeds are made in WORK/seeds at start-up)
  idx        Fashion-MNIST IDX pair (first 64 t10k images from /usr/share/datasets/fashion-mnist,
             uncompressed, x-images-idx3-ubyte / x-labels-idx1-ubyte; synthetic 28x28 images when
             that folder is absent). Header fields (images 0,4,8,12; labels 0,4), label bytes,
             gzip-compressed and corrupt gzip variants, missing labels file.
             `mcl-dist data prepare in/x-images-idx3-ubyte --out out/o.mcld`
  cifar      CIFAR-10 binary data_batch_1.bin, 20 records of 1 + 3072 bytes. Labels, record counts,
             CIFAR-100 / ambiguous file names. `mcl-dist data prepare in/data_batch_1.bin --out out/o.mcld`
  jpeg       Tests/fuzz/seeds/a.jpg, b.jpg (32x32 baseline JPEGs from CIFAR-10 and Tiny ImageNet).
             SOF/DQT/DHT/SOS fields and lengths, marker types, segment removal/duplication,
             truncation and bit flips inside the scan, RST markers.
             `mcl-dist data prepare in --out out/o.mcld` (in/ holds only img.jpg)
  png        PNGs written here: 32x32 RGB, 28x28 gray, 40x24 gray (refused: not 32x32), 28x28
             4-bit palette + tRNS, 32x32 RGBA 16-bit Adam7. IHDR fields, chunk lengths, CRCs (recomputed 3/4 of the time so the
             mutation reaches the decoder), filter bytes, IDAT truncation/splitting, zlib damage.
             `mcl-dist data prepare in --out out/o.mcld` (in/ holds only img.png)
  mcld       `mcl-dist data prepare` of the idx seed (64 images of [3,32,32]). Header fields
             (version, header size, count, C/H/W/K, names length), mean/std, names, labels, and
             consistent files of other shapes/counts/classes; the CRC-32 at byte 40 is recomputed
             for half of the structured mutations. `mcl-dist data info in/data.mcld [--json]`;
             1 in 8: `mcl-dist train --config cfg.yaml --out out/run` (tiny config, max_steps 1).
  checkpoint run/checkpoints/step-00000002.{safetensors,json} of a 2-step run of the tiny config
             on the mcld seed. safetensors: header length, shapes, offsets, dtypes, duplicate /
             missing tensors, metadata, payload bit flips, NaN/Inf in a float tensor; JSON state:
             step, weights (other name, ../../etc/passwd, missing ...), other fields.
             If `mcl-dist checkpoint verify --help` shows that subcommand:
               `mcl-dist checkpoint verify run/checkpoints/<file>` for most inputs,
               1 in 10 weights inputs: `mcl-dist evaluate --config cfg.yaml --checkpoint
               run/checkpoints/step-00000002.safetensors --test s.mcld --out out/ev --set eval.sei_ways=[1]`;
             without it, evaluate for every weights input, and for state inputs train --resume
             (4 in 5) or evaluate --checkpoint <state.json> (1 in 5).
             1 in 10 of all inputs: `mcl-dist train --config cfg.yaml --out run --resume auto` (or
             --resume run/checkpoints/<file>) on the copied run folder holding the mutated file.
             NOTE: the resume runs use the seed's own config (max_steps 2), not --set
             train.max_steps=3: the training-config hash covers max_steps, so with 3 the resume
             silently skips the checkpoint and never reads it. With max_steps 2 the checkpoint is
             loaded (weights and state) and the run ends with 0 steps, which is also cheap.
  yaml       tiny config and a fuller one (data.test, data.ood, loss, eval, job keys). Values set to
             huge/negative/float/string/list/map/null/tagged, unknown/duplicate/missing keys and
             sections, alias bombs (5-12 levels, fan-out 2-10), 1-10 MB values, 1000-deep nesting,
             tabs, invalid UTF-8, BOM, CRLF, NUL, truncation.
             `mcl-dist plan --config cfg.yaml --ranks 2 --views-per-s 1000` (the throughput given,
             so that plan parses and estimates without a benchmark);
             1 in 10: `mcl-dist train --config cfg.yaml --out out/run --set train.max_steps=1`.
  detector   detector.safetensors written by `evaluate` on the checkpoint seed (half the training
             images held out). Unstructured mutations, header length, fields of the mcl_detector
             JSON set to huge/negative/wrong-typed values or removed, a tensor value set to
             NaN/Inf/1e308 with its checksum updated.
             `mcl-dist detect --detector det.safetensors --checkpoint run/checkpoints/W img.png`
  scores     two files of 200 random floats. CRLF/CR, empty, NaN/inf spellings, non-numbers, huge
             lines, NUL, truncation mid-number, 10^6 lines, invalid UTF-8.
             `mcl-dist metrics --in in/a.txt --ood in/b.txt [--json]`

Mutations are roughly half unstructured (truncation incl. 0 bytes and header-only, 1-8 bit
flips, overwritten byte runs, deleted/duplicated runs, appended garbage) and half format-aware.
"""

import argparse
import fnmatch
import gzip
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
COMMITTED_SEEDS = os.path.join(HERE, "seeds")
FMNIST = "/usr/share/datasets/fashion-mnist"

ALL_FORMATS = ["idx", "cifar", "jpeg", "png", "mcld", "checkpoint", "detector", "yaml", "scores"]

CRASH_MARKERS = ["Fatal error", "Illegal instruction", "Stack dump", "Segmentation fault",
                 "Current stack trace", "precondition", "Assertion failed", "arithmetic overflow",
                 "Not enough bits", "Aborted", "core dumped", "signal"]

RUN_ENV = {"MCL_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MCL_PROGRESS": "plain",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}

TIMEOUT = 20
SLOW_TIMEOUT = 60
LONG_LINE = 2000
LONG_STDERR = 64 * 1024
CUT_GRACE = 10

U32_SPECIAL = [0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0x80000001,
               0xFFFFFFFE, 0xFFFFFFFF]
U64_SPECIAL = [0, 1, 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40 - 1, 2**40, 2**62, 2**63 - 1,
               2**63, 2**63 + 1, 2**64 - 2, 2**64 - 1]

TINY_CONFIG = ("model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16}\n"
               "data: {train: %s, rotations: 4}\n"
               "train: {batch_size: 16, epochs: 1, max_steps: %d, lr: 0.1, seed: 3%s}\n"
               "eval: {after_train: false}\n")


def tiny_config(data="s.mcld", max_steps=1, extra=""):
    return TINY_CONFIG % (data, max_steps, extra)


CHECKPOINT_CONFIG = tiny_config("s.mcld", 2, ", checkpoint_every: 1")


def stable_int(name):
    return zlib.crc32(name.encode("utf-8"))


def align(x, a):
    return (x + a - 1) // a * a


# --------------------------------------------------------------------------------------------
# Generic byte mutations
# --------------------------------------------------------------------------------------------

def rand_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def m_truncate(rng, b, header=None):
    c = rng.random()
    if c < 0.15 or not b:
        n = 0
    elif c < 0.35 and header:
        n = min(len(b), max(0, header + rng.choice([0, 0, -1, 1, -4])))
    else:
        n = rng.randrange(0, len(b))
    return b[:n], "truncate to %d of %d bytes" % (n, len(b))


def m_flips(rng, b, lo=0, hi=None):
    hi = len(b) if hi is None else hi
    if hi <= lo:
        return b, "no flip (empty region)"
    a = bytearray(b)
    k = rng.randint(1, 8)
    where = []
    for _ in range(k):
        p = rng.randrange(lo, hi)
        a[p] ^= 1 << rng.randrange(8)
        where.append(p)
    return bytes(a), "%d bit flip(s) at %s" % (k, ",".join(map(str, sorted(where)[:8])))


def m_overwrite(rng, b, lo=0, hi=None):
    hi = len(b) if hi is None else hi
    if hi <= lo:
        return b, "no overwrite (empty region)"
    p = rng.randrange(lo, hi)
    n = min(hi - p, rng.choice([1, 2, 4, 8, 16, 64, 256]))
    kind = rng.choice(["random", "zero", "ff", "7f"])
    fill = {"random": rand_bytes(rng, n), "zero": b"\0" * n, "ff": b"\xff" * n, "7f": b"\x7f" * n}[kind]
    return b[:p] + fill + b[p + n:], "overwrite %d bytes at %d with %s" % (n, p, kind)


def m_append(rng, b):
    c = rng.random()
    if c < 0.2 and len(b) < 1 << 20:
        return b + b, "append a copy of the file"
    n = rng.choice([1, 3, 7, 64, 1000, 4096])
    return b + rand_bytes(rng, n), "append %d random bytes" % n


def m_delete(rng, b):
    if not b:
        return b, "delete nothing"
    p = rng.randrange(len(b))
    n = min(len(b) - p, rng.choice([1, 2, 4, 16, 100]))
    return b[:p] + b[p + n:], "delete %d bytes at %d" % (n, p)


def m_dup(rng, b):
    if not b:
        return b, "duplicate nothing"
    p = rng.randrange(len(b))
    n = min(len(b) - p, rng.choice([1, 4, 16, 100, 1000]))
    return b[:p] + b[p:p + n] + b[p:], "duplicate %d bytes at %d" % (n, p)


def unstructured(rng, b, header=None):
    """One to three random byte-level mutations; returns (bytes, description)."""
    ops = [lambda x: m_truncate(rng, x, header), lambda x: m_flips(rng, x),
           lambda x: m_overwrite(rng, x), lambda x: m_append(rng, x),
           lambda x: m_delete(rng, x), lambda x: m_dup(rng, x)]
    weights = [3, 4, 3, 1, 1, 1]
    k = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    descs = []
    for _ in range(k):
        op = rng.choices(ops, weights)[0]
        b, d = op(b)
        descs.append(d)
    return b, "; ".join(descs)


# --------------------------------------------------------------------------------------------
# Cases and running
# --------------------------------------------------------------------------------------------

class Case:
    """One input: files to materialise in a fresh folder, the command, and what to check."""

    def __init__(self, fmt, desc, argv, files, primary, ext, timeout=TIMEOUT, out_file=None):
        self.fmt = fmt
        self.desc = desc
        self.argv = argv            # arguments after the binary, paths relative to the case folder
        self.files = files          # relpath -> bytes | ("copy", src) | ("tree", srcdir)
        self.primary = primary      # relpath of the mutated file (saved as <format>-<n>.<ext>)
        self.ext = ext
        self.timeout = timeout
        self.out_file = out_file    # relpath that must not exist after a failing run
        self.expect = "accepted"    # for the unmutated seeds: the expected classification
        self.expect_text = None     # for the unmutated seeds: text expected in stdout/stderr

    def materialise(self, d):
        os.makedirs(d, exist_ok=True)
        os.makedirs(os.path.join(d, "out"), exist_ok=True)
        for rel, v in self.files.items():
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p) or d, exist_ok=True)
            if isinstance(v, tuple) and v[0] == "tree":
                shutil.copytree(v[1], p, dirs_exist_ok=True)
            elif isinstance(v, tuple) and v[0] == "copy":
                shutil.copyfile(v[1], p)
            elif v is None:
                pass
            else:
                with open(p, "wb") as f:
                    f.write(v)
        # Files that a case wants absent (e.g. a removed labels file) are given as None after a tree.
        for rel, v in self.files.items():
            if v is None:
                p = os.path.join(d, rel)
                if os.path.lexists(p):
                    os.remove(p)


class Result:
    def __init__(self):
        self.rc = None
        self.timed_out = False
        self.cut = False
        self.stderr = ""
        self.stdout_tail = ""
        self.stderr_size = 0
        self.seconds = 0.0


def leftover_temps(d):
    found = []
    for root, dirs, names in os.walk(d):
        for n in names + dirs:
            if fnmatch.fnmatch(n, ".*.tmp-*"):
                found.append(os.path.relpath(os.path.join(root, n), d))
    return found


def read_limited(path, limit):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read(limit)
        return data.decode("utf-8", "replace"), size
    except OSError:
        return "", 0


def tail_limited(path, limit):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size > limit:
                f.seek(size - limit)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Runner:
    def __init__(self, binary, mem_limit_mb):
        self.binary = binary
        self.mem_limit = mem_limit_mb * 1024 * 1024 if mem_limit_mb > 0 else 0
        self.env = dict(os.environ)
        self.env.update(RUN_ENV)

    def _limits(self):
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):
            pass
        if self.mem_limit:
            try:
                resource.setrlimit(resource.RLIMIT_AS, (self.mem_limit, self.mem_limit))
            except (ValueError, OSError):
                pass

    def run(self, argv, cwd, timeout, budget_left=None):
        res = Result()
        eff = timeout
        if budget_left is not None:
            eff = max(1.0, min(timeout, budget_left + CUT_GRACE))
        out_p = os.path.join(cwd, "_stdout.log")
        err_p = os.path.join(cwd, "_stderr.log")
        t0 = time.monotonic()
        with open(out_p, "wb") as out, open(err_p, "wb") as err:
            p = subprocess.Popen([self.binary] + argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, env=self.env, start_new_session=True,
                                 preexec_fn=self._limits)
            try:
                res.rc = p.wait(timeout=eff)
            except subprocess.TimeoutExpired:
                if eff < timeout:
                    res.cut = True
                else:
                    res.timed_out = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                res.rc = p.wait()
            # Anything the run left behind in its own process group (e.g. an MPI helper).
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        res.seconds = time.monotonic() - t0
        res.stderr, res.stderr_size = read_limited(err_p, 4 << 20)
        res.stdout_tail = tail_limited(out_p, 8192)
        return res

    def repro(self, case, d):
        env = " ".join("%s=%s" % kv for kv in sorted(RUN_ENV.items()))
        lim = "ulimit -v %d && " % (self.mem_limit // 1024) if self.mem_limit else ""
        cmd = " ".join(shlex.quote(a) for a in [self.binary] + case.argv)
        return "(cd %s && rm -rf out && mkdir out && %senv %s timeout %d %s)" % (
            shlex.quote(d), lim, env, case.timeout, cmd)


def telling_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    for l in lines:
        if re.search(r"Program crashed:|Swift runtime failure:|Fatal error:|Precondition failed|Assertion failed", l):
            return l.strip().strip("*").strip()[:240]
    for l in lines:
        if any(m in l for m in CRASH_MARKERS):
            return l.strip()[:240]
    for l in lines:
        if "error" in l.lower():
            return l.strip()[:240]
    return (lines[0].strip()[:240]) if lines else "(no output)"


def crash_site(text):
    """The first project source location in a Swift backtrace, e.g. " [at MCLData/Packed.swift:159]"."""
    for l in text.splitlines():
        m = re.search(r" at (\S*?Sources/)?(\S+\.swift):(\d+)", l)
        if m and "<compiler-generated>" not in l:
            return " [at %s:%s]" % (m.group(2), m.group(3))
    return ""


def classify(case, res, d):
    """Returns (kind, detail); kind in accepted, clean, crash, no-message, long-message, hang,
    partial, cut."""
    if res.cut:
        return "cut", "cut at the end of the time budget"
    if res.timed_out:
        return "hang", "no exit after %d s (process group killed)" % case.timeout
    temps = leftover_temps(d)
    rc = res.rc
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "signal %d" % -rc
        return "crash", "exit %d (killed by %s): %s%s" % (128 - rc, name, telling_line(res.stderr), crash_site(res.stderr))
    if rc >= 126:
        return "crash", "exit %d: %s%s" % (rc, telling_line(res.stderr), crash_site(res.stderr))
    if rc == 0:
        if temps:
            return "partial", "exit 0 but left temporary file(s) %s" % ", ".join(temps[:3])
        return "accepted", ""
    both = res.stderr + "\n" + res.stdout_tail
    marker = [m for m in CRASH_MARKERS if m in both]
    if marker:
        return "crash", "exit %d with crash marker '%s': %s%s" % (rc, marker[0], telling_line(both), crash_site(both))
    if not res.stderr.strip():
        return "no-message", "exit %d with an empty stderr (stdout: %s)" % (
            rc, telling_line(res.stdout_tail))
    low = res.stderr.lower()
    if "error" not in low and "mcl-dist:" not in low:
        return "no-message", "exit %d without an error message: %s" % (rc, telling_line(res.stderr))
    longest = max((len(l) for l in res.stderr.splitlines()), default=0)
    if longest > LONG_LINE or res.stderr_size > LONG_STDERR:
        return "long-message", "exit %d, stderr %d bytes, longest line %d chars: %s" % (
            rc, res.stderr_size, longest, telling_line(res.stderr)[:160])
    problems = []
    if case.out_file and os.path.lexists(os.path.join(d, case.out_file)):
        problems.append("output %s exists after the failure" % case.out_file)
    if temps:
        problems.append("temporary file(s) left: %s" % ", ".join(temps[:3]))
    if problems:
        return "partial", "exit %d: %s (%s)" % (rc, "; ".join(problems), telling_line(res.stderr)[:160])
    return "clean", ""


def failure_signature(kind, detail):
    m = re.search(r"\[at [^\]]+\]", detail)
    if m:
        return kind + " " + m.group(0)
    return kind + " " + re.sub(r"\d+", "#", detail)[:120]


FAIL_KINDS = {"crash": "crashes", "no-message": "crashes", "long-message": "crashes",
              "hang": "hangs", "partial": "partial"}


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------

def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png_filter_rows(rows, bpp, rng):
    out = bytearray()
    for raw in rows:
        ftype = rng.choice([0, 1])
        out.append(ftype)
        if ftype == 0:
            out += raw
        else:
            out += bytes((raw[i] - (raw[i - bpp] if i >= bpp else 0)) & 0xFF for i in range(len(raw)))
    return bytes(out)


def png_encode(w, h, color_type, depth, pixel, interlace=0, plte=None, trns=None, seed=7):
    """pixel(x, y) -> list of samples. Returns a PNG file."""
    rng = random.Random(seed)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bits = channels * depth
    bpp = max(1, bits // 8)

    def row_bytes(xs, y):
        if depth >= 8:
            out = bytearray()
            for x in xs:
                for s in pixel(x, y):
                    out += s.to_bytes(depth // 8, "big")
            return bytes(out)
        acc, n, out = 0, 0, bytearray()
        for x in xs:
            acc = (acc << depth) | pixel(x, y)[0]
            n += depth
            if n == 8:
                out.append(acc)
                acc, n = 0, 0
        if n:
            out.append(acc << (8 - n))
        return bytes(out)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = bytearray()
        for x0, y0, dx, dy in passes:
            xs = list(range(x0, w, dx))
            ys = list(range(y0, h, dy))
            if not xs or not ys:
                continue
            raw += png_filter_rows([row_bytes(xs, y) for y in ys], bpp, rng)
    else:
        raw = png_filter_rows([row_bytes(range(w), y) for y in range(h)], bpp, rng)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte:
        out += png_chunk(b"PLTE", plte)
    if trns:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + png_chunk(b"IEND", b"")
    return out


def make_png_seeds():
    seeds = {}
    seeds["rgb32.png"] = png_encode(32, 32, 2, 8, lambda x, y: [(x * 8) & 255, (y * 8) & 255, (x * y) & 255])
    seeds["gray40x24.png"] = png_encode(40, 24, 0, 8, lambda x, y: [(x * 6 + y * 3) & 255])   # rejected: not 32x32
    seeds["gray28.png"] = png_encode(28, 28, 0, 8, lambda x, y: [(x * 9 + y * 5) & 255])
    plte = bytes(v for i in range(16) for v in (i * 16, 255 - i * 16, (i * 37) & 255))
    seeds["pal28.png"] = png_encode(28, 28, 3, 4, lambda x, y: [(x + y) % 16], plte=plte, trns=bytes(range(0, 256, 32)))
    seeds["rgba16-adam7.png"] = png_encode(32, 32, 6, 16, lambda x, y: [x * 2000, y * 2000, (x ^ y) * 1000, 65535 - x * 100],
                                           interlace=1)
    return seeds


def make_cifar_seed():
    rng = random.Random(20240607)
    out = bytearray()
    for r in range(20):
        out.append(r % 10)
        # smooth-ish images so a decoder-free format still has structure
        base = rng.randrange(256)
        out += bytes((base + (i % 32) * 3 + (i // 1024) * 50 + rng.randrange(8)) & 255 for i in range(3072))
    return bytes(out)


def make_idx_seed():
    """(images, labels) bytes: the first 64 Fashion-MNIST t10k images (Debian package
    dataset-fashion-mnist, installed by scripts/setup.sh), or 64 synthetic 28x28 images."""
    n = 64
    ip = os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")
    lp = os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")
    if os.path.exists(ip) and os.path.exists(lp):
        with gzip.open(ip) as f:
            im = f.read(16 + n * 784)
        with gzip.open(lp) as f:
            lb = f.read(8 + n)
        body, labels = im[16:16 + n * 784], lb[8:8 + n]
    else:
        print("fuzz: %s not found, using synthetic IDX images" % FMNIST, file=sys.stderr)
        body = bytes(((x * (i % 7 + 1) + y * (i % 5 + 1)) * 3) & 255 if 4 <= x < 24 else 0
                     for i in range(n) for y in range(28) for x in range(28))
        labels = bytes(i % 10 for i in range(n))
    return struct.pack(">IIII", 0x803, n, 28, 28) + body, struct.pack(">II", 0x801, n) + labels


def jpeg_seeds():
    seeds = {}
    for name in ("a.jpg", "b.jpg"):
        p = os.path.join(COMMITTED_SEEDS, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                seeds[name] = f.read()
    if not seeds:
        # Fallback for a checkout without the committed seeds: one small member of the CIFAR tarball.
        t = "/work/shared/data/cifar10-jpg.tar.gz"
        if os.path.exists(t):
            with tarfile.open(t) as tf:
                for m in tf:
                    if m.isfile() and m.name.lower().endswith(".jpg") and m.size < 4096:
                        seeds["a.jpg"] = tf.extractfile(m).read()
                        break
    if not seeds:
        raise SystemExit("fuzz: no JPEG seed (Tests/fuzz/seeds/a.jpg missing)")
    return seeds


def mcld_crc(b):
    return zlib.crc32(b[48:], zlib.crc32(b[:40])) & 0xFFFFFFFF


def mcld_fix_crc(b):
    if len(b) < 48:
        return b
    a = bytearray(b)
    struct.pack_into("<Q", a, 40, mcld_crc(a))
    return bytes(a)


def mcld_build(n, c, h, w, k, labels, images=None, names=None, mean=None, std=None, rng=None):
    if names is None:
        names = b"".join(b"%d\n" % i for i in range(k))
    if images is None:
        rng = rng or random.Random(1)
        images = bytes(rng.getrandbits(8) for _ in range(n * c * h * w))
    hs = align(108 + len(names), 64)
    a = bytearray(hs)
    a[0:8] = b"MCLDSET\0"
    struct.pack_into("<IIQIIII", a, 8, 1, hs, n, c, h, w, k)
    if mean is None or std is None:
        plane = h * w
        mean, std = [], []
        for ch in range(3):
            vals = [images[i * c * plane + ch * plane + j] for i in range(n) for j in range(plane)] if ch < c else []
            m = sum(vals) / (255.0 * len(vals)) if vals else 0.0
            v = sum((x / 255.0 - m) ** 2 for x in vals) / len(vals) if vals else 0.0
            mean.append(m)
            std.append(v ** 0.5)
    struct.pack_into("<3d", a, 56, *mean)
    struct.pack_into("<3d", a, 80, *std)
    struct.pack_into("<I", a, 104, len(names))
    a[108:108 + len(names)] = names
    a += images
    a += b"\0" * (align(len(a), 8) - len(a))
    for l in labels:
        a += struct.pack("<i", l)
    return mcld_fix_crc(bytes(a))


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

class Format:
    name = ""
    ext = "bin"

    def __init__(self, ctx):
        self.ctx = ctx

    def baselines(self):
        return []

    def case(self, rng, i):
        raise NotImplementedError


def prepare_argv(src, rng, extra_opts=True):
    argv = ["data", "prepare", src, "--out", "out/o.mcld"]
    if extra_opts and rng is not None and rng.random() < 0.08:
        argv += rng.choice([["--limit", "2"], ["--classes", "3,1"], ["--classes", "0"], ["--limit", "1", "--classes", "9,0"]])
    return argv


# ---- IDX -----------------------------------------------------------------------------------

class IdxFormat(Format):
    name = "idx"
    ext = "idx3-ubyte"

    def baselines(self):
        im, lb = self.ctx.idx
        return [Case(self.name, "seed", prepare_argv("in/x-images-idx3-ubyte", None),
                     {"in/x-images-idx3-ubyte": im, "in/x-labels-idx1-ubyte": lb},
                     "in/x-images-idx3-ubyte", "idx3-ubyte", out_file="out/o.mcld")]

    def case(self, rng, i):
        im, lb = self.ctx.idx
        n = struct.unpack(">I", im[4:8])[0]
        target = "images" if rng.random() < 0.75 else "labels"
        gz_images = gz_labels = False
        remove_labels = False
        if rng.random() < 0.5:
            op = rng.choice(["field", "field", "field", "resize", "side32", "label-values", "gzip",
                             "gzip-corrupt", "no-labels", "empty-labels", "gzip-concat"])
            if op == "field":
                if target == "images":
                    off = rng.choice([0, 4, 8, 12, 8])
                    vals = {0: [0x801, 0x802, 0x804, 0x0C03, 0x803 | 0x100, 0, 0xFFFFFFFF, 0x03080000],
                            4: [0, 1, n - 1, n + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**24, 65536, 0x80000001],
                            8: [0, 1, 27, 29, 31, 32, 33, 2**16, 2**31, 2**32 - 1, 0x80000000 + 28],
                            12: [0, 1, 27, 29, 31, 32, 33, 2**16, 2**31, 2**32 - 1, 0x80000000 + 28]}[off]
                    v = rng.choice(vals)
                    a = bytearray(im)
                    struct.pack_into(">I", a, off, v)
                    if off == 8 and rng.random() < 0.5:
                        struct.pack_into(">I", a, 12, v)
                        desc = "images rows and cols = 0x%x" % v
                    else:
                        desc = "images header field @%d = 0x%x" % (off, v)
                    im = bytes(a)
                else:
                    off = rng.choice([0, 4, 4])
                    v = rng.choice([0x803, 0x800, 0, 0xFFFFFFFF] if off == 0 else
                                   [0, 1, n - 1, n + 1, 2**31 - 1, 2**31, 2**32 - 1, 0x80000001])
                    a = bytearray(lb)
                    struct.pack_into(">I", a, off, v)
                    lb = bytes(a)
                    desc = "labels header field @%d = 0x%x" % (off, v)
            elif op == "resize":
                m = rng.choice([0, 1, 2, 63, 65, 200])
                img = im[16:]
                body = (img * (m // n + 1))[:m * 784]
                im = struct.pack(">IIII", 0x803, m, 28, 28) + body
                lbody = (lb[8:] * (m // n + 1))[:m]
                lb = struct.pack(">II", 0x801, m) + lbody
                if rng.random() < 0.3:
                    lb = struct.pack(">II", 0x801, n) + lb[8:8 + n]
                desc = "consistent pair of %d images (labels %d)" % (m, struct.unpack(">I", lb[4:8])[0])
            elif op == "side32":
                m = rng.choice([1, 3, 64])
                body = bytes((j * 7) & 255 for j in range(m * 1024))
                im = struct.pack(">IIII", 0x803, m, 32, 32) + body
                lb = struct.pack(">II", 0x801, m) + bytes(j % 10 for j in range(m))
                desc = "32x32 IDX with %d images" % m
            elif op == "label-values":
                a = bytearray(lb)
                k = rng.randint(1, 4)
                for _ in range(k):
                    a[8 + rng.randrange(n)] = rng.choice([10, 11, 99, 127, 128, 200, 255])
                lb = bytes(a)
                desc = "%d label byte(s) out of 0..9" % k
            elif op in ("gzip", "gzip-corrupt", "gzip-concat"):
                which = target
                src = im if which == "images" else lb
                z = gzip.compress(src, 6, mtime=0)
                if op == "gzip-corrupt":
                    z, d = (m_truncate(rng, z, 10) if rng.random() < 0.4 else
                            m_flips(rng, z, 10, len(z)) if rng.random() < 0.6 else m_overwrite(rng, z, len(z) - 8, len(z)))
                    desc = "gzip %s, then %s" % (which, d)
                elif op == "gzip-concat":
                    z = z + gzip.compress(src[:rng.randrange(1, len(src))], 6, mtime=0)
                    if rng.random() < 0.5:
                        z += rand_bytes(rng, 13)
                    desc = "gzip %s with a second member (and maybe trailing garbage)" % which
                else:
                    desc = "gzip %s (valid)" % which
                if which == "images":
                    im, gz_images = z, True
                else:
                    lb, gz_labels = z, True
            elif op == "no-labels":
                remove_labels = True
                desc = "labels file missing"
            elif op == "empty-labels":
                lb = b""
                desc = "labels file empty"
        else:
            if target == "images":
                im, desc = unstructured(rng, im, 16)
                desc = "images: " + desc
            else:
                lb, desc = unstructured(rng, lb, 8)
                desc = "labels: " + desc
        iname = "in/x-images-idx3-ubyte" + (".gz" if gz_images else "")
        lname = "in/x-labels-idx1-ubyte" + (".gz" if gz_labels else "")
        files = {iname: im}
        if not remove_labels:
            files[lname] = lb
        primary = iname if target == "images" or remove_labels else lname
        ext = "idx3-ubyte" if primary == iname else "idx1-ubyte"
        if primary.endswith(".gz"):
            ext += ".gz"
        return Case(self.name, desc, prepare_argv(iname, rng), files, primary, ext, out_file="out/o.mcld")


# ---- CIFAR ---------------------------------------------------------------------------------

class CifarFormat(Format):
    name = "cifar"
    ext = "bin"

    def baselines(self):
        return [Case(self.name, "seed", prepare_argv("in/data_batch_1.bin", None),
                     {"in/data_batch_1.bin": self.ctx.cifar}, "in/data_batch_1.bin", "bin", out_file="out/o.mcld")]

    def case(self, rng, i):
        b = self.ctx.cifar
        rec = 3073
        name = "data_batch_1.bin"
        if rng.random() < 0.5:
            op = rng.choice(["label", "label", "records", "off-by-one", "name", "name", "cifar100-size", "both-sizes"])
            if op == "label":
                a = bytearray(b)
                k = rng.randint(1, 3)
                for _ in range(k):
                    a[rng.randrange(20) * rec] = rng.choice([10, 11, 99, 128, 255])
                b = bytes(a)
                desc = "%d label byte(s) >= 10" % k
            elif op == "records":
                m = rng.choice([0, 1, 2, 21, 100])
                b = (b * (m // 20 + 1))[:m * rec]
                desc = "%d whole records" % m
            elif op == "off-by-one":
                d = rng.choice([-1, 1, -3072, 3072, 3074, -rec + 1])
                b = b[:len(b) + d] if d < 0 else b + rand_bytes(rng, d)
                desc = "size %+d bytes" % d
            elif op == "name":
                name = rng.choice(["test_batch.bin", "train.bin", "test.bin", "x.bin", "data_batch_1",
                                   "data_batch_9.BIN", "batch.bin"])
                if rng.random() < 0.5:
                    b = b[:3074 * 5]
                desc = "file named %s, %d bytes" % (name, len(b))
            elif op == "cifar100-size":
                name = rng.choice(["x.bin", "train.bin", "data_batch_1.bin"])
                b = (b * 2)[:3074 * 7]
                desc = "%s of 7 CIFAR-100-sized records (3074 bytes)" % name
            else:
                name = rng.choice(["x.bin", "data_batch_1.bin", "train.bin"])
                if not hasattr(self, "both"):
                    self.both = (bytes(range(251)) * (3073 * 3074 // 251 + 1))[:3073 * 3074]
                b = self.both
                desc = "%s of 3073*3074 bytes (a whole number of both record sizes)" % name
        else:
            b, desc = unstructured(rng, b, rec)
        path = "in/" + name
        return Case(self.name, desc, prepare_argv(path, rng), {path: b}, path, "bin", out_file="out/o.mcld")


# ---- JPEG ----------------------------------------------------------------------------------

def jpeg_segments(b):
    """[(marker, start, length_field_value)] up to and including SOS; scan start offset."""
    segs = []
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:
        m = b[i + 1]
        L = struct.unpack(">H", b[i + 2:i + 4])[0]
        segs.append((m, i, L))
        i += 2 + L
        if m == 0xDA:
            return segs, i
    return segs, i


class JpegFormat(Format):
    name = "jpeg"
    ext = "jpg"

    def baselines(self):
        return [Case(self.name, "seed %s" % k, ["data", "prepare", "in", "--out", "out/o.mcld"],
                     {"in/img.jpg": v}, "in/img.jpg", "jpg", out_file="out/o.mcld")
                for k, v in sorted(self.ctx.jpegs.items())]

    def structured(self, rng, b):
        segs, scan = jpeg_segments(b)
        eoi = len(b) - 2 if b[-2:] == b"\xff\xd9" else len(b)
        a = bytearray(b)
        by = {}
        for m, s, L in segs:
            by.setdefault(m, []).append((s, L))
        op = rng.choice(["sof", "sof", "sof-marker", "length", "length", "dqt", "dht", "sos", "remove", "dup",
                         "scan-trunc", "scan-trunc", "scan-flip", "rst", "no-eoi", "after-eoi", "dri", "app", "soi2"])
        if op == "sof" and 0xC0 in by:
            s, L = by[0xC0][0]
            field = rng.choice(["precision", "height", "width", "both", "ncomp", "sampling", "qtable", "compid"])
            if field == "precision":
                v = rng.choice([0, 1, 12, 16, 255]); a[s + 4] = v
            elif field in ("height", "width", "both"):
                v = rng.choice([0, 1, 2, 16, 28, 31, 33, 64, 255, 256, 0x7FFF, 0xFFFF])
                if field in ("height", "both"):
                    struct.pack_into(">H", a, s + 5, v)
                if field in ("width", "both"):
                    struct.pack_into(">H", a, s + 7, v)
            elif field == "ncomp":
                v = rng.choice([0, 1, 2, 4, 255]); a[s + 9] = v
            elif field == "sampling":
                v = rng.choice([0x00, 0x11, 0x12, 0x21, 0x22, 0x44, 0x41, 0xFF, 0x55])
                a[s + 11 + 3 * rng.randrange(3)] = v
            elif field == "qtable":
                v = rng.choice([1, 2, 3, 4, 255]); a[s + 12 + 3 * rng.randrange(3)] = v
            else:
                v = a[s + 10]; a[s + 13] = v
            return bytes(a), "SOF0 %s = %d" % (field, v)
        if op == "sof-marker" and 0xC0 in by:
            s, L = by[0xC0][0]
            v = rng.choice([0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCD, 0xCF, 0xDE, 0xF7])
            a[s + 1] = v
            return bytes(a), "SOF0 marker changed to 0xFF%02X" % v
        if op == "length":
            m, s, L = rng.choice(segs)
            v = rng.choice([0, 1, 2, 3, L - 1, L + 1, L + 100, 0xFFFF])
            struct.pack_into(">H", a, s + 2, max(0, min(0xFFFF, v)))
            return bytes(a), "segment 0xFF%02X @%d length %d -> %d" % (m, s, L, v)
        if op == "dqt" and 0xDB in by:
            s, L = rng.choice(by[0xDB])
            if rng.random() < 0.5:
                v = rng.choice([0x10, 0x04, 0x0F, 0xF0, 0x11, 0x01])
                a[s + 4] = v
                return bytes(a), "DQT Pq/Tq byte = 0x%02x" % v
            for j in range(s + 5, s + 2 + L):
                a[j] = 0
            return bytes(a), "DQT table all zero"
        if op == "dht" and 0xC4 in by:
            s, L = rng.choice(by[0xC4])
            c = rng.random()
            if c < 0.3:
                v = rng.choice([0x20, 0x04, 0x14, 0xFF, 0x02])
                a[s + 4] = v
                return bytes(a), "DHT Tc/Th byte = 0x%02x" % v
            if c < 0.7:
                for j in range(16):
                    a[s + 5 + j] = rng.choice([0, 255, 16, 17])
                return bytes(a), "DHT code counts randomised (sum may exceed 256 / the segment)"
            for j in range(s + 21, s + 2 + L):
                a[j] = rng.getrandbits(8)
            return bytes(a), "DHT symbol values randomised"
        if op == "sos" and 0xDA in by:
            s, L = by[0xDA][0]
            field = rng.choice(["ncomp", "table", "ss", "se", "ahal", "compid"])
            if field == "ncomp":
                v = rng.choice([0, 1, 2, 4, 255]); a[s + 4] = v
            elif field == "table":
                v = rng.choice([0x44, 0x04, 0x40, 0x22, 0xFF]); a[s + 6 + 2 * rng.randrange(3)] = v
            elif field == "compid":
                v = rng.choice([0, 9, 255]); a[s + 5] = v
            else:
                base = s + 5 + 2 * a[s + 4] if s + 4 < len(a) else s + 11
                base = min(base, len(a) - 3)
                idx = {"ss": 0, "se": 1, "ahal": 2}[field]
                v = rng.choice([0, 1, 62, 64, 255, 0x11, 0xFF])
                a[base + idx] = v
            return bytes(a), "SOS %s = %d" % (field, v)
        if op == "remove":
            m, s, L = rng.choice(segs)
            return b[:s] + b[s + 2 + L:], "segment 0xFF%02X removed" % m
        if op == "dup":
            m, s, L = rng.choice(segs)
            seg = b[s:s + 2 + L]
            return b[:s] + seg + b[s:], "segment 0xFF%02X duplicated" % m
        if op in ("scan-trunc",) and scan < eoi:
            p = rng.randrange(scan, eoi)
            tail = b"\xff\xd9" if rng.random() < 0.5 else b""
            return b[:p] + tail, "truncated inside the scan at %d of %d%s" % (p, len(b), " + EOI" if tail else "")
        if op == "scan-flip" and scan < eoi:
            nb, d = m_flips(rng, b, scan, eoi)
            return nb, "scan data: " + d
        if op == "rst" and scan < eoi:
            p = rng.randrange(scan, eoi)
            mk = bytes([0xFF, rng.choice([0xD0, 0xD3, 0xD7, 0xD8, 0xDA, 0xC4, 0x01, 0xFF])])
            return b[:p] + mk + b[p:], "marker %s inserted in the scan at %d" % (mk.hex(), p)
        if op == "no-eoi":
            return b[:eoi], "EOI removed"
        if op == "after-eoi":
            return b + rand_bytes(rng, rng.choice([1, 100, 5000])), "garbage after EOI"
        if op == "dri":
            v = rng.choice([0, 1, 2, 0xFFFF])
            seg = b"\xff\xdd\x00\x04" + struct.pack(">H", v)
            return b[:2] + seg + b[2:], "DRI restart interval %d without RST markers" % v
        if op == "app":
            n = rng.choice([0, 1, 0xFFFD])
            seg = b"\xff" + bytes([rng.choice([0xE1, 0xE2, 0xFE])]) + struct.pack(">H", min(0xFFFF, n + 2)) + rand_bytes(rng, n)
            return b[:2] + seg + b[2:], "APPn/COM segment of %d bytes inserted" % n
        if op == "soi2":
            return b[:2] + b, "two SOI markers"
        return m_truncate(rng, b, scan)

    def case(self, rng, i):
        key = rng.choice(sorted(self.ctx.jpegs))
        b = self.ctx.jpegs[key]
        if rng.random() < 0.5:
            b, desc = self.structured(rng, b)
        else:
            b, desc = unstructured(rng, b, jpeg_segments(b)[1])
        return Case(self.name, "%s: %s" % (key, desc), ["data", "prepare", "in", "--out", "out/o.mcld"],
                    {"in/img.jpg": b}, "in/img.jpg", "jpg", out_file="out/o.mcld")


# ---- PNG -----------------------------------------------------------------------------------

def png_chunks(b):
    """[(type, data)] or None when the chunk structure does not parse."""
    if b[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, i = [], 8
    while i + 12 <= len(b):
        L = struct.unpack(">I", b[i:i + 4])[0]
        t = b[i + 4:i + 8]
        out.append((t, b[i + 8:i + 8 + L]))
        i += 12 + L
    return out


def png_join(chunks, bad_crc=()):
    out = b"\x89PNG\r\n\x1a\n"
    for j, (t, d) in enumerate(chunks):
        c = png_chunk(t, d)
        if j in bad_crc:
            c = c[:-4] + struct.pack(">I", (zlib.crc32(t + d) ^ 0x5A5A5A5A) & 0xFFFFFFFF)
        out += c
    return out


class PngFormat(Format):
    name = "png"
    ext = "png"

    def baselines(self):
        out = []
        for k, v in sorted(self.ctx.pngs.items()):
            c = Case(self.name, "seed %s" % k, ["data", "prepare", "in", "--out", "out/o.mcld"],
                     {"in/img.png": v}, "in/img.png", "png", out_file="out/o.mcld")
            if k == "gray40x24.png":
                c.expect = "clean"   # a 40x24 image is refused (data sets are 32x32)
            out.append(c)
        return out

    def structured(self, rng, b):
        ch = png_chunks(b)
        keep_crc = rng.random() < 0.25   # else the CRCs are recomputed, so the decoder sees the change
        changed = set()

        def idx_of(t):
            return [j for j, (tt, _) in enumerate(ch) if tt == t]

        op = rng.choice(["ihdr", "ihdr", "ihdr", "length", "crc", "idat-trunc", "idat-trunc", "raw", "raw",
                         "remove", "dup", "order", "split", "critical", "plte", "zlib", "bomb", "sig", "iend-data"])
        desc = op
        if op == "ihdr":
            j = idx_of(b"IHDR")[0]
            d = bytearray(ch[j][1])
            field = rng.choice(["width", "height", "both", "depth", "ctype", "ctype", "compression", "filter", "interlace"])
            if field in ("width", "height", "both"):
                v = rng.choice([0, 1, 2, 24, 28, 31, 32, 33, 40, 65536, 2**31 - 1, 2**31, 2**32 - 1])
                if field in ("width", "both"):
                    struct.pack_into(">I", d, 0, v)
                if field in ("height", "both"):
                    struct.pack_into(">I", d, 4, v)
            else:
                pos, vals = {"depth": (8, [0, 1, 2, 3, 4, 8, 16, 32, 255]), "ctype": (9, [0, 1, 2, 3, 4, 5, 6, 7, 255]),
                             "compression": (10, [1, 255]), "filter": (11, [1, 255]), "interlace": (12, [0, 1, 2, 255])}[field]
                v = rng.choice(vals)
                d[pos] = v
            ch[j] = (b"IHDR", bytes(d))
            changed.add(j)
            desc = "IHDR %s = %d" % (field, v)
        elif op == "length":
            out = png_join(ch)
            # locate a chunk's length field
            offs, i = [], 8
            for t, d in ch:
                offs.append((t, i, len(d)))
                i += 12 + len(d)
            t, o, L = rng.choice(offs)
            v = rng.choice([0, 1, L - 1, L + 1, L + 4096, 2**31 - 1, 2**31, 2**32 - 1])
            v = v & 0xFFFFFFFF
            a = bytearray(out)
            struct.pack_into(">I", a, o, v)
            return bytes(a), "%s length field %d -> %d" % (t.decode("latin-1"), L, v)
        elif op == "crc":
            j = rng.randrange(len(ch))
            return png_join(ch, bad_crc={j}), "%s CRC wrong" % ch[j][0].decode("latin-1")
        elif op == "idat-trunc":
            j = idx_of(b"IDAT")[0]
            d = ch[j][1]
            n = rng.randrange(0, len(d))
            ch[j] = (b"IDAT", d[:n])
            changed.add(j)
            desc = "IDAT truncated to %d of %d bytes" % (n, len(d))
        elif op == "raw":
            js = idx_of(b"IDAT")
            raw = bytearray(zlib.decompress(b"".join(ch[j][1] for j in js)))
            c = rng.choice(["filter", "filter", "short", "long", "random"])
            if c == "filter":
                # the first byte is always a filter type; others are found by stride when not interlaced
                k = rng.randint(1, 4)
                for _ in range(k):
                    raw[rng.randrange(len(raw)) if rng.random() < 0.5 else 0] = rng.choice([5, 6, 127, 255])
                desc = "%d filter-type byte(s) invalid (recompressed)" % k
            elif c == "short":
                raw = raw[:rng.randrange(len(raw))]
                desc = "decompressed image data cut to %d bytes (recompressed)" % len(raw)
            elif c == "long":
                raw += bytes(rng.choice([1, 100, 10000]))
                desc = "decompressed image data too long (recompressed)"
            else:
                raw, d = m_overwrite(rng, bytes(raw))
                raw = bytearray(raw)
                desc = "decompressed image data: %s (recompressed)" % d
            z = zlib.compress(bytes(raw), 6)
            ch = [c2 for j, c2 in enumerate(ch) if j not in js[1:]]
            ch[js[0]] = (b"IDAT", z)
        elif op == "remove":
            j = rng.randrange(len(ch))
            desc = "%s chunk removed" % ch[j][0].decode("latin-1")
            del ch[j]
        elif op == "dup":
            j = rng.randrange(len(ch))
            desc = "%s chunk duplicated" % ch[j][0].decode("latin-1")
            ch.insert(j, ch[j])
        elif op == "order":
            j, k = rng.randrange(len(ch)), rng.randrange(len(ch))
            ch[j], ch[k] = ch[k], ch[j]
            desc = "chunks %s and %s swapped" % (ch[j][0].decode("latin-1"), ch[k][0].decode("latin-1"))
        elif op == "split":
            j = idx_of(b"IDAT")[0]
            d = ch[j][1]
            parts = [d[p:p + 7] for p in range(0, len(d), 7)]
            new = [(b"IDAT", p) for p in parts]
            if rng.random() < 0.5 and len(new) > 2:
                new.insert(1, (rng.choice([b"tEXt", b"PLTE", b"IHDR"]), b"k\0v"))
                desc = "IDAT split in 7-byte chunks with another chunk in between"
            else:
                desc = "IDAT split in 7-byte chunks"
            ch = ch[:j] + new + ch[j + 1:]
        elif op == "critical":
            j = rng.randrange(1, len(ch))
            t = rng.choice([b"ABCD", b"IDAX", b"\0\0\0\0", b"tEXt", b"zTXt", b"iCCP", b"sBIT", b"gAMA"])
            d = rand_bytes(rng, rng.choice([0, 1, 13, 1000, 100000]))
            ch.insert(j, (t, d))
            desc = "chunk %r of %d bytes inserted" % (t, len(d))
        elif op == "plte":
            d = rng.choice([b"", b"\0\0\0", b"\1\2", bytes(3 * 257), rand_bytes(rng, 768)])
            ps = idx_of(b"PLTE")
            if ps:
                ch[ps[0]] = (b"PLTE", d)
            else:
                ch.insert(1, (b"PLTE", d))
            if rng.random() < 0.5:
                ch.insert(2, (b"tRNS", rand_bytes(rng, rng.choice([0, 1, 2, 6, 300]))))
            desc = "PLTE of %d bytes (maybe a bad tRNS)" % len(d)
        elif op == "zlib":
            j = idx_of(b"IDAT")[0]
            d = bytearray(ch[j][1])
            c = rng.choice(["header", "adler", "stored", "flip"])
            if c == "header":
                d[0] = rng.choice([0x00, 0x79, 0x88, 0xFF]); desc = "zlib header byte = 0x%02x" % d[0]
            elif c == "adler":
                d[-1] ^= 0xFF; desc = "zlib Adler-32 wrong"
            elif c == "stored":
                raw = zlib.decompress(bytes(d))
                co = zlib.compressobj(0)
                d = bytearray(co.compress(raw) + co.flush()); desc = "zlib stored blocks (valid)"
            else:
                nd, dd = m_flips(rng, bytes(d), 2, len(d))
                d = bytearray(nd); desc = "zlib stream " + dd
            ch[j] = (b"IDAT", bytes(d))
            changed.add(j)
        elif op == "bomb":
            j = idx_of(b"IDAT")[0]
            n = rng.choice([1 << 20, 16 << 20, 64 << 20])
            co = zlib.compressobj(9)
            z = co.compress(bytes(n)) + co.flush()
            ch[j] = (b"IDAT", z)
            desc = "IDAT inflating to %d bytes of zeros" % n
        elif op == "sig":
            a = bytearray(png_join(ch))
            p = rng.randrange(8)
            a[p] ^= 1 << rng.randrange(8)
            return bytes(a), "signature byte %d flipped" % p
        elif op == "iend-data":
            ch[-1] = (b"IEND", rand_bytes(rng, 10))
            desc = "IEND with data"
        bad = set(changed) if keep_crc else set()
        return png_join(ch, bad_crc=bad), desc + (" (old CRC kept)" if keep_crc and changed else "")

    def case(self, rng, i):
        key = rng.choice(sorted(self.ctx.pngs))
        b = self.ctx.pngs[key]
        if rng.random() < 0.5:
            b, desc = self.structured(rng, b)
        else:
            b, desc = unstructured(rng, b, 33)
        return Case(self.name, "%s: %s" % (key, desc), ["data", "prepare", "in", "--out", "out/o.mcld"],
                    {"in/img.png": b}, "in/img.png", "png", out_file="out/o.mcld")


# ---- MCLD ----------------------------------------------------------------------------------

class McldFormat(Format):
    name = "mcld"
    ext = "mcld"

    def cfg_files(self, b):
        return {"in/data.mcld": b, "cfg.yaml": tiny_config("in/data.mcld", 1).encode()}

    def baselines(self):
        b = self.ctx.mcld
        return [Case(self.name, "seed", ["data", "info", "in/data.mcld"], {"in/data.mcld": b}, "in/data.mcld", "mcld"),
                Case(self.name, "seed (train)", ["train", "--config", "cfg.yaml", "--out", "out/run"],
                     self.cfg_files(b), "in/data.mcld", "mcld", timeout=SLOW_TIMEOUT)]

    def structured(self, rng, b):
        n = struct.unpack("<Q", b[16:24])[0]
        hs = struct.unpack("<I", b[12:16])[0]
        a = bytearray(b)
        op = rng.choice(["field", "field", "field", "field", "stats", "names", "labels", "regen", "regen", "regen", "images"])
        resize = False
        if op == "field":
            off, size, vals = rng.choice([
                (8, 4, [0, 2, 0xFFFFFFFF, 0x01000000]),
                (12, 4, [0, 64, 107, 108, 127, 129, 192, 4096, 2**31, 2**32 - 1]),
                (16, 8, [0, 1, n - 1, n + 1, 2 * n] + U64_SPECIAL),
                (24, 4, [0, 1, 2, 4, 255, 2**31, 2**32 - 1]),
                (28, 4, [0, 1, 16, 28, 31, 33, 64, 2**16, 2**31, 2**32 - 1]),
                (32, 4, [0, 1, 16, 28, 31, 33, 64, 2**16, 2**31, 2**32 - 1]),
                (36, 4, [0, 1, 9, 11, 255, 2**31, 2**32 - 1]),
                (40, 8, [0, 2**64 - 1]),
                (48, 8, [1, 2**64 - 1]),
                (104, 4, [0, 1, 19, 21, 64, 4096, 2**31, 2**32 - 1]),
            ])
            v = rng.choice(vals)
            struct.pack_into("<I" if size == 4 else "<Q", a, off, v)
            desc = "header @%d = %d" % (off, v)
            if off == 40:
                return bytes(a), "stored CRC = %d" % v
            resize = off in (16, 24, 28, 32) and rng.random() < 0.5
            if off == 28 and rng.random() < 0.5:
                struct.pack_into("<I", a, 32, v)
                desc = "header H = W = %d" % v
        elif op == "stats":
            off = rng.choice([56, 64, 72, 80, 88, 96])
            v = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e308, 5e-324])
            struct.pack_into("<d", a, off, v)
            desc = "%s[%d] = %r" % ("mean" if off < 80 else "std", (off - 56) // 8 % 3, v)
        elif op == "names":
            c = rng.choice(["no-newline", "extra", "utf8", "empty", "long", "nul"])
            names = {"no-newline": b"".join(b"%d\n" % j for j in range(10))[:-1],
                     "extra": b"".join(b"%d\n" % j for j in range(11)),
                     "utf8": b"0\n1\n2\n\xff\xfe\n4\n5\n\xc3\n7\n8\n\xed\xa0\x80\n",
                     "empty": b"\n" * 10,
                     "long": (b"x" * 100000 + b"\n") + b"".join(b"%d\n" % j for j in range(9)),
                     "nul": b"0\n1\n2\n3\n4\0\n5\n6\n7\n8\n9\n"}[c]
            labels = list(struct.unpack("<%di" % n, b[-4 * n:]))
            images = b[hs:hs + n * 3 * 32 * 32]
            return self.finish(rng, mcld_build(n, 3, 32, 32, 10, labels, images=images, names=names)), \
                "class names: %s" % c
        elif op == "labels":
            la = len(b) - 4 * n
            k = rng.randint(1, 3)
            vals = []
            for _ in range(k):
                v = rng.choice([-1, -2, 10, 11, 2**31 - 1, -2**31])
                struct.pack_into("<i", a, la + 4 * rng.randrange(n), v)
                vals.append(v)
            desc = "label(s) set to %s" % vals
        elif op == "images":
            nb, d = m_flips(rng, b, hs, len(b) - 4 * n)
            return self.finish(rng, nb), "image bytes: " + d
        else:
            nn = rng.choice([0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 33])
            c = 3 if rng.random() < 0.85 else rng.choice([1, 4])
            h = rng.choice([1, 2, 3, 4, 7, 8, 15, 16, 17, 24, 28, 31, 32, 33, 48, 64])
            w = h if rng.random() < 0.7 else rng.choice([1, 8, 16, 32, 33])
            k = rng.choice([0, 1, 2, 3, 10, 100])
            if k == 0:
                labels = [-1] * nn
            elif rng.random() < 0.2:
                labels = [0] * nn
            else:
                labels = [rng.randrange(k) for _ in range(nn)]
            out = mcld_build(nn, c, h, w, k, labels, rng=rng)
            return out, "consistent file: %d images of [%d, %d, %d], %d classes (CRC valid)" % (nn, c, h, w, k)
        out = bytes(a)
        if resize:
            nn = struct.unpack("<Q", out[16:24])[0]
            c, h, w = struct.unpack("<III", out[24:36])
            need = align(hs + nn * c * h * w, 8) + 4 * nn
            if need <= 64 << 20:
                body = out[hs:]
                if need > len(out):
                    out = out + bytes(need - len(out))
                else:
                    out = out[:need]
                desc += " (file resized to %d bytes to match)" % need
        return self.finish(rng, out), desc

    def finish(self, rng, b):
        return mcld_fix_crc(b) if rng.random() < 0.5 else b

    def case(self, rng, i):
        b = self.ctx.mcld
        if rng.random() < 0.5:
            b, desc = self.structured(rng, b)
            if not desc.endswith("(CRC valid)") and b[40:48] == struct.pack("<Q", mcld_crc(b) if len(b) >= 48 else 0):
                desc += " (CRC recomputed)"
        else:
            b, desc = unstructured(rng, b, 128)
            if rng.random() < 0.25 and len(b) >= 48:
                b = mcld_fix_crc(b)
                desc += " (CRC recomputed)"
        if rng.random() < 1 / 8:
            return Case(self.name, desc + " [train]", ["train", "--config", "cfg.yaml", "--out", "out/run"],
                        self.cfg_files(b), "in/data.mcld", "mcld", timeout=SLOW_TIMEOUT)
        argv = ["data", "info", "in/data.mcld"] + (["--json"] if rng.random() < 0.25 else [])
        return Case(self.name, desc, argv, {"in/data.mcld": b}, "in/data.mcld", "mcld")


# ---- Checkpoint ----------------------------------------------------------------------------

class Obj(list):
    """A JSON object kept as an ordered list of (key, value) pairs (duplicates allowed)."""


def st_split(b):
    n = struct.unpack("<Q", b[:8])[0]
    return n, json.loads(b[8:8 + n].decode("utf-8"), object_pairs_hook=Obj), b[8 + n:]


def st_join(pairs, data, pad=True, length=None):
    text = "{" + ",".join(json.dumps(k) + ":" + (v if isinstance(v, RawJSON) else json_value(v)) for k, v in pairs) + "}"
    hb = text.encode("utf-8", "surrogateescape")
    if pad:
        hb += b" " * (align(len(hb), 8) - len(hb))
    n = len(hb) if length is None else length
    return struct.pack("<Q", n) + hb + data


class RawJSON(str):
    pass


def json_value(v):
    """Serialise a value kept as pairs lists (object_pairs_hook=list) back to JSON text."""
    if isinstance(v, RawJSON):
        return str(v)
    if isinstance(v, Obj) or (isinstance(v, list) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v)):
        return "{" + ",".join(json.dumps(k) + ":" + json_value(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(json_value(x) for x in v) + "]"
    if isinstance(v, float) and v != v:
        return "NaN"
    return json.dumps(v)


def pairs_get(pairs, key):
    for k, v in pairs:
        if k == key:
            return v
    return None


def pairs_set(pairs, key, value):
    return Obj((k, value if k == key else v) for k, v in pairs)


class CheckpointFormat(Format):
    name = "checkpoint"
    ext = "safetensors"

    def run_files(self, rel=None, data=None):
        files = {"run": ("tree", self.ctx.run_dir), "s.mcld": ("copy", self.ctx.mcld_path),
                 "cfg.yaml": CHECKPOINT_CONFIG.encode()}
        if rel is not None:
            files[rel] = data
        return files

    def eval_argv(self, ckpt):
        return ["evaluate", "--config", "cfg.yaml", "--checkpoint", ckpt, "--test", "s.mcld",
                "--out", "out/ev", "--set", "eval.sei_ways=[1]"]

    def baselines(self):
        w = "run/checkpoints/" + self.ctx.weights_name
        s = "run/checkpoints/" + self.ctx.state_name
        out = [Case(self.name, "seed (evaluate)", self.eval_argv(w), self.run_files(), w, "safetensors", timeout=SLOW_TIMEOUT),
               Case(self.name, "seed (resume)", ["train", "--config", "cfg.yaml", "--out", "run", "--resume", "auto"],
                    self.run_files(), s, "json", timeout=SLOW_TIMEOUT)]
        out[1].expect_text = "resumed from"
        if self.ctx.has_verify:
            out += [Case(self.name, "seed (verify weights)", ["checkpoint", "verify", w], self.run_files(), w, "safetensors"),
                    Case(self.name, "seed (verify state)", ["checkpoint", "verify", s], self.run_files(), s, "json")]
        return out

    # -- safetensors
    def mutate_weights(self, rng, b):
        n, pairs, data = st_split(b)
        tensors = [k for k, v in pairs if k != "__metadata__"]
        op = rng.choice(["len", "len", "shape", "shape", "shape", "shape", "offsets", "offsets", "offsets", "dtype", "dup",
                         "remove", "extra", "meta", "meta", "header-json", "payload", "payload", "nan", "nan"])
        if op == "len":
            v = rng.choice([0, 1, 2, 7, 8, n - 1, n + 1, len(b) - 8, len(b) - 7, 2**31, 2**32 - 1, 2**32,
                            2**62, 2**63 - 1, 2**63, 2**64 - 1])
            a = bytearray(b)
            struct.pack_into("<Q", a, 0, v & (2**64 - 1))
            return bytes(a), "header length %d -> %d" % (n, v)
        if op == "payload":
            nb, d = m_flips(rng, b, 8 + n, len(b))
            return nb, "payload " + d
        if op == "nan":
            f32 = [k for k in tensors if pairs_get(pairs_get(pairs, k), "dtype") == "F32"]
            name = rng.choice(f32)
            e = pairs_get(pairs, name)
            s0, s1 = pairs_get(e, "data_offsets")
            a = bytearray(b)
            val = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\x00\x00\x80\xbf"])
            whole = rng.random() < 0.3
            for j in (range(s0, s1, 4) if whole else [s0 + 4 * rng.randrange(max(1, (s1 - s0) // 4))]):
                a[8 + n + j:8 + n + j + 4] = val
            return bytes(a), "%s %s = %s" % (name, "all elements" if whole else "one element",
                                              {b"\x00\x00\xc0\x7f": "NaN", b"\x00\x00\x80\x7f": "+Inf",
                                               b"\x00\x00\x80\xff": "-Inf", b"\x00\x00\x80\xbf": "-1.0"}[val])
        keep_len = rng.random() < 0.1
        name = rng.choice(tensors)
        e = pairs_get(pairs, name)
        if op == "shape":
            shape = list(pairs_get(e, "shape"))
            c = rng.random()
            if c < 0.6 and shape:
                j = rng.randrange(len(shape))
                v = rng.choice([2**62, 2**31, 2**31 - 1, 2**32, 2**63 - 1, -1, 0, 2**40, 1.5, "8", None, 2**64, 10**30])
                shape[j] = v
                desc = "%s shape[%d] = %r" % (name, j, v)
            elif c < 0.7:
                shape = [2**32, 2**32] if rng.random() < 0.5 else [2**21, 2**21, 2**21]
                desc = "%s shape %r (product overflows)" % (name, shape)
            elif c < 0.8:
                shape = []
                desc = "%s shape []" % name
            elif c < 0.9:
                shape = shape + [1]
                desc = "%s shape with an extra 1" % name
            else:
                shape = list(reversed(shape)) if len(shape) > 1 else shape + [1, 1]
                desc = "%s shape permuted / rank changed" % name
            pairs = pairs_set(pairs, name, pairs_set(e, "shape", shape))
        elif op == "offsets":
            s0, s1 = pairs_get(e, "data_offsets")
            L = len(data)
            v = rng.choice([[s0 - 16, s1 - 16], [s0, L + 4], [s1, s0], [-8, s1], [s0, s1 + 4], [s0 + 4, s1],
                            [2**63 - 1, 2**63 - 1], [0, 2**64 - 1], [s0, s0], [s0], [s0, s1, s1], [s0 + 0.5, s1],
                            [str(s0), s1], [L, L + (s1 - s0)], [2**62, 2**62 + (s1 - s0)], [-(2**63), s1]])
            pairs = pairs_set(pairs, name, pairs_set(e, "data_offsets", v))
            desc = "%s data_offsets [%d, %d] -> %r (payload %d bytes)" % (name, s0, s1, v, L)
        elif op == "dtype":
            v = rng.choice(["F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "", "f32", 5, None, "F32 ", "F8_E4M3"])
            pairs = pairs_set(pairs, name, pairs_set(e, "dtype", v))
            desc = "%s dtype = %r" % (name, v)
        elif op == "dup":
            other = rng.choice(tensors)
            e2 = pairs_get(pairs, other)
            if rng.random() < 0.5:
                pairs = pairs + [(name, e2)]
                desc = "tensor %s listed twice (second copy with %s's entry)" % (name, other)
            else:
                pairs = pairs + [(name + ".copy", e)]
                desc = "tensor %s copied under a new name" % name
        elif op == "remove":
            pairs = [(k, v) for k, v in pairs if k != name]
            desc = "tensor %s removed" % name
        elif op == "extra":
            v = rng.choice([[("dtype", "F32"), ("shape", [1]), ("data_offsets", [0, 4])], "x", 5, [],
                            [("dtype", "F32"), ("shape", [1])]])
            pairs = pairs + [(rng.choice(["zzz", "enc.conv1.weight.extra", "", "\u00e9\u00e9", "a" * 10000]), v)]
            desc = "an unknown tensor entry (%s)" % (type(v).__name__)
        elif op == "meta":
            meta = pairs_get(pairs, "__metadata__") or []
            c = rng.choice(["arch", "width", "proj", "step", "format", "remove", "list", "string", "nested", "many"])
            if c in ("arch", "width", "proj", "step", "format"):
                key = {"arch": "arch", "width": "width", "proj": rng.choice(["projection_dim", "projector_hidden"]),
                       "step": "step", "format": "format"}[c]
                v = rng.choice({"arch": ["resnet34", "resnet1000", "", 5],
                                "format": ["tf", "", None]}.get(c, ["0", "-8", "16", "99999999999999999999", "abc", 8, "",
                                                                   "9223372036854775807", "1e3"]))
                meta = pairs_set(meta, key, v) if pairs_get(meta, key) is not None else meta + [(key, v)]
                desc = "__metadata__.%s = %r" % (key, v)
                pairs = pairs_set(pairs, "__metadata__", meta)
            elif c == "remove":
                pairs = [(k, v) for k, v in pairs if k != "__metadata__"]
                desc = "__metadata__ removed"
            elif c == "list":
                pairs = pairs_set(pairs, "__metadata__", RawJSON("[1,2,3]"))
                desc = "__metadata__ is a list"
            elif c == "string":
                pairs = pairs_set(pairs, "__metadata__", "x")
                desc = "__metadata__ is a string"
            elif c == "nested":
                depth = rng.choice([100, 1000, 10000])
                pairs = pairs_set(pairs, "__metadata__", meta + [("deep", RawJSON("[" * depth + "]" * depth))])
                desc = "__metadata__ holds a %d-deep nested list" % depth
            else:
                pairs = pairs_set(pairs, "__metadata__", meta + [("k%d" % j, "v" * 10) for j in range(20000)])
                desc = "__metadata__ with 20000 extra keys"
        else:
            c = rng.choice(["array", "truncated", "trailing", "nul-pad", "bom", "utf8", "dupkey-text"])
            hdr = b[8:8 + n]
            if c == "array":
                hb = b"[" + hdr + b"]"
            elif c == "truncated":
                hb = hdr[:rng.randrange(len(hdr))]
            elif c == "trailing":
                hb = hdr.rstrip() + b" x"
            elif c == "nul-pad":
                hb = hdr.rstrip() + b"\0" * 8
            elif c == "bom":
                hb = b"\xef\xbb\xbf" + hdr
            elif c == "utf8":
                hb = hdr.replace(b'"enc.', b'"\xff\xfeenc.', 1)
            else:
                hb = hdr.rstrip()[:-1] + b',"__metadata__":{"x":"y"}}'
            return struct.pack("<Q", len(hb)) + hb + data, "header JSON: %s" % c
        out = st_join(pairs, data, length=(n if keep_len else None))
        return out, desc + (" (old header length kept)" if keep_len else "")

    # -- JSON state
    def mutate_state(self, rng, b):
        try:
            pairs = json.loads(b.decode("utf-8"), object_pairs_hook=Obj)
        except ValueError:
            pairs = Obj()
        op = rng.choice(["step", "step", "weights", "weights", "weights", "field", "field", "remove", "extra", "text"])
        if op == "step":
            v = rng.choice([-5, -1, 0, 1, 3, 2**63, 2**63 - 1, 2**64, 10**30, "2", None, 2.5, 1e300, [2]])
            return self.render(pairs_set(pairs, "step", v)), "state step = %r" % (v,)
        if op == "weights":
            v = rng.choice(["step-00000001.safetensors", "../../etc/passwd", "/etc/passwd", "", None, 5,
                            "../config.yaml", self.ctx.state_name, "x" * 5000, "step-00000002.safetensors\u0000x",
                            ".", "..", "/dev/zero", "../checkpoints/" + self.ctx.weights_name, "/proc/self/mem"])
            return self.render(pairs_set(pairs, "weights", v)), "state weights = %r" % (v if not isinstance(v, str) or len(v) < 50 else v[:20] + "...",)
        if op == "field":
            key = rng.choice(["worldSize", "epoch", "stepInEpoch", "totalSteps", "optimizerSteps", "seed",
                              "configHash", "lastLoss", "createdAt"])
            v = rng.choice({"configHash": ["", "zz", "0000000000000000", 5, None],
                            "createdAt": ["", 5, "yesterday", None],
                            "lastLoss": [RawJSON("NaN"), "NaN", 1e308, -1e308, None, RawJSON("1e999")]}.get(
                key, [0, -1, 2, 2**31, 2**63, 2**64 + 5, -2**63, 1.5, "1", None, 10**30]))
            return self.render(pairs_set(pairs, key, v)), "state %s = %s" % (key, json_value(v))
        if op == "remove":
            key = rng.choice([k for k, _ in pairs] or ["step"])
            return self.render([(k, v) for k, v in pairs if k != key]), "state key %s removed" % key
        if op == "extra":
            c = rng.choice(["dupstep", "dupweights", "unknown"])
            if c == "dupstep":
                return self.render(pairs + [("step", 7)]), "state with a second \"step\": 7"
            if c == "dupweights":
                return self.render(pairs + [("weights", "nope.safetensors")]), "state with a second \"weights\""
            return self.render(pairs + [("zzz", [1, 2, 3])]), "state with an unknown key"
        c = rng.choice(["array", "empty", "null", "truncated", "utf8", "deep", "huge"])
        if c == "array":
            return b"[" + b + b"]", "state JSON is an array"
        if c == "empty":
            return b"", "state file empty"
        if c == "null":
            return b"null", "state JSON null"
        if c == "truncated":
            return b[:rng.randrange(len(b))], "state JSON truncated"
        if c == "utf8":
            return b.replace(b'"step"', b'"st\xffep"', 1), "state JSON with invalid UTF-8 in a key"
        if c == "deep":
            d = rng.choice([1000, 100000])
            return b.rstrip()[:-1] + b',"deep":' + b"[" * d + b"]" * d + b"}", "state JSON with %d-deep nesting" % d
        return b.rstrip()[:-1] + b',"pad":"' + b"a" * (8 << 20) + b'"}', "state JSON with an 8 MB string"

    def render(self, pairs):
        return (json_value(pairs) if pairs else "{}").encode("utf-8", "surrogateescape")

    def case(self, rng, i):
        ctx = self.ctx
        wrel = "run/checkpoints/" + ctx.weights_name
        srel = "run/checkpoints/" + ctx.state_name
        state = rng.random() < 0.3
        if state:
            src = ctx.state_bytes
            if rng.random() < 0.5:
                b, desc = self.mutate_state(rng, src)
            else:
                b, desc = unstructured(rng, src, 0)
            rel, ext = srel, "json"
        else:
            src = ctx.weights_bytes
            if rng.random() < 0.6:
                b, desc = self.mutate_weights(rng, src)
            else:
                n = struct.unpack("<Q", src[:8])[0]
                b, desc = unstructured(rng, src, 8 + n)
            rel, ext = wrel, "safetensors"
        files = self.run_files(rel, b)
        r = rng.random()
        if r < 0.1 or (state and not ctx.has_verify and r < 0.8):
            target = "auto" if rng.random() < 0.6 else rel
            return Case(self.name, desc + " [resume %s]" % ("auto" if target == "auto" else "explicit"),
                        ["train", "--config", "cfg.yaml", "--out", "run", "--resume", target], files, rel, ext,
                        timeout=SLOW_TIMEOUT)
        if ctx.has_verify and (state or r >= 0.2):
            return Case(self.name, desc + " [verify]", ["checkpoint", "verify", rel], files, rel, ext)
        return Case(self.name, desc + " [evaluate]", self.eval_argv(rel), files, rel, ext, timeout=SLOW_TIMEOUT)


# ---- YAML ----------------------------------------------------------------------------------

YAML_TINY = [
    ("model", [("arch", "resnet18"), ("width", "8"), ("projector_hidden", "32"), ("projection_dim", "16")]),
    ("data", [("train", "s.mcld"), ("rotations", "4")]),
    ("train", [("batch_size", "16"), ("epochs", "1"), ("max_steps", "1"), ("lr", "0.1"), ("seed", "3")]),
    ("eval", [("after_train", "false")]),
]
YAML_FULL = [
    ("model", [("arch", "resnet18"), ("width", "8"), ("projector_hidden", "32"), ("projection_dim", "16"),
               ("sync_bn", "false")]),
    ("data", [("train", "s.mcld"), ("test", "s.mcld"), ("ood", "{fm: s.mcld}"), ("rotations", "4"),
              ("flip", "official")]),
    ("loss", [("kind", "mcl"), ("spa", "official"), ("tau", "0.2"), ("alpha", "0.05"), ("beta", "2.0"),
              ("spa_weight", "1.0"), ("similarity_floor", "1e-7")]),
    ("train", [("batch_size", "16"), ("epochs", "1"), ("max_steps", "1"), ("lr", "0.1"), ("seed", "3"),
               ("micro_batch", "0"), ("checkpoint_every", "1"), ("keep_checkpoints", "2"), ("deterministic", "false"),
               ("momentum", "0.9"), ("weight_decay", "1e-6")]),
    ("eval", [("sei_ways", "[1, 4]"), ("aggregations", "[avg, max]"), ("feature", "projection"),
              ("after_train", "false"), ("ridge", "1e-6"), ("train_limit", "0"), ("test_limit", "0")]),
    ("job", [("stall_timeout", "0")]),
]

YAML_VALUES = ["9223372036854775807", "9223372036854775808", "1099511627776", "1e30",
               "1000000000000000000000000000000", "-1", "-9223372036854775808", "0", "1.5", "-0.0", ".nan",
               ".inf", "-.inf", "0x10", "0o17", "1_000", "\"16\"", "'abc'", "abc", "[1, 2]", "{a: 1}", "null", "~",
               "", "true", "yes", "!!binary aGVsbG8=", "!!str 5", "!!int abc", "!!float x", "2001-12-14",
               "&anc 5", "|\n    multi\n    line", "\"\\u0000\"", "\"\\uD800\"", "1e309", "-1e309", "9" * 400,
               "[]", "{}", "[[[1]]]", "!!python/object:os.system ls", "*nosuchalias", "? complex\n  : key",
               "4294967296", "2147483648", "-2147483649", "65", "3", "2", "100000"]
YAML_PATHS = ["", "/", "/dev/zero", "/dev/null", "..", "nonexistent.mcld", "/etc/passwd", "cfg.yaml", ".",
              "x" * 5000, "~/x", "s.mcld/", "\"s.mcld\\0x\""]


def yaml_render(model, dup_key=None, dup_section=None):
    out = []
    for si, (sec, items) in enumerate(model):
        reps = 2 if dup_section == si else 1
        for _ in range(reps):
            if items is None:
                continue
            if isinstance(items, str):
                out.append("%s: %s" % (sec, items))
                continue
            out.append("%s:" % sec)
            for ki, (k, v) in enumerate(items):
                out.append("  %s: %s" % (k, v))
                if dup_key == (si, ki):
                    out.append("  %s: %s" % (k, "99" if v != "99" else "1"))
    return "\n".join(out) + "\n"


class YamlFormat(Format):
    name = "yaml"
    ext = "yaml"

    def files(self, text_bytes):
        return {"cfg.yaml": text_bytes, "s.mcld": ("copy", self.ctx.mcld_path)}

    def plan_argv(self, rng):
        # The throughput is always given (measuring it is a benchmark, not parsing); plan still
        # times the loss at the configured batch, which takes seconds at batch 1024 in a debug
        # build, hence the slow timeout.
        return ["plan", "--config", "cfg.yaml", "--ranks", "2", "--views-per-s", "1000"]

    def baselines(self):
        out = []
        for nm, m in (("tiny", YAML_TINY), ("full", YAML_FULL)):
            t = yaml_render(m).encode()
            out.append(Case(self.name, "seed %s (plan)" % nm, self.plan_argv(None), self.files(t), "cfg.yaml", "yaml"))
            out.append(Case(self.name, "seed %s (train)" % nm,
                            ["train", "--config", "cfg.yaml", "--out", "out/run", "--set", "train.max_steps=1"],
                            self.files(t), "cfg.yaml", "yaml", timeout=SLOW_TIMEOUT))
        return out

    def structured(self, rng, model):
        model = [(s, list(items)) for s, items in model]
        op = rng.choice(["value", "value", "value", "value", "path", "list", "drop-key", "dup-key", "dup-section",
                         "unknown-key", "unknown-section", "section-scalar", "top", "bomb", "bomb", "long", "long",
                         "deep", "tabs", "utf8", "bom", "crlf", "nul", "multi-doc", "anchor-merge"])
        si = rng.randrange(len(model))
        sec, items = model[si]
        ki = rng.randrange(len(items))
        key = items[ki][0]
        if op == "value":
            v = rng.choice(YAML_VALUES)
            items[ki] = (key, v)
            return yaml_render(model).encode(), "%s.%s = %s" % (sec, key, v[:60])
        if op == "path":
            k = rng.choice(["train", "test"])
            v = rng.choice(YAML_PATHS)
            data = dict(model)["data"]
            if k == "test" and not any(x == "test" for x, _ in data):
                data.append(("test", v))
            else:
                data[:] = [(x, v if x == k else y) for x, y in data]
            return yaml_render(model).encode(), "data.%s = %s" % (k, v[:60])
        if op == "list":
            v = rng.choice(["[]", "[0]", "[1, 4, 8, 16]", "[-1]", "[a]", "[1.5]", "[9223372036854775807]", "[[1]]",
                            "[1, 1, 1]", "8", "{a: 1}", "[" + ", ".join(["1"] * 100000) + "]"])
            k = rng.choice(["sei_ways", "aggregations"])
            ev = dict(model)["eval"]
            ev[:] = [(x, y) for x, y in ev if x != k] + [(k, v)]
            if rng.random() < 0.3:
                dict(model)["data"].append(("ood", rng.choice(["[a, b]", "{}", "{x: 5}", "{x: [s.mcld]}", "null",
                                                               "{" + ", ".join("n%d: s.mcld" % j for j in range(500)) + "}"])))
            return yaml_render(model).encode(), "eval.%s = %s" % (k, v[:60])
        if op == "drop-key":
            del items[ki]
            return yaml_render(model).encode(), "%s.%s removed" % (sec, key)
        if op == "dup-key":
            return yaml_render(model, dup_key=(si, ki)).encode(), "%s.%s given twice" % (sec, key)
        if op == "dup-section":
            return yaml_render(model, dup_section=si).encode(), "section %s given twice" % sec
        if op == "unknown-key":
            items.append((rng.choice(["widht", "zzz", "Width", "width ", "<<", "", "\"\""]), "1"))
            return yaml_render(model).encode(), "unknown key in %s" % sec
        if op == "unknown-section":
            model.append((rng.choice(["modle", "zzz", "MODEL", "1", "null", "~", "true"]), [("a", "1")]))
            return yaml_render(model).encode(), "unknown section"
        if op == "section-scalar":
            v = rng.choice(["5", "[1, 2]", "null", "\"x\"", "", "{}"])
            model[si] = (sec, v)
            return yaml_render(model).encode(), "section %s = %s" % (sec, v)
        if op == "top":
            v = rng.choice([b"", b"5\n", b"- a\n- b\n", b"null\n", b"~\n", b"\"x\"\n", b"---\n", b"# only a comment\n",
                            b"[model, data]\n"])
            return v, "top level %r" % v
        if op == "bomb":
            levels = rng.randint(5, 12)
            fan = rng.randint(2, 10)
            lines = ["a0: &a0 [\"x\", \"x\"]"]
            for j in range(1, levels + 1):
                lines.append("a%d: &a%d [%s]" % (j, j, ", ".join(["*a%d" % (j - 1)] * fan)))
            where = rng.choice(["top", "ood", "sei"])
            text = yaml_render(model)
            if where == "top":
                text = "\n".join(lines) + "\n" + text
            else:
                # anchors defined under an unknown key of data, used by a known key
                bomb = "\n".join("  " + l.replace(": &", "_x: &") for l in lines)
                ref = "*a%d" % levels
                m2 = [(s, list(it)) for s, it in model]
                d = dict(m2)["data"]
                if where == "ood":
                    d.append(("ood", ref))
                else:
                    dict(m2)["eval"].append(("sei_ways", ref))
                text = yaml_render(m2)
                text = text.replace("data:\n", "data:\n" + bomb + "\n", 1)
            return text.encode(), "alias bomb: %d levels, fan-out %d (%s, %.3g leaves)" % (levels, fan, where, 2 * fan ** levels)
        if op == "long":
            n = rng.choice([1 << 20, 3 << 20, 10 << 20])
            k = rng.choice(["data.train", "model.width", "model.arch", "key", "comment", "train.lr"])
            big = "a" * n
            if k == "key":
                text = yaml_render(model) + "model:\n  %s: 1\n" % big
            elif k == "comment":
                text = "# " + big + "\n" + yaml_render(model)
            else:
                s, kk = k.split(".")
                it = dict(model)[s]
                it[:] = [(x, big if x == kk else y) for x, y in it] + ([] if any(x == kk for x, _ in it) else [(kk, big)])
                text = yaml_render(model)
            return text.encode(), "%d-byte value (%s)" % (n, k)
        if op == "deep":
            d = rng.choice([1000, 1000, 10000])
            kind = rng.choice(["flow-list", "flow-map", "unclosed", "block"])
            if kind == "flow-list":
                v = "[" * d + "]" * d
            elif kind == "flow-map":
                v = "{a: " * d + "1" + "}" * d
            elif kind == "unclosed":
                v = "[" * d
            else:
                v = "\n" + "".join("  " * (j + 2) + "k%d:\n" % j for j in range(min(d, 1000))) + "  " * (min(d, 1000) + 2) + "v"
            items[ki] = (key, v)
            return yaml_render(model).encode(), "%s.%s = %d-deep %s" % (sec, key, d, kind)
        text = yaml_render(model).encode()
        if op == "tabs":
            lines = text.split(b"\n")
            j = rng.randrange(len(lines))
            lines[j] = lines[j].replace(b"  ", b"\t", 1) if rng.random() < 0.7 else b"\t" + lines[j]
            return b"\n".join(lines), "tab indentation on line %d" % (j + 1)
        if op == "utf8":
            seq = rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80"])
            p = rng.randrange(len(text))
            return text[:p] + seq + text[p:], "invalid UTF-8 %s at %d" % (seq.hex(), p)
        if op == "bom":
            return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]) + text, "byte-order mark"
        if op == "crlf":
            return text.replace(b"\n", rng.choice([b"\r\n", b"\r"])), "CRLF / CR line endings"
        if op == "nul":
            p = rng.randrange(len(text))
            return text[:p] + b"\0" + text[p:], "NUL byte at %d" % p
        if op == "multi-doc":
            return text + b"---\n" + text, "two YAML documents"
        # anchor-merge
        return (b"base: &b {width: 8}\n" + text.replace(b"model:\n", b"model:\n  <<: *b\n", 1)), "merge key <<: *b"

    def case(self, rng, i):
        model = YAML_TINY if rng.random() < 0.5 else YAML_FULL
        if rng.random() < 0.5:
            b, desc = self.structured(rng, model)
        else:
            b, desc = unstructured(rng, yaml_render(model).encode(), None)
        if rng.random() < 0.1:
            return Case(self.name, desc + " [train]",
                        ["train", "--config", "cfg.yaml", "--out", "out/run", "--set", "train.max_steps=1"],
                        self.files(b), "cfg.yaml", "yaml", timeout=SLOW_TIMEOUT)
        return Case(self.name, desc, self.plan_argv(rng), self.files(b), "cfg.yaml", "yaml", timeout=SLOW_TIMEOUT)


# ---- Scores --------------------------------------------------------------------------------

class ScoresFormat(Format):
    name = "scores"
    ext = "txt"

    def argv(self, rng):
        return ["metrics", "--in", "in/a.txt", "--ood", "in/b.txt"] + (["--json"] if rng and rng.random() < 0.25 else [])

    def baselines(self):
        a, b = self.ctx.scores
        return [Case(self.name, "seed", self.argv(None), {"in/a.txt": a, "in/b.txt": b}, "in/a.txt", "txt")]

    def structured(self, rng, t):
        lines = t.split(b"\n")
        op = rng.choice(["crlf", "cr", "empty", "blank", "comment", "nan", "inf", "word", "word", "huge", "nul",
                         "trunc", "million", "one", "same", "bom", "utf8", "denormal", "spaces"])
        if op == "crlf":
            return t.replace(b"\n", b"\r\n"), "CRLF line endings"
        if op == "cr":
            return t.replace(b"\n", b"\r"), "CR line endings"
        if op == "empty":
            return b"", "empty file"
        if op == "blank":
            return rng.choice([b"\n\n\n", b"   \n\t\n", b" "]), "only blank lines"
        if op == "comment":
            return b"# scores\n#1\n", "only comments"
        j = rng.randrange(len(lines))
        if op in ("nan", "inf", "word", "denormal", "spaces"):
            v = rng.choice({"nan": [b"nan", b"NaN", b"-nan", b"+nan", b"nan(0x1)", b"NAN"],
                            "inf": [b"inf", b"-inf", b"Infinity", b"1e400", b"-1e400", b"+inf", b"INF"],
                            "word": [b"abc", b"1,5", b"0x1p3", b"1e", b"--1", b"+-1", "\uff11\uff12".encode(), b"1 2",
                                     b"1\x002", b"0x10", b"1_000", b"\xc2\xa01", b".", b"-", b"e5", b"1.2.3"],
                            "denormal": [b"5e-324", b"-0", b"1e-400", b"2.2250738585072014e-308"],
                            "spaces": [b"  1.5  ", b"\t2", b"3\t", b"\v4", b"\f5"]}[op])
            lines[j] = v
            if op in ("inf",) and rng.random() < 0.3:
                lines = [v] * len(lines)
                return b"\n".join(lines), "every line %r" % v
            return b"\n".join(lines), "line %d = %r" % (j + 1, v)
        if op == "huge":
            n = rng.choice([1 << 16, 1 << 20, 4 << 20])
            v = rng.choice([b"9" * n, b"0." + b"0" * n + b"1", b" " * n + b"1", b"a" * n, b"1" + b"0" * n])
            lines[j] = v
            return b"\n".join(lines), "line %d of %d bytes (%r...)" % (j + 1, len(v), v[:4])
        if op == "nul":
            p = rng.randrange(len(t))
            return t[:p] + b"\0" * rng.choice([1, 8]) + t[p:], "NUL byte(s) at %d" % p
        if op == "trunc":
            p = rng.randrange(len(t))
            while p > 0 and t[p - 1:p] in (b"\n",):
                p -= 1
            return t[:p], "truncated at %d (mid-number)" % p
        if op == "million":
            if not hasattr(self, "million"):
                r2 = random.Random(5)
                self.million = b"".join(b"%.6f\n" % r2.random() for _ in range(10**6))
            return self.million, "10^6 lines"
        if op == "one":
            return lines[0] + b"\n", "one line"
        if op == "same":
            return b"0.5\n" * 200, "200 identical values"
        if op == "bom":
            return b"\xef\xbb\xbf" + t, "UTF-8 byte-order mark"
        if op == "utf8":
            p = rng.randrange(len(t))
            return t[:p] + b"\xff" + t[p:], "invalid UTF-8 at %d" % p
        return t, "unchanged"

    def case(self, rng, i):
        a, b = self.ctx.scores
        which = rng.choice(["a", "a", "b", "both"])
        desc = []
        for nm in ("a", "b"):
            if which in (nm, "both"):
                src = a if nm == "a" else b
                if rng.random() < 0.5:
                    m, d = self.structured(rng, src)
                else:
                    m, d = unstructured(rng, src, None)
                if nm == "a":
                    a = m
                else:
                    b = m
                desc.append("%s.txt: %s" % (nm, d))
        primary = "in/b.txt" if which == "b" else "in/a.txt"
        return Case(self.name, "; ".join(desc), self.argv(rng), {"in/a.txt": a, "in/b.txt": b}, primary, "txt")



# ---- detector (written by evaluate, read by detect) ----------------------------------------

class DetectorFormat(Format):
    """detector.safetensors: float64 means/cholesky/ridges, int64 counts, every other field as
    JSON in the metadata key mcl_detector. Fed to `detect --detector FILE --checkpoint CK img.png`."""
    name = "detector"
    ext = "safetensors"

    def files(self, data):
        return {"run": ("tree", self.ctx.run_dir), "img.png": self.ctx.pngs[sorted(self.ctx.pngs)[0]],
                "det.safetensors": data}

    def argv(self):
        return ["detect", "--detector", "det.safetensors", "--checkpoint", "run/checkpoints/" + self.ctx.weights_name, "img.png"]

    def baselines(self):
        return [Case(self.name, "seed", self.argv(), self.files(self.ctx.detector), "det.safetensors", "safetensors", timeout=SLOW_TIMEOUT)]

    def case(self, rng, i):
        b = self.ctx.detector
        if rng.random() < 0.4:
            nb, desc = unstructured(rng, b, None)
        else:
            n, pairs, data = st_split(b)
            meta = pairs_get(pairs, "__metadata__")
            det = json.loads(pairs_get(meta, "mcl_detector"))
            op = rng.choice(["field", "field", "field", "drop", "value", "value", "len"])
            if op == "len":
                v = rng.choice([0, 7, n + 1, 2**31, 2**63 - 1, 2**64 - 1])
                nb = bytearray(b); struct.pack_into("<Q", nb, 0, v); nb = bytes(nb)
                desc = "header length -> %d" % v
            elif op in ("field", "drop"):
                key = rng.choice(sorted(det))
                if op == "drop":
                    del det[key]; desc = "mcl_detector: %s removed" % key
                else:
                    val = rng.choice([-1, 0, 2**31, 2**63 - 1, 1e308, -1e308, "x" * rng.choice([1, 300, 100000]), None, [], {},
                                      ["a"] * rng.choice([1, 3, 100000]), 8, 5, "wavg", "backbone", True])
                    det[key] = val; desc = "mcl_detector.%s = %s" % (key, repr(val)[:40])
                meta = pairs_set(meta, "mcl_detector", json.dumps(det))
                nb = st_join(pairs_set(pairs, "__metadata__", meta), data)
            else:
                # A value in a tensor changed with its checksum updated: only the value is wrong.
                name = rng.choice(["means", "cholesky", "ridges"])
                e = pairs_get(pairs, name)
                s0, s1 = pairs_get(e, "data_offsets")
                d = bytearray(data)
                j = s0 + 8 * rng.randrange(max(1, (s1 - s0) // 8))
                val = rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, 0.0, -1.0])
                struct.pack_into("<d", d, j, val)
                meta = pairs_set(meta, "crc32:" + name, "%08x" % zlib.crc32(bytes(d[s0:s1])))
                nb = st_join(pairs_set(pairs, "__metadata__", meta), bytes(d))
                desc = "%s element = %r (checksum updated)" % (name, val)
        return Case(self.name, desc, self.argv(), self.files(nb), "det.safetensors", "safetensors", timeout=SLOW_TIMEOUT)

FORMAT_CLASSES = {c.name: c for c in [IdxFormat, CifarFormat, JpegFormat, PngFormat, McldFormat,
                                       CheckpointFormat, DetectorFormat, YamlFormat, ScoresFormat]}


# --------------------------------------------------------------------------------------------
# Context: seeds
# --------------------------------------------------------------------------------------------

class Context:
    pass


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_context(runner, work, formats):
    ctx = Context()
    sd = os.path.join(work, "seeds")
    os.makedirs(sd, exist_ok=True)
    need_mcld = bool({"mcld", "checkpoint", "detector", "yaml"} & set(formats))
    need_run = bool({"checkpoint", "detector"} & set(formats))
    ctx.idx = make_idx_seed()
    write(os.path.join(sd, "idx", "x-images-idx3-ubyte"), ctx.idx[0])
    write(os.path.join(sd, "idx", "x-labels-idx1-ubyte"), ctx.idx[1])
    ctx.cifar = make_cifar_seed()
    write(os.path.join(sd, "cifar", "data_batch_1.bin"), ctx.cifar)
    if "jpeg" in formats:
        ctx.jpegs = jpeg_seeds()
        for k, v in ctx.jpegs.items():
            write(os.path.join(sd, "jpeg", k), v)
    ctx.pngs = make_png_seeds()
    for k, v in ctx.pngs.items():
        write(os.path.join(sd, "png", k), v)
    rng = random.Random(424242)
    ctx.scores = (b"".join(b"%r\n" % rng.gauss(1.0, 1.0) for _ in range(200)),
                  b"".join(b"%r\n" % rng.gauss(0.0, 1.0) for _ in range(200)))
    write(os.path.join(sd, "scores", "a.txt"), ctx.scores[0])
    write(os.path.join(sd, "scores", "b.txt"), ctx.scores[1])
    if need_mcld:
        ctx.mcld_path = os.path.join(sd, "s.mcld")
        res = runner.run(["data", "prepare", os.path.join(sd, "idx", "x-images-idx3-ubyte"), "--out", ctx.mcld_path],
                         sd, TIMEOUT)
        if res.rc != 0 or not os.path.exists(ctx.mcld_path):
            raise SystemExit("fuzz: cannot make the mcld seed (exit %s): %s" % (res.rc, res.stderr.strip()[:500]))
        with open(ctx.mcld_path, "rb") as f:
            ctx.mcld = f.read()
    if need_run:
        # Trained in the same layout as the checkpoint cases (cfg.yaml, s.mcld, run/ side by side,
        # relative paths), so that the training-config hash, which covers the resolved data path,
        # matches in the cases and --resume really loads the checkpoint.
        cd = os.path.join(sd, "ckpt")
        shutil.rmtree(cd, ignore_errors=True)
        os.makedirs(cd)
        shutil.copyfile(ctx.mcld_path, os.path.join(cd, "s.mcld"))
        write(os.path.join(cd, "cfg.yaml"), CHECKPOINT_CONFIG.encode())
        run = os.path.join(cd, "run")
        res = runner.run(["train", "--config", "cfg.yaml", "--out", "run"], cd, SLOW_TIMEOUT * 2)
        ck = os.path.join(run, "checkpoints")
        states = sorted(n for n in os.listdir(ck) if n.endswith(".json")) if os.path.isdir(ck) else []
        if res.rc != 0 or not states:
            raise SystemExit("fuzz: cannot make the checkpoint seed (exit %s): %s" % (res.rc, res.stderr.strip()[:500]))
        ctx.run_dir = run
        ctx.state_name = states[-1]
        with open(os.path.join(ck, ctx.state_name), "rb") as f:
            ctx.state_bytes = f.read()
        ctx.weights_name = json.loads(ctx.state_bytes).get("weights") or ctx.state_name[:-5] + ".safetensors"
        with open(os.path.join(ck, ctx.weights_name), "rb") as f:
            ctx.weights_bytes = f.read()
        # The run folder used by the cases: the trained run (config.yaml, metrics, checkpoints).
        for n in ("_stdout.log", "_stderr.log"):
            p = os.path.join(cd, n)
            if os.path.exists(p):
                os.remove(p)
    if "detector" in formats:
        # evaluate the seed checkpoint on the seed data, half the training images held out for
        # the threshold: writes det/detector.safetensors beside the report.
        cd = os.path.dirname(ctx.run_dir)
        res = runner.run(["evaluate", "--config", "cfg.yaml", "--checkpoint", "run/checkpoints/" + ctx.weights_name,
                          "--test", "s.mcld", "--out", "det", "--set", "eval.sei_ways=[1]",
                          "--set", "eval.calibration_fraction=0.5"], cd, SLOW_TIMEOUT * 2)
        p = os.path.join(cd, "det", "detector.safetensors")
        if res.rc != 0 or not os.path.exists(p):
            raise SystemExit("fuzz: cannot make the detector seed (exit %s): %s" % (res.rc, res.stderr.strip()[:500]))
        with open(p, "rb") as f:
            ctx.detector = f.read()
        shutil.rmtree(os.path.join(cd, "det"), ignore_errors=True)
        for n in ("_stdout.log", "_stderr.log"):
            q = os.path.join(cd, n)
            if os.path.exists(q):
                os.remove(q)
    ctx.has_verify = False
    if "checkpoint" in formats:
        res = runner.run(["checkpoint", "verify", "--help"], sd, TIMEOUT)
        text = read_limited(os.path.join(sd, "_stdout.log"), 1 << 16)[0] + res.stderr
        ctx.has_verify = res.rc == 0 and bool(re.search(r"USAGE:\s*\S*mcl-dist checkpoint verify", text))
    for n in ("_stdout.log", "_stderr.log"):
        p = os.path.join(sd, n)
        if os.path.exists(p):
            os.remove(p)
    return ctx


# --------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="Seeded, time-bounded file-format fuzzer for mcl-dist (see the top of this file).")
    ap.add_argument("--bin", required=True, help="path of the mcl-dist binary")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=180.0, help="wall-time budget, split across the formats")
    ap.add_argument("--per-format", type=int, default=200, help="at most this many inputs per format")
    ap.add_argument("--work", help="work folder (default: a temporary folder)")
    ap.add_argument("--formats", default=",".join(ALL_FORMATS), help="comma-separated: " + ",".join(ALL_FORMATS))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--mem-limit-mb", type=int, default=4096, help="address-space limit per run (0 = none)")
    ap.add_argument("--verbose", "-v", action="store_true", help="one stderr line per input (mutation, result)")
    args = ap.parse_args()

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print("fuzz: %s is not an executable" % binary, file=sys.stderr)
        return 2
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMAT_CLASSES]
    if bad or not formats:
        print("fuzz: unknown format(s) %s (known: %s)" % (",".join(bad), ",".join(ALL_FORMATS)), file=sys.stderr)
        return 2
    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
        temp_work = False
    else:
        work = tempfile.mkdtemp(prefix="mcl-fuzz-")
        temp_work = True
    runner = Runner(binary, args.mem_limit_mb)
    t_start = time.monotonic()
    try:
        ctx = make_context(runner, work, formats)
    except SystemExit as e:
        print(str(e), file=sys.stderr)
        if temp_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 2
    print("fuzz: work %s, seeds made in %.1f s, checkpoint verify %s" % (
        work, time.monotonic() - t_start, "present" if ctx.has_verify else "absent (evaluate fallback)"), file=sys.stderr)

    cases_dir = os.path.join(work, "cases")
    fail_dir = os.path.join(work, "failures")
    os.makedirs(cases_dir, exist_ok=True)
    index_lines = []
    totals = {"tried": 0, "clean": 0, "accepted": 0, "crashes": 0, "hangs": 0, "partial": 0}
    deadline = time.monotonic() + args.seconds
    wall0 = time.monotonic()
    any_fail = False
    for fi, fmt in enumerate(formats):
        F = FORMAT_CLASSES[fmt](ctx)
        share = max(0.0, (deadline - time.monotonic()) / (len(formats) - fi))
        f_deadline = time.monotonic() + share
        f_t0 = time.monotonic()
        frng = random.Random(args.seed ^ stable_int(fmt))
        counts = {"tried": 0, "clean": 0, "accepted": 0, "crashes": 0, "hangs": 0, "partial": 0}
        failures = []
        notes = []
        cut = 0
        baselines = F.baselines()
        i = 0
        last_progress = time.monotonic()
        while counts["tried"] < args.per_format and time.monotonic() < f_deadline:
            if i < len(baselines):
                case = baselines[i]
            else:
                sub = random.Random(frng.getrandbits(64))
                case = F.case(sub, i)
            d = os.path.join(cases_dir, "%s-%d" % (fmt, i))
            shutil.rmtree(d, ignore_errors=True)
            case.materialise(d)
            res = runner.run(case.argv, d, case.timeout, budget_left=deadline - time.monotonic())
            kind, detail = classify(case, res, d)
            if kind == "cut":
                cut += 1
                shutil.rmtree(d, ignore_errors=True)
                break
            counts["tried"] += 1
            if args.verbose:
                print("fuzz: %s-%d %s %.1fs exit %s: %s | %s" % (fmt, i, kind, res.seconds, res.rc, case.desc[:200],
                                                                (detail or telling_line(res.stderr))[:200]), file=sys.stderr)
            if i < len(baselines) and kind != case.expect:
                notes.append("note: %s not %s (%s): %s" % (case.desc, case.expect, kind, detail or telling_line(res.stderr)))
            elif i < len(baselines) and case.expect_text and case.expect_text not in res.stderr + res.stdout_tail:
                notes.append("note: %s: '%s' not in its output: %s" % (case.desc, case.expect_text, telling_line(
                    res.stderr + "\n" + res.stdout_tail)))
            if kind in FAIL_KINDS:
                counts[FAIL_KINDS[kind]] += 1
                n = len(failures) + 1
                fd = os.path.join(fail_dir, "%s-%d" % (fmt, n))
                shutil.rmtree(fd, ignore_errors=True)
                case.materialise(fd)
                for lg in ("_stdout.log", "_stderr.log"):
                    if os.path.exists(os.path.join(d, lg)):
                        shutil.copyfile(os.path.join(d, lg), os.path.join(fd, lg))
                ff = os.path.join(fail_dir, "%s-%d.%s" % (fmt, n, case.ext))
                shutil.copyfile(os.path.join(fd, case.primary), ff) if os.path.exists(os.path.join(fd, case.primary)) \
                    else open(ff, "wb").close()
                rep = runner.repro(case, fd)
                failures.append((kind, ff, detail, case.desc, rep))
                index_lines.append("%s: %s: %s\n  mutation: %s\n  repro: %s\n" % (kind, ff, detail, case.desc, rep))
            elif kind == "accepted":
                counts["accepted"] += 1
            else:
                counts["clean"] += 1
            shutil.rmtree(d, ignore_errors=True)
            i += 1
            if time.monotonic() - last_progress > 15:
                last_progress = time.monotonic()
                print("fuzz: %s: %d tried, %d failure(s) so far" % (fmt, counts["tried"], len(failures)), file=sys.stderr)
        secs = time.monotonic() - f_t0
        nfail = counts["crashes"] + counts["hangs"] + counts["partial"]
        any_fail = any_fail or nfail > 0
        print("fuzz %s %s tried %d clean-errors %d accepted %d crashes %d hangs %d partial %d (%.1f s)" % (
            fmt, "FAIL" if nfail else "ok", counts["tried"], counts["clean"], counts["accepted"], counts["crashes"],
            counts["hangs"], counts["partial"], secs))
        # The first failure of each distinct kind (kind + crash site, or the message with the
        # numbers blanked), at most 5 of them, with how many more failed the same way.
        groups = {}
        for f in failures:
            groups.setdefault(failure_signature(f[0], f[2]), []).append(f)
        for sig, fs in list(groups.items())[:5]:
            kind, ff, detail, desc, rep = fs[0]
            print("  %s: %s: %s" % (kind, ff, detail))
            print("    mutation: %s" % desc[:300])
            print("    repro: %s" % rep)
            if len(fs) > 1:
                print("    (%d more like it: %s)" % (len(fs) - 1, ", ".join(os.path.basename(x[1]) for x in fs[1:6])
                                                    + (", ..." if len(fs) > 6 else "")))
        if len(groups) > 5:
            print("  ... %d more kinds of failure in %s" % (len(groups) - 5, os.path.join(fail_dir, "INDEX.txt")))
        for nt in notes:
            print("  " + nt[:400])
        if cut:
            print("  note: the last run was cut at the end of the time budget (not counted)")
        sys.stdout.flush()
        for k in totals:
            totals[k] += counts[k]
    print("fuzz-total tried %d clean-errors %d accepted %d crashes %d hangs %d partial %d wall %.1f s" % (
        totals["tried"], totals["clean"], totals["accepted"], totals["crashes"], totals["hangs"], totals["partial"],
        time.monotonic() - wall0))
    if index_lines:
        os.makedirs(fail_dir, exist_ok=True)
        with open(os.path.join(fail_dir, "INDEX.txt"), "w") as f:
            f.write("".join(index_lines))
    shutil.rmtree(cases_dir, ignore_errors=True)
    if temp_work and not args.keep:
        if any_fail:
            print("fuzz: failures kept in %s" % fail_dir, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any_fail else 0


if __name__ == "__main__":
    sys.exit(main())
