//! Commands in the log and their encoding.
//!
//! One log entry carries a batch of commands proposed together by the leader (group commit):
//!
//! ```text
//! version u8 (=1) | now_ms u64 | count u32 | count × (op u8 | len u32 | body[len])
//! ```
//!
//! `now_ms` is the cluster time the leader stamped on the batch (`clock.rs`); it is the only time the state
//! machines see. Each body is the bincode encoding of the op's struct. **Op codes are only ever
//! appended**: a replica that meets an op code it does not know stops rather than skip it
//! (an older binary must not diverge from the group). A send's body stays where it is in the
//! log; consume queues point at it by (log index, byte offset, length).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::GroupConfig;
use crate::model::QueueId;
use crate::model::QueueOffset;
use crate::model::StoredMessage;
use crate::model::TopicConfig;

const ENTRY_VERSION: u8 = 1;
const ENTRY_HEADER: usize = 13;

/// Op codes. Append only; never reuse or renumber.
pub mod op {
    /// Create or update a topic.
    pub const UPSERT_TOPIC: u8 = 1;
    /// Create or update a consumer group.
    pub const UPSERT_GROUP: u8 = 2;
    /// Store one message.
    pub const SEND: u8 = 3;
    /// Receive (pop): take visible messages and make them invisible.
    pub const POP: u8 = 4;
    /// Acknowledge a received message.
    pub const ACK: u8 = 5;
    /// Change a received message's invisibility (new receipt).
    pub const CHANGE_INVISIBLE: u8 = 6;
    /// Extend a received message's invisibility, keeping its receipt (auto-renew).
    pub const RENEW: u8 = 7;
    /// Commit a consumer offset (offset-based consumption).
    pub const COMMIT_OFFSET: u8 = 8;
    /// Create a topic unless it exists (auto-creation: never overwrites a configuration).
    pub const CREATE_TOPIC: u8 = 9;
    /// Create a consumer group unless it exists (auto-creation).
    pub const CREATE_GROUP: u8 = 10;
    /// Receive with a byte budget (replaces [`POP`] for new proposals).
    pub const POP_BOUNDED: u8 = 11;
    /// Extend many deliveries' invisibility at once (batched auto-renewal).
    pub const RENEW_MANY: u8 = 12;
    /// Retention: forget every message in log entries up to an index (proposed by the leader).
    pub const RETAIN: u8 = 13;
    /// Set or clear one topic's retention age ([`super::TopicRetention`]).
    pub const TOPIC_RETENTION: u8 = 14;
    /// Delete the messages of topics with their own retention age that are older than it
    /// ([`super::Expire`]).
    pub const EXPIRE: u8 = 15;
    /// Receive with a byte budget, oldest messages first across queues
    /// ([`super::PopOrder::OldestFirst`]; replaces [`POP_BOUNDED`] for new proposals).
    pub const POP_OLDEST: u8 = 16;
    /// Store a message for delivery at its delivery time ([`super::Command::Schedule`]): the
    /// body is a [`crate::model::StoredMessage`], as for [`SEND`], but no consume queue sees it
    /// until a [`FIRE`] delivers it. Its own op code, so a replica too old to keep timers stops
    /// instead of delivering the message at once.
    pub const SCHEDULE: u8 = 17;
    /// Deliver one due scheduled message ([`super::Fire`]), proposed by the leader's timer task.
    pub const FIRE: u8 = 18;
    /// Cancel a scheduled message before its time ([`super::Recall`]).
    pub const RECALL: u8 = 19;
    /// Move a delivery to its group's dead-letter topic and end it
    /// ([`super::Command::DeadLetter`]; v2 `ForwardMessageToDeadLetterQueue`).
    pub const DEAD_LETTER: u8 = 20;
    /// A delivery failed: invisible for the group's backoff for its attempt, with a new
    /// receipt ([`super::Command::Nack`]).
    pub const NACK: u8 = 21;
    /// From this entry on, FIFO receives tell message groups apart ([`super::Command::FifoGroups`];
    /// empty body). Proposed once by a leader of this version: a replica too old to do so stops
    /// here instead of applying receives differently from the group.
    pub const FIFO_GROUPS: u8 = 22;
    /// Nothing but the entry's time ([`super::Command::Advance`]; empty body): an idle leader
    /// moves the state's clock so the timers of the next slot are read into memory.
    pub const ADVANCE: u8 = 23;
    /// Store the half message of a transaction ([`super::Command::Half`]): kept, invisible to
    /// every consumer, until a [`COMMIT_TX`] or [`ROLLBACK_TX`] decides it.
    pub const HALF: u8 = 24;
    /// Commit a transaction ([`super::CommitTx`]): its message, copied into this entry, joins
    /// its queue.
    pub const COMMIT_TX: u8 = 25;
    /// Roll a transaction back ([`super::RollbackTx`]): its half message is discarded.
    pub const ROLLBACK_TX: u8 = 26;
    /// Count one check-back of an undecided transaction, or end it after the last
    /// ([`super::CheckTx`]); proposed by the leader's transaction task.
    pub const CHECK_TX: u8 = 27;
    /// From this entry on, sends are deduplicated by message id within a window
    /// ([`super::DedupWindow`]); proposed by a leader whose configuration differs from the
    /// state's (issue 15, the idempotent producer).
    pub const DEDUP: u8 = 28;
}

