//! Receive (pop) state of one consumer group on one queue: how far the group has been handed
//! messages, and which handed-out messages are not acknowledged yet (in flight), with their
//! visibility deadline, delivery attempt and the sequence number of the current receipt.
//!
//! Because this state is replicated, a new leader knows every in-flight message and its
//! deadline: it never hands one to a second consumer early, and a receipt issued by the old
//! leader can still be acked.

use std::collections::BTreeMap;

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
}

impl PopQueue {
    /// The group's consumer offset: everything below it is acknowledged (or filtered out).
    pub fn ack_offset(&self) -> u64 {
        self.inflight.keys().next().copied().unwrap_or(self.next)
    }

    /// True if a receive at `now` could hand something out, ignoring filters.
    pub fn has_visible(&self, queue_end: u64, now_ms: u64) -> bool {
        self.next < queue_end || self.inflight.values().any(|i| i.deadline_ms <= now_ms)
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
    }
}
