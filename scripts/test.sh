#!/usr/bin/env bash
# The whole test suite, from a bare clone (`--golden-only`: steps 1-2 without the other unit tests):
#   1. install the Debian packages (scripts/setup.sh packages) and build everything (a failed build fails the suite);
#   2. `swift test`: unit, finite-difference and golden tests on the repository's own golden set
#      (Tests/golden, written by Tests/reference/make_golden.py), or on MCL_GOLDEN_DIR if set;
#      then, when ../shared/golden exists and MCL_GOLDEN_DIR is unset, the golden tests again on it;
#   3. the multi-rank MPI checks under mpirun -np 1, 2 and 4 (oversubscribed);
#   4. a failing rank ends the whole job;
#   5. the training-job checks (scripts/test-train-job.sh), the fault checks (scripts/test-faults.sh)
#      the detector checks (scripts/test-detect.sh) and the fuzzer (Tests/fuzz/fuzz.py: a bounded, seeded run over every input format);
#   6. several hosts: network namespaces as hosts, MPI over TCP (cluster/test/netns-multihost.sh);
#   7. Slurm: munge, slurmctld and slurmd started here run the sbatch scripts (cluster/test/slurm-local.sh).
# The last line is the tally of test cases: "N passed, M failed, K skipped", where a case is an
# XCTest case, a Swift Testing test, an MPI check at one rank count, or a training-job check; a
# process that dies before reporting counts as one failed case.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
passed=0 failed=0 skipped=0
t0=$(date +%s)
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
tally() { passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3)); }
finish() {
  echo "== done in $(( $(date +%s) - t0 )) s"
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ] && exit 0 || exit 1
}

