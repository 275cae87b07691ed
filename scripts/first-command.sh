#!/usr/bin/env bash
# Runs README's first command verbatim (the first command line of README's
# first ```sh block, read from README.md so that it cannot drift), in this
# checkout, as a user would: waits for the demo's verified lookup, then sends
# Ctrl-C (SIGINT to the command's process group) and checks that every node
# process is gone. Bounded: FIRST_COMMAND_TIMEOUT seconds (default 2400,
# which covers a release build on a fresh 2-core machine) for the lookup,
# 60 s for the shutdown. Prints how long the command took to the verified
# lookup, and how long `up` took from generating the testnet to it.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=$(awk '/^```sh/{f=1;next} f && /^```/{exit} f && !/^#/ && NF{print; exit}' README.md)
[ -n "$cmd" ] || { echo "first-command: no command found in README.md" >&2; exit 1; }
dir=testnet-data
if [ -e "$dir" ]; then
  echo "first-command: $PWD/$dir exists; README's command creates it (stop that testnet and remove it first)" >&2
  exit 1
fi
limit=${FIRST_COMMAND_TIMEOUT:-2400}
log=$(mktemp /tmp/first-command.XXXXXX.log)
echo "first-command: \$ $cmd   (output: $log)"

start=$SECONDS
setsid bash -c "$cmd" >"$log" 2>&1 </dev/null &
pgid=$!
cleanup() {
  # However this script ends, nothing it started keeps running.
  kill -KILL -- "-$pgid" 2>/dev/null || true
  if [ -f "$dir/testnet.json" ]; then
    for pid in $(grep -o '"pid": *[0-9]*' "$dir/testnet.json" | grep -o '[0-9]*$'); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
}
trap cleanup EXIT
fail() {
  echo "first-command: FAILED: $*" >&2
  echo "---- last 40 lines of its output ----" >&2
  tail -n 40 "$log" >&2
  exit 1
}

generated=""
while ! grep -q '^demo: verified lookup' "$log"; do
  [ -z "$generated" ] && grep -q '^generated ' "$log" && generated=$SECONDS
  kill -0 "$pgid" 2>/dev/null || fail "the command exited before printing the demo's verified lookup"
  [ $((SECONDS - start)) -lt "$limit" ] || fail "no verified lookup within ${limit}s"
  sleep 1
done
[ -z "$generated" ] && generated=$SECONDS
lookup=$SECONDS
# The try: block follows the lookup; give it a moment to be printed.
for _ in $(seq 1 20); do grep -q '^try' "$log" && break; sleep 0.5; done
grep -q '^try' "$log" || fail "no try: commands after the demo lookup"
mapfile -t pids < <(grep -o '"pid": *[0-9]*' "$dir/testnet.json" | grep -o '[0-9]*$')
[ "${#pids[@]}" -ge 4 ] || fail "testnet.json records ${#pids[@]} node pids, expected 4"

kill -INT -- "-$pgid"
for _ in $(seq 1 120); do kill -0 "$pgid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$pgid" 2>/dev/null && fail "still running 60 s after Ctrl-C"
for pid in "${pids[@]}"; do
  if [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    fail "node process $pid still runs after Ctrl-C"
  fi
done
grep -q '^stopped ' "$log" || fail "up did not say it stopped its nodes"

sed -n '/^demo: verified lookup/,/^$/p' "$log"
echo "first-command: ok: verified lookup $((lookup - start)) s after the command started (build included), $((lookup - generated)) s after up generated the testnet; every node stopped on Ctrl-C"
rm -rf "$dir"
