#!/usr/bin/env bash
# A real one-node Slurm on this host (munge, slurmctld, slurmd; everything under a scratch
# folder) running the project's own cluster/*.sbatch, unchanged, on a tiny config:
#   run-to-end               2 tasks (srun --mpi=pmix) train to the end and write eval/report.md
#   run-to-end-mpirun        the same with LAUNCHER=mpirun (2 epochs via MCL_TRAIN_ARGS), sent USR1
#                            after its first checkpoint: requeued, resumed, same final checkpoint
#   multi-node-script        cluster/multi-node.sbatch with --nodes=1 (srun), the same 24 steps
#   time-limit-requeue       --time=1 --signal=B:USR1@10: the script checkpoints, requeues, the job
#                            resumes (--resume auto) and its final checkpoint is byte-identical
#                            to that of a reference job run to the end (same config, 2 ranks x 1 thread)
#   scancel-keeps-checkpoint scancel after the first checkpoint; the last one still evaluates
# Usage: bash cluster/test/slurm-local.sh path/to/mcl-dist   (as root; KEEP=1 keeps the scratch)
# Prints "slurm <case> ok|FAIL ..." lines; exit status non-zero on any failure.
set -uo pipefail
BIN=$(readlink -f "${1:?usage: slurm-local.sh path/to/mcl-dist}")
CLUSTER=$(cd "$(dirname "$0")/.." && pwd)
status=0
ok() { echo "slurm $1 ok $2"; }
fail() { echo "slurm $1 FAIL $2"; status=1; }

# Slurm and munge must be installed (scripts/setup.sh installs slurm-wlm munge): fail, never skip.
for c in munged mungekey slurmctld slurmd sbatch squeue scontrol scancel srun; do
  command -v $c >/dev/null || { fail setup "$c not found: apt-get install slurm-wlm munge"; exit 1; }
done
[ "$(id -u)" = 0 ] || { fail setup "must run as root (SlurmUser=root, munged)"; exit 1; }
[ -x "$BIN" ] || { fail setup "no binary $BIN"; exit 1; }

S=$(mktemp -d /tmp/slurm-local.XXXXXX)
chmod 755 "$S"
mkdir -p "$S/munge" "$S/munge-key" "$S/log" "$S/state" "$S/spool" "$S/work" "$S/tmp"
chmod 700 "$S/munge-key"
H=$(hostname -s)
PORT=${SLURM_LOCAL_PORT:-16817}   # slurmctld; slurmd uses PORT+1
DAEMONS=()                         # PIDs of what this script started, stopped in this order reversed
cleanup() {
  local p i
  # Jobs first (their slurmstepd and tasks are Slurm's, not children of this shell): cancel the
  # ones submitted (ids in $S/jobs) and wait until the node has none left; then the daemons by PID.
  if [ -s "$S/jobs" ] && [ ${#DAEMONS[@]} -ge 3 ] && kill -0 "${DAEMONS[1]}" 2>/dev/null; then
    scancel $(cat "$S/jobs") 2>/dev/null
    wait_for 90 no_jobs_left
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    p=${DAEMONS[$i]}
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ $status -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$S"; else echo "slurm: logs and outputs kept in $S"; fi
}
trap cleanup EXIT
trap 'fail interrupted "by a signal"; exit 1' INT TERM

# Polls CMD (a state check) every 0.5 s until it succeeds; SECS is only a hang guard.
wait_for() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 2; i++)); do "$@" && return 0; sleep 0.5; done
  return 1
}
field() { scontrol show job -o "$1" 2>/dev/null | grep -o " $2=[^ ]*" | cut -d= -f2; }
state_is() { local s; s=$(field "$1" JobState); [ "$s" = "$2" ] && [ -z "$(squeue -h -j "$1" -t CG 2>/dev/null)" ]; }
finished() { case $(field "$1" JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) [ -z "$(squeue -h -j "$1" -t CG 2>/dev/null)" ];; *) return 1;; esac; }
no_jobs_left() { [ -z "$(squeue -h 2>/dev/null)" ] && node_idle; }
node_idle() { [ "$(sinfo -h -n "$H" -o %T 2>/dev/null)" = idle ]; }
has_checkpoint() { ls "$1"/checkpoints/step-*.json >/dev/null 2>&1; }
checkpointed_or_done() { has_checkpoint "$1" || finished "$2"; }   # OUT JOBID
last_checkpoint() { ls "$1"/checkpoints/step-*.safetensors 2>/dev/null | tail -1; }

