//! The broker's error type. Request failures a client can act on (not the leader, rejected,
//! unknown outcome) are kept apart from fatal ones.

use crate::state::Reject;

/// Everything the broker core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No local replica leads the group; `leader` is a hint (a node id) if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's node id, if known.
        leader: Option<u64>,
    },
    /// The command was applied and refused.
    #[error("rejected: {0:?}")]
    Rejected(Reject),
    /// The command may or may not have been committed (timeout, leader lost mid-flight).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The replica cannot take requests (stopped, shutting down, no quorum).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back as written.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Refused before anything was proposed: the replica's queue is full (TOO_MANY_REQUESTS).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The storage layer failed.
    #[error(transparent)]
    Store(#[from] raft_store::Error),
    /// A replica stopped for good (a storage failure: a failed fsync or write, corruption):
    /// the node exits so that a supervisor restarts it and the replica recovers from its disk,
    /// instead of running on as a zombie that answers "not the leader".
    #[error("{0}")]
    ReplicaFailed(String),
}

/// The broker's result type.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

impl BrokerError {
    /// Maps a raft-store proposal error: a refusal before writing is definite; anything after
    /// the proposal may have committed.
    pub fn from_propose(e: raft_store::Error) -> Self {
        match e {
            raft_store::Error::NotLeader { leader, .. } => BrokerError::NotLeader { leader },
            raft_store::Error::Timeout(d) => {
                BrokerError::Unknown(format!("not committed within {d:?}"))
            }
            // A stopped replica may have replicated the entry before it stopped: unknown.
            other => BrokerError::Unknown(other.to_string()),
        }
    }
}
