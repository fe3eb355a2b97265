//! RaftMQ's deterministic simulation.
//!
//! - [`history`] and [`checker`]: what clients did and what the replicas ended with, and the
//!   pure checks over them (shared with the real-process suite, and unit-tested in the normal
//!   build);
//! - [`recorder`]: a trivial replicated application that records what it applied;
//! - `runner` (madsim only): runs a scenario over many seeds, prints a replay command for every
//!   failing seed and a `sim: N passed, M failed` line;
//! - `cluster_sim` (madsim only): the whole-cluster simulation (swarm faults, native
//!   clients, phases chaos → heal → liveness → check) with [`msg_checker`] and a Raft oracle;
//! - `raft_group` (madsim only): a 3-replica group on simulated nodes and disks, with kills,
//!   restarts, power loss and partitions.

pub mod checker;
pub mod history;
pub mod msg_checker;
pub mod queue_checker;
pub mod recorder;

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
