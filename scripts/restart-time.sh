#!/usr/bin/env bash
# Restart time of `raftmq dev` with a large log (issue 12, item 7): fills the log with 1 KiB
# messages until the data directory holds GIB GiB, stops the process (SIGKILL: a crash, the
# worst case), starts it again and times how long until a send is acknowledged.
#
#   scripts/restart-time.sh <GiB> [binary]
#
# The data directory holds all three replicas of `raftmq dev` (each about a third). Needs
# `cargo build --release -p raftmq`. Uses ports 28181, 28101-28103, 28976.
# KEEP=dir reuses (and keeps) an already filled directory, to time one log with two binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:?GiB to fill}
bin=${2:-target/release/raftmq}
dir=${KEEP:-$(mktemp -d)}
mkdir -p "$dir"
dev=
cleanup() {
    [ -n "$dev" ] && kill -9 "$dev" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -z "${KEEP:-}" ] && rm -rf "$dir"
    true
}
trap cleanup EXIT
start_dev() {
    "$bin" dev --data-dir "$dir" --listen 127.0.0.1:28181 --raft-port 28101 \
        --nameserver 127.0.0.1:28976 --segment-mb 256 >>"$dir.log" 2>&1 &
    dev=$!
}
send_one() {
    "$bin" produce --endpoints 127.0.0.1:28181 --timeout-ms 2000 --topic BenchTopic \
        --count 1 >/dev/null 2>&1
}
have=$(du -sm "$dir" | cut -f1)
if [ "$have" -lt $((gib * 1024)) ]; then
    start_dev
    until send_one; do sleep 0.2; done
    "$bin" bench --endpoint 127.0.0.1:28181 --senders 128 --duration 100000 --warmup 0 \
        >/dev/null 2>&1 &
    bench=$!
    while [ "$(du -sm "$dir" | cut -f1)" -lt $((gib * 1024)) ]; do sleep 5; done
    kill "$bench"; wait "$bench" 2>/dev/null || true
    sleep 2
    kill -9 "$dev"; wait "$dev" 2>/dev/null || true
fi
echo "log: $(du -sh "$dir" | cut -f1) in $(find "$dir" -name '*.seg' | wc -l) segments"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s.%N)
start_dev
until send_one; do sleep 0.05; done
t1=$(date +%s.%N)
echo "restart to first acknowledged send: $(echo "$t1 - $t0" | bc) s ($bin)"
rss=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$dev/status)
echo "rss after restart: ${rss} MB"
kill -9 "$dev"; wait "$dev" 2>/dev/null || true
dev=
