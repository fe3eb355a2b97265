//! EndTransaction: a producer (or its answer to a check-back) commits or rolls back a
//! transactional message.
//!
//! The send's answer gives each half message a transaction id naming its Raft group and where
//! the message sits in the log ([`transaction_id`]). A rollback proposes
//! [`Command::RollbackTx`]. A commit first waits until this node's replica has applied the half
//! message (so the log entry it reads is the committed one), reads the message and proposes
//! [`Command::CommitTx`] with a copy of it. The state machine applies a decision only while the
//! transaction is pending and only for its own message, so a decision applies once: a repeat of
//! the same decision (a retry after a lost answer, or a check answered after the producer
//! decided) is answered OK and changes nothing; a contrary one is PRECONDITION_FAILED; an id
//! that names no transaction here (or one decided long ago) is INVALID_TRANSACTION_ID.

use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;

use super::client_id;
use super::grpc_timeout;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::status::tx_end;
use super::validate;
use crate::command::Command;
use crate::command::CommitTx;
use crate::command::RollbackTx;
use crate::command::TxKey;
use crate::command::TxSource;
use crate::core::BrokerCore;
use crate::state::Outcome;
use crate::state::Reject;
use crate::state::consume_queue::CqEntry;
use crate::state::timer::identity;
use crate::state::txn::TxEnd;

use raftmq_proto::v2util::TRANSACTION_ID_V1 as V1;

/// The transaction id of a half message stored in group `group` at `key`:
/// `tx1:<group>:<log index>:<pos>`. Opaque to clients.
pub fn transaction_id(group: u64, key: &TxKey) -> String {
    format!("{V1}:{group}:{}:{}", key.log_index, key.pos)
}

