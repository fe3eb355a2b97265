#!/usr/bin/env bash
# One send-throughput measurement of `raftmq dev` (fresh data directory): starts BINARY,
# runs `raftmq bench --senders 128` for SECS seconds (1 KiB bodies), prints its result line
# and stops. For paired A/B runs of two builds:
#
#   farm-bench -n 5 --timeout 600 --vs "bash scripts/bench-dev.sh OLD 15" -- \
#       bash scripts/bench-dev.sh NEW 15
#
# (farm-bench times the whole script; the msgs/s figures are in BENCH_LOG, default
# /tmp/bench-dev.log, one line per run.) Uses ports 28281, 28201-28203, 29076.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?binary}
secs=${2:-15}
log=${BENCH_LOG:-/tmp/bench-dev.log}
dir=$(mktemp -d)
"$bin" dev --data-dir "$dir" --listen 127.0.0.1:28281 --raft-port 28201 \
    --nameserver 127.0.0.1:29076 >"$dir.log" 2>&1 &
dev=$!
trap 'kill -9 $dev 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir" "$dir.log"' EXIT
until "$bin" produce --endpoints 127.0.0.1:28281 --timeout-ms 2000 --topic BenchTopic \
    --count 1 >/dev/null 2>&1; do sleep 0.2; done
out=$("$bin" bench --endpoint 127.0.0.1:28281 --senders 128 --duration "$secs" --warmup 2 2>&1)
line=$(echo "$out" | grep -m1 -i "msgs/s" || echo "$out" | tail -1)
echo "$(basename "$bin") $line" | tee -a "$log"
