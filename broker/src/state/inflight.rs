//! How a delivery in flight ends or changes: acknowledged, forwarded to the dead-letter
//! topic by its consumer, made invisible for another while, or failed (a nack: invisible for
//! the group's backoff). Each takes the delivery's
//! current receipt; an older one (the message was delivered again or its invisibility changed
//! since) is refused and changes nothing.

use super::BrokerState;
use super::Outcome;
use super::Reject;
use crate::command;
use crate::command::Ack;
use crate::command::Receipt;

impl BrokerState {
    /// [`command::Command::Ack`]: the delivery is done.
    pub(super) fn ack(&mut self, a: &Ack) -> Outcome {
        match self.take_inflight(a) {
            Some(_) => Outcome::Acked,
            None => Outcome::Rejected(Reject::InvalidReceipt),
        }
    }

    /// [`command::Command::DeadLetter`]: the consumer gave the message up (a FIFO consumer
    /// whose local retries ran out): it goes to the group's dead-letter topic, and the delivery
    /// is done, as if acknowledged.
    pub(super) fn forward_to_dead_letter(&mut self, now: u64, a: &Ack) -> Outcome {
        let entry = self
            .queues
            .get(&(a.topic.clone(), a.receipt.queue.0))
            .and_then(|cq| cq.get(a.receipt.offset.0));
        let Some(entry) = entry.filter(|e| e.log_index >= self.log_start) else {
            return Outcome::Rejected(self.why_not_in_flight(a));
        };
        if self.take_inflight(a).is_none() {
            return Outcome::Rejected(self.why_not_in_flight(a));
        }
        let rule = self.group_rule(&a.topic, a.receipt.queue.0);
        let entry = rule.dead(a.receipt.offset.0, entry);
        self.dead_letter(&a.group, now, vec![entry]);
        Outcome::DeadLettered
    }

    /// Why `a` names no delivery in flight: one the group was given and that ended or was
    /// handed out again ([`Reject::NoLongerInFlight`]), or one it never had.
    fn why_not_in_flight(&self, a: &Ack) -> Reject {
        let given = self
            .pops
            .get(&(a.group.clone(), a.topic.clone(), a.receipt.queue.0))
            .is_some_and(|pq| {
                let off = a.receipt.offset.0;
                // A message a FIFO receive went past was never handed out.
                off < pq.next && !pq.skipped.contains(&off) && a.receipt.seq <= self.receipt_seq
            });
        if given {
            Reject::NoLongerInFlight
        } else {
            Reject::InvalidReceipt
        }
    }

    /// [`command::Command::Nack`]: the delivery failed. The message is invisible for the
    /// group's backoff for the attempt that failed (its retry policy, not the consumer,
    /// decides when it comes back), and the receipt is replaced: a late ack of the failed
    /// delivery is refused.
    pub(super) fn nack(&mut self, now: u64, a: &Ack) -> Outcome {
        let attempt = match self
            .pops
            .get(&(a.group.clone(), a.topic.clone(), a.receipt.queue.0))
            .and_then(|pq| pq.inflight.get(&a.receipt.offset.0))
        {
            Some(i) if i.seq == a.receipt.seq => i.attempt,
            _ => return Outcome::Rejected(Reject::InvalidReceipt),
        };
        let group = self.groups.get(&a.group);
        let max_attempts = group.map_or(super::DEFAULT_MAX_ATTEMPTS, |g| g.max_delivery_attempts);
        // Out of attempts: visible now, so the next receive moves it to the dead-letter topic
        // instead of waiting a backoff first. A step is bounded here too, whatever a
        // configuration holds (`limits::MAX_BACKOFF_MS`).
        let invisible_ms = if attempt >= max_attempts {
            0
        } else {
            group
                .map_or_else(
                    || crate::model::GroupConfig::default_backoff_ms(attempt),
                    |g| g.backoff_ms(attempt),
                )
                .min(crate::limits::MAX_BACKOFF_MS)
        };
        let c = command::ChangeInvisible {
            group: a.group.clone(),
            topic: a.topic.clone(),
            receipt: a.receipt,
            invisible_ms,
        };
        self.change_invisible(now, c, true)
    }

    /// Removes the delivery `a` names if its receipt is current; what it was.
    fn take_inflight(&mut self, a: &Ack) -> Option<super::pop::Inflight> {
        let pq = self
            .pops
            .get_mut(&(a.group.clone(), a.topic.clone(), a.receipt.queue.0))?;
        match pq.inflight.get(&a.receipt.offset.0) {
            Some(i) if i.seq == a.receipt.seq => pq.inflight.remove(&a.receipt.offset.0),
            _ => None,
        }
    }

    /// [`command::Command::ChangeInvisible`] (a new receipt) and [`command::Command::Renew`]
    /// (the same receipt): invisible for `c.invisible_ms` from now.
    pub(super) fn change_invisible(
        &mut self,
        now: u64,
        c: command::ChangeInvisible,
        new_receipt: bool,
    ) -> Outcome {
        let key = (c.group, c.topic, c.receipt.queue.0);
        let Some(pq) = self.pops.get_mut(&key) else {
            return Outcome::Rejected(Reject::InvalidReceipt);
        };
        let Some(inf) = pq.inflight.get_mut(&c.receipt.offset.0) else {
            return Outcome::Rejected(Reject::InvalidReceipt);
        };
        if inf.seq != c.receipt.seq {
            return Outcome::Rejected(Reject::InvalidReceipt);
        }
        if new_receipt {
            self.receipt_seq += 1;
            inf.seq = self.receipt_seq;
        }
        inf.deadline_ms = now.saturating_add(c.invisible_ms);
        Outcome::Changed {
            receipt: Receipt {
                seq: inf.seq,
                ..c.receipt
            },
            deadline_ms: inf.deadline_ms,
        }
    }
}
