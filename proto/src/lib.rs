//! Wire types for RaftMQ.
//!
//! - [`v2`]: the Apache RocketMQ 5.x gRPC protocol (`apache.rocketmq.v2`), written from the
//!   protocol brief with rocketmq-apis v2.1.2's names and field numbers;
//! - [`raft`]: the internal Raft transport between replicas, a group id in every request;
//! - [`admin`]: RaftMQ's admin service;
//! - [`forward`]: forwarding a command to a group's leader in one hop;
//! - [`nameserver`]: broker registration with nameservers;
//! - [`auth`]: the cluster credential every internal RPC carries;
//! - [`names`]: topic and group names and the v2 namespaces they live in;
//! - [`v2util`]: protocol helpers shared by the broker and the nameserver (statuses,
//!   timestamps, the settings answer, route entries).
//!
//! The code is generated at build time by `madsim-tonic-build`, which emits both a real tonic
//! variant and a madsim variant; `tonic::include_proto!` picks the right one for the build.

/// The RocketMQ 5.x client protocol.
#[allow(missing_docs, clippy::all)]
pub mod v2 {
    tonic::include_proto!("apache.rocketmq.v2");
}

/// RaftMQ's internal Raft transport (`raftmq.raft`).
#[allow(missing_docs, clippy::all)]
pub mod raft {
    tonic::include_proto!("raftmq.raft");
}

/// RaftMQ's admin service (`raftmq.admin`).
#[allow(missing_docs, clippy::all)]
pub mod admin {
    tonic::include_proto!("raftmq.admin");
}

/// Forwarding between broker nodes (`raftmq.forward`).
#[allow(missing_docs, clippy::all)]
pub mod forward {
    tonic::include_proto!("raftmq.forward");
}

/// Broker registration with nameservers (`raftmq.nameserver`).
#[allow(missing_docs, clippy::all)]
pub mod nameserver {
    tonic::include_proto!("raftmq.nameserver");

    /// The name registrations are signed under (see [`crate::auth`]).
    pub const REGISTER_METHOD: &str = "nameserver.Register";
    /// Largest registration a broker sends and a nameserver accepts (tonic's default of 4 MiB
    /// silently dropped brokers with many topics from every route).
    pub const MAX_REGISTRATION_BYTES: usize = 64 << 20;
}

pub mod v2util;

pub mod names;

pub mod auth;
