//! What crosses the wire between broker nodes when one forwards a request to a group's leader:
//! the calls, the answers, the errors, and the one bounded codec for all of them. Kept apart
//! from both ends so neither the core nor the server has to import the other's module.

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::command::Command;
use crate::command::Pop;
use crate::command::TagFilter;
use crate::error::BrokerError;
use crate::model::StoredMessage;
use crate::state::Delivery;
use crate::state::Outcome;
use crate::state::Reject;
use crate::state::consume_queue::CqEntry;

/// Names forwarded RPCs are signed under (the cluster credential binds a request to them).
pub mod method {
    /// A command to propose.
    pub const SUBMIT: &str = "forward.Submit";
    /// A receive.
    pub const POP: &str = "forward.Pop";
    /// A read on the leader after a ReadIndex round.
    pub const READ: &str = "forward.Read";
    /// Many commands to propose ([`super::Forwarded`]).
    pub const SUBMIT_BATCH: &str = "forward.SubmitBatch";
    /// A transaction check-back for a producer connected to the receiving node.
    pub const DELIVER: &str = "forward.Deliver";
}

/// One command of a batched forward, with how long its submitter still waits for it: the
/// leader never proposes it after that (its submitter has told the client the outcome is
/// unknown, and a late proposal could store it after what the client sent since; see the
/// batcher).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    /// Milliseconds left, counted from when the leader receives the batch.
    pub budget_ms: u64,
    /// The command.
    pub command: Command,
}

/// A forwarded SQL92 receive: the receive and its expression, which the receive's own
/// encoding leaves out ([`Pop::sql`]). A receive without one is forwarded as the bare
/// [`Pop`], as before, so a leader that predates SQL92 still serves it; the leader reads
/// either ([`PopCall::decode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopCall {
    /// The receive.
    pub pop: Pop,
    /// Its SQL92 expression.
    pub sql: String,
}

impl PopCall {
    /// A forwarded receive, in either form (a bare [`Pop`] leaves no bytes for the
    /// expression, and a call has trailing bytes for a bare [`Pop`]: one of them decodes).
    pub fn decode(b: &[u8]) -> Result<Pop, String> {
        match dec::<PopCall>(b) {
            Ok(c) => Ok(Pop {
                sql: Some(c.sql),
                ..c.pop
            }),
            Err(_) => dec::<Pop>(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::TagFilter;

    /// A leader reads a receive forwarded by a node that predates SQL92 (a bare [`Pop`]) and
    /// a SQL92 one, and keeps the expression of the latter.
    #[test]
    fn a_forwarded_receive_decodes_in_either_form() {
        let pop = Pop {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            max: 32,
            invisible_ms: 30_000,
            filter: TagFilter::All,
            max_bytes: 1 << 20,
            order: Default::default(),
            sql: None,
            verdicts: None,
        };
        assert_eq!(PopCall::decode(&enc(&pop)).unwrap(), pop);
        let call = PopCall {
            pop: pop.clone(),
            sql: "a > 1".into(),
        };
        let back = PopCall::decode(&enc(&call)).unwrap();
        assert_eq!(back.sql.as_deref(), Some("a > 1"));
        assert_eq!(Pop { sql: None, ..back }, pop);
        assert!(PopCall::decode(&enc(&call)[..10]).is_err());
    }
}

/// The answer to a batched forward: one result per command, in order.
pub type BatchAnswer = Vec<Result<Outcome, ForwardError>>;

/// A broker error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardError {
    /// The target does not lead the group either.
    NotLeader(Option<u64>),
    /// Applied and refused.
    Rejected(Reject),
    /// May or may not have been committed.
    Unknown(String),
    /// The target cannot take requests.
    Unavailable(String),
    /// Stored data could not be read back.
    Corrupt(String),
    /// Refused before anything was proposed (appended last: variants are never reordered).
    Overloaded(String),
}

impl From<BrokerError> for ForwardError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotLeader { leader } => ForwardError::NotLeader(leader),
            BrokerError::Rejected(r) => ForwardError::Rejected(r),
            BrokerError::Unknown(s) => ForwardError::Unknown(s),
            BrokerError::Unavailable(s) => ForwardError::Unavailable(s),
            BrokerError::Corrupt(s) => ForwardError::Corrupt(s),
            BrokerError::Overloaded(s) => ForwardError::Overloaded(s),
            other => ForwardError::Unknown(other.to_string()),
        }
    }
}