/// Parses a [`transaction_id`]: group and key.
pub fn parse(id: &str) -> Option<(u64, TxKey)> {
    let mut parts = id.split(':');
    if parts.next()? != V1 {
        return None;
    }
    let group = parts.next()?.parse().ok()?;
    let key = TxKey {
        log_index: parts.next()?.parse().ok()?,
        pos: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some((group, key))
}

/// How long a commit waits, without a client deadline, for this node to apply the half
/// message.
const APPLY_WAIT: Duration = Duration::from_secs(3);

pub async fn end_transaction(
    core: &BrokerCore,
    req: Request<pb::EndTransactionRequest>,
) -> pb::EndTransactionResponse {
    let answer = |s: pb::Status| pb::EndTransactionResponse { status: Some(s) };
    match client_id(&req) {
        // It ends transactions: check-backs go to it first (`Clients::mark_transactional`).
        Ok(c) => core.clients().mark_transactional(&c),
        Err(s) => return answer(s),
    }
    let wait = grpc_timeout(&req);
    let started = tokio::time::Instant::now();
    let req = req.into_inner();
    let topic = match validate::topic(req.topic.as_ref()) {
        Ok(t) => t,
        Err(s) => return answer(s),
    };
    if req.message_id.is_empty() {
        return answer(status(Code::IllegalMessageId, "no message id"));
    }
    if req.transaction_id.trim().is_empty() {
        return answer(status(Code::InvalidTransactionId, "no transaction id"));
    }
    let Some((group, key)) = parse(&req.transaction_id) else {
        return answer(status(
            Code::InvalidTransactionId,
            "the transaction id is not one this broker issued",
        ));
    };
    let source = match pb::TransactionSource::try_from(req.source) {
        Ok(pb::TransactionSource::SourceServerCheck) => TxSource::Check,
        _ => TxSource::Client,
    };
    let commit = match pb::TransactionResolution::try_from(req.resolution) {
        Ok(pb::TransactionResolution::Commit) => true,
        Ok(pb::TransactionResolution::Rollback) => false,
        _ => {
            return answer(status(
                Code::BadRequest,
                "the resolution must be COMMIT or ROLLBACK",
            ));
        }
    };
    let cmd = if commit {
        match commit_command(core, group, key, &topic, &req.message_id, source, wait).await {
            Ok(c) => c,
            Err(s) => return answer(s),
        }
    } else {
        Command::RollbackTx(RollbackTx {
            key,
            topic,
            message_id: req.message_id.clone(),
            source,
        })
    };
    // What is left of the client's deadline after the wait for the half message.
    let wait = wait.map(|w| w.saturating_sub(started.elapsed()));
    answer(match core.submit_within(group, cmd, wait).await {
        Ok(Outcome::Sent { .. } | Outcome::Done) => ok(),
        Ok(Outcome::Rejected(r)) => decided(&r, commit),
        Ok(other) => status(Code::InternalError, format!("unexpected outcome {other:?}")),
        Err(e) => from_error(&e),
    })
}

/// The answer to a decision the state refused: OK if the transaction already ended the way
/// it asks (nothing to do), else why not.
fn decided(r: &Reject, commit: bool) -> pb::Status {
    match r {
        Reject::TxDecided(end) => {
            let same = match end {
                TxEnd::Committed => commit,
                TxEnd::RolledBack | TxEnd::Discarded => !commit,
            };
            if same {
                status(
                    Code::Ok,
                    format!("the transaction was {} already", tx_end(*end)),
                )
            } else {
                from_reject(r)
            }
        }
        _ => from_reject(r),
    }
}

/// The commit of `key`, carrying its message read from this node's log once the replica has
/// applied it; or the status to answer.
async fn commit_command(
    core: &BrokerCore,
    group: u64,
    key: TxKey,
    topic: &str,
    message_id: &str,
    source: TxSource,
    wait: Option<Duration>,
) -> Result<Command, pb::Status> {
    let r = core
        .group(group)
        .map_err(|_| {
            status(
                Code::InvalidTransactionId,
                format!("the transaction's group {group} is not served by this node"),
            )
        })?
        .replica
        .clone();
    let deadline = tokio::time::Instant::now() + wait.unwrap_or(APPLY_WAIT).min(APPLY_WAIT);
    let id = identity(topic, message_id);
    // Applied, the entry at the key's index is the committed one (a follower's log may still
    // hold an entry of an older term there before).
    let pending = loop {
        let (applied, pending, ended) = r.read(|s| {
            (
                s.applied_index,
                s.txns.get(&key).cloned(),
                s.txns.decided(&key),
            )
        });
        if applied >= key.log_index {
            match (pending, ended) {
                (Some(p), _) if p.identity == id => break p,
                (None, Some((end, ident))) if ident == id => {
                    return Err(decided(&Reject::TxDecided(end), true));
                }
                _ => return Err(from_reject(&Reject::TxUnknown)),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(status(
                Code::HaNotAvailable,
                "this node has not caught up with the transaction's half message yet; retry",
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let at = CqEntry::at(key.log_index, key.pos, pending.len);
    let message = r.read_message(&at).map_err(|e| from_error(&e))?;
    Ok(Command::CommitTx(CommitTx {
        key,
        source,
        message,
    }))
}

/// Decides transaction `id` by hand (`raftmq admin tx commit | rollback`): its message is
/// read from this node's log for its topic and id. Err says why not (decided already, unknown).
pub async fn resolve(core: &BrokerCore, id: &str, commit: bool) -> Result<(), String> {
    let (group, key) = parse(id).ok_or("not a transaction id this broker issued")?;
    let r = core
        .group(group)
        .map_err(|_| format!("group {group} is not served by this node"))?
        .replica
        .clone();
    let (pending, ended) = r.read(|s| (s.txns.get(&key).cloned(), s.txns.decided(&key)));
    let Some(p) = pending else {
        return Err(match ended {
            Some((end, _)) => format!("the transaction was {} already", tx_end(end)),
            None => "no such transaction is waiting for a decision on this node".into(),
        });
    };
    let at = CqEntry::at(key.log_index, key.pos, p.len);
    let message = r.read_message(&at).map_err(|e| e.to_string())?;
    let cmd = if commit {
        Command::CommitTx(CommitTx {
            key,
            source: TxSource::Admin,
            message,
        })
    } else {
        Command::RollbackTx(RollbackTx {
            key,
            topic: message.topic,
            message_id: message.message_id,
            source: TxSource::Admin,
        })
    };
    match core.submit(group, cmd).await {
        Ok(Outcome::Sent { .. } | Outcome::Done) => Ok(()),
        Ok(Outcome::Rejected(r)) => Err(from_reject(&r).message),
        Ok(other) => Err(format!("unexpected outcome {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_parses_back_and_a_foreign_one_does_not() {
        let key = TxKey {
            log_index: 42,
            pos: 77,
        };
        let id = transaction_id(3, &key);
        assert_eq!(parse(&id), Some((3, key)));
        assert_eq!(raftmq_proto::v2util::transaction_group(&id), Some(3));
        for bad in [
            "",
            "tx1",
            "tx2:3:1:2",
            "tx1:x:1:2",
            "tx1:3:1:2:4",
            "tx1:3:1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
