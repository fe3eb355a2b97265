//! Receive (pop) state of one consumer group on one queue: how far the group has been handed
//! messages, and which handed-out messages are not acknowledged yet (in flight), with their
//! visibility deadline, delivery attempt and the sequence number of the current receipt; and,
//! for an orderly (FIFO) group, the messages it went past because their message group was
//! blocked by an earlier one in flight ([`PopQueue::skipped`]).
//!
//! Because this state is replicated, a new leader knows every in-flight message and its
//! deadline: it never hands one to a second consumer early, and a receipt issued by the old
//! leader can still be acked.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

/// One delivered, unacknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    /// Invisible until this time; visible (for redelivery) from then on.
    pub deadline_ms: u64,
    /// How many times it has been delivered.
    pub attempt: u32,
    /// The current receipt's sequence number; older receipts are stale.
    pub seq: u64,
}

/// A group's receive state on one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopQueue {
    /// Every offset below this was handed out at least once or skipped by a filter.
    pub next: u64,
    /// Delivered and not acknowledged, by offset.
    pub inflight: BTreeMap<u64, Inflight>,
    /// Offsets below `next` never handed out: a FIFO receive went past them because their
    /// message group's earlier message was in flight. They go first once it is not. At most
    /// [`crate::limits::MAX_FIFO_SKIPPED`]; beyond, the queue waits as a whole.
    pub skipped: BTreeSet<u64>,
}

impl PopQueue {
    /// The group's consumer offset: everything below it is acknowledged (or filtered out).
    pub fn ack_offset(&self) -> u64 {
        let first = |s: Option<&u64>| s.copied().unwrap_or(u64::MAX);
        first(self.inflight.keys().next())
            .min(first(self.skipped.first()))
            .min(self.next)
    }

    /// True if a receive at `now` could hand something out, ignoring filters and message
    /// groups (a FIFO group asks [`crate::state::BrokerState::has_visible`]).
    pub fn has_visible(&self, queue_end: u64, now_ms: u64) -> bool {
        self.next < queue_end
            || !self.skipped.is_empty()
            || self.inflight.values().any(|i| i.deadline_ms <= now_ms)
    }

    /// When the earliest in-flight message becomes visible again.
    pub fn next_expiry(&self) -> Option<u64> {
        self.inflight.values().map(|i| i.deadline_ms).min()
    }

    /// In-flight offsets whose deadline passed, in offset order.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.inflight
            .iter()
            .filter(|(_, i)| i.deadline_ms <= now_ms)
            .map(|(o, _)| *o)
            .collect()
    }

    /// Checks invariants against the queue's end offset and the highest receipt issued.
    pub fn check_invariants(&self, queue_end: u64, max_seq: u64) {
        assert!(
            self.next <= queue_end,
            "next {} beyond queue end {queue_end}",
            self.next
        );
        for (off, i) in &self.inflight {
            assert!(
                *off < self.next,
                "in-flight offset {off} was never handed out"
            );
            assert!(i.attempt >= 1 && i.seq <= max_seq);
        }
        assert!(self.skipped.len() <= crate::limits::MAX_FIFO_SKIPPED);
        for off in &self.skipped {
            assert!(*off < self.next, "skipped offset {off} was never reached");
            assert!(
                !self.inflight.contains_key(off),
                "skipped offset {off} is in flight"
            );
        }
    }
}
