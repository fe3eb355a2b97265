//! The idempotent producer (issue 15): message ids stored recently, each with the receipt of
//! its first store. Replicated state, so it holds across failover.
//!
//! A client that does not know whether a send was stored (a timeout, a leader that died before
//! answering) sends it again with the same message id, as the official SDKs do. Within the
//! window ([`DedupWindow`], set by [`Command::Dedup`](crate::command::Command::Dedup)) the
//! second send finds the id here and gets the first store's receipt: stored once, whichever
//! node or leader took either send. Ids are keyed by a 128-bit digest of the topic and message
//! id (SHA-256, cut), so each costs about 100 bytes whatever its length; two different ids
//! colliding needs about 2^64 ids.
//!
//! Expiry follows the state's clock (the entries' time), and the cap drops the oldest ids
//! first, so every replica forgets the same ids at the same entry.

use std::collections::BTreeMap;
use std::collections::VecDeque;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;

use super::Outcome;
use crate::command::DedupWindow;
use crate::command::TimerKey;
use crate::command::TxKey;
use crate::model::QueueId;
use crate::model::QueueOffset;

/// What the first store of an id answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum First {
    /// Stored in `queue` at `offset`.
    Sent(QueueId, QueueOffset),
    /// Scheduled for `queue` under this timer.
    Scheduled(QueueId, TimerKey),
    /// The half message of this transaction.
    Half(QueueId, TxKey),
}

impl First {
    fn of(o: &Outcome) -> Option<First> {
        match o {
            Outcome::Sent { queue, offset } => Some(First::Sent(*queue, *offset)),
            Outcome::Scheduled { queue, key } => Some(First::Scheduled(*queue, *key)),
            Outcome::Half { queue, key } => Some(First::Half(*queue, *key)),
            _ => None,
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            First::Sent(queue, offset) => Outcome::Sent { queue, offset },
            First::Scheduled(queue, key) => Outcome::Scheduled { queue, key },
            First::Half(queue, key) => Outcome::Half { queue, key },
        }
    }
}

/// The ids of one group's window.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// The window, once a [`Command::Dedup`](crate::command::Command::Dedup) applied; off
    /// before (a log written by an older binary stores every send, and so does this one).
    pub window: Option<DedupWindow>,
    /// First stores by digest of (topic, message id).
    ids: BTreeMap<u128, First>,
    /// (store time, digest) of every id in `ids`, oldest first.
    order: VecDeque<(u64, u128)>,
    /// Sends answered from the window so far.
    pub hits: u64,
}

/// The digest an id is kept under.
pub fn digest(topic: &str, message_id: &str) -> u128 {
    let mut h = sha2::Sha256::new();
    h.update((topic.len() as u64).to_le_bytes());
    h.update(topic.as_bytes());
    h.update(message_id.as_bytes());
    let d = h.finalize();
    u128::from_le_bytes(d[..16].try_into().expect("32-byte digest"))
}

impl Dedup {
    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Sets the window; a smaller one forgets what falls outside at once. Window 0 forgets
    /// every id and stores every send from now on.
    pub fn set(&mut self, now: u64, w: DedupWindow) {
        self.window = (w.window_ms > 0 && w.max_ids > 0).then_some(w);
        if self.window.is_none() {
            self.ids.clear();
            self.order.clear();
        }
        self.forget(now);
    }

    /// The digest to look `topic`/`message_id` up under, if deduplication is on.
    pub fn key(&self, topic: &str, message_id: &str) -> Option<u128> {
        self.window.map(|_| digest(topic, message_id))
    }

    /// The first store's answer if `key` was stored within the window at `now`.
    pub fn seen(&mut self, now: u64, key: Option<u128>) -> Option<Outcome> {
        let key = key?;
        self.forget(now);
        let first = self.ids.get(&key)?;
        self.hits += 1;
        Some(first.outcome())
    }

    /// Remembers `key`'s first store if `o` stored something.
    pub fn record(&mut self, now: u64, key: Option<u128>, o: &Outcome) {
        let (Some(key), Some(first), Some(w)) = (key, First::of(o), self.window) else {
            return;
        };
        if self.ids.insert(key, first).is_none() {
            self.order.push_back((now, key));
        }
        while self.order.len() as u64 > w.max_ids {
            self.pop_oldest();
        }
    }

    /// Drops the ids older than the window at `now`.
    fn forget(&mut self, now: u64) {
        let Some(w) = self.window else { return };
        let cutoff = now.saturating_sub(w.window_ms);
        while self.order.front().is_some_and(|(t, _)| *t < cutoff) {
            self.pop_oldest();
        }
        while self.order.len() as u64 > w.max_ids {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, k)) = self.order.pop_front() {
            self.ids.remove(&k);
        }
    }

    /// Checks the invariants (tests and the simulator call it after every apply).
    pub fn check_invariants(&self) {
        assert_eq!(
            self.ids.len(),
            self.order.len(),
            "dedup map and order differ"
        );
        assert!(
            self.order
                .iter()
                .zip(self.order.iter().skip(1))
                .all(|(a, b)| a.0 <= b.0),
            "dedup order not by time"
        );
        if let Some(w) = self.window {
            assert!(self.order.len() as u64 <= w.max_ids, "dedup over its cap");
        } else {
            assert!(self.ids.is_empty(), "ids remembered with deduplication off");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(o: u64) -> Outcome {
        Outcome::Sent {
            queue: QueueId(0),
            offset: QueueOffset(o),
        }
    }

    #[test]
    fn an_id_is_answered_from_the_window_until_it_expires_or_is_pushed_out() {
        let mut d = Dedup::default();
        // Off: nothing remembered.
        let k = d.key("t", "a");
        assert_eq!(k, None);
        d.record(0, Some(digest("t", "a")), &sent(0));
        assert!(d.is_empty());
        d.set(
            0,
            DedupWindow {
                window_ms: 1_000,
                max_ids: 2,
            },
        );
        let a = d.key("t", "a");
        d.record(10, a, &sent(0));
        assert_eq!(d.seen(500, a), Some(sent(0)));
        // Another topic, same id: a different message.
        assert_eq!(d.seen(500, d.key("u", "a")), None);
        // A refusal is not remembered.
        let b = d.key("t", "b");
        d.record(
            20,
            b,
            &Outcome::Rejected(super::super::Reject::TopicNotFound),
        );
        assert_eq!(d.seen(20, b), None);
        d.check_invariants();
        // Expired by time: 1 s after it was stored.
        assert_eq!(d.seen(1_011, a), None);
        assert!(d.is_empty());
        // Pushed out by the cap: the oldest goes.
        for (i, id) in ["x", "y", "z"].iter().enumerate() {
            d.record(2_000, d.key("t", id), &sent(i as u64));
        }
        assert_eq!(d.seen(2_000, d.key("t", "x")), None);
        assert_eq!(d.seen(2_000, d.key("t", "z")), Some(sent(2)));
        assert_eq!(d.hits, 2);
        d.check_invariants();
        // Off again forgets everything.
        d.set(
            2_000,
            DedupWindow {
                window_ms: 0,
                max_ids: 2,
            },
        );
        assert!(d.is_empty());
        d.check_invariants();
    }
}
