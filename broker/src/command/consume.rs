//! Receive-side commands: receives (pops), acks, invisibility changes and offset commits, and
//! the receipt that names one delivery.

use std::collections::BTreeMap;
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
    /// A SQL92 subscription's expression (issue 16). Not in the body: a forwarded receive
    /// carries it to the leader ([`crate::forward::wire::PopCall`]), which judges the
    /// messages the receive may reach and proposes its [`Pop::verdicts`].
    #[serde(skip)]
    pub sql: Option<String>,
    /// The leader's verdicts on the messages this receive may take (a SQL92 receive): the
    /// log carries them ([`super::op::POP_SQL`]), so every replica applies the same choice
    /// without evaluating anything or reading a message.
    #[serde(skip)]
    pub verdicts: Option<Verdicts>,
}

/// Which messages a SQL92 receive wants, judged by the leader before proposing it: per
/// queue, one bit for each of a run of offsets from the group's receive position. A receive
/// takes new messages of a queue only inside its run; past it, it stops (the next receive
/// judges further). Messages a FIFO receive went past, and deliveries due again, were judged
/// when first reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    /// Queue → its run.
    pub queues: BTreeMap<QueueId, Run>,
}

/// Verdicts on offsets `from..from + len` of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The first offset judged.
    pub from: QueueOffset,
    /// How many were.
    pub len: u32,
    /// Bit `i` (word `i / 64`, bit `i % 64`): offset `from + i` matches.
    pub bits: Vec<u64>,
}

impl Run {
    /// An empty run from `from`.
    pub fn new(from: u64) -> Self {
        Self {
            from: QueueOffset(from),
            len: 0,
            bits: Vec::new(),
        }
    }

    /// Appends the verdict on the next offset.
    pub fn push(&mut self, matches: bool) {
        let i = self.len as usize;
        if i.is_multiple_of(64) {
            self.bits.push(0);
        }
        if matches {
            self.bits[i / 64] |= 1 << (i % 64);
        }
        self.len += 1;
    }

    /// The verdict on `offset`, or `None` outside the run.
    pub fn get(&self, offset: u64) -> Option<bool> {
        let i = offset.checked_sub(self.from.0)?;
        if i >= u64::from(self.len) {
            return None;
        }
        let word = self.bits.get((i / 64) as usize)?;
        Some(word >> (i % 64) & 1 == 1)
    }
}

impl Verdicts {
    /// The verdict on `offset` of `queue` (`None`: not judged).
    pub fn get(&self, queue: u32, offset: u64) -> Option<bool> {
        self.queues.get(&QueueId(queue))?.get(offset)
    }

    /// Offsets judged, over every queue.
    pub fn judged(&self) -> u64 {
        self.queues.values().map(|r| u64::from(r.len)).sum()
    }
}

impl Pop {
    /// Whether the receive wants the message at `offset` of `queue` (tag hash `tag_hash`)
    /// when reaching it for the first time: `None` if it cannot say (a SQL92 receive the
    /// leader did not judge that far), and the receive stops on that queue.
    pub fn wants_new(&self, queue: u32, offset: u64, tag_hash: u64) -> Option<bool> {
        let sql = match &self.verdicts {
            Some(v) => v.get(queue, offset)?,
            // A SQL92 receive nobody judged takes nothing new.
            None if self.sql.is_some() => return None,
            None => true,
        };
        Some(sql && self.filter.matches(tag_hash))
    }

    /// False if the receive cannot say whether it wants the new message at `offset` of
    /// `queue` ([`Pop::wants_new`] is `None`).
    pub fn reaches(&self, queue: u32, offset: u64) -> bool {
        // Whether a message is judged does not depend on its tag.
        self.wants_new(queue, offset, 0).is_some()
    }

    /// Whether the receive wants a message a FIFO receive went past (it matched when it was
    /// gone past; a tag filter is asked again, as before SQL92).
    pub fn wants_skipped(&self, tag_hash: u64) -> bool {
        self.filter.matches(tag_hash)
    }
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

/// Where a [`Reset`] moves a consumer group in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTo {
    /// The first retained message.
    Earliest,
    /// Past the last message stored: only messages stored after the reset come.
    Latest,
    /// This offset, clamped to the retained ones.
    Offset(QueueOffset),
    /// The first message stored at or after this time (ms since the epoch; by the log's
    /// clock, which stamps each message).
    Time(u64),
}

/// An operator moves a consumer group's position in one queue or every queue of a topic
/// (issue 16, item 4), for every consumer model: the receive position and the committed
/// offset both go there, backwards or forwards, and the group's deliveries in flight in those
/// queues are forgotten (their receipts are refused afterwards; a message at or after the new
/// position comes again). Resolved where it applies, so every replica moves alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// One queue, or (`None`) every queue of the topic in this Raft group.
    pub queue: Option<QueueId>,
    /// Where to.
    pub to: ResetTo,
}
