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
grep -E "^golden |error:|Test Suite 'All tests'" "$LOG" || true
summary=$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$LOG" | tail -1)
echo "XCTest:${summary}"
xc_total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); xc_failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
[ -n "$xc_total" ] && [ "$xc_total" -gt 0 ] 2>/dev/null || { xc_total=0; xc_failed=1; }
[ $rc -eq 0 ] || { echo "swift test FAILED (exit $rc)"; tail -20 "$LOG"; status=1; [ "$xc_failed" -gt 0 ] || xc_failed=1; }
grep -q "golden .* FAIL" "$LOG" && { echo "a golden case FAILED"; status=1; }
rm -f "$LOG"
mpi_ok=0; mpi_fail=0

echo "== multi-rank checks"
swift build --product mcl-mpi-check 2>&1 | grep -E "error" && status=1
CHECK=$(swift build --product mcl-mpi-check --show-bin-path)/mcl-mpi-check
for np in 1 2 4; do
  out=$(timeout 600 mpirun -np "$np" --oversubscribe --bind-to none -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1 "$CHECK" 2>&1); rc=$?
  echo "$out" | grep -E "^mpi |^  step"
  mpi_ok=$((mpi_ok + $(echo "$out" | grep -c "^mpi .* ok ")))
  mpi_fail=$((mpi_fail + $(echo "$out" | grep -c "^mpi .* FAIL")))
  if [ $rc -ne 0 ]; then echo "mpi checks FAIL at np=$np (exit $rc)"; echo "$out" | tail -5; status=1; mpi_fail=$((mpi_fail + 1)); fi
done

echo "== a failing rank ends the whole job"
t1=$(date +%s)
out=$(timeout 60 mpirun -np 2 --oversubscribe --bind-to none -x MCL_THREADS=1 "$CHECK" abort-test 2>&1); rc=$?
t2=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "rank 1: simulated failure" && [ $((t2 - t1)) -lt 30 ]; then
  echo "abort-test ok: exit $rc in $((t2 - t1)) s, message: $(echo "$out" | grep 'rank 1:' | head -1)"; mpi_ok=$((mpi_ok + 1))
else
  echo "abort-test FAIL: exit $rc after $((t2 - t1)) s"; echo "$out" | tail -5; status=1; mpi_fail=$((mpi_fail + 1))
fi

echo "== training job: resume, failures, config errors (2 ranks)"
swift build --product mcl-dist 2>&1 | grep -E "error" && status=1
BIN=$(swift build --product mcl-dist --show-bin-path)/mcl-dist
out=$(bash scripts/test-train-job.sh "$BIN" 2>&1); rc=$?
echo "$out" | grep -E "^train-job "
mpi_ok=$((mpi_ok + $(echo "$out" | grep -c "^train-job .* ok ")))
mpi_fail=$((mpi_fail + $(echo "$out" | grep -c "^train-job .* FAIL")))
[ $rc -eq 0 ] || { echo "$out" | tail -10; status=1; }

echo "== done in $(( $(date +%s) - t0 )) s"
passed=$(( xc_total - xc_failed + mpi_ok )); failed=$(( xc_failed + mpi_fail ))
[ $status -eq 0 ] || [ $failed -gt 0 ] || failed=1
echo "$passed passed, $failed failed"
exit $status