# --- munge: own key, socket, pid, seed and log (nothing system-wide is touched)
mungekey -c -k "$S/munge-key/munge.key" >/dev/null 2>&1 \
  || { dd if=/dev/urandom of="$S/munge-key/munge.key" bs=1 count=1024 2>/dev/null; chmod 600 "$S/munge-key/munge.key"; }
SOCK=$S/munge/munge.socket
munged -F --force --key-file="$S/munge-key/munge.key" --socket="$SOCK" --pid-file="$S/munge/munged.pid" \
  --seed-file="$S/munge/munged.seed" --log-file="$S/log/munged.log" >"$S/log/munged.out" 2>&1 &
DAEMONS+=($!)
wait_for 20 munge -S "$SOCK" -n -o /dev/null 2>/dev/null \
  || { fail setup "munged did not start: $(tail -2 "$S/log/munged.out")"; exit 1; }

# --- Slurm: one node with this machine's 2 CPUs.
# cred_expire=10: a requeued job is held for cred_expire+1 s (BeginTime; default 120 s);
# sched_interval=5: the main scheduling loop then starts it within 5 s (default 60 s).
# TmpFS=$S/tmp: the PMIx plugin makes each step's client folder there (spmix_appdir_<uid>_<job>.<step>,
# default /tmp); job ids restart at 1 with each fresh StateSaveLocation, so a folder left in /tmp by
# an earlier, interrupted run made that job's step fail to launch ("File exists").
cat > "$S/slurm.conf" <<EOF
ClusterName=mcllocal
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
TmpFS=$S/tmp
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=5
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=$H NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=local Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$S/slurm.conf
slurmctld -D -f "$SLURM_CONF" >"$S/log/slurmctld.out" 2>&1 &
DAEMONS+=($!)
slurmd -D -f "$SLURM_CONF" >"$S/log/slurmd.out" 2>&1 &
DAEMONS+=($!)
wait_for 60 node_idle || { fail setup "node $H not idle: $(tail -3 "$S/log/slurmctld.log" "$S/log/slurmd.log")"; exit 1; }
for p in "${DAEMONS[@]}"; do kill -0 "$p" 2>/dev/null || { fail setup "a daemon exited (see $S/log)"; exit 1; }; done
srun --mpi=list 2>&1 | grep -q pmix || { fail setup "srun --mpi=list offers no pmix"; exit 1; }

# --- tiny config; the environment reaches the batch script and, through srun, every task
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MCL_PROGRESS=plain BIN
export MCL_THREADS=1 OPENBLAS_NUM_THREADS=1
W=$S/work
"$BIN" data prepare /usr/share/datasets/fashion-mnist --split train --classes 0,1,2,3,4,5 --limit 16 \
  --out "$W/tiny.mcld" >/dev/null || { fail setup "data prepare failed"; exit 1; }
tiny_yaml() {   # $1 = epochs
  cat <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16}
data: {train: $W/tiny.mcld, test: $W/tiny.mcld, rotations: 4}
train: {batch_size: 32, epochs: $1, lr: 0.1, seed: 3, checkpoint_every: 1}
eval: {after_train: true, sei_ways: [1], test_limit: 32, train_limit: 32}
YAML
}
tiny_yaml 2 > "$W/short.yaml"
# submit NAME OUTDIR CONFIG SBATCH-OPTIONS...: the project's script (SCRIPT, default
# single-node.sbatch), unchanged; 2 tasks x 1 CPU.
submit() {
  local name=$1 out=$2 config=$3; shift 3
  local id
  id=$(sbatch --parsable --job-name="$name" --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 \
         --output="$W/$name.out" --chdir="$W" "$@" "$CLUSTER/${SCRIPT:-single-node.sbatch}" "$config" "$out") || return 1
  echo "$id" >> "$S/jobs"; echo "$id"
}
took() { echo "$(( $(date +%s) - $1 )) s"; }
tail_of() { tail -n 3 "$1" 2>/dev/null | tr '\n' ' ' | tr -s ' '; }

# 1. run-to-end (srun --mpi=pmix), short config; its speed sizes the long config below.
t0=$(date +%s)
id=$(submit run-to-end "$W/end" "$W/short.yaml" --time=10) || fail run-to-end "sbatch failed"
if wait_for 300 finished "$id" && state_is "$id" COMPLETED && [ -s "$W/end/eval/report.md" ]; then
  ok run-to-end "job $id srun --mpi=pmix, $(wc -l < "$W/end/metrics.jsonl") steps, eval/report.md written, $(took $t0)"
