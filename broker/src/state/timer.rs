//! Scheduled (DELAY) messages waiting for their time: replicated timer state.
//!
//! A [`crate::command::Command::Schedule`] stores the message in the log and a timer here,
//! keyed by due time and log position; no consume queue sees the message. The leader's timer
//! task (`crate::ticker`) proposes one [`crate::command::Fire`] per due timer, carrying the
//! message; applying it removes the timer and appends the copy to its queue. Because the timer
//! state is replicated, a new leader continues where the old one stopped: a timer fires once
//! (the first `Fire` applied removes it, a repeat finds nothing), never before its time (a
//! `Fire` whose timer is not due at the entry's time is refused), and is never lost (it stays
//! until a `Fire` or a recall removes it, and retention keeps its entry: [`Timers::oldest_index`]).
//!
//! Timers are held in memory (about 70 bytes each). Moving them to an on-disk wheel for
//! millions of pending timers is issue 14's item 2, not done yet.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use super::BrokerState;
use super::Outcome;
use super::Reject;
use crate::command;
use crate::command::Fire;
use crate::command::Recall;
use crate::command::TimerKey;
use crate::model::QueueId;
use crate::model::StoredMessage;

/// What identifies the message behind a timer to a recall or a fire: a hash of its topic and
/// message id (kept instead of the strings: a timer's memory is the key and this).
pub fn identity(topic: &str, message_id: &str) -> u64 {
    crate::model::tag_hash(Some(&format!("{topic}\u{0}{message_id}")))
}

/// What a pending timer remembers of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// [`identity`] of the message.
    pub identity: u64,
    /// Length of the message's body in its entry (the key has its position).
    pub len: u32,
}

/// The pending timers of one group, and counts of what became of the others.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Pending timers.
    pending: BTreeMap<TimerKey, Pending>,
    /// Timers fired so far.
    pub fired: u64,
    /// Timers recalled so far.
    pub recalled: u64,
}

impl Timers {
    /// Adds a timer.
    pub fn schedule(&mut self, key: TimerKey, p: Pending) {
        self.pending.insert(key, p);
    }

    /// Removes the timer `key` if it is pending for the message `identity`; true if it was.
    pub fn take(&mut self, key: &TimerKey, identity: u64) -> bool {
        if self
            .pending
            .get(key)
            .is_some_and(|p| p.identity == identity)
        {
            self.pending.remove(key);
            true
        } else {
            false
        }
    }

    /// True if `key` is pending.
    pub fn contains(&self, key: &TimerKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Up to `max` pending timers due at `now_ms`, earliest first.
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<(TimerKey, Pending)> {
        self.pending
            .iter()
            .take_while(|(k, _)| k.due_ms <= now_ms)
            .take(max)
            .map(|(k, p)| (*k, *p))
            .collect()
    }

    /// The earliest due time pending.
    pub fn next_due(&self) -> Option<u64> {
        self.pending.keys().next().map(|k| k.due_ms)
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True if none is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The lowest log index holding a pending timer's message: retention must keep it. O(n):
    /// called when a retention entry applies (every few seconds), not per message.
    pub fn oldest_index(&self) -> Option<u64> {
        self.pending.keys().map(|k| k.log_index).min()
    }
}

/// Applying the timer commands (entry `index`, the command's body at `pos..pos+len`).
impl BrokerState {
    /// [`command::Command::Schedule`]: a timer for `m`, or the message stored at once if it is
    /// due already.
    pub(super) fn schedule(
        &mut self,
        index: u64,
        now: u64,
        m: &StoredMessage,
        pos: u32,
        len: u32,
    ) -> Outcome {
        let queue = match self.route(m) {
            Ok(q) => q,
            Err(r) => return Outcome::Rejected(r),
        };
        match m.delivery_ms {
            // Due already (a delivery time in the past, or one that passed while the send
            // waited): delivered at once, as RocketMQ does.
            Some(due) if due > now => {
                let key = TimerKey {
                    due_ms: due,
                    log_index: index,
                    pos,
                };
                self.timers.schedule(
                    key,
                    Pending {
                        identity: identity(&m.topic, &m.message_id),
                        len,
                    },
                );
                Outcome::Scheduled { queue, key }
            }
            _ => self.store(index, now, m, queue, pos, len),
        }
    }

    /// [`command::Command::Fire`]: delivers the copy the fire carries if its timer is pending
    /// and due.
    pub(super) fn fire(&mut self, index: u64, now: u64, f: &Fire, pos: u32, len: u32) -> Outcome {
        // Never early: the timer must be due at the entry's time (a leader decides on its
        // clock's estimate; the entry's stamp is never behind it).
        if f.key.due_ms > now {
            return Outcome::Rejected(Reject::Invalid(format!(
                "timer due at {} ms fired at {now} ms",
                f.key.due_ms
            )));
        }
        // The queue the schedule routed it to (topics and queues are never removed).
        let Some(queue) = self
            .topics
            .get(&f.message.topic)
            .and_then(|t| f.message.queue.0.checked_rem(t.queues))
            .map(QueueId)
        else {
            return Outcome::Rejected(Reject::QueueNotFound);
        };
        let id = identity(&f.message.topic, &f.message.message_id);
        if !self.timers.take(&f.key, id) {
            return Outcome::Rejected(Reject::TimerNotPending);
        }
        self.timers.fired += 1;
        let prefix = command::FIRE_PREFIX;
        self.store(
            index,
            now,
            &f.message,
            queue,
            pos + prefix,
            len.saturating_sub(prefix),
        )
    }

    /// [`command::Command::Recall`]: removes a pending timer.
    pub(super) fn recall(&mut self, r: &Recall) -> Outcome {
        if self.timers.take(&r.key, identity(&r.topic, &r.message_id)) {
            self.timers.recalled += 1;
            Outcome::Done
        } else {
            Outcome::Rejected(Reject::TimerNotPending)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(due_ms: u64, log_index: u64) -> TimerKey {
        TimerKey {
            due_ms,
            log_index,
            pos: 13,
        }
    }

    #[test]
    fn due_timers_come_earliest_first_and_fire_once() {
        let mut t = Timers::default();
        let p = |identity| Pending { identity, len: 5 };
        t.schedule(key(300, 1), p(7));
        t.schedule(key(100, 2), p(8));
        t.schedule(key(100, 3), p(9));
        let keys = |v: Vec<(TimerKey, Pending)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(t.due(99, 10)), vec![]);
        assert_eq!(keys(t.due(200, 10)), vec![key(100, 2), key(100, 3)]);
        assert_eq!(keys(t.due(200, 1)), vec![key(100, 2)]);
        assert_eq!(t.next_due(), Some(100));
        assert_eq!(t.oldest_index(), Some(1));
        // The wrong message does not take a timer; the right one does, once.
        assert!(!t.take(&key(100, 2), 9));
        assert!(t.take(&key(100, 2), 8));
        assert!(!t.take(&key(100, 2), 8));
        assert_eq!(t.len(), 2);
    }
}