/// Byte limit for decoding anything that crosses a process boundary or comes out of the log:
/// bincode checks every length it reads against it before allocating, so a forged length
/// prefix is an error, not an allocation of petabytes (the ten-byte probe of issue 10).
pub const DECODE_LIMIT: usize = 256 << 20;

/// Bincode's standard configuration with [`DECODE_LIMIT`].
pub fn bounded() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Decodes a bincode value with [`DECODE_LIMIT`], refusing trailing bytes.
pub fn decode_bounded<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    let (v, used) = bincode::serde::decode_from_slice(b, bounded()).map_err(|e| e.to_string())?;
    if used != b.len() {
        return Err(format!("{} trailing bytes", b.len() - used));
    }
    Ok(v)
}

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
    /// ([`op::POP_BOUNDED`] or [`op::POP_OLDEST`]), so replicas of different versions never
    /// apply one entry two ways.
    #[serde(skip)]
    pub order: PopOrder,
}

/// How a receive from any queue of a topic picks the messages it takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PopOrder {
    /// Queue by queue, from a queue that depends on the deliveries so far
    /// ([`op::POP_BOUNDED`]). A receive of 32 from a topic of 8 or 16 queues began at the same
    /// queue every time and drained it first: under a backlog the other queues waited for
    /// seconds (issue 13, the peers harness's end-to-end p99).
    QueueByQueue,
    /// The oldest messages first, across queues (by log index) ([`op::POP_OLDEST`]).
    #[default]
    OldestFirst,
}

/// A receive as op code 4 stored it (before the byte budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PopV1 {
    group: String,
    topic: String,
    queue: Option<QueueId>,
    max: u32,
    invisible_ms: u64,
    filter: TagFilter,
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

/// Names one scheduled message: its due time and where its [`Command::Schedule`] sits in the
/// log (a log position is unique, so two messages due at the same millisecond differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    /// Delivery time, cluster milliseconds since the epoch.
    pub due_ms: u64,
    /// Log index of the entry holding the scheduled message.
    pub log_index: u64,
    /// Byte offset of its body in that entry.
    pub pos: u32,
}

/// Length of a [`Fire`] body's fixed prefix: the timer key, before the message itself.
pub const FIRE_PREFIX: u32 = 20;

/// Delivers one scheduled message that is due: the leader copies the message (read from the
/// [`Command::Schedule`] entry) into this command, so its consume-queue entry points here, in
/// log order, and retention never has to keep old entries for delivered timers (RocketMQ's
/// timer rewrites the message into the commit log the same way). Applying delivers it only if
/// the timer is still pending (not fired before, not recalled) and due at the entry's time:
/// exactly once, never early.
///
/// Encoded as the key (`due_ms`, `log_index` little-endian u64, `pos` u32; [`FIRE_PREFIX`]
/// bytes) followed by the message's bincode, so the message's bytes can be read straight out of
/// the entry like a send's ([`decode_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fire {
    /// The timer.
    pub key: TimerKey,
    /// The message, as scheduled.
    pub message: StoredMessage,
}

