//! Receive-side commands: receives (pops), acks, invisibility changes and offset commits, and
//! the receipt that names one delivery.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

use crate::model::QueueId;
use crate::model::QueueOffset;

/// Which messages a receive wants, by tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagFilter {
    /// Every message.
    All,
    /// Messages whose tag hash is one of these (a set: matching is a lookup, not a scan;
    /// bincode encodes it like the `Vec` it once was).
    Tags(BTreeSet<u64>),
}

impl TagFilter {
    /// True if a message with `tag_hash` passes.
    pub fn matches(&self, tag_hash: u64) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags(hashes) => hashes.contains(&tag_hash),
        }
    }
}

/// A receive (pop) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pop {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// One queue, or `None` for any queue of the topic.
    pub queue: Option<QueueId>,
    /// At most this many messages.
    pub max: u32,
    /// How long delivered messages stay invisible.
    pub invisible_ms: u64,
    /// Tag filter.
    pub filter: TagFilter,
    /// Stop adding messages once their bodies reach this many bytes (at least one is taken),
    /// so the reply always fits in a message.
    pub max_bytes: u64,
    /// How a receive from any queue picks its messages. Not in the body: the op code says it
    /// ([`super::op::POP_BOUNDED`] or [`super::op::POP_OLDEST`]), so replicas of different versions never
    /// apply one entry two ways.
    #[serde(skip)]
    pub order: PopOrder,
}

/// How a receive from any queue of a topic picks the messages it takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PopOrder {
    /// Queue by queue, from a queue that depends on the deliveries so far
    /// ([`super::op::POP_BOUNDED`]). A receive of 32 from a topic of 8 or 16 queues began at the same
    /// queue every time and drained it first: under a backlog the other queues waited for
    /// seconds (issue 13, the peers harness's end-to-end p99).
    QueueByQueue,
    /// The oldest messages first, across queues (by log index) ([`super::op::POP_OLDEST`]).
    #[default]
    OldestFirst,
}

/// A receive as op code 4 stored it (before the byte budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PopV1 {
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) queue: Option<QueueId>,
    pub(super) max: u32,
    pub(super) invisible_ms: u64,
    pub(super) filter: TagFilter,
}

/// A reference to one delivery of one message (what a receipt handle names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Queue.
    pub queue: QueueId,
    /// Offset in the queue.
    pub offset: QueueOffset,
    /// Which delivery: changes on every redelivery and every client change of invisibility.
    pub seq: u64,
}

/// Acknowledge a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// The delivery.
    pub receipt: Receipt,
}

/// Change (or extend) a delivery's invisibility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInvisible {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// The delivery.
    pub receipt: Receipt,
    /// Invisible for this long from the entry's time.
    pub invisible_ms: u64,
}

/// Commit a consumer group's offset in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffset {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue: QueueId,
    /// The next offset to consume.
    pub offset: QueueOffset,
    /// Allow moving backwards (an administrative reset); otherwise stale commits are ignored.
    pub reset: bool,
}