else fail run-to-end "job $id state $(field "$id" JobState) exit $(field "$id" ExitCode), report $(ls "$W/end/eval" 2>&1 | tr '\n' ' '): $(tail_of "$W/run-to-end.out")"; fi

# 2. LAUNCHER=mpirun, 2 epochs given by MCL_TRAIN_ARGS (the config says 3). Once its first
# checkpoint exists, the batch shell gets USR1 as --signal=B: sends it (scancel --signal=USR1
# --batch): mpirun forwards it, the script requeues, the job resumes and ends as srun's did.
tiny_yaml 3 > "$W/three.yaml"
same_as_srun() { cmp -s "$W/end/checkpoints/step-00000024.safetensors" "$1/checkpoints/step-00000024.safetensors"; }
t0=$(date +%s)
id=$(LAUNCHER=mpirun MCL_TRAIN_ARGS="--set train.epochs=2" submit run-to-end-mpirun "$W/mpirun" "$W/three.yaml" --time=10) \
  || fail run-to-end-mpirun "sbatch failed"
wait_for 300 checkpointed_or_done "$W/mpirun" "$id" && [ "$(field "$id" JobState)" = RUNNING ] && scancel --signal=USR1 --batch "$id"
log=$W/run-to-end-mpirun.out
if wait_for 300 finished "$id" && state_is "$id" COMPLETED && grep -q "(mpirun)" "$log" && [ "$(field "$id" Restarts)" -ge 1 ] \
   && grep -q "stopped by signal 10" "$log" && [ -s "$W/mpirun/eval/report.md" ] && same_as_srun "$W/mpirun"; then
  ok run-to-end-mpirun "job $id LAUNCHER=mpirun: $(grep -o "stopped by signal 10 after step [0-9]*" "$log"), requeued, resumed, 24 steps, report written, step-00000024 byte-identical to srun's, $(took $t0)"
else fail run-to-end-mpirun "job $id state $(field "$id" JobState) restarts $(field "$id" Restarts) exit $(field "$id" ExitCode), step-00000024 $(same_as_srun "$W/mpirun" && echo same || echo differs/missing): $(tail_of "$log")"; fi

# 3. multi-node.sbatch on this one node (--nodes=1), srun --mpi=pmix
t0=$(date +%s)
id=$(SCRIPT=multi-node.sbatch submit multi-node-script "$W/multi" "$W/short.yaml" --time=10) || fail multi-node-script "sbatch failed"
if wait_for 300 finished "$id" && state_is "$id" COMPLETED && [ -s "$W/multi/eval/report.md" ] && same_as_srun "$W/multi"; then
  ok multi-node-script "job $id multi-node.sbatch --nodes=1, 24 steps, report written, step-00000024 byte-identical to single-node's, $(took $t0)"
else fail multi-node-script "job $id state $(field "$id" JobState) exit $(field "$id" ExitCode): $(tail_of "$W/multi-node-script.out")"; fi

# 4. time-limit-requeue. slurmctld checks time limits every 30 s and sends the warning signal at
# the first check less than 30 s before it is due: with --time=1 and USR1@10 it comes 20-50 s
# after the start (a requeued job gets a new minute and may be stopped again). The config is
# sized to ~75 s of training at the speed just measured (12 steps per epoch); if the machine got
# so much faster that the job finished before USR1 came, it is sized again from that job's own
# speed and run once more. Then a reference job runs the same config to the end.
mean_step_s() { [ -s "$1" ] || { echo 0.3; return; }; awk -F'"step_s":' 'NR > 2 { split($2, a, ","); s += a[1]; n++ } END { printf "%.3f", n ? s / n : 0.3 }' "$1" 2>/dev/null; }
epochs_for() {   # step_s min max: epochs for ~75 s of training
  awk -v s="$1" -v min="$2" -v max="$3" 'BEGIN { e = int(75 / (12 * s) + 0.5); e = e < min ? min : e; print (e > max ? max : e) }'
}
step_s=$(mean_step_s "$W/end/metrics.jsonl")
EPOCHS=$(epochs_for "$step_s" 6 40)
t0=$(date +%s); stops=0; again=""
for attempt in 1 2; do
  tiny_yaml "$EPOCHS" > "$W/long.yaml"
  rm -rf "$W/tl" "$W/time-limit.out"
  id=$(submit time-limit "$W/tl" "$W/long.yaml" --time=1 --signal=B:USR1@10) || break
  wait_for 600 finished "$id"
  # mcl-dist prints "stopped by signal 10 after step N" when USR1 (forwarded by the script) stops it
  stops=$(grep -c "stopped by signal 10 after step" "$W/time-limit.out")
  [ "$stops" -ge 1 ] || [ "$(field "$id" JobState)" != COMPLETED ] || [ $attempt = 2 ] && break
  step_s=$(mean_step_s "$W/tl/metrics.jsonl")
  EPOCHS=$(epochs_for "$step_s" $((EPOCHS * 2)) 80); again=", 2nd attempt: the 1st ended before USR1"