/// Cancels a scheduled message (v2 `RecallMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recall {
    /// The topic the client names (must be the message's).
    pub topic: String,
    /// The message id the handle names (must be the message's).
    pub message_id: String,
    /// The timer.
    pub key: TimerKey,
}

/// Names one transaction: where its half message ([`Command::Half`]) sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxKey {
    /// Log index of the entry holding the half message.
    pub log_index: u64,
    /// Byte offset of the message in that entry.
    pub pos: u32,
}

/// The idempotent producer's window ([`op::DEDUP`]): a send (plain, scheduled or the half
/// message of a transaction) whose topic and message id were stored less than `window_ms` ago,
/// and are among the group's last `max_ids` such ids, is answered with the first store's
/// receipt and stores nothing. `window_ms` 0 turns deduplication off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupWindow {
    /// How long an id is remembered (cluster ms).
    pub window_ms: u64,
    /// Most ids remembered; the oldest go first.
    pub max_ids: u64,
}

/// Length of a [`Half`] body's fixed prefix (the first check's delay) before the message.
pub const HALF_PREFIX: u32 = 8;

/// The half message of a transaction (v2 `SendMessage` of type TRANSACTION).
///
/// Encoded as `check_after_ms` (little-endian u64, [`HALF_PREFIX`] bytes) followed by the
/// message's bincode, so a commit can read the message out of the entry like a send's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Half {
    /// The first check-back is due this long after the entry's time, if still undecided.
    pub check_after_ms: u64,
    /// The message.
    pub message: StoredMessage,
}

/// Who decided a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxSource {
    /// The producer, on its own (v2 `SOURCE_CLIENT`).
    Client,
    /// The producer, answering a check-back (v2 `SOURCE_SERVER_CHECK`).
    Check,
    /// An operator (`raftmq admin tx`).
    Admin,
}

impl TxSource {
    fn code(self) -> u8 {
        match self {
            TxSource::Client => 1,
            TxSource::Check => 2,
            TxSource::Admin => 3,
        }
    }

    fn from_code(c: u8) -> Result<Self, String> {
        match c {
            1 => Ok(TxSource::Client),
            2 => Ok(TxSource::Check),
            3 => Ok(TxSource::Admin),
            other => Err(format!("unknown transaction source {other}")),
        }
    }
}

/// Length of a [`CommitTx`] body's fixed prefix: the key and the source.
pub const COMMIT_PREFIX: u32 = 13;

/// Commits a transaction: the proposer copies the half message (read from its entry) into
/// this command, so the consume-queue entry points here, in log order, as a timer's fire does.
/// Applies only while the transaction is pending and the copy is its message: once.
///
/// Encoded as the key (`log_index` u64, `pos` u32, little-endian), the source (u8) and the
/// message's bincode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitTx {
    /// The transaction.
    pub key: TxKey,
    /// Who decided.
    pub source: TxSource,
    /// The half message, as stored.
    pub message: StoredMessage,
}

/// Rolls a transaction back: its half message is never delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackTx {
    /// The transaction.
    pub key: TxKey,
    /// The topic the producer names (must be the message's).
    pub topic: String,
    /// The message id it names (must be the message's).
    pub message_id: String,
    /// Who decided.
    pub source: TxSource,
}

/// What happens to a transaction still undecided after its last check-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterMax {
    /// Discarded, as a rollback (RocketMQ's behaviour).
    Discard,
    /// Kept undecided and no longer checked, until its producer or an operator decides it.
    Keep,
}

/// One check-back of an undecided transaction, proposed by the leader when it is due. The
/// schedule travels in the command (from the proposer's configuration), so every replica
/// applies the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTx {
    /// The transaction.
    pub key: TxKey,
    /// The next check is due this long after this one.
    pub interval_ms: u64,
    /// Checks to make before the transaction ends as `after_max` says.
    pub max_checks: u32,
    /// The end of a transaction never decided.
    pub after_max: AfterMax,
}

