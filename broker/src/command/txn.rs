//! Transaction commands (half message, commit, rollback, check-back; with their log encodings)
//! and the idempotent producer's deduplication window.

use serde::Deserialize;
use serde::Serialize;

use super::dec;
use super::enc;
use crate::model::StoredMessage;

/// Names one transaction: where its half message ([`super::Command::Half`]) sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxKey {
    /// Log index of the entry holding the half message.
    pub log_index: u64,
    /// Byte offset of the message in that entry.
    pub pos: u32,
}

/// The idempotent producer's window ([`super::op::DEDUP`]): a send (plain, scheduled or the half
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

pub(super) fn encode_half(h: &Half) -> Vec<u8> {
    let mut out = Vec::with_capacity(HALF_PREFIX as usize + h.message.body.len() + 128);
    out.extend_from_slice(&h.check_after_ms.to_le_bytes());
    out.extend_from_slice(&enc(&h.message));
    out
}

pub(super) fn decode_half(body: &[u8]) -> Result<Half, String> {
    if body.len() < HALF_PREFIX as usize {
        return Err("half message shorter than its prefix".into());
    }
    Ok(Half {
        check_after_ms: u64::from_le_bytes(body[..8].try_into().unwrap()),
        message: dec(&body[HALF_PREFIX as usize..])?,
    })
}

pub(super) fn encode_commit(c: &CommitTx) -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMIT_PREFIX as usize + c.message.body.len() + 128);
    out.extend_from_slice(&c.key.log_index.to_le_bytes());
    out.extend_from_slice(&c.key.pos.to_le_bytes());
    out.push(c.source.code());
    out.extend_from_slice(&enc(&c.message));
    out
}

pub(super) fn decode_commit(body: &[u8]) -> Result<CommitTx, String> {
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
