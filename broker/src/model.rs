//! The broker's data model: topics, consumer groups, stored messages, and the newtypes for
//! queue ids and offsets. Everything here is replicated through the log, so it is serde-encoded
//! with field order fixed (append new fields at the end, behind a new op code when needed).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A queue within a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueId(pub u32);

/// A position within one queue: dense, starting at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueOffset(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for QueueOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a topic accepts (RocketMQ 5 topic message types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TopicKind {
    /// Plain messages only.
    Normal,
    /// Ordered messages with a message group.
    Fifo,
    /// Messages with a delivery time.
    Delay,
    /// Transactional (half) messages.
    Transaction,
    /// Any of the above (not priority messages).
    Mixed,
    /// Priority messages (and plain ones, at the lowest priority): each queue of a group
    /// holds one priority, a receive takes from the highest first
    /// ([`crate::state::BrokerState`]'s receive; issue 16). Appended: the variants before keep
    /// their encoding.
    Priority,
}

/// The type of one message, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MessageKind {
    /// Plain.
    Normal,
    /// Ordered within its message group.
    Fifo,
    /// Delivered at a given time.
    Delay,
    /// Half message of a transaction.
    Transaction,
    /// A priority message: the higher, the sooner (RocketMQ 5's PRIORITY, 0 the lowest).
    /// Appended, as [`TopicKind::Priority`].
    Priority(u32),
}

impl MessageKind {
    /// The message's priority in a priority topic: its own, or 0 (a plain message).
    pub fn priority(self) -> u32 {
        match self {
            MessageKind::Priority(p) => p,
            _ => 0,
        }
    }
}

impl TopicKind {
    /// True if the topic takes messages of `kind`. Priority messages go only to a priority
    /// topic (a mixed one would store them without their order, silently).
    pub fn accepts(self, kind: MessageKind) -> bool {
        match (self, kind) {
            (_, MessageKind::Priority(_)) => self == TopicKind::Priority,
            (TopicKind::Mixed, _) => true,
            (TopicKind::Normal | TopicKind::Priority, MessageKind::Normal) => true,
            (TopicKind::Fifo, MessageKind::Fifo)
            | (TopicKind::Delay, MessageKind::Delay)
            | (TopicKind::Transaction, MessageKind::Transaction) => true,
            _ => false,
        }
    }

    /// The message kinds the topic takes.
    pub fn accepted(self) -> Vec<MessageKind> {
        [
            MessageKind::Normal,
            MessageKind::Fifo,
            MessageKind::Delay,
            MessageKind::Transaction,
            MessageKind::Priority(0),
        ]
        .into_iter()
        .filter(|k| self.accepts(*k))
        .collect()
    }
}

/// A topic's replicated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Topic name (the key).
    pub name: String,
    /// Number of queues; sends are spread over them.
    pub queues: u32,
    /// Accepted message types.
    pub kind: TopicKind,
}

/// Prefix of the dead-letter topic of a consumer group.
pub use raftmq_proto::names::DLQ_PREFIX;

/// The dead-letter topic of `group`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// A consumer group's replicated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Group name (the key).
    pub name: String,
    /// A message delivered this many times without an ack goes to the dead-letter topic
    /// instead of being delivered again (RocketMQ: retryMaxTimes + 1, 17 by default).
    pub max_delivery_attempts: u32,
    /// FIFO group: messages of a queue are handed out one batch at a time, in order.
    pub fifo: bool,
    /// Retry backoff in milliseconds per attempt: announced in Settings (push consumers apply
    /// it when they change a failed message's invisibility), and applied by the broker to a
    /// nack ([`GroupConfig::backoff_ms`]).
    pub retry_backoff_ms: Vec<u64>,
}

/// RocketMQ's default retry steps (seconds), one per attempt.
const DEFAULT_BACKOFF_SECS: [u64; 18] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
];