/// One command. (Serde is for forwarding between nodes of the same version; the log uses the
/// op-code encoding below.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// [`op::UPSERT_TOPIC`]
    UpsertTopic(TopicConfig),
    /// [`op::UPSERT_GROUP`]
    UpsertGroup(GroupConfig),
    /// [`op::SEND`]
    Send(StoredMessage),
    /// [`op::POP_OLDEST`] or [`op::POP_BOUNDED`] as its order says (op code 4 entries decode to
    /// the latter with no byte budget)
    Pop(Pop),
    /// [`op::ACK`]
    Ack(Ack),
    /// [`op::CHANGE_INVISIBLE`]
    ChangeInvisible(ChangeInvisible),
    /// [`op::RENEW`]
    Renew(ChangeInvisible),
    /// [`op::RENEW_MANY`]
    RenewMany(Vec<ChangeInvisible>),
    /// [`op::COMMIT_OFFSET`]
    CommitOffset(CommitOffset),
    /// [`op::CREATE_TOPIC`]
    CreateTopic(TopicConfig),
    /// [`op::CREATE_GROUP`]
    CreateGroup(GroupConfig),
    /// [`op::RETAIN`]
    Retain(Retain),
    /// [`op::TOPIC_RETENTION`]
    TopicRetention(TopicRetention),
    /// [`op::EXPIRE`]
    Expire(Expire),
    /// [`op::SCHEDULE`]
    Schedule(StoredMessage),
    /// [`op::FIRE`]
    Fire(Fire),
    /// [`op::RECALL`]
    Recall(Recall),
    /// [`op::DEAD_LETTER`]: the delivery its receipt names, forwarded by its consumer.
    DeadLetter(Ack),
    /// [`op::NACK`]: the delivery its receipt names failed; the group's retry policy decides
    /// when it is visible again.
    Nack(Ack),
    /// [`op::FIFO_GROUPS`]
    FifoGroups,
    /// [`op::ADVANCE`]
    Advance,
    /// [`op::HALF`]
    Half(Half),
    /// [`op::COMMIT_TX`]
    CommitTx(CommitTx),
    /// [`op::ROLLBACK_TX`]
    RollbackTx(RollbackTx),
    /// [`op::CHECK_TX`]
    CheckTx(CheckTx),
    /// [`op::DEDUP`]
    Dedup(DedupWindow),
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("command encodes")
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    decode_bounded(b)
}

