#!/usr/bin/env bash
# Time a wiped node's snapshot catch-up under a live fleet (issue 16).
# usage: scripts/catch-up-bench.sh INSTANCES [DIR]
# Needs release binaries in $R (palisade-testnet, palisade-node).
# Starts an attested testnet whose nodes prune (retain_heights 200), runs
# `bench fleet` in the background, waits until node0 pruned height 1, kills
# node3, deletes its data directory, restarts it and prints how long until its
# height is within 2 of node0's, with the node's own "installed a certified
# snapshot" log line. Bounded: every wait has a deadline; processes it starts
# are stopped by PID / `down`.
set -euo pipefail
N=${1:?instances}
DIR=${2:-/tmp/snap-bench-$N}
R=${R:?set R to the release directory}
rm -rf "$DIR"
"$R/palisade-testnet" up --detach --dir "$DIR" --leases attested --retain-heights 200 >/dev/null
api() { python3 -c "import json,sys;print(json.load(open('$DIR/network.json'))['nodes'][$1]['api_url'])"; }
A0=$(api 0); A3=$(api 3)
height() { curl -s -m 2 "$1/v1/status" | python3 -c "import json,sys;print(json.load(sys.stdin)['height'])" 2>/dev/null || echo 0; }
"$R/palisade-testnet" bench fleet --dir "$DIR" --instances "$N" --per-identity 10 --interval 10 --ttl 30 --duration "${DURATION:-150}" > "$DIR/fleet.out" 2> "$DIR/fleet.err" &
BENCH=$!
# Registration done (setup) and node0 pruned height 1: bounded wait.
for _ in $(seq 1 1200); do
  grep -q "registered in" "$DIR/fleet.err" 2>/dev/null && [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$A0/v1/audit/blocks/1")" = 410 ] && break
  sleep 1
done
sleep "${AFTER_SETUP:-20}"
echo "at $(date -u +%T): node0 height $(height "$A0"), $(uptime | sed 's/.*load/load/')"
"$R/palisade-testnet" kill --dir "$DIR" --node 3 >/dev/null
rm -rf "$DIR/node3/data"
T0=$(date +%s.%N)
"$R/palisade-testnet" restart --dir "$DIR" --node 3 >/dev/null || echo "restart: API not up within the testnet bound (still catching up)"
T1=$(date +%s.%N)
for _ in $(seq 1 600); do
  h3=$(height "$A3"); h0=$(height "$A0")
  if [ "$h3" -gt 0 ] && [ $((h3 + 2)) -ge "$h0" ]; then break; fi
  sleep 0.2
done
T2=$(date +%s.%N)
echo "wiped node3: API up after $(echo "$T1 - $T0" | bc) s, caught up (height $h3, node0 $h0) after $(echo "$T2 - $T0" | bc) s"
echo "node3 block 1: HTTP $(curl -s -o /dev/null -w '%{http_code}' -m 2 "$A3/v1/audit/blocks/1")"
grep -h "installed a certified snapshot\|catching up from a snapshot\|snapshot refused" "$DIR/node3/node.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -3
wait $BENCH || true
tail -1 "$DIR/fleet.out"
"$R/palisade-testnet" down --dir "$DIR" >/dev/null