bash scripts/setup.sh packages || { echo "setup FAILED"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
echo "== build"
if ! swift build --build-tests >"$LOG/build" 2>&1; then
  grep -E "error:" "$LOG/build" | head -20; tail -5 "$LOG/build"
  echo "build FAILED"; tally 0 1 0; finish
fi
BIN_DIR=$(swift build --show-bin-path)

# Counts the cases of one `swift test` log: XCTest "Test Case '...' passed|failed|skipped" and
# Swift Testing "Test name passed|failed|skipped"; a case that started and never ended (a crash)
# and a non-zero exit with no failed case each count as one failure.
swift_tally() {  # log exit-code label
  local log=$1 rc=$2 label=$3 p f s started
  p=$(grep -cE "^Test Case '.*' passed" "$log"); f=$(grep -cE "^Test Case '.*' failed" "$log")
  s=$(grep -cE "^Test Case '.*' skipped" "$log"); started=$(grep -cE "^Test Case '.*' started" "$log")
  local st_p st_f st_s
  st_p=$(grep -E "^[^ ]+ Test .* passed after" "$log" | grep -vc "Test run with")
  st_f=$(grep -E "^[^ ]+ Test .* failed after" "$log" | grep -vc "Test run with")
  st_s=$(grep -E "^[^ ]+ Test .* skipped" "$log" | grep -vc "Test run with")
  local crashed=$(( started - p - f - s ))
  [ $crashed -gt 0 ] && echo "$label: $crashed test case(s) started and never ended"
  f=$(( f + st_f + (crashed > 0 ? crashed : 0) ))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "$label: swift test exited $rc with no failed case"; f=1; fi
  grep -E "error:|failed \(" "$log" | grep -v "^Test Suite" | head -20
  echo "$label: $((p + st_p)) passed, $f failed, $((s + st_s)) skipped"
  tally $((p + st_p)) "$f" $((s + st_s))
}

# Runs a check script that prints "<prefix> <check> ok|FAIL|skipped ..." lines and tallies them; a
# non-zero exit with no FAIL line (the script died) counts as one failure.
check_lines() {  # prefix command...
  local prefix=$1 out rc ok bad sk; shift
  out=$("$@" 2>&1); rc=$?
  echo "$out" | grep -E "^$prefix "
  ok=$(echo "$out" | grep -cE "^$prefix .* ok "); bad=$(echo "$out" | grep -cE "^$prefix .* FAIL"); sk=$(echo "$out" | grep -cE "^$prefix .* skipped")
  if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then echo "$prefix checks exited $rc"; echo "$out" | tail -10; bad=1; fi
  tally "$ok" "$bad" "$sk"
}

# Every case of a golden folder's manifest prints exactly one `golden <case>` line.
golden_lines() {  # log golden-dir label
  local log=$1 dir=$2 label=$3 want got
  want=$(grep -vE '^\s*(#|$)' "$dir/CASES.txt" 2>/dev/null | sort)
  got=$(grep -E "^golden " "$log" | awk '{print $2}' | sort)
  if [ -n "$want" ] && [ "$want" = "$(echo "$got" | sort -u)" ] && [ "$(echo "$got" | wc -l)" -eq "$(echo "$want" | wc -l)" ]; then
    echo "golden-lines $label ok: one line for each of the $(echo "$want" | wc -l) cases of $dir/CASES.txt"; tally 1 0 0
  else
    echo "golden-lines $label FAIL: the golden lines do not match $dir/CASES.txt one to one:"
    diff <(echo "$want") <(echo "$got") | head -10; tally 0 1 0
  fi
}

GOLDEN=${MCL_GOLDEN_DIR:-$(pwd)/Tests/golden}
if [ "${1:-}" = --golden-only ]; then
  # Only the golden tests (CI runs the whole suite in a fresh clone, then this in its checkout).
  echo "== golden tests (golden set: $GOLDEN)"
  swift test --skip-build --filter Golden >"$LOG/unit" 2>&1; rc=$?
  grep -E "^golden " "$LOG/unit"
  swift_tally "$LOG/unit" $rc "golden tests on $GOLDEN"
else
  echo "== swift test (golden set: $GOLDEN)"
  swift test --skip-build >"$LOG/unit" 2>&1; rc=$?
  grep -E "^golden " "$LOG/unit"
  swift_tally "$LOG/unit" $rc "swift test"
fi
golden_lines "$LOG/unit" "$GOLDEN" "($(basename "$(dirname "$GOLDEN")")/$(basename "$GOLDEN"))"

if [ -z "${MCL_GOLDEN_DIR:-}" ] && [ -f ../shared/golden/CASES.txt ]; then
  SHARED=$(cd ../shared/golden && pwd)
  echo "== golden tests again on the shared reference set ($SHARED)"
  MCL_GOLDEN_DIR=$SHARED swift test --skip-build --filter Golden >"$LOG/shared" 2>&1; rc=$?
  grep -E "^golden " "$LOG/shared"
  swift_tally "$LOG/shared" $rc "golden tests on $SHARED"
  golden_lines "$LOG/shared" "$SHARED" "(shared)"
fi
[ "${1:-}" = --golden-only ] && finish

echo "== multi-rank checks"
CHECK=$BIN_DIR/mcl-mpi-check
for np in 1 2 4; do
  out=$(timeout 600 mpirun -np "$np" --oversubscribe --bind-to none -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1 "$CHECK" 2>&1); rc=$?
  echo "$out" | grep -E "^mpi |^  step"
  ok=$(echo "$out" | grep -cE "^mpi .* ok "); bad=$(echo "$out" | grep -cE "^mpi .* FAIL"); sk=$(echo "$out" | grep -cE "^mpi .* skipped")
  if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then echo "mpi checks FAIL at np=$np (exit $rc)"; echo "$out" | tail -5; bad=1; fi
  tally "$ok" "$bad" "$sk"
done

echo "== a failing rank ends the whole job"
t1=$(date +%s)
out=$(timeout 60 mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 "$CHECK" abort-test 2>&1); rc=$?
t2=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "rank 1: simulated failure"; then
  echo "abort-test ok: exit $rc in $((t2 - t1)) s, message: $(echo "$out" | grep 'rank 1:' | head -1)"; tally 1 0 0
else
  echo "abort-test FAIL: exit $rc after $((t2 - t1)) s (124 = still running after 60 s)"; echo "$out" | tail -5; tally 0 1 0
fi

echo "== training job: resume, failures, config errors (2 ranks)"
check_lines train-job env MCL_GOLDEN_DIR="$GOLDEN" bash scripts/test-train-job.sh "$BIN_DIR/mcl-dist"

echo "== faults and hostile input: resume safety, run-folder lock, full disk, corrupt and non-finite checkpoints"
check_lines fault bash scripts/test-faults.sh "$BIN_DIR/mcl-dist"

echo "== detector: evaluate's detector, detect (scores, ranks, image sizes, bad input), embed"
check_lines detect bash scripts/test-detect.sh "$BIN_DIR/mcl-dist"

echo "== fuzzer: mutated files of every input format fed to the command that reads it (Tests/fuzz/fuzz.py, seed 1)"
check_lines fuzz python3 Tests/fuzz/fuzz.py --bin "$BIN_DIR/mcl-dist" --seed 1 --seconds 150

echo "== several hosts: 2 network namespaces x 2 ranks over TCP vs 1 host x 4 ranks"
check_lines multihost bash cluster/test/netns-multihost.sh "$BIN_DIR/mcl-dist"

echo "== Slurm: a local slurmctld/slurmd runs the project's own sbatch scripts (cluster/test/slurm-local.sh)"
check_lines slurm bash cluster/test/slurm-local.sh "$BIN_DIR/mcl-dist"

finish