impl Command {
    /// Op code and encoded body.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            Command::UpsertTopic(c) => (op::UPSERT_TOPIC, enc(c)),
            Command::UpsertGroup(c) => (op::UPSERT_GROUP, enc(c)),
            Command::Send(m) => (op::SEND, enc(m)),
            Command::Pop(p) => match p.order {
                PopOrder::QueueByQueue => (op::POP_BOUNDED, enc(p)),
                PopOrder::OldestFirst => (op::POP_OLDEST, enc(p)),
            },
            Command::Ack(a) => (op::ACK, enc(a)),
            Command::ChangeInvisible(c) => (op::CHANGE_INVISIBLE, enc(c)),
            Command::Renew(c) => (op::RENEW, enc(c)),
            Command::RenewMany(c) => (op::RENEW_MANY, enc(c)),
            Command::CommitOffset(c) => (op::COMMIT_OFFSET, enc(c)),
            Command::CreateTopic(c) => (op::CREATE_TOPIC, enc(c)),
            Command::CreateGroup(c) => (op::CREATE_GROUP, enc(c)),
            Command::Retain(c) => (op::RETAIN, enc(c)),
            Command::TopicRetention(c) => (op::TOPIC_RETENTION, enc(c)),
            Command::Expire(c) => (op::EXPIRE, enc(c)),
            Command::Schedule(m) => (op::SCHEDULE, enc(m)),
            Command::Fire(f) => (op::FIRE, encode_fire(f)),
            Command::Recall(r) => (op::RECALL, enc(r)),
            Command::DeadLetter(a) => (op::DEAD_LETTER, enc(a)),
            Command::Nack(a) => (op::NACK, enc(a)),
            Command::FifoGroups => (op::FIFO_GROUPS, Vec::new()),
            Command::Advance => (op::ADVANCE, Vec::new()),
            Command::Half(h) => (op::HALF, encode_half(h)),
            Command::CommitTx(c) => (op::COMMIT_TX, encode_commit(c)),
            Command::RollbackTx(r) => (op::ROLLBACK_TX, enc(r)),
            Command::CheckTx(c) => (op::CHECK_TX, enc(c)),
            Command::Dedup(d) => (op::DEDUP, enc(d)),
        }
    }

    /// True if this binary knows `op`.
    pub fn known_op(op: u8) -> bool {
        (op::UPSERT_TOPIC..=op::DEDUP).contains(&op)
    }

    /// Decodes one command body.
    pub fn decode(op: u8, body: &[u8]) -> Result<Command, String> {
        Ok(match op {
            op::POP => {
                let p: PopV1 = dec(body)?;
                Command::Pop(Pop {
                    group: p.group,
                    topic: p.topic,
                    queue: p.queue,
                    max: p.max,
                    invisible_ms: p.invisible_ms,
                    filter: p.filter,
                    max_bytes: u64::MAX,
                    order: PopOrder::QueueByQueue,
                })
            }
            op::POP_BOUNDED => Command::Pop(Pop {
                order: PopOrder::QueueByQueue,
                ..dec(body)?
            }),
            op::POP_OLDEST => Command::Pop(Pop {
                order: PopOrder::OldestFirst,
                ..dec(body)?
            }),
            op::RENEW_MANY => Command::RenewMany(dec(body)?),
            op::UPSERT_TOPIC => Command::UpsertTopic(dec(body)?),
            op::UPSERT_GROUP => Command::UpsertGroup(dec(body)?),
            op::SEND => Command::Send(dec(body)?),
            op::ACK => Command::Ack(dec(body)?),
            op::CHANGE_INVISIBLE => Command::ChangeInvisible(dec(body)?),
            op::RENEW => Command::Renew(dec(body)?),
            op::COMMIT_OFFSET => Command::CommitOffset(dec(body)?),
            op::CREATE_TOPIC => Command::CreateTopic(dec(body)?),
            op::CREATE_GROUP => Command::CreateGroup(dec(body)?),
            op::RETAIN => Command::Retain(dec(body)?),
            op::TOPIC_RETENTION => Command::TopicRetention(dec(body)?),
            op::EXPIRE => Command::Expire(dec(body)?),
            op::SCHEDULE => Command::Schedule(dec(body)?),
            op::FIRE => Command::Fire(decode_fire(body)?),
            op::RECALL => Command::Recall(dec(body)?),
            op::DEAD_LETTER => Command::DeadLetter(dec(body)?),
            op::NACK => Command::Nack(dec(body)?),
            op::FIFO_GROUPS if body.is_empty() => Command::FifoGroups,
            op::FIFO_GROUPS => return Err("a FIFO-groups marker with a body".into()),
            op::ADVANCE if body.is_empty() => Command::Advance,
            op::ADVANCE => return Err("an advance with a body".into()),
            op::HALF => Command::Half(decode_half(body)?),
            op::COMMIT_TX => Command::CommitTx(decode_commit(body)?),
            op::ROLLBACK_TX => Command::RollbackTx(dec(body)?),
            op::CHECK_TX => Command::CheckTx(dec(body)?),
            op::DEDUP => Command::Dedup(dec(body)?),
            other => {
                return Err(format!(
                    "unknown op code {other}: this binary is older than the log"
                ));
            }
        })
    }

    /// Approximate encoded size, for batching limits.
    pub fn approx_size(&self) -> usize {
        match self {
            Command::Send(m)
            | Command::Schedule(m)
            | Command::Fire(Fire { message: m, .. })
            | Command::Half(Half { message: m, .. })
            | Command::CommitTx(CommitTx { message: m, .. }) => {
                m.body.len()
                    + m.topic.len()
                    + m.message_id.len()
                    + m.keys.iter().map(|k| k.len() + 2).sum::<usize>()
                    + m.properties
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 4)
                        .sum::<usize>()
                    + m.trace_context.as_ref().map_or(0, String::len)
                    + 64
            }
            Command::RenewMany(r) => 64 * r.len() + 64,
            _ => 128,
        }
    }
}

