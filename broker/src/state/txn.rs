//! Transactional messages: half messages waiting for their producer's decision, and the
//! check-back schedule of those that wait too long. Replicated state (issue 15).
//!
//! A [`Command::Half`](crate::command::Command::Half) stores the message in the log and a
//! pending transaction here, keyed by where the message sits ([`TxKey`]); no consume queue sees
//! it. A [`CommitTx`] carries a copy of the message (read from the half's entry by the node that
//! proposes it) and appends that copy to its queue; a [`RollbackTx`] drops the transaction.
//! Both apply only while the transaction is pending and only for its own message (topic and
//! message id), so a decision applies once, whichever node or leader proposed it and however
//! often: a repeat finds it decided ([`Reject::TxDecided`]).
//!
//! The check-back schedule is state too: each pending transaction has the time of its next
//! check, and the leader's transaction task proposes a [`CheckTx`] when it passes. Applying one
//! counts the check and moves the time on, or, after the last, ends the transaction as the
//! command says (discarded, or kept undecided and no longer checked). A new leader therefore
//! continues the schedule where the old one stopped, and a check counted twice is impossible:
//! a second `CheckTx` for the same round finds the check not due.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::VecDeque;

use serde::Deserialize;
use serde::Serialize;

use super::BrokerState;
use super::Outcome;
use super::Reject;
use crate::command;
use crate::command::AfterMax;
use crate::command::CheckTx;
use crate::command::CommitTx;
use crate::command::Half;
use crate::command::RollbackTx;
use crate::command::TxKey;
use crate::limits;
use crate::model::QueueId;
use crate::state::timer::identity;

/// A transaction waiting for its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTx {
    /// [`identity`] of the half message (topic and message id).
    pub identity: u64,
    /// Its topic (check-backs go to a producer of it).
    pub topic: String,
    /// The queue a commit delivers it to.
    pub queue: QueueId,
    /// Length of the message in its entry.
    pub len: u32,
    /// When it was stored (cluster ms).
    pub stored_ms: u64,
    /// When the next check-back is due (cluster ms).
    pub next_check_ms: u64,
    /// Check-backs made so far.
    pub checks: u32,
    /// True once its checks ran out and it was kept ([`AfterMax::Keep`]): no longer checked.
    pub parked: bool,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxEnd {
    /// Committed: its message was delivered to its queue.
    Committed,
    /// Rolled back by its producer or an operator.
    RolledBack,
    /// Discarded after its last check-back went unanswered.
    Discarded,
}

/// The transactions of one group.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transactions {
    /// Undecided, by position of the half message (so the first is the oldest entry).
    pending: BTreeMap<TxKey, PendingTx>,
    /// (next check, key) of every pending transaction that is not parked.
    due: BTreeSet<(u64, TxKey)>,
    /// Recently decided ones (at most [`limits::MAX_DECIDED_TX`]), with their message's
    /// identity, so a repeated decision is answered for what it is.
    decided: BTreeMap<TxKey, (TxEnd, u64)>,
    /// The keys of `decided`, oldest decision first.
    decided_order: VecDeque<TxKey>,
    /// Committed so far.
    pub committed: u64,
    /// Rolled back so far.
    pub rolled_back: u64,
    /// Discarded after their last check so far.
    pub discarded: u64,
    /// Check-backs counted so far.
    pub checks: u64,
}

impl Transactions {
    /// Undecided transactions.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True if none is undecided.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The undecided transactions, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = (&TxKey, &PendingTx)> {
        self.pending.iter()
    }

    /// One undecided transaction.
    pub fn get(&self, key: &TxKey) -> Option<&PendingTx> {
        self.pending.get(key)
    }

    /// How `key` ended, if it was decided recently, and the [`identity`] of its message.
    pub fn decided(&self, key: &TxKey) -> Option<(TxEnd, u64)> {
        self.decided.get(key).copied()
    }

    /// The transactions whose check is due at `now_ms`, earliest first, at most `max`.
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<(TxKey, PendingTx)> {
        self.due
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(max)
            .filter_map(|(_, k)| self.pending.get(k).map(|p| (*k, p.clone())))
            .collect()
    }

    /// When the next check is due, if any transaction will be checked.
    pub fn next_check(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// The log index of the oldest undecided half message: retention keeps its entry (a
    /// commit reads the message from it).
    pub fn oldest_index(&self) -> Option<u64> {
        self.pending.keys().next().map(|k| k.log_index)
    }

    fn decide(&mut self, key: TxKey, end: TxEnd) -> Option<PendingTx> {
        let p = self.pending.remove(&key)?;
        self.due.remove(&(p.next_check_ms, key));
        match end {
            TxEnd::Committed => self.committed += 1,
            TxEnd::RolledBack => self.rolled_back += 1,
            TxEnd::Discarded => self.discarded += 1,
        }
        if self.decided.insert(key, (end, p.identity)).is_none() {
            self.decided_order.push_back(key);
        }
        while self.decided_order.len() > limits::MAX_DECIDED_TX {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
        Some(p)
    }

    /// Why a decision for `key` about the message `id` cannot apply: decided already (for that
    /// message), or not known at all.
    fn refusal(&self, key: &TxKey, id: u64) -> Reject {
        match self.decided.get(key) {
            Some((end, ident)) if *ident == id => Reject::TxDecided(*end),
            _ => Reject::TxUnknown,
        }
    }

    /// Checks every invariant.
    pub fn check_invariants(&self) {
        let due: BTreeSet<(u64, TxKey)> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.parked)
            .map(|(k, p)| (p.next_check_ms, *k))
            .collect();
        assert_eq!(due, self.due, "check-back schedule out of step");
        assert_eq!(self.decided.len(), self.decided_order.len());
        assert!(self.decided.len() <= limits::MAX_DECIDED_TX);
        for k in self.pending.keys() {
            assert!(
                !self.decided.contains_key(k),
                "{k:?} both pending and decided"
            );
        }
    }
}

