//! Consume queues: per (topic, queue), the dense sequence of queue offsets and where each
//! message sits in the log. Built only by applying committed sends, so a consumer can never see
//! an uncommitted message. Retention trims a queue from the front (`trim`): offsets never
//! change, the queue just starts later.

use std::collections::VecDeque;

use serde::Deserialize;
use serde::Serialize;

/// Where one message sits and what filters need to know without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CqEntry {
    /// Log entry holding the message.
    pub log_index: u64,
    /// Byte offset of the message within the entry.
    pub pos: u32,
    /// Encoded message length.
    pub len: u32,
    /// Hash of the tag, for tag filters.
    pub tag_hash: u64,
    /// Store time (the entry's time), milliseconds since the epoch.
    pub store_ms: u64,
}

/// One queue's retained entries; offset `start + i` is `entries[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeQueue {
    /// The first retained offset (everything below was deleted by retention).
    start: u64,
    entries: VecDeque<CqEntry>,
}

impl ConsumeQueue {
    /// A queue holding `entries` from offset 0 (a snapshot from before retention).
    pub fn from_entries(entries: Vec<CqEntry>) -> Self {
        Self {
            start: 0,
            entries: entries.into(),
        }
    }

    /// Appends an entry and returns its offset. Store times never decrease; log positions do
    /// in dead-letter queues, whose entries point back at the original messages.
    pub fn push(&mut self, e: CqEntry) -> u64 {
        if let Some(last) = self.entries.back() {
            assert!(
                e.store_ms >= last.store_ms,
                "consume queue store times went backwards"
            );
        }
        self.entries.push_back(e);
        self.end() - 1
    }

    /// The entry at `offset` (`None` below [`Self::start`] or at or past [`Self::end`]).
    pub fn get(&self, offset: u64) -> Option<&CqEntry> {
        let i = offset.checked_sub(self.start)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The first retained offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// The first retained offset whose store time is at or after `ms` (`end()` if none).
    pub fn offset_at_time(&self, ms: u64) -> u64 {
        self.start + self.entries.partition_point(|e| e.store_ms < ms) as u64
    }

    /// Drops the front entries that sit in log entries at or below `upto` (deleted by
    /// retention) and returns the new start. A dead-letter queue's entries point back at
    /// older messages out of log order; one below `upto` behind a newer one stays until the
    /// front reaches it (readers skip it: its body is gone).
    pub fn trim(&mut self, upto: u64) -> u64 {
        while self.entries.front().is_some_and(|e| e.log_index <= upto) {
            self.entries.pop_front();
            self.start += 1;
        }
        // VecDeque never gives memory back by itself.
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        self.start
    }

    /// Checks internal invariants (tests and simulation).
    pub fn check_invariants(&self) {
        for (a, b) in self.entries.iter().zip(self.entries.iter().skip(1)) {
            assert!(a.store_ms <= b.store_ms, "store time order");
        }
    }
}
