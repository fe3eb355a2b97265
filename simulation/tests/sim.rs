//! The simulation suite: every scenario in one binary, run with `RUSTFLAGS="--cfg madsim"`.
//! See `simulation::runner` for the seed and budget variables.
#![cfg(madsim)]

use std::time::Duration;

use simulation::runner;
use simulation::scenario::broker;
use simulation::scenario::cluster;
use simulation::scenario::raft_group;

#[test]
fn raft_group_chaos() {
    runner::sweep(
        "raft_group_chaos",
        "raft_group_chaos",
        Duration::from_secs(600),
        raft_group::chaos,
    );
}

async fn determinism_probe() -> runner::RunResult {
    raft_group::chaos(madsim::runtime::Handle::current().seed()).await
}

/// The same seed must replay the same execution: madsim records every random draw of the first
/// run and checks the second draws the same values at the same points.
#[test]
fn raft_group_is_deterministic() {
    for seed in [1u64, 2, 3] {
        let r = madsim::runtime::Runtime::check_determinism(
            seed,
            madsim::Config::default(),
            determinism_probe,
        );
        assert!(r.is_ok(), "seed {seed}: {r:?}");
    }
}

#[test]
fn broker_chaos() {
    runner::sweep(
        "broker_chaos",
        "broker_chaos",
        Duration::from_secs(900),
        broker::chaos,
    );
}

async fn broker_determinism_probe() -> runner::RunResult {
    broker::chaos(madsim::runtime::Handle::current().seed()).await
}

/// Seed 7 drives the official-like client, seed 2 the native client (`raftmq-client`).
#[test]
fn broker_is_deterministic() {
    for seed in [7u64, 2] {
        let r = madsim::runtime::Runtime::check_determinism(
            seed,
            madsim::Config::default(),
            broker_determinism_probe,
        );
        assert!(r.is_ok(), "seed {seed}: {r:?}");
    }
}

#[test]
fn cluster_chaos() {
    runner::sweep(
        "cluster_chaos",
        "cluster_chaos",
        Duration::from_secs(1200),
        cluster::chaos,
    );
}

async fn cluster_determinism_probe() -> runner::RunResult {
    cluster::chaos(madsim::runtime::Handle::current().seed()).await
}

#[test]
fn cluster_is_deterministic() {
    let r = madsim::runtime::Runtime::check_determinism(
        3,
        madsim::Config::default(),
        cluster_determinism_probe,
    );
    assert!(r.is_ok(), "{r:?}");
}
