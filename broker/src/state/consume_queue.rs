//! Consume queues: per (topic, queue), the dense sequence of queue offsets and where each
//! message sits in the log. Built only by applying committed sends, so a consumer can never see
//! an uncommitted message.

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

/// One queue's entries; offset `i` is `entries[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeQueue {
    entries: Vec<CqEntry>,
}

impl ConsumeQueue {
    /// Appends an entry and returns its offset. Store times never decrease; log positions do
    /// in dead-letter queues, whose entries point back at the original messages.
    pub fn push(&mut self, e: CqEntry) -> u64 {
        if let Some(last) = self.entries.last() {
            assert!(
                e.store_ms >= last.store_ms,
                "consume queue store times went backwards"
            );
        }
        self.entries.push(e);
        self.entries.len() as u64 - 1
    }

    /// The entry at `offset`.
    pub fn get(&self, offset: u64) -> Option<&CqEntry> {
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The first offset whose store time is at or after `ms` (`end()` if none).
    pub fn offset_at_time(&self, ms: u64) -> u64 {
        self.entries.partition_point(|e| e.store_ms < ms) as u64
    }

    /// Checks internal invariants (tests and simulation).
    pub fn check_invariants(&self) {
        for w in self.entries.windows(2) {
            assert!(w[0].store_ms <= w[1].store_ms, "store time order");
        }
    }
}
