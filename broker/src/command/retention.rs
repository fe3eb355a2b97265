//! Retention commands: moving the log's start, topics' own ages and their expiry.

use serde::Deserialize;
use serde::Serialize;

/// Retention moved the start of the group's log: messages in log entries at or below `upto`
/// are deleted. Proposed by the leader's retention task (`crate::retention`) only for entries
/// every member of the group already holds, so no replica ever needs them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retain {
    /// The last log index deleted.
    pub upto: u64,
    /// The cluster time the leader decided at (the entries were older than the retention age
    /// then). Applying refuses a decision ahead of the entry's own time: a leader whose clock
    /// ran ahead of the log must not delete early.
    pub decided_ms: u64,
}

/// Sets (or, with `None`, clears) a topic's own retention age: its messages are deleted once
/// older than that, whatever the cluster's age (which still decides when log segments go: a
/// longer topic age holds them back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRetention {
    /// The topic.
    pub topic: String,
    /// Its retention age in milliseconds; `None`: the cluster's.
    pub max_age_ms: Option<u64>,
}

/// Deletes, in every topic with its own retention age, the messages stored longer ago than
/// that age at the entry's time. Proposed by the leader's retention task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expire {
    /// The cluster time the leader decided at; refused if ahead of the entry's time (as for
    /// [`Retain`]).
    pub decided_ms: u64,
}
