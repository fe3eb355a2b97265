#!/usr/bin/env bash
# Memory of `raftmq dev` under a steady send load, with and without retention (issue 12).
# Prints the process RSS, the log size on disk and the messages retained every SAMPLE seconds.
#
#   scripts/retention-rss.sh <retention-hours> [seconds] [senders]
#
# e.g. `scripts/retention-rss.sh 0.0083 240` (30 s of retention) against
# `scripts/retention-rss.sh 72 240` (the default: nothing is deleted within the run).
# Needs `cargo build --release -p raftmq`. Uses ports 28081-28083, 28001-28003, 28876.
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:?retention hours}
secs=${2:-240}
senders=${3:-128}
sample=${SAMPLE:-20}
bin=target/release/raftmq
dir=$(mktemp -d)
trap 'kill $dev 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$bin" dev --data-dir "$dir" --listen 127.0.0.1:28081 --raft-port 28001 \
    --nameserver 127.0.0.1:28876 --segment-mb 16 --retention-hours "$hours" \
    --retention-check-secs 1 >"$dir.log" 2>&1 &
dev=$!
sleep 3
"$bin" bench --endpoint 127.0.0.1:28081 --senders "$senders" --duration "$secs" --warmup 0 \
    >"$dir.bench" 2>&1 &
bench=$!
start=$SECONDS
while kill -0 $bench 2>/dev/null; do
    sleep "$sample"
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$dev/status)
    disk=$(du -sm "$dir" | cut -f1)
    line=$("$bin" admin --endpoint 127.0.0.1:28081 status 2>/dev/null | grep '^topic BenchTopic' || true)
    total=$(echo "$line" | sed -nE 's/.*\): ([0-9]+) messages.*/\1/p')
    deleted=$(echo "$line" | sed -nE 's/.*, ([0-9]+) deleted by retention.*/\1/p')
    echo "t=$((SECONDS - start))s rss=${rss}MB log=${disk}MB stored=${total:-0} retained=$(( ${total:-0} - ${deleted:-0} ))"
done
cat "$dir.bench"
rm -f "$dir.log" "$dir.bench"
