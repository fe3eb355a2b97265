#!/usr/bin/env bash
# Failover benchmark (not a test): a nameserver and three `raftmq broker` processes on
# 127.0.0.1-3 hosting NGROUPS groups, while the leader of group 1 is hit KILLS times:
#   FAULT=kill (default)  SIGKILL, restarted after DOWN seconds;
#   FAULT=stop            SIGSTOP, SIGCONT after DOWN seconds (a GC or VM pause, a black hole).
# The senders:
#   CLIENT=native (default)  `raftmq bench`, 16 senders through all three nodes (moving to the
#                            next node after an error);
#   CLIENT=python            the official Python producer, default configuration, 16 threads
#                            through the nameserver (scripts/failover_python.py), which then
#                            reads every message back: failed sends, lost, duplicates;
#   CLIENT=timers            `raftmq bench-timers` through the nameserver: TIMERS (30,000)
#                            scheduled messages due evenly across the faults, and how late
#                            each was delivered (early, duplicate, missing counted).
#                            TIMER_ARGS adds options (e.g. "--grace 90").
# Prints the unavailability window around each fault (the longest gap between successful sends)
# and its p50/p99/max.
#
#   KILLS=20 NGROUPS=1 ./scripts/failover-bench.sh
#   CLIENT=python FAULT=stop KILLS=5 DOWN=6 ./scripts/failover-bench.sh
#   CLIENT=timers KILLS=3 ./scripts/failover-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}
NGROUPS=${NGROUPS:-1}
DOWN=${DOWN:-3}
SETTLE=${SETTLE:-5}
BASE=${BASE:-28081}
FAULT=${FAULT:-kill}
CLIENT=${CLIENT:-native}
if [ -z "${RAFTMQ_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${RAFTMQ_BIN:-target/release/raftmq}
PY=${PY:-target/interop-venv/bin/python}
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill -9 "${PIDS[@]}" "${BENCH_PID:-}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

nodes=""
for i in 1 2 3; do nodes+=$'[[nodes]]\n'"id = $i"$'\n'"raft = \"127.0.0.$i:$((BASE + 1))\""$'\n'"client = \"127.0.0.$i:$BASE\""$'\n'; done
groups=""
for g in $(seq 1 "$NGROUPS"); do groups+=$'[[groups]]\n'"id = $g"$'\nmembers = [1, 2, 3]\n'"preferred_leader = $(((g - 1) % 3 + 1))"$'\n'; done
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/cluster.secret"
for i in 1 2 3; do
    cat > "$WORK/n$i.toml" <<TOML
node_id = $i
data_dir = "$WORK/data$i"
listen = "127.0.0.$i:$BASE"
raft_listen = "127.0.0.$i:$((BASE + 1))"
nameservers = ["127.0.0.1:$((BASE + 90))"]
cluster_secret_file = "$WORK/cluster.secret"
$nodes
$groups
TOML
done

"$BIN" nameserver --listen "127.0.0.1:$((BASE + 90))" --cluster-secret-file "$WORK/cluster.secret" 2> "$WORK/ns.log" & PIDS+=($!)
start_node() { "$BIN" broker -c "$WORK/n$1.toml" 2>> "$WORK/n$1.log" & NODE_PID[$1]=$!; PIDS+=($!); }
declare -A NODE_PID
for i in 1 2 3; do start_node "$i"; done

leader_of_group1() {
    local l
    for i in 1 2 3; do
        l=$("$BIN" admin --endpoint "127.0.0.$i:$BASE" status 2>/dev/null | awk '$1 == "1" && $5 != "0" {print $5; exit}')
        if [ -n "$l" ]; then echo "$l"; return 0; fi
    done
}
for _ in $(seq 1 100); do [ -n "$(leader_of_group1)" ] && break; sleep 0.2; done

DURATION=$((KILLS * (DOWN + SETTLE + 2) + 10))
if [ "$CLIENT" = timers ]; then
    # Scheduled messages due evenly from 10 s after the start until the last fault has
    # settled, through the nameserver: how late each is delivered across the faults.
    "$BIN" bench-timers --endpoint "127.0.0.1:$((BASE + 90))" --timers "${TIMERS:-30000}" --lead 10 \
        --spread "$((DURATION - 10))" ${TIMER_ARGS:-} > "$WORK/bench.out" 2>&1 & BENCH_PID=$!
elif [ "$CLIENT" = python ]; then
    HOME="$WORK" "$PY" scripts/failover_python.py "127.0.0.1:$((BASE + 90))" FailoverTopic "$DURATION" 16 "$WORK" \
        > "$WORK/bench.out" 2> "$WORK/python.err" & BENCH_PID=$!
else
    "$BIN" bench --endpoint "127.0.0.1:$BASE,127.0.0.2:$BASE,127.0.0.3:$BASE" --senders 16 --connections 1 \
        --duration "$DURATION" --warmup 2 --gaps "$WORK/gaps.txt" > "$WORK/bench.out" 2>&1 & BENCH_PID=$!
fi
# The first fault waits for the first successful send (the Python client starts slowly).
for _ in $(seq 1 100); do [ "$CLIENT" != python ] || [ -e "$WORK/ready" ] && break; sleep 0.2; done
sleep 5
: > "$WORK/kills.txt"
for k in $(seq 1 "$KILLS"); do
    L=$(leader_of_group1)
    [ -n "$L" ] || { echo "no leader before kill $k" >&2; exit 1; }
    date +%s%3N >> "$WORK/kills.txt"
    if [ "$FAULT" = stop ]; then
        kill -STOP "${NODE_PID[$L]}"
        sleep "$DOWN"
        kill -CONT "${NODE_PID[$L]}"
    else
        kill -9 "${NODE_PID[$L]}"
        sleep "$DOWN"
        start_node "$L"
    fi
    sleep "$SETTLE"
    echo "$FAULT $k: node $L" >&2
done
wait "$BENCH_PID" || { rc=$?; cat "$WORK/bench.out" "$WORK/python.err" >&2 2>/dev/null; exit "$rc"; }
cat "$WORK/bench.out"
if [ "$CLIENT" = python ]; then
    echo "most frequent client errors:"
    grep -hF '[ERROR]' "$WORK"/logs/rocketmq_python/*.log 2>/dev/null | sed -E 's/^[0-9-]+ [0-9:,]+ \[ERROR\] //' |
        cut -c1-160 | sort | uniq -c | sort -rn | head -5 || true
fi
[ "$CLIENT" = timers ] || python3 scripts/failover_summary.py "$WORK/kills.txt" "$WORK/gaps.txt"
