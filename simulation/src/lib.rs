//! RaftMQ's deterministic simulation.
//!
//! - [`history`] and [`checker`]: what clients did and what the replicas ended with, and the
//!   pure checks over them (shared with the real-process suite, and unit-tested in the normal
//!   build);
//! - [`workload`]: the native-client workload (producers, consumers, offset reader, probe,
//!   drain) the simulator and `jepsen/` both run;
//! - [`recorder`]: a trivial replicated application that records what it applied;
//! - `runner` (madsim only): runs a scenario over many seeds, prints a replay command for every
//!   failing seed and a `sim: N passed, M failed` line;
//! - `harness` (madsim only): the simulated clusters (nodes with their own disks, a bare Raft
//!   group, a nameserver and brokers) and the Raft oracle over a broker cluster;
//! - `nemesis` (madsim only): the one fault loop every scenario runs (kills, power loss,
//!   partitions, pauses, a lossy network, and each scenario's own faults);
//! - `v2client` (madsim only): a hand-written v2 client that behaves as the official ones do;
//! - `scenario` (madsim only): `raft_group` (`raft_group_chaos`), `broker` (`broker_chaos`)
//!   and `cluster` (`cluster_chaos`, the whole-cluster simulation); `broker` and `cluster` both judge
//!   their histories with [`msg_checker`].

// The checkers live in the `checker` crate (shared with the real-process suite); their old
// paths stay valid here.
pub use ::checker::history;
pub use ::checker::messages as msg_checker;
pub use ::checker::raft as checker;
pub mod recorder;
pub mod workload;

// The receipt checker's slack must cover the cluster clock's slew plus the simulator's largest
// monotonic drift (500 ppm).
const _: () =
    assert!(::checker::messages::RECEIPT_CLOCK_SLACK_PPM >= broker::clock::SLEW_PPM + 500);

#[cfg(madsim)]
pub mod harness;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod v2client;
