//! The scenarios, one per file, each an `async fn chaos(seed) -> RunResult` for
//! [`crate::runner::sweep`]: set up a cluster from [`crate::harness`], run a workload while
//! the [`crate::nemesis`] injects faults, heal, check liveness, then check the history.
//!
//! - [`raft_group`] (`raft_group_chaos`): a bare Raft group, proposals checked by
//!   `checker::raft`;
//! - [`broker`] (`broker_chaos`): three brokers, the official-like or the native client,
//!   checked by `checker::messages`;
//! - [`cluster`] (`cluster_chaos`): 3 or 5 brokers and the full native workload under a swarm
//!   of faults, checked by `checker::messages` and the Raft oracle.

pub mod broker;
pub mod cluster;
pub mod raft_group;
