//! Scheduled-message commands: the timer key, a due message's fire (with its log encoding)
//! and a recall.

use serde::Deserialize;
use serde::Serialize;

use super::dec;
use super::enc;
use crate::model::StoredMessage;

/// Names one scheduled message: its due time and where its [`super::Command::Schedule`] sits in the
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
/// [`super::Command::Schedule`] entry) into this command, so its consume-queue entry points here, in
/// log order, and retention never has to keep old entries for delivered timers (RocketMQ's
/// timer rewrites the message into the commit log the same way). Applying delivers it only if
/// the timer is still pending (not fired before, not recalled) and due at the entry's time:
/// exactly once, never early.
///
/// Encoded as the key (`due_ms`, `log_index` little-endian u64, `pos` u32; [`FIRE_PREFIX`]
/// bytes) followed by the message's bincode, so the message's bytes can be read straight out of
/// the entry like a send's ([`super::decode_message`]).
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

pub(super) fn encode_fire(f: &Fire) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIRE_PREFIX as usize + f.message.body.len() + 128);
    out.extend_from_slice(&f.key.due_ms.to_le_bytes());
    out.extend_from_slice(&f.key.log_index.to_le_bytes());
    out.extend_from_slice(&f.key.pos.to_le_bytes());
    out.extend_from_slice(&enc(&f.message));
    out
}

pub(super) fn decode_fire(body: &[u8]) -> Result<Fire, String> {
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
