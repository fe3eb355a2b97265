#!/usr/bin/env bash
# Memory of `raftmq dev` against the number of messages it retains (issue 12, item 7): sends
# 1 KiB messages (`raftmq bench --senders 128`, nothing consumed, nothing deleted) until the
# bench topic holds COUNT messages, stops the load, lets the replicas settle (snapshots), and
# prints the process RSS (three replicas in one process), the data directory's size and how
# much of it is consume-queue files.
#
#   scripts/rss-retained.sh <count> [binary]
#
# Needs `cargo build --release -p raftmq` and about 3.3 GiB of free disk per million
# messages. Uses ports 28281, 28201-28203, 29076.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:?messages to retain}
bin=${2:-target/release/raftmq}
settle=${SETTLE:-20}
dir=$(mktemp -d)
dev=
bench=
cleanup() {
    [ -n "$bench" ] && kill "$bench" 2>/dev/null || true
    [ -n "$dev" ] && kill "$dev" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir" "$dir.log" "$dir.bench"
}
trap cleanup EXIT
"$bin" dev --data-dir "$dir" --listen 127.0.0.1:28281 --raft-port 28201 \
    --nameserver 127.0.0.1:29076 >"$dir.log" 2>&1 &
dev=$!
stored() {
    "$bin" admin --endpoint 127.0.0.1:28281 status 2>/dev/null |
        sed -nE 's/^topic BenchTopic.*\): ([0-9]+) messages.*/\1/p'
}
rss() { awk '/VmRSS/ {print int($2 / 1024)}' /proc/$dev/status; }
until "$bin" produce --endpoints 127.0.0.1:28281 --timeout-ms 2000 --topic BenchTopic \
    --count 1 >/dev/null 2>&1; do sleep 0.2; done
echo "idle: rss=$(rss)MB"
"$bin" bench --endpoint 127.0.0.1:28281 --senders 128 --duration 100000 --warmup 0 \
    >"$dir.bench" 2>&1 &
bench=$!
start=$SECONDS
while :; do
    n=$(stored)
    [ "${n:-0}" -ge "$count" ] && break
    sleep 2
    if [ $(((SECONDS - start) % 60)) -lt 2 ]; then
        echo "t=$((SECONDS - start))s stored=${n:-0} rss=$(rss)MB"
    fi
done
kill "$bench"; wait "$bench" 2>/dev/null || true
bench=
sleep "$settle"
n=$(stored)
cq=$(du -smc "$dir"/*/group-*/cq 2>/dev/null | tail -1 | cut -f1)
echo "retained=$n rss=$(rss)MB data=$(du -sm "$dir" | cut -f1)MB cq=${cq:-0}MB load=$((SECONDS - start - settle))s"
