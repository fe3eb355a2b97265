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

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::GroupConfig;
use crate::model::MessageHead;
use crate::model::StoredMessage;
use crate::model::TopicConfig;

mod consume;
mod retention;
#[cfg(test)]
mod tests;
mod timer;
mod txn;

use consume::PopV1;
pub use consume::*;
pub use retention::*;
use timer::decode_fire;
use timer::encode_fire;
pub use timer::*;
use txn::decode_commit;
use txn::decode_half;
use txn::encode_commit;
use txn::encode_half;
pub use txn::*;

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
    /// A SQL92 receive (issue 16): [`super::Pop`] taking new messages oldest first, as
    /// [`POP_OLDEST`], and the leader's [`super::Verdicts`] on them.
    pub const POP_SQL: u8 = 29;
    /// An operator moves a consumer group's position ([`super::Reset`], issue 16).
    pub const RESET: u8 = 30;
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
    /// the latter with no byte budget); [`op::POP_SQL`] if it carries verdicts
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
    /// [`op::RESET`]
    Reset(Reset),
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
            Command::Pop(p) => match (&p.verdicts, p.order) {
                (Some(v), _) => (op::POP_SQL, enc(&(p, v))),
                (None, PopOrder::QueueByQueue) => (op::POP_BOUNDED, enc(p)),
                (None, PopOrder::OldestFirst) => (op::POP_OLDEST, enc(p)),
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
            Command::Reset(r) => (op::RESET, enc(r)),
        }
    }

    /// True if this binary knows `op`.
    pub fn known_op(op: u8) -> bool {
        (op::UPSERT_TOPIC..=op::RESET).contains(&op)
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
                    sql: None,
                    verdicts: None,
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
            op::POP_SQL => {
                let (p, v): (Pop, Verdicts) = dec(body)?;
                Command::Pop(Pop {
                    order: PopOrder::OldestFirst,
                    verdicts: Some(v),
                    ..p
                })
            }
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
            op::RESET => Command::Reset(dec(body)?),
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
    dec(message_slice(entry, pos, len)?)
}

/// The head of the message at `pos` (`len` bytes) of an entry's bytes, borrowed from them
/// (the rest of the message, its body included, is not read).
pub fn decode_head(entry: &[u8], pos: u32, len: u32) -> Result<MessageHead<'_>, String> {
    let slice = message_slice(entry, pos, len)?;
    let (head, _) =
        bincode::serde::borrow_decode_from_slice(slice, bounded()).map_err(|e| e.to_string())?;
    Ok(head)
}

fn message_slice(entry: &[u8], pos: u32, len: u32) -> Result<&[u8], String> {
    entry
        .get(pos as usize..(pos as usize).saturating_add(len as usize))
        .ok_or_else(|| "message position outside the entry".to_string())
}