fn encode_fire(f: &Fire) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIRE_PREFIX as usize + f.message.body.len() + 128);
    out.extend_from_slice(&f.key.due_ms.to_le_bytes());
    out.extend_from_slice(&f.key.log_index.to_le_bytes());
    out.extend_from_slice(&f.key.pos.to_le_bytes());
    out.extend_from_slice(&enc(&f.message));
    out
}

fn decode_fire(body: &[u8]) -> Result<Fire, String> {
    if body.len() < FIRE_PREFIX as usize {
        return Err("fire command shorter than its key".into());
    }
    let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
    Ok(Fire {
        key: TimerKey {
            due_ms: u64_at(0),
            log_index: u64_at(8),
            pos: u32::from_le_bytes(body[16..20].try_into().unwrap()),
        },
        message: dec(&body[FIRE_PREFIX as usize..])?,
    })
}

fn encode_half(h: &Half) -> Vec<u8> {
    let mut out = Vec::with_capacity(HALF_PREFIX as usize + h.message.body.len() + 128);
    out.extend_from_slice(&h.check_after_ms.to_le_bytes());
    out.extend_from_slice(&enc(&h.message));
    out
}

fn decode_half(body: &[u8]) -> Result<Half, String> {
    if body.len() < HALF_PREFIX as usize {
        return Err("half message shorter than its prefix".into());
    }
    Ok(Half {
        check_after_ms: u64::from_le_bytes(body[..8].try_into().unwrap()),
        message: dec(&body[HALF_PREFIX as usize..])?,
    })
}

fn encode_commit(c: &CommitTx) -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMIT_PREFIX as usize + c.message.body.len() + 128);
    out.extend_from_slice(&c.key.log_index.to_le_bytes());
    out.extend_from_slice(&c.key.pos.to_le_bytes());
    out.push(c.source.code());
    out.extend_from_slice(&enc(&c.message));
    out
}

fn decode_commit(body: &[u8]) -> Result<CommitTx, String> {
    if body.len() < COMMIT_PREFIX as usize {
        return Err("transaction commit shorter than its key".into());
    }
    Ok(CommitTx {
        key: TxKey {
            log_index: u64::from_le_bytes(body[..8].try_into().unwrap()),
            pos: u32::from_le_bytes(body[8..12].try_into().unwrap()),
        },
        source: TxSource::from_code(body[12])?,
        message: dec(&body[COMMIT_PREFIX as usize..])?,
    })
}

/// Encodes a batch of commands proposed at `now_ms`.
pub fn encode_entry(now_ms: u64, commands: &[Command]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        ENTRY_HEADER + commands.iter().map(|c| c.approx_size() + 5).sum::<usize>(),
    );
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&now_ms.to_le_bytes());
    out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
    for c in commands {
        let (op, body) = c.encode();
        out.push(op);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// One command of a decoded entry, with where its body sits in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The command, or why its body (of a known op code) does not decode: such a command is
    /// refused when it applies, on every replica alike.
    pub command: Result<Command, String>,
    /// Byte offset of the body within the entry.
    pub pos: u32,
    /// Body length.
    pub len: u32,
}

/// A decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEntry {
    /// The leader's clock when it proposed the entry.
    pub now_ms: u64,
    /// The commands in order.
    pub commands: Vec<Located>,
}

