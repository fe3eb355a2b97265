//! What the clients of a Raft-level scenario did: one record per proposal.

/// How a proposal ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: committed at this log index.
    Ok(u64),
    /// Definitely not proposed (no replica took it).
    Fail,
    /// Unknown: timed out, or the replica failed while it was in flight. It may be committed.
    Info,
}

/// One proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The unique payload.
    pub value: Vec<u8>,
    /// How it ended.
    pub outcome: Outcome,
}
