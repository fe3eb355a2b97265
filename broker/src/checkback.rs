//! Transaction check-backs: the leader asks a producer about a transaction left undecided.
//!
//! The schedule is replicated state (`state::txn`): each undecided transaction has the time of
//! its next check. While its replica leads, this task sleeps until the earliest is due, then
//! proposes a [`CheckTx`] for each due one. Applying it counts the check (or, after the last,
//! ends the transaction as `[transactions] after_max` says), and only a counted check is sent:
//! as a v2 `RecoverOrphanedTransactionCommand` on the Telemetry stream of one producer that
//! declared the topic, on this node if one is connected here, else on the first peer that has
//! one ([`Forwarder::deliver`](crate::forward::client::Forwarder::deliver)). The producer runs
//! its checker and answers with `EndTransaction` (source SERVER_CHECK). A new leader continues
//! the schedule: what the old one counted is in the state, and a check it proposed but did not
//! send is made again at the next interval. When no producer of the topic is connected anywhere,
//! the check still counts, as in RocketMQ, so a transaction whose producer is gone ends.

use std::sync::Weak;
use std::time::Duration;

use futures::future::join_all;
use raftmq_proto::v2 as pb;
use serde::Deserialize;
use serde::Serialize;

use crate::command::AfterMax;
use crate::command::CheckTx;
use crate::command::Command;
use crate::command::TxKey;
use crate::core::BrokerCore;
use crate::model::StoredMessage;
use crate::state::Outcome;
use crate::state::Reject;
use crate::state::consume_queue::CqEntry;
use crate::state::txn::PendingTx;

/// When and how often undecided transactions are checked (`[transactions]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSettings {
    /// First check this long after the half message is stored, unless the producer asked for
    /// another time (v2 `orphaned_transaction_recovery_duration`). RocketMQ: 6 s.
    pub check_after: Duration,
    /// Then every this long. RocketMQ's documentation: 60 s.
    pub check_interval: Duration,
    /// Checks before the transaction ends as `after_max` says. RocketMQ: 15.
    pub max_checks: u32,
    /// What happens then. RocketMQ discards.
    pub after_max: AfterMax,
}

impl Default for TxSettings {
    fn default() -> Self {
        Self {
            check_after: Duration::from_secs(6),
            check_interval: Duration::from_secs(60),
            max_checks: 15,
            after_max: AfterMax::Discard,
        }
    }
}

/// A check-back as it travels to the node that hands it to a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckBack {
    /// The v2 transaction id (what the producer answers with).
    pub transaction_id: String,
    /// The queue the message would be delivered to.
    pub queue: u32,
    /// When the half message was stored.
    pub store_ms: u64,
    /// The half message.
    pub message: StoredMessage,
}

impl CheckBack {
    /// The Telemetry command that carries it.
    pub fn command(self, store_host: &str) -> pb::TelemetryCommand {
        let message = crate::service::convert::to_pb_message(
            self.message.clone(),
            crate::service::convert::DeliveryStamp {
                topic: &self.message.topic,
                queue: self.queue,
                offset: 0,
                receipt_handle: String::new(),
                attempt: 1,
                invisible: Duration::ZERO,
                store_ms: self.store_ms,
                store_host,
            },
        );
        pb::TelemetryCommand {
            status: None,
            command: Some(
                pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    pb::RecoverOrphanedTransactionCommand {
                        message: Some(message),
                        transaction_id: self.transaction_id,
                    },
                ),
            ),
        }
    }
}

/// Hands a check-back to a producer of its topic connected to this node (only to one known to
/// use transactions if `transactional_only`); false if none took it.
pub async fn deliver_local(core: &BrokerCore, check: CheckBack, transactional_only: bool) -> bool {
    let topic = check.message.topic.clone();
    let host = core
        .peers()
        .get(&core.node_id())
        .map(|a| a.client.clone())
        .unwrap_or_default();
    core.clients()
        .send_to_producer(
            &topic,
            &check.command(&host),
            transactional_only,
            STREAM_WAIT,
        )
        .await
}