/// Decodes an entry produced by [`encode_entry`]. `Err` only for what this binary cannot
/// interpret at all (an unknown entry version or op code: the log is newer than the binary) or
/// an entry whose framing is broken.
pub fn decode_entry(bytes: &[u8]) -> Result<DecodedEntry, String> {
    if bytes.len() < ENTRY_HEADER {
        return Err("entry too short".into());
    }
    if bytes[0] != ENTRY_VERSION {
        return Err(format!(
            "unknown entry version {}: this binary is older than the log",
            bytes[0]
        ));
    }
    let now_ms = u64::from_le_bytes(bytes[1..9].try_into().unwrap());
    let count = u32::from_le_bytes(bytes[9..13].try_into().unwrap()) as usize;
    let mut pos = ENTRY_HEADER;
    let mut commands = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        if pos + 5 > bytes.len() {
            return Err(format!("command {i} header runs past the entry"));
        }
        let op = bytes[pos];
        let len = u32::from_le_bytes(bytes[pos + 1..pos + 5].try_into().unwrap()) as usize;
        let body_pos = pos + 5;
        let body = bytes
            .get(body_pos..body_pos.saturating_add(len))
            .ok_or_else(|| format!("command {i} body runs past the entry"))?;
        if !Command::known_op(op) {
            return Err(format!(
                "unknown op code {op}: this binary is older than the log"
            ));
        }
        commands.push(Located {
            command: Command::decode(op, body),
            pos: body_pos as u32,
            len: len as u32,
        });
        pos = body_pos + len;
    }
    if pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after {count} commands",
            bytes.len() - pos
        ));
    }
    Ok(DecodedEntry { now_ms, commands })
}

