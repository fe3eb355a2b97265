#!/usr/bin/env bash
# Where RaftMQ's server CPU goes under the peers harness load (issue 13, item 1).
#
#   scripts/profile-peers.sh MODE WINDOW [RATE] [SECS]     e.g.  pub 64     e2e 64 0     e2e 64 1000
#
# Starts the harness's 3-process cluster (../shared/bench/peers/lib.sh, `raftmq` step), runs one
# harness case (the official Rust client, 1 KiB messages) while `perf record` samples every
# raftmq process at 499 Hz with call graphs, then prints the harness result and the share of
# server CPU per component (scripts/perf-categories.py). Needs the harness built
# (`../shared/bench/peers/run.sh build`) and target/release/raftmq; perf.data and the report
# stay in $OUT (default /tmp/raftmq-profile).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?mode: pub or e2e}
WINDOW=${2:?window}
RATE=${3:-0}
SECS=${4:-10}
OUT=${OUT:-/tmp/raftmq-profile}
PEERS_DIR=$(cd ../shared/bench/peers && pwd)
export PEERS_DIR
export RAFTMQ_BIN=${RAFTMQ_BIN:-$PWD/target/release/raftmq}
# shellcheck source=/dev/null
source "$PEERS_DIR/lib.sh"
H=${CARGO_TARGET_DIR:-$PEERS_TMP/target}/release/peers-harness
[ -x "$H" ] || { echo "build the harness first: $PEERS_DIR/run.sh build" >&2; exit 1; }
mkdir -p "$OUT"
trap raftmq_stop EXIT INT TERM
raftmq_cluster_start
pids=$(raftmq_pids)
# The brokers only (the nameserver is idle): perf takes a comma-separated list.
brokers=$(cat "$PEERS_TMP"/pids/raftmq-n*.pid | paste -sd, -)
warm=1; [ "$MODE" = e2e ] && warm=5
perf record -F 499 -g -p "$brokers" -o "$OUT/perf.data" -- sleep $((SECS + warm + 3)) \
  > "$OUT/perf-record.log" 2>&1 &
perf_pid=$!
RUST_LOG=warn "$H" bench --system raftmq --mode "$MODE" --window "$WINDOW" --rate "$RATE" \
  --replicas 3 --secs "$SECS" --max-msgs 2000000 --size 1024 --warmup-secs "$warm" \
  --server-pids "$pids" --tag "profile" --flush 3-proc --url 127.0.0.1:28081 | tee "$OUT/result.json"
wait "$perf_pid" || true
perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0 \
  2> /dev/null > "$OUT/report.txt"
python3 scripts/perf-categories.py "$OUT/report.txt" | tee "$OUT/categories.md"
