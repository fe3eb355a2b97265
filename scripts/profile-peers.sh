#!/usr/bin/env bash
# Where RaftMQ's server CPU goes under the peers harness load (issue 13, item 1).
#
#   scripts/profile-peers.sh MODE WINDOW [RATE] [SECS]     e.g.  pub 64     e2e 64 0     e2e 64 1000
#   scripts/profile-peers.sh idle 0 0 10     (no load: what the brokers spend doing nothing)
#
# Starts the harness's 3-process cluster (../shared/bench/peers/lib.sh, `raftmq` step), runs one
# harness case (the official Rust client, 1 KiB messages) while `perf record` samples every
# raftmq process at 499 Hz with call graphs, then prints the harness result and the share of
# server CPU per component (scripts/perf-categories.py). Needs the harness built
# (`../shared/bench/peers/run.sh build`) and target/release/raftmq; perf.data and the report
# stay in $OUT (default /tmp/raftmq-profile). PERF=0 runs the case without sampling.
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
mkdir -p "$OUT" "$PEERS_TMP/logs" "$PEERS_TMP/pids"
trap raftmq_stop EXIT INT TERM
# lib.sh's raftmq_cluster_start predates the cluster secret (required since the hardening
# issue) and ../shared is read-only: the same cluster (ports, one group led by node 1), with a
# secret. RAFT_GROUPS=N runs N groups instead of one.
cluster_start() {
  local d="$PEERS_TMP/raftmq-cluster" base=28081 i nodes=""
  rm -rf "$d"; mkdir -p "$d"
  head -c 32 /dev/urandom | base64 > "$d/secret"
  for i in 1 2 3; do
    nodes+=$'[[nodes]]\n'"id = $i"$'\n'"raft = \"127.0.0.$i:$((base + 1))\""$'\n'"client = \"127.0.0.$i:$base\""$'\n'
  done
  for i in 1 2 3; do
    cat > "$d/n$i.toml" <<TOML
node_id = $i
data_dir = "$d/data$i"
listen = "127.0.0.$i:$base"
raft_listen = "127.0.0.$i:$((base + 1))"
nameservers = ["127.0.0.1:$((base + 90))"]
cluster_secret_file = "$d/secret"
$nodes
TOML
    # RAFT_GROUPS=N: N groups, their preferred leaders spread over the nodes (issue 13, item 4).
    for g in $(seq 1 "${RAFT_GROUPS:-1}"); do
      printf '[[groups]]\nid = %d\nmembers = [1, 2, 3]\npreferred_leader = %d\n' \
        "$g" $(( (g - 1) % 3 + 1 )) >> "$d/n$i.toml"
    done
    # RAFTMQ_TOML: more configuration for every node, e.g. $'[dedup]\nwindow_secs = 0'.
    [ -n "${RAFTMQ_TOML:-}" ] && printf '%s\n' "$RAFTMQ_TOML" >> "$d/n$i.toml"
  done
  nohup "$RAFTMQ_BIN" nameserver --listen "127.0.0.1:$((base + 90))" \
    --cluster-secret-file "$d/secret" > "$PEERS_TMP/logs/raftmq-ns.log" 2>&1 &
  echo $! > "$PEERS_TMP/pids/raftmq-ns.pid"
  for i in 1 2 3; do
    nohup "$RAFTMQ_BIN" broker -c "$d/n$i.toml" > "$PEERS_TMP/logs/raftmq-n$i.log" 2>&1 &
    echo $! > "$PEERS_TMP/pids/raftmq-n$i.pid"
  done
  wait_port 28081 60 || { echo "raftmq node 1 did not start" >&2; return 1; }
  sleep 5
}
cluster_start
pids=$(raftmq_pids)
# The brokers only (the nameserver is idle): perf takes a comma-separated list.
brokers=$(cat "$PEERS_TMP"/pids/raftmq-n[0-9].pid | paste -sd, -)
warm=1; [ "$MODE" = e2e ] && warm=5
# MODE idle: no load at all; the CPU each broker spends in SECS seconds (heartbeats, timers,
# pollers). What a cluster costs when nobody uses it.
if [ "$MODE" = idle ]; then
  ticks() { local p; for p in ${brokers//,/ }; do awk '{print $14 + $15}' "/proc/$p/stat"; done; }
  before=$(ticks); sleep "$SECS"; after=$(ticks)
  hz=$(getconf CLK_TCK)
  paste <(echo "$before") <(echo "$after") | awk -v hz="$hz" -v s="$SECS" \
    '{printf "broker %d: %.1f%% CPU idle\n", NR, 100 * ($2 - $1) / hz / s}'
  exit 0
fi
# PERF=0: the harness case alone (the same cluster and client, for throughput unperturbed by
# sampling).
if [ "${PERF:-1}" = 0 ]; then
  RUST_LOG=warn "$H" bench --system raftmq --mode "$MODE" --window "$WINDOW" --rate "$RATE" \
    --replicas 3 --secs "$SECS" --max-msgs 2000000 --size 1024 --warmup-secs "$warm" \
    --server-pids "$pids" --tag "cluster" --flush 3-proc --url 127.0.0.1:28081 | tee "$OUT/result.json"
  exit 0
fi
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
# Kernel call chains are complete (user-space ones are not: no frame pointers), so the time
# under each system call, children included, is reliable: which IO the CPU goes to.
perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none --percent-limit 0 \
  2> /dev/null > "$OUT/children.txt"
{
  echo
  echo "| system call (time under it, kernel children included) | share |"
  echo "|---|---|"
  grep -E "\[k\] (__x64_sys_[a-z_0-9]+|do_writev|ksys_write|ksys_read)$" "$OUT/children.txt" \
    | awk '$1 + 0 >= 0.2 {printf "| %s | %s |\n", $4, $1}'
} | tee -a "$OUT/categories.md"
