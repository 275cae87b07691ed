#!/usr/bin/env bash
# The simulator's mutation check: disable each safety rule of the consensus
# core in turn (cargo feature `mutation`, PALISADE_MUTATION=<rule>) and run
# swarm seeds, then enumerated Twins seeds, until one fails. Prints, per
# rule, the first seed that caught it; exits non-zero if a rule survived
# the budget (the simulator would not notice that rule missing).
#
#   scripts/mutations.sh [SEEDS]      (default 1024 per mode, the CI budget)
#
# Uses $CARGO_TARGET_DIR (default target/) and a release build.
# As of this commit vote-once and exec-root are caught within the budget;
# lock+tc-high-qc is caught by Twins seed 13575 (beyond 1,024: run
# `scripts/mutations.sh 20000` or replay it); lock and tc-high-qc alone are
# equivalent given the other, and timeout survives (audits/THREAT_MODEL.md),
# so the script exits 1 until the simulator builds their schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-1024}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p palisade-testnet --features mutation --bin palisade-testnet
BIN="$TARGET/release/palisade-testnet"

# Unmutated first: a seed failing here is a real bug, not a catch.
if ! "$BIN" sim swarm --seeds "$SEEDS" --progress 0 > /tmp/mutations-baseline.$$ 2>&1; then
    cat /tmp/mutations-baseline.$$
    rm -f /tmp/mutations-baseline.$$
    echo "baseline: the unmutated core fails; fix that first" >&2
    exit 2
fi
echo "baseline: $(tail -n 1 /tmp/mutations-baseline.$$)"
rm -f /tmp/mutations-baseline.$$

survived=0
printf '%-16s %-8s %-12s %s\n' rule mode first-seed "what broke"
for rule in lock vote-once timeout tc-high-qc exec-root lock,tc-high-qc; do
    caught=""
    for mode in swarm twins; do
        flag=""
        [ "$mode" = twins ] && flag="--twins"
        out=$(PALISADE_MUTATION="$rule" "$BIN" sim swarm $flag --seeds "$SEEDS" --progress 0 2>&1 || true)
        seed=$(printf '%s\n' "$out" | sed -n 's/^seed \([0-9]*\) FAILED: \(.*\)$/\1/p' | head -n 1)
        if [ -n "$seed" ]; then
            what=$(printf '%s\n' "$out" | sed -n 's/^seed [0-9]* FAILED: violations: \[\([A-Za-z]*\).*$/\1/p' | head -n 1)
            printf '%-16s %-8s %-12s %s\n' "$rule" "$mode" "$seed" "${what:-see replay}"
            printf '%s\n' "$out" | grep '^  replay:' | head -n 1
            caught=1
            break
        fi
    done
    if [ -z "$caught" ]; then
        printf '%-16s %-8s %-12s %s\n' "$rule" both SURVIVED "no violation in $SEEDS swarm + $SEEDS twins seeds"
        survived=$((survived + 1))
    fi
done
exit $(( survived > 0 ))
