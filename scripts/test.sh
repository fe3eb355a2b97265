#!/usr/bin/env bash
# Runs every RaftMQ test: formatting, lints (normal and simulator builds), the normal build's
# tests, the simulator build's tests including a time-budgeted seed sweep, and the real-process
# chaos matrix (jepsen/). The last line is "N passed, M failed". CI runs exactly this (through .ci/run).
#
# Knobs: SIM_BUDGET_SECS (wall-clock budget per simulation scenario, default 150),
# SIM_SEEDS (max fresh seeds per sweep), SIM_SEED (replay one seed only), JEPSEN_SECS (seconds
# per real-process chaos run, default 60), JEPSEN_ONLY (a part of the jepsen matrix).
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
step_failures=0

step() {
    echo "== $*"
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "== ${*:1:6} ... exit $rc after $((SECONDS - start)) s" | tee -a "$log"
    if [ "$rc" -ne 0 ]; then
        step_failures=$((step_failures + 1))
    fi
}

export CARGO_TERM_COLOR=never
# Fresh simulation seeds are derived from the commit, so every commit explores new ones.
if [ -z "${SIM_BASE_SEED:-}" ] && sha=$(git rev-parse --short=12 HEAD 2>/dev/null); then
    export SIM_BASE_SEED=$((16#$sha))
fi
# The fuzz targets (tests/fuzz.rs) explore new inputs per commit too, FUZZ_SECS each.
export FUZZ_SEED="${FUZZ_SEED:-${SIM_BASE_SEED:-24301}}"
export FUZZ_SECS="${FUZZ_SECS:-15}"

# The official RocketMQ clients the interop tests drive: the Python SDK in a venv, a small
# program on the official Rust crate and the Node.js SDK, all under target/ (rebuilt only when
# missing).
setup_clients() {
    if [ ! -x target/interop-venv/bin/python ] || ! target/interop-venv/bin/python -c "import rocketmq" 2>/dev/null; then
        rm -rf target/interop-venv
        python3 -m venv target/interop-venv &&
            target/interop-venv/bin/pip install --quiet --disable-pip-version-check "rocketmq-python-client==5.1.2" || return 1
    fi
    (cd interop/rust-official && CARGO_TARGET_DIR=../../target/interop-rust cargo build --release --locked --quiet) || return 1
    # The official Node.js client (npm rocketmq-client-nodejs, pinned by interop/node's lock file).
    if [ ! -d target/interop-node/node_modules/rocketmq-client-nodejs ] ||
        ! cmp -s interop/node/package-lock.json target/interop-node/package-lock.json; then
        rm -rf target/interop-node && mkdir -p target/interop-node &&
            cp interop/node/package.json interop/node/package-lock.json target/interop-node/ &&
            (cd target/interop-node && npm ci --silent --no-audit --no-fund) || return 1
    fi
}
step setup_clients
step cargo fmt --all --check
step cargo clippy --workspace --all-targets --locked -- -D warnings
step env RUSTFLAGS="--cfg madsim" cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo test --workspace --locked --no-fail-fast
# Public API documentation must build cleanly (every public item of the client is documented).
step env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -p raftmq-client
# The simulator build runs optimised (profile `sim`: release plus debug assertions), so a
# sweep covers many more seeds per minute.
# RUSTDOCFLAGS too: doc tests compile the crates again, and must see the same cfg as their
# (simulator) dependencies.
step env RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim" SIM_BUDGET_SECS="${SIM_BUDGET_SECS:-150}" SIM_SEEDS="${SIM_SEEDS:-100000}" \
    cargo test --workspace --profile sim --locked --no-fail-fast -- --nocapture

# The real-process chaos suite: real raftmq processes in network namespaces under partitions,
# kills, pauses, clock steps and packet loss, checked by the same checkers (docs/testing.md).
# JEPSEN_SECS per run (default 60); JEPSEN_ONLY=name,name runs part of the matrix.
step cargo build --locked -p raftmq -p jepsen
step target/debug/jepsen matrix --time "${JEPSEN_SECS:-60}" ${JEPSEN_ONLY:+--only "$JEPSEN_ONLY"}

echo
echo "== summary"
grep -E "^sim: " "$log" || true
grep -E "^sim: " "$log" | awk '{p += $3; f += $5} END {if (NR) print "sim: " p " passed, " f " failed"}' 
grep -E "^SIM FAILURE|^  replay: " "$log" || true
grep -E "^jepsen .*(INVALID|UNKNOWN|ERROR|FAILED|skipped)|^jepsen: " "$log" || true
# Name what failed here, at the end, where a truncated CI log still shows it.
grep -E "^test .* FAILED$|^error(\[E[0-9]+\])?: " "$log" | sort -u || true
grep -E "^== .* exit [1-9][0-9]* after" "$log" || true
passed=$(grep -oE "test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed" "$log" | awk '{p += $4} END {print p + 0}')
failed=$(grep -oE "test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed" "$log" | awk '{f += $6} END {print f + 0}')
# Each jepsen run counts as one test.
passed=$((passed + $(grep -oE "^jepsen: [0-9]+ passed" "$log" | awk '{p += $2} END {print p + 0}')))
failed=$((failed + $(grep -oE "^jepsen: [0-9]+ passed, [0-9]+ failed" "$log" | awk '{f += $4} END {print f + 0}')))
if [ "$step_failures" -gt 0 ] && [ "$failed" -eq 0 ]; then
    # A step failed without a failing test (formatting, lints, a build error): count it.
    failed=$step_failures
fi
echo "$passed passed, $failed failed"
[ "$step_failures" -eq 0 ] && [ "$failed" -eq 0 ]
