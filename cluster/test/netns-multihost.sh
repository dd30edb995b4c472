#!/usr/bin/env bash
# Several hosts on one machine: two network namespaces joined by a veth pair act as two hosts,
# each with an address that exists only inside its namespace (10.77.0.1, 10.77.0.2). mpirun runs
# in the first; its rsh agent (a script) starts Open MPI's daemon in the other host's namespace;
# the ranks talk over TCP only (btl tcp,self; no shared memory between hosts). The tiny
# configuration trains for a few steps on 2 hosts x 2 ranks and on 1 host x 4 ranks (shared
# memory); the loss of every step must agree within the rank-invariance tolerance (1e-5).
# Prints "multihost <check> ok|FAIL ..."; exit status non-zero on failure. Needs root (ip netns).
# Usage: bash cluster/test/netns-multihost.sh path/to/mcl-dist
set -uo pipefail
BIN=$(readlink -f "${1:?usage: netns-multihost.sh path/to/mcl-dist}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MCL_PROGRESS=plain
W=$(mktemp -d)
NS1=mcl-h1-$$ NS2=mcl-h2-$$ VA=mclv$$a VB=mclv$$b
status=0
ok() { echo "multihost $1 ok $2"; }
fail() { echo "multihost $1 FAIL $2"; status=1; }
cleanup() {
  ip netns del "$NS1" 2>/dev/null; ip netns del "$NS2" 2>/dev/null   # removes the veth pair too
  rm -rf "$W"
}
trap cleanup EXIT

# Two hosts: namespaces, a veth pair between them, loopback up in each.
ip netns add "$NS1" && ip netns add "$NS2" || { fail setup "ip netns add failed (root needed)"; exit 1; }
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$NS1"; ip link set "$VB" netns "$NS2"
ip -n "$NS1" addr add 10.77.0.1/24 dev "$VA"; ip -n "$NS2" addr add 10.77.0.2/24 dev "$VB"
for ns in "$NS1" "$NS2"; do ip -n "$ns" link set lo up; done
ip -n "$NS1" link set "$VA" up; ip -n "$NS2" link set "$VB" up
# The rsh agent: "ssh" into a host = enter its namespace (the address names the host).
cat > "$W/netns-rsh" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in 10.77.0.1) ns=$NS1 ;; 10.77.0.2) ns=$NS2 ;; *) echo "netns-rsh: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod +x "$W/netns-rsh"

"$BIN" data prepare /usr/share/datasets/fashion-mnist --split train --classes 0,1,2,3,4,5 --limit 16 --out "$W/tiny.mcld" >/dev/null \
  || { fail setup "data prepare failed"; exit 1; }
cat > "$W/tiny.yaml" <<YAML
model: {arch: resnet18, width: 8, projector_hidden: 32, projection_dim: 16, sync_bn: true}
data: {train: $W/tiny.mcld, rotations: 4}
train: {batch_size: 32, epochs: 1, max_steps: 6, lr: 0.1, seed: 3, checkpoint_every: 0}
eval: {after_train: false}
YAML
TRAIN="$BIN train --config $W/tiny.yaml"

start=$(date +%s)
ip netns exec "$NS1" mpirun -np 4 --host 10.77.0.1:2,10.77.0.2:2 --oversubscribe --bind-to none \
  --mca plm_rsh_agent "$W/netns-rsh" --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_if_include 10.77.0.0/24 -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1 -x MCL_PROGRESS \
  -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
  sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(ip -4 -o addr show | grep -o "10\.77\.0\.[0-9]*")" >&2; exec "$0" "$@"' \
  $TRAIN --out "$W/2x2" >"$W/2x2.log" 2>&1; rc=$?
t22=$(( $(date +%s) - start ))
hosts=$(grep -c "^rank [0-9] on 10.77.0.2" "$W/2x2.log")
if [ $rc -eq 0 ] && [ "$hosts" -eq 2 ]; then ok two-hosts "4 ranks, 2 on each host, TCP only, $(wc -l < "$W/2x2/metrics.jsonl") steps in ${t22} s"
else fail two-hosts "exit $rc, ranks on the second host: $hosts: $(tail -5 "$W/2x2.log")"; fi

mpirun -np 4 --oversubscribe --bind-to none -x MCL_THREADS=1 -x OPENBLAS_NUM_THREADS=1 -x MCL_PROGRESS \
  $TRAIN --out "$W/1x4" >"$W/1x4.log" 2>&1 || fail one-host "1 x 4 run failed: $(tail -3 "$W/1x4.log")"

if out=$(python3 - "$W/2x2/metrics.jsonl" "$W/1x4/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
if len(a) != len(b) or not a: print("steps %d vs %d" % (len(a), len(b))); sys.exit(1)
err = max(abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in zip(a, b))
print("%d steps, max rel loss difference %.3e; " % (len(a), err) + ", ".join("%.6f/%.6f" % (x["loss"], y["loss"]) for x, y in zip(a, b)))
sys.exit(0 if err <= 1e-5 else 1)
PY
); then ok loss-2x2-vs-1x4 "$out"; else fail loss-2x2-vs-1x4 "$out"; fi
exit $status
