//! Wire types for RaftMQ.
//!
//! - [`raft`]: the internal Raft transport between replicas (append-entries, vote, pre-vote,
//!   transfer-leader, snapshot install), with a group id in every request.
//!
//! The code is generated at build time by `madsim-tonic-build`, which emits both a real tonic
//! variant and a madsim variant; `tonic::include_proto!` picks the right one for the build.

/// RaftMQ's internal Raft transport (`raftmq.raft`).
#[allow(missing_docs, clippy::all)]
pub mod raft {
    tonic::include_proto!("raftmq.raft");
}
