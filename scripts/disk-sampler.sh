#!/usr/bin/env bash
# Sample node0..2 data dirs (WAL, SST, total) and node0 height every 15 s
# (bounded: 90 samples). usage: scripts/disk-sampler.sh TESTNET_DIR
DIR=$1
for _ in $(seq 1 60); do [ -d "$DIR/node0/data/db" ] && break; sleep 2; done
A0=$(python3 -c "import json;print(json.load(open('$DIR/network.json'))['nodes'][0]['api_url'])")
for _ in $(seq 1 90); do
  h=$(curl -s -m 2 "$A0/v1/status" | python3 -c "import json,sys;print(json.load(sys.stdin)['height'])" 2>/dev/null || echo "?")
  line="$(date -u +%T) height=$h"
  for i in 0 1 2; do
    db="$DIR/node$i/data/db"
    [ -d "$db" ] || continue
    tot=$(du -sm --apparent-size "$db" | cut -f1)
    wal=$(find "$db" -name '*.log' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1048576}')
    sst=$(find "$db" -name '*.sst' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1048576}')
    line="$line node$i=${tot}MiB(wal=$wal,sst=$sst)"
  done
  echo "$line"
  [ -d "$DIR/node0" ] || break
  sleep 15
done