/// Hands a check-back of a transaction of group `group` to a producer of its topic: on this
/// node if one is connected here, else on the first other member of the group that has one;
/// first only to producers known to use transactions (a plain producer of the topic ignores
/// a check), then to any. Only members: a producer answers on the node that asked it, which
/// must serve the group (review of issue 15). False if nobody took it.
pub async fn deliver(core: &BrokerCore, group: u64, check: CheckBack) -> bool {
    let members = core.members(group).unwrap_or_default();
    for transactional_only in [true, false] {
        if deliver_local(core, check.clone(), transactional_only).await {
            return true;
        }
        for id in &members {
            if *id == core.node_id() {
                continue;
            }
            let Some(addrs) = core.peers().get(id) else {
                continue;
            };
            let forwarder = core.forwarder();
            match forwarder
                .deliver(&addrs.raft, &check, transactional_only, DELIVER_WAIT)
                .await
            {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::debug!(peer = id, error = %e, "check-back: peer not reached"),
            }
        }
    }
    false
}

/// Checks proposed per round.
const ROUND: usize = 256;

/// How long a check's proposal may take before the round is given up and tried again.
const PROPOSAL_WAIT: Duration = Duration::from_secs(5);

/// How long a peer may take to say whether it handed a check to a producer.
const DELIVER_WAIT: Duration = Duration::from_secs(1);

/// How long a producer's full Telemetry buffer is waited for (less than [`DELIVER_WAIT`]: a
/// peer answers within it).
const STREAM_WAIT: Duration = Duration::from_millis(500);

/// The longest sleep (how soon a new leader looks at the schedule).
const IDLE: Duration = Duration::from_millis(500);

/// Runs the check-back task of group `group` on this node until the node stops.
pub async fn run(core: Weak<BrokerCore>, group: u64) {
    loop {
        let Some(c) = core.upgrade() else { return };
        let Some(r) = c.group(group).ok().map(|h| h.replica.clone()) else {
            return;
        };
        let changed = r.changed().clone();
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut wait = IDLE;
        if r.is_leader() {
            let now = r.leader_now();
            let (due, next) = r.read(|s| (s.txns.due(now, ROUND), s.txns.next_check()));
            if !due.is_empty() {
                if check_round(&c, group, due).await {
                    continue;
                }
                wait = Duration::from_millis(50);
            } else if let Some(at) = next {
                wait = Duration::from_millis(at.saturating_sub(now).max(1)).min(IDLE);
            }
        }
        drop((c, r));
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Proposes a check of each due transaction and sends the ones counted; false if a proposal
/// failed (leadership lost, the log refused).
async fn check_round(core: &BrokerCore, group: u64, due: Vec<(TxKey, PendingTx)>) -> bool {
    let s = &core.settings.transactions;
    let proposals = due.into_iter().map(|(key, p)| async move {
        let cmd = Command::CheckTx(CheckTx {
            key,
            interval_ms: s.check_interval.as_millis() as u64,
            max_checks: s.max_checks,
            after_max: s.after_max,
        });
        let Ok(hosted) = core.group(group) else {
            return false;
        };
        let r = &hosted.replica;
        let Ok(res) = tokio::time::timeout(PROPOSAL_WAIT, r.submit(cmd)).await else {
            return false;
        };
        match res {
            Ok(Outcome::TxChecked { checks }) => {
                let at = CqEntry::at(key.log_index, key.pos, p.len);
                let message = match r.read_message(&at) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(group, ?key, error = %e,
                            "check-back: cannot read a half message from the log");
                        return true;
                    }
                };
                let check = CheckBack {
                    transaction_id: crate::service::transaction::transaction_id(group, &key),
                    queue: p.queue.0,
                    store_ms: p.stored_ms,
                    message,
                };
                if !deliver(core, group, check).await {
                    tracing::info!(group, ?key, checks, topic = %p.topic,
                        "check-back: no producer of the topic is connected; counted anyway");
                }
                true
            }
            // Ended after its last check; or decided meanwhile.
            Ok(Outcome::Done | Outcome::Rejected(Reject::TxUnknown)) => true,
            // Checked already, or this leader's clock is behind the entry's stamp: wait a
            // moment rather than propose the round again at once (review of issue 15).
            Ok(Outcome::Rejected(_)) => false,
            Ok(other) => {
                tracing::warn!(group, ?key, ?other, "check-back: unexpected outcome");
                false
            }
            Err(e) => {
                tracing::debug!(group, error = %e, "check-back: not proposed");
                false
            }
        }
    });
    join_all(proposals).await.into_iter().all(|ok| ok)
}