impl GroupConfig {
    /// How long a message stays invisible after its `attempt`-th delivery failed (a nack):
    /// the group's backoff step for that attempt, its last step beyond the list (RocketMQ's
    /// customized backoff), 1 s without steps.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let i = attempt.max(1) as usize - 1;
        self.retry_backoff_ms
            .get(i)
            .or(self.retry_backoff_ms.last())
            .copied()
            .unwrap_or(1_000)
    }

    /// [`GroupConfig::backoff_ms`] of a group that was never configured (RocketMQ's steps).
    pub fn default_backoff_ms(attempt: u32) -> u64 {
        let i = (attempt.max(1) as usize - 1).min(DEFAULT_BACKOFF_SECS.len() - 1);
        DEFAULT_BACKOFF_SECS[i] * 1000
    }

    /// The steps of an exponential backoff (RocketMQ's `ExponentialBackoff`): `initial_ms`,
    /// then times `multiplier` each retry, at most `max_ms`; `count` of them.
    pub fn exponential_steps(
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        count: usize,
    ) -> Vec<u64> {
        let mut out = Vec::with_capacity(count);
        let mut next = initial_ms as f64;
        for _ in 0..count {
            out.push((next.min(max_ms as f64)) as u64);
            next *= multiplier;
        }
        out
    }

    /// A group with RocketMQ's defaults.
    pub fn with_defaults(name: impl Into<String>) -> Self {
        GroupConfig {
            name: name.into(),
            max_delivery_attempts: 17,
            fifo: false,
            retry_backoff_ms: DEFAULT_BACKOFF_SECS.iter().map(|s| s * 1000).collect(),
        }
    }
}

/// A message as stored in the log: everything the producer sent plus the broker's stamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Topic it was sent to.
    pub topic: String,
    /// Queue it was sent to.
    pub queue: QueueId,
    /// Client-generated message id.
    pub message_id: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: BTreeMap<String, String>,
    /// Message type as sent.
    pub kind: MessageKind,
    /// FIFO message group.
    pub message_group: Option<String>,
    /// Delivery time (DELAY), milliseconds since the epoch.
    pub delivery_ms: Option<u64>,
    /// Producer's timestamp, milliseconds since the epoch.
    pub born_ms: u64,
    /// Producer host.
    pub born_host: String,
    /// Body encoding (1 identity, 2 gzip), as sent.
    pub body_encoding: i32,
    /// Trace context.
    pub trace_context: Option<String>,
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The head of a [`StoredMessage`] as its encoding begins (same fields, same order), borrowed
/// from the log entry: what a SQL92 filter reads (tag, keys, properties), decoded without
/// copying a string or the body ([`crate::command::decode_head`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageHead<'a> {
    /// Topic it was sent to.
    pub topic: &'a str,
    /// Queue it was sent to.
    pub queue: QueueId,
    /// Client-generated message id.
    pub message_id: &'a str,
    /// Tag, if any.
    #[serde(borrow)]
    pub tag: Option<&'a str>,
    /// Keys.
    #[serde(borrow)]
    pub keys: Vec<&'a str>,
    /// User properties.
    #[serde(borrow)]
    pub properties: BTreeMap<&'a str, &'a str>,
}

/// A message group's 64-bit hash (FNV-1a over a domain byte and the name), stored in consume
/// queues so a FIFO receive can tell message groups apart without reading messages: never 0,
/// which stands for "no group, or not known" (entries written before issue 14) and orders
/// with every message of its queue.
pub fn message_group_hash(group: Option<&str>) -> u64 {
    let Some(g) = group else {
        return 0;
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(b'G').chain(g.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// A stable 64-bit hash of a tag (FNV-1a), stored in consume queues for tag filtering.
pub fn tag_hash(tag: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.unwrap_or("").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nack waits the step of the attempt that failed, the last step beyond the list, 1 s
    /// without steps; exponential steps grow by the multiplier up to the maximum.
    #[test]
    fn backoff_steps() {
        let mut g = GroupConfig::with_defaults("g");
        assert_eq!((g.backoff_ms(1), g.backoff_ms(2)), (1_000, 5_000));
        assert_eq!(g.backoff_ms(99), 7_200_000);
        assert_eq!(g.backoff_ms(0), 1_000);
        assert_eq!(GroupConfig::default_backoff_ms(2), 5_000);
        assert_eq!(GroupConfig::default_backoff_ms(40), 7_200_000);
        g.retry_backoff_ms.clear();
        assert_eq!(g.backoff_ms(3), 1_000);
        assert_eq!(
            GroupConfig::exponential_steps(1_000, 10_000, 2.0, 6),
            vec![1_000, 2_000, 4_000, 8_000, 10_000, 10_000]
        );
    }
}
