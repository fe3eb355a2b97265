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
//! - `cluster_sim` (madsim only): the whole-cluster simulation (swarm faults, native
//!   clients, phases chaos → heal → liveness → check) with [`msg_checker`] and a Raft oracle;
//! - `raft_group` (madsim only): a 3-replica group on simulated nodes and disks, with kills,
//!   restarts, power loss and partitions.

// The checkers live in the `checker` crate (shared with the real-process suite); their old
// paths stay valid here.
pub use ::checker::history;
pub use ::checker::messages as msg_checker;
pub use ::checker::queues as queue_checker;
pub use ::checker::raft as checker;
pub mod recorder;
pub mod workload;

// The receipt checker's slack must cover the cluster clock's slew plus the simulator's largest
// monotonic drift (500 ppm).
const _: () =
    assert!(::checker::messages::RECEIPT_CLOCK_SLACK_PPM >= broker::clock::SLEW_PPM + 500);

#[cfg(madsim)]
pub mod broker_cluster;
#[cfg(madsim)]
pub mod cluster_sim;
#[cfg(madsim)]
pub mod raft_group;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod sim_nodes;
