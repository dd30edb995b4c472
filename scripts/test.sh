#!/usr/bin/env bash
# The whole test suite: unit and golden tests (swift test), then the multi-rank MPI checks under
# mpirun -np 1, 2 and 4 (oversubscribed), then the failure-handling check. Any failure on any rank
# fails the script. Golden files come from MCL_GOLDEN_DIR (default ../shared/golden).
set -uo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
export MCL_GOLDEN_DIR="${MCL_GOLDEN_DIR:-$(cd .. && pwd)/shared/golden}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
status=0
t0=$(date +%s)

echo "== swift test (golden dir: $MCL_GOLDEN_DIR)"
# Unit tests run with one elementwise thread per test process; the MPI checks below use 1 per rank.
LOG=$(mktemp)
swift test >"$LOG" 2>&1; rc=$?
grep -E "^golden |error:|Test Suite 'All tests'|Executed .* tests" "$LOG" | grep -v "^\s*Executed .* 0 failures.*seconds$" || true
tail -3 "$LOG"
[ $rc -eq 0 ] || { echo "swift test FAILED (exit $rc)"; status=1; }
grep -q "golden .* FAIL" "$LOG" && { echo "a golden case FAILED"; status=1; }
rm -f "$LOG"

echo "== multi-rank checks"
swift build --product mcl-mpi-check 2>&1 | grep -E "error" && status=1
CHECK=$(swift build --product mcl-mpi-check --show-bin-path)/mcl-mpi-check
for np in 1 2 4; do
  if ! timeout 600 mpirun -np "$np" --oversubscribe --bind-to none -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1 "$CHECK"; then
    echo "mpi checks FAIL at np=$np"; status=1
  fi
done

echo "== a failing rank ends the whole job"
t1=$(date +%s)
out=$(timeout 60 mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 "$CHECK" abort-test 2>&1); rc=$?
t2=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "rank 1: simulated failure" && [ $((t2 - t1)) -lt 30 ]; then
  echo "abort-test ok: exit $rc in $((t2 - t1)) s, message: $(echo "$out" | grep 'rank 1:' | head -1)"
else
  echo "abort-test FAIL: exit $rc after $((t2 - t1)) s"; echo "$out" | tail -5; status=1
fi

echo "== done in $(( $(date +%s) - t0 )) s"
if [ $status -eq 0 ]; then echo "ALL TESTS PASSED"; else echo "TESTS FAILED"; fi
exit $status
