//! raft-store's error type. Fatal storage conditions (corruption, a failed fsync) are kept
//! apart from request failures (not the leader, timeout) so callers can stop the replica on the
//! first and retry or redirect on the second.

use std::io;
use std::path::PathBuf;

use crate::types::NodeId;

/// Everything raft-store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Durable data failed validation somewhere other than a torn tail. The replica refuses to
    /// start rather than silently drop entries it may have acknowledged.
    #[error(
        "corrupt data in {} at byte {offset}: {reason}; refusing to start \
         (replace this replica through a membership change: remove it from the group, start it \
         empty under a new node id, add it back; see docs/operations.md)",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first bad byte found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// A previous fsync or write failed; the store no longer accepts work (fatal).
    #[error("storage stopped after a fatal error: {0}")]
    Poisoned(String),

    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// This replica is not the leader; `leader` is a hint where to go.
    #[error("not the leader (leader: {})", leader.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()))]
    NotLeader {
        /// The leader this replica knows of, if any.
        leader: Option<NodeId>,
        /// That leader's transport address, if known.
        leader_addr: Option<String>,
    },

    /// The replica stopped (shut down or failed) and can take no more requests.
    #[error("replica stopped: {0}")]
    Stopped(String),

    /// An operation did not finish in time. Its outcome is unknown.
    #[error("timed out after {0:?}; the outcome is unknown")]
    Timeout(std::time::Duration),

    /// Any other error reported by openraft.
    #[error("raft: {0}")]
    Raft(String),
}

/// raft-store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for errors that mean the replica must stop.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Poisoned(_) | Error::Io { .. }
        )
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }
    }
}
