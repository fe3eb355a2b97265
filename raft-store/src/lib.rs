//! raft-store: RaftMQ's replicated commit log.
//!
//! Every queue group's commit log is a Raft log, and this crate is that log. It knows nothing
//! about topics; the broker puts its commands inside the entries.
//!
//! - [`disk`]: the [`disk::Disk`] trait every byte goes through, with the real filesystem and a
//!   simulated device that loses unsynced writes on crash and injects faults;
//! - [`log`]: the segmented log (CRC-framed entries, sparse index, group commit, torn-tail
//!   recovery) implementing openraft's log storage;
//! - [`meta`]: the vote, committed index and purge point, in a crash-safe two-slot file;
//! - [`state_machine`]: adapts a caller's [`state_machine::App`] to openraft's state machine,
//!   with durable snapshots;
//! - [`network`] and [`server`]: the Raft transport over tonic, a group id in every request;
//! - [`group`]: start, propose to, observe and stop one replica;
//! - [`fence`]: keeping a replica that lost its data from voting (it probes its peers first),
//!   and [`probe`], its tasks;
//! - [`seed`]: copying the retained log and latest snapshot to a replica that rejoins empty;
//! - [`rt`]: the runtime shim (real tokio or madsim), the only `cfg(madsim)` code;
//! - [`types`] and [`error`]: the Raft type configuration, newtypes, and the error enum.

pub mod codec;
pub mod disk;
pub mod error;
pub mod fence;
pub mod group;
pub mod log;
pub mod meta;
pub mod network;
pub mod probe;
pub mod repair;
pub mod rt;
pub mod seed;
pub mod server;
pub mod state_machine;
pub mod types;

pub use error::Error;
pub use error::Result;