/// Decodes the message stored at `pos..pos+len` of an entry (a send's body).
pub fn decode_message(entry: &[u8], pos: u32, len: u32) -> Result<StoredMessage, String> {
    let body = entry
        .get(pos as usize..(pos as usize).saturating_add(len as usize))
        .ok_or("message position outside the entry")?;
    dec(body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::MessageKind;
    use crate::model::TopicKind;

    fn msg(i: u32) -> StoredMessage {
        StoredMessage {
            topic: "t".into(),
            queue: QueueId(i % 4),
            message_id: format!("id{i}"),
            tag: Some("TagA".into()),
            keys: vec!["k".into()],
            properties: BTreeMap::from([("a".to_string(), "b".to_string())]),
            kind: MessageKind::Normal,
            message_group: None,
            delivery_ms: None,
            born_ms: 7,
            born_host: "h".into(),
            body_encoding: 1,
            trace_context: None,
            body: vec![i as u8; 100],
        }
    }

    #[test]
    fn entry_round_trip_and_message_slices() {
        let cmds = vec![
            Command::UpsertTopic(TopicConfig {
                name: "t".into(),
                queues: 4,
                kind: TopicKind::Normal,
            }),
            Command::Send(msg(1)),
            Command::Send(msg(2)),
            Command::Ack(Ack {
                group: "g".into(),
                topic: "t".into(),
                receipt: Receipt {
                    queue: QueueId(1),
                    offset: QueueOffset(9),
                    seq: 3,
                },
            }),
            Command::CreateTopic(TopicConfig {
                name: "u".into(),
                queues: 2,
                kind: TopicKind::Mixed,
            }),
            Command::CreateGroup(crate::model::GroupConfig::with_defaults("g")),
        ];
        let bytes = encode_entry(1234, &cmds);
        let d = decode_entry(&bytes).unwrap();
        assert_eq!(d.now_ms, 1234);
        assert_eq!(
            d.commands
                .iter()
                .map(|l| l.command.clone().unwrap())
                .collect::<Vec<_>>(),
            cmds
        );
        let l = &d.commands[2];
        assert_eq!(decode_message(&bytes, l.pos, l.len).unwrap(), msg(2));
    }

    /// A fire's message is read straight out of the entry, after the key, like a send's.
    #[test]
    fn timer_commands_round_trip_and_a_fired_message_reads_in_place() {
        let key = TimerKey {
            due_ms: 1_700_000_000_123,
            log_index: 9,
            pos: 44,
        };
        let cmds = vec![
            Command::Schedule(msg(3)),
            Command::Fire(Fire {
                key,
                message: msg(4),
            }),
            Command::Recall(Recall {
                topic: "t".into(),
                message_id: "id3".into(),
                key,
            }),
            Command::DeadLetter(Ack {
                group: "g".into(),
                topic: "t".into(),
                receipt: Receipt {
                    queue: QueueId(1),
                    offset: QueueOffset(7),
                    seq: 3,
                },
            }),
            Command::Nack(Ack {
                group: "g".into(),
                topic: "t".into(),
                receipt: Receipt {
                    queue: QueueId(2),
                    offset: QueueOffset(8),
                    seq: 4,
                },
            }),
        ];
        let bytes = encode_entry(5, &cmds);
        let d = decode_entry(&bytes).unwrap();
        let back: Vec<Command> = d
            .commands
            .iter()
            .map(|l| l.command.clone().unwrap())
            .collect();
        assert_eq!(back, cmds);
        let f = &d.commands[1];
        assert_eq!(
            decode_message(&bytes, f.pos + FIRE_PREFIX, f.len - FIRE_PREFIX).unwrap(),
            msg(4)
        );
        assert!(decode_fire(&[0; 19]).is_err());
    }

    /// A half message and a commit's copy are read straight out of their entries, after their
    /// prefixes, like a send's.
    #[test]
    fn transaction_commands_round_trip_and_their_messages_read_in_place() {
        let key = TxKey {
            log_index: 11,
            pos: 40,
        };
        let cmds = vec![
            Command::Half(Half {
                check_after_ms: 6_000,
                message: msg(5),
            }),
            Command::CommitTx(CommitTx {
                key,
                source: TxSource::Check,
                message: msg(5),
            }),
            Command::RollbackTx(RollbackTx {
                key,
                topic: "t".into(),
                message_id: "id5".into(),
                source: TxSource::Admin,
            }),
            Command::CheckTx(CheckTx {
                key,
                interval_ms: 60_000,
                max_checks: 15,
                after_max: AfterMax::Keep,
            }),
        ];
        let bytes = encode_entry(5, &cmds);
        let d = decode_entry(&bytes).unwrap();
        let back: Vec<Command> = d
            .commands
            .iter()
            .map(|l| l.command.clone().unwrap())
            .collect();
        assert_eq!(back, cmds);
        let h = &d.commands[0];
        assert_eq!(
            decode_message(&bytes, h.pos + HALF_PREFIX, h.len - HALF_PREFIX).unwrap(),
            msg(5)
        );
        let c = &d.commands[1];
        assert_eq!(
            decode_message(&bytes, c.pos + COMMIT_PREFIX, c.len - COMMIT_PREFIX).unwrap(),
            msg(5)
        );
        assert!(decode_half(&[0; 7]).is_err());
        assert!(decode_commit(&[0; 12]).is_err());
        let mut bad_source = encode_commit(&CommitTx {
            key,
            source: TxSource::Client,
            message: msg(5),
        });
        bad_source[12] = 9;
        assert!(decode_commit(&bad_source).is_err());
    }

    #[test]
    fn a_receives_order_travels_in_its_op_code() {
        for (order, code) in [
            (PopOrder::OldestFirst, op::POP_OLDEST),
            (PopOrder::QueueByQueue, op::POP_BOUNDED),
        ] {
            let pop = Command::Pop(Pop {
                group: "g".into(),
                topic: "t".into(),
                queue: None,
                max: 32,
                invisible_ms: 30_000,
                filter: TagFilter::All,
                max_bytes: 1 << 20,
                order,
            });
            let (op, body) = pop.encode();
            assert_eq!(op, code);
            assert_eq!(Command::decode(op, &body).unwrap(), pop);
        }
    }

    #[test]
    fn unknown_op_and_damage_are_errors() {
        let mut bytes = encode_entry(1, &[Command::Send(msg(1))]);
        assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
        bytes[13] = 200;
        assert!(
            decode_entry(&bytes)
                .unwrap_err()
                .contains("unknown op code")
        );
        assert!(decode_entry(&[9; 20]).unwrap_err().contains("version"));
    }
}