impl From<ForwardError> for BrokerError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader(leader) => BrokerError::NotLeader { leader },
            ForwardError::Rejected(r) => BrokerError::Rejected(r),
            ForwardError::Unknown(s) => BrokerError::Unknown(s),
            ForwardError::Unavailable(s) => BrokerError::Unavailable(s),
            ForwardError::Corrupt(s) => BrokerError::Corrupt(s),
            ForwardError::Overloaded(s) => BrokerError::Overloaded(s),
        }
    }
}

/// Received messages as they cross the wire.
pub type Popped = Vec<(Delivery, StoredMessage)>;

/// Where a QueryOffset looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetAt {
    /// Offset 0.
    Beginning,
    /// The queue's end.
    End,
    /// The first message stored at or after this time (milliseconds).
    Time(u64),
}

/// A read that must run on the group's leader after a ReadIndex round (it reflects every
/// write acknowledged before it began).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Read {
    /// Messages of one queue from an offset (offset-based consumption), waiting up to
    /// `wait_ms` for the first one.
    Pull {
        /// Topic.
        topic: String,
        /// Queue.
        queue: u32,
        /// First offset wanted.
        offset: u64,
        /// Most messages.
        batch: u32,
        /// Tag filter.
        filter: TagFilter,
        /// Long poll.
        wait_ms: u64,
        /// Bodies stop at this many bytes (at least one message).
        max_bytes: u64,
    },
    /// An offset of a queue.
    QueryOffset {
        /// Topic.
        topic: String,
        /// Queue.
        queue: u32,
        /// Where.
        at: OffsetAt,
    },
    /// A consumer group's committed offset in a queue.
    GetOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Queue.
        queue: u32,
    },
    /// [`Read::Pull`] with a SQL92 filter instead of a tag filter (appended: variants are
    /// never reordered, and a leader that predates it refuses it as undecodable).
    PullSql {
        /// Topic.
        topic: String,
        /// Queue.
        queue: u32,
        /// First offset wanted.
        offset: u64,
        /// Most messages.
        batch: u32,
        /// The expression.
        sql: String,
        /// Long poll.
        wait_ms: u64,
        /// Bodies stop at this many bytes (at least one message).
        max_bytes: u64,
    },
}

/// What a [`Read`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadAnswer {
    /// A pull's messages (offset, where it sits, the message) and the next offset to ask
    /// for; empty after the long poll if nothing arrived.
    Pulled {
        /// The queue's end when read.
        end: u64,
        /// The next offset to pull from.
        next: u64,
        /// The messages.
        messages: Vec<(u64, CqEntry, StoredMessage)>,
    },
    /// The pull's offset is past the queue's end.
    PastEnd {
        /// The queue's end.
        end: u64,
    },
    /// An offset (`None`: the group committed none).
    Offset(Option<u64>),
    /// The pull's offset is below the queue's first retained offset (retention deleted it).
    BeforeStart {
        /// The first retained offset.
        start: u64,
    },
}

/// Encodes a forwarded value (what the sender controls is bounded where it is built: commands
/// by [`crate::limits`], replies by `max_reply_bytes`).
pub fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("forwarded value encodes")
}

/// Decodes a forwarded value with the decode limit; trailing bytes are refused.
pub fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    crate::command::decode_bounded(b).map_err(|e| format!("undecodable forwarded value: {e}"))
}
