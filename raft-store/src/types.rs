//! The Raft type configuration and the newtypes RaftMQ uses for Raft's integers.
//!
//! raft-store knows nothing about topics: a proposal is an opaque byte string ([`Request`]) and
//! the state machine's answer is another ([`Response`]). The broker encodes its commands inside.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A Raft node id (a broker node).
pub type NodeId = u64;

/// A Raft group id: one replicated commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

/// A position in a group's Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

/// A Raft term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

macro_rules! display_newtype {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_newtype!(GroupId, LogIndex, Term);

/// A proposal: opaque bytes handed to the state machine once committed.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Request(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// The state machine's answer to one applied [`Request`].
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response(#[serde(with = "serde_bytes")] pub Vec<u8>);

macro_rules! bytes_newtype_fmt {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({} bytes)", stringify!($t), self.0.len())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    )*};
}
bytes_newtype_fmt!(Request, Response);

/// The address record Raft keeps for each member: where its transport listens.
pub type Node = openraft::impls::BasicNode;

openraft::declare_raft_types!(
    /// RaftMQ's openraft configuration: standard Raft leader ids (one leader per term), opaque
    /// byte payloads, and the runtime shim (real tokio, or madsim in the simulator).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
        AsyncRuntime = crate::rt::Rt,
);

/// openraft's log id (term and index) for [`TypeConfig`].
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A log entry for [`TypeConfig`].
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A log entry payload for [`TypeConfig`].
pub type EntryPayload = openraft::type_config::alias::EntryPayloadOf<TypeConfig>;
/// A vote for [`TypeConfig`].
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A membership config for [`TypeConfig`].
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership config with the log id it was stored at.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata for [`TypeConfig`].
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot whose data is held in memory.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
/// The openraft handle for one replica.
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;

/// Builds a log id from a term and an index.
pub fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::vote::leader_id_std::CommittedLeaderId::new(term),
        index,
    )
}

/// The term of a log id.
pub fn term_of(log_id: &LogId) -> u64 {
    log_id.leader_id.term
}