impl BrokerState {
    /// [`command::Command::Half`]: stores a half message, undecided.
    pub(super) fn half(&mut self, index: u64, now: u64, h: &Half, pos: u32, len: u32) -> Outcome {
        let m = &h.message;
        if m.kind != crate::model::MessageKind::Transaction {
            return Outcome::Rejected(Reject::Invalid(
                "a half message that is not of type TRANSACTION".into(),
            ));
        }
        let queue = match self.route(m) {
            Ok(q) => q,
            Err(r) => return Outcome::Rejected(r),
        };
        if self.txns.pending.len() >= limits::MAX_PENDING_TX {
            return Outcome::Rejected(Reject::TooManyTx);
        }
        let key = TxKey {
            log_index: index,
            pos: pos + command::HALF_PREFIX,
        };
        let next = now.saturating_add(h.check_after_ms);
        self.txns.pending.insert(
            key,
            PendingTx {
                identity: identity(&m.topic, &m.message_id),
                topic: m.topic.clone(),
                queue,
                len: len.saturating_sub(command::HALF_PREFIX),
                stored_ms: now,
                next_check_ms: next,
                checks: 0,
                parked: false,
            },
        );
        self.txns.due.insert((next, key));
        Outcome::Half { queue, key }
    }

    /// [`command::Command::CommitTx`]: delivers the copy the commit carries if its transaction
    /// is pending and the copy is its message.
    pub(super) fn commit_tx(
        &mut self,
        index: u64,
        now: u64,
        c: &CommitTx,
        pos: u32,
        len: u32,
    ) -> Outcome {
        let id = identity(&c.message.topic, &c.message.message_id);
        match self.txns.pending.get(&c.key) {
            Some(p) if p.identity == id => {}
            _ => return Outcome::Rejected(self.txns.refusal(&c.key, id)),
        }
        let Some(p) = self.txns.decide(c.key, TxEnd::Committed) else {
            return Outcome::Rejected(Reject::TxUnknown);
        };
        let prefix = command::COMMIT_PREFIX;
        self.store(
            index,
            now,
            &c.message,
            p.queue,
            pos + prefix,
            len.saturating_sub(prefix),
        )
    }

    /// [`command::Command::RollbackTx`]: drops a pending transaction.
    pub(super) fn rollback_tx(&mut self, r: &RollbackTx) -> Outcome {
        let id = identity(&r.topic, &r.message_id);
        match self.txns.pending.get(&r.key) {
            Some(p) if p.identity == id => {
                self.txns.decide(r.key, TxEnd::RolledBack);
                Outcome::Done
            }
            _ => Outcome::Rejected(self.txns.refusal(&r.key, id)),
        }
    }

    /// [`command::Command::CheckTx`]: counts a due check-back, or ends the transaction after
    /// its last.
    pub(super) fn check_tx(&mut self, now: u64, c: &CheckTx) -> Outcome {
        let Some(p) = self.txns.pending.get(&c.key) else {
            return Outcome::Rejected(Reject::TxUnknown);
        };
        if p.parked || p.next_check_ms > now {
            return Outcome::Rejected(Reject::TxNotDue);
        }
        let old = (p.next_check_ms, c.key);
        if p.checks >= c.max_checks {
            return match c.after_max {
                AfterMax::Discard => {
                    self.txns.decide(c.key, TxEnd::Discarded);
                    Outcome::Done
                }
                AfterMax::Keep => {
                    self.txns.due.remove(&old);
                    if let Some(p) = self.txns.pending.get_mut(&c.key) {
                        p.parked = true;
                    }
                    Outcome::Done
                }
            };
        }
        let next = now.saturating_add(c.interval_ms);
        self.txns.due.remove(&old);
        self.txns.due.insert((next, c.key));
        self.txns.checks += 1;
        let p = self.txns.pending.get_mut(&c.key).expect("looked up above");
        p.checks += 1;
        p.next_check_ms = next;
        Outcome::TxChecked { checks: p.checks }
    }
}