done
t_tl=$(took $t0)
LAST=$(printf "step-%08d.safetensors" $((EPOCHS * 12)))
log=$W/time-limit.out
if state_is "$id" COMPLETED && [ "$stops" -ge 1 ] && [ "$(field "$id" Restarts)" -ge 1 ] && grep -q "resumed from" "$log" \
   && [ -s "$W/tl/eval/report.md" ]; then
  t0=$(date +%s)
  ref=$(submit reference "$W/ref" "$W/long.yaml" --time=10)
  if wait_for 600 finished "$ref" && state_is "$ref" COMPLETED && cmp -s "$W/ref/checkpoints/$LAST" "$W/tl/checkpoints/$LAST" \
     && python3 - "$W/ref/metrics.jsonl" "$W/tl/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if len(a) == len(b) > 0 and all(x["step"] == y["step"] and x["loss"] == y["loss"] for x, y in zip(a, b)) else 1)
PY
  then
    # After a requeue SubmitTime is the requeue, EligibleTime the end of the BeginTime hold.
    secs() { date -d "$(field "$id" "$1")" +%s; }
    stopped_at=$(grep -o "stopped by signal 10 after step [0-9]*" "$log" | awk '{ print $NF }' | paste -sd, -)
    ok time-limit-requeue "job $id --time=1 USR1@10, $EPOCHS epochs ($((EPOCHS * 12)) steps$again): stopped by USR1 after step(s) $stopped_at, requeued $(field "$id" Restarts)x (last: held $(( $(secs EligibleTime) - $(secs SubmitTime) )) s, restarted $(( $(secs StartTime) - $(secs SubmitTime) )) s after the requeue), resumed and completed in $t_tl; every loss and $LAST byte-identical to reference job $ref ($(took $t0))"
  else fail time-limit-requeue "reference job $ref state $(field "$ref" JobState); $LAST: $(cmp "$W/ref/checkpoints/$LAST" "$W/tl/checkpoints/$LAST" 2>&1 | head -1)"; fi
else fail time-limit-requeue "job $id state $(field "$id" JobState) restarts $(field "$id" Restarts) USR1 stops $stops exit $(field "$id" ExitCode): $(tail_of "$log")"; fi

# 5. scancel-keeps-checkpoint: cancel once a checkpoint exists, then evaluate the newest one
t0=$(date +%s)
id=$(submit scancel "$W/sc" "$W/long.yaml" --time=10) || fail scancel-keeps-checkpoint "sbatch failed"
if wait_for 300 checkpointed_or_done "$W/sc" "$id" && [ "$(field "$id" JobState)" = RUNNING ]; then
  scancel "$id"
  if wait_for 120 finished "$id" && state_is "$id" CANCELLED; then
    ck=$(last_checkpoint "$W/sc")
    if [ -n "$ck" ] && [ -f "${ck%.safetensors}.json" ] \
       && "$BIN" evaluate --config "$W/long.yaml" --checkpoint "$ck" --test "$W/tiny.mcld" --out "$W/sc-eval" >"$W/sc-eval.log" 2>&1 \
       && [ -s "$W/sc-eval/report.md" ]; then
      how=$(grep -q "stopped by signal" "$W/scancel.out" && echo "written on SIGTERM" || echo "last periodic one")
      ok scancel-keeps-checkpoint "job $id cancelled after $(wc -l < "$W/sc/metrics.jsonl") steps; $(basename "$ck") ($how) evaluates, report written, $(took $t0)"
    else fail scancel-keeps-checkpoint "checkpoint ${ck:-none}: $(tail_of "$W/sc-eval.log")"; fi
  else fail scancel-keeps-checkpoint "job $id state $(field "$id" JobState) after scancel"; fi
else fail scancel-keeps-checkpoint "job $id never ran with a checkpoint: $(tail_of "$W/scancel.out")"; fi

exit $status
