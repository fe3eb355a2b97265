//! Consume queues: per (topic, queue), the dense sequence of queue offsets and where each
//! message sits in the log. Built only by applying committed sends, so a consumer can never see
//! an uncommitted message. Retention trims a queue from the front (`trim`): offsets never
//! change, the queue just starts later.
//!
//! A queue's entries live in memory (`Backing::Mem`: the state-machine model tests, and
//! snapshots from before issue 12) or in files ([`super::cq_files`]: every broker replica),
//! with the same answers either way (`broker/tests/state_model.rs` runs both side by side).
//! Snapshots of a file-backed queue hold only its bounds.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use super::cq_files::CqFiles;
use super::cq_files::FileQueue;
use super::cq_files::QueueCheckpoint;

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
    /// The message group's hash ([`crate::model::message_group_hash`]; 0: none, or an entry
    /// from before FIFO receives told groups apart).
    pub group_hash: u64,
}

impl CqEntry {
    /// Only where a message sits (`len` bytes at `pos` of log entry `log_index`), to read it
    /// back: a pending timer's or transaction's message, which no queue holds yet.
    pub fn at(log_index: u64, pos: u32, len: u32) -> CqEntry {
        CqEntry {
            log_index,
            pos,
            len,
            tag_hash: 0,
            store_ms: 0,
            group_hash: 0,
        }
    }
}

/// Where a queue's entries are.
#[derive(Debug, Default)]
enum Backing {
    /// In memory: offset `start + i` is `entries[i]`.
    Mem(VecDeque<CqEntry>),
    /// In chunk files.
    File(Box<FileQueue>),
    /// Restored from a snapshot that holds only the bounds, not attached to files yet.
    #[default]
    Detached,
}

/// One queue's retained entries `[start, end)`.
#[derive(Debug, Default)]
pub struct ConsumeQueue {
    /// The first retained offset (everything below was deleted by retention).
    start: u64,
    /// One past the last offset.
    end: u64,
    /// The newest entry's store time (0 when there never was one).
    last_store_ms: u64,
    backing: Backing,
}

/// How a queue is written in a snapshot: its bounds, and its entries only when they are
/// kept in memory.
#[derive(Serialize, Deserialize)]
struct QueueImage {
    start: u64,
    end: u64,
    last_store_ms: u64,
    entries: Option<Vec<CqEntry>>,
}

impl Serialize for ConsumeQueue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries = match &self.backing {
            Backing::Mem(v) => Some(v.iter().copied().collect()),
            Backing::File(_) | Backing::Detached => None,
        };
        QueueImage {
            start: self.start,
            end: self.end,
            last_store_ms: self.last_store_ms,
            entries,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConsumeQueue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let img = QueueImage::deserialize(d)?;
        if img.end < img.start {
            return Err(serde::de::Error::custom("queue end below its start"));
        }
        let backing = match img.entries {
            Some(v) => {
                if v.len() as u64 != img.end - img.start {
                    return Err(serde::de::Error::custom(
                        "queue bounds and entries disagree",
                    ));
                }
                Backing::Mem(v.into())
            }
            None => Backing::Detached,
        };
        Ok(Self {
            start: img.start,
            end: img.end,
            last_store_ms: img.last_store_ms,
            backing,
        })
    }
}

/// Queues compare by bounds, and by entries when both are in memory (the model tests compare
/// states; a file-backed queue's entries are compared through [`ConsumeQueue::get`]).
impl PartialEq for ConsumeQueue {
    fn eq(&self, o: &Self) -> bool {
        let same = (self.start, self.end, self.last_store_ms) == (o.start, o.end, o.last_store_ms);
        match (&self.backing, &o.backing) {
            (Backing::Mem(a), Backing::Mem(b)) => same && a == b,
            _ => same,
        }
    }
}

impl Eq for ConsumeQueue {}

impl ConsumeQueue {
    /// A queue holding `entries` in memory from offset `start`.
    pub fn from_entries(start: u64, entries: VecDeque<CqEntry>) -> Self {
        Self {
            start,
            end: start + entries.len() as u64,
            last_store_ms: entries.back().map_or(0, |e| e.store_ms),
            backing: Backing::Mem(entries),
        }
    }

    /// A new, empty queue: in files when `files` is given, else in memory.
    pub fn new(files: Option<&Arc<CqFiles>>, topic: &str, queue: u32) -> Self {
        Self {
            backing: match files {
                Some(f) => Backing::File(Box::new(FileQueue::create(f.clone(), topic, queue, 0))),
                None => Backing::Mem(VecDeque::new()),
            },
            ..Self::default()
        }
    }

    /// Moves the queue into files: a restored file-backed queue attaches to the files its
    /// checkpoint left (checking them against the snapshot, whose state is at `applied`); one
    /// restored with its entries in memory (an older snapshot) writes them out.
    pub fn attach(
        &mut self,
        files: &Arc<CqFiles>,
        topic: &str,
        queue: u32,
        applied: u64,
    ) -> Result<(), String> {
        match std::mem::take(&mut self.backing) {
            Backing::Detached => {
                let fq =
                    FileQueue::attach(files.clone(), topic, queue, self.start, self.end, applied)?;
                self.backing = Backing::File(Box::new(fq));
            }
            Backing::Mem(entries) => {
                let mut fq = FileQueue::create(files.clone(), topic, queue, self.start);
                for (i, e) in entries.into_iter().enumerate() {
                    fq.push(e, self.start + i as u64);
                }
                self.backing = Backing::File(Box::new(fq));
            }
            b @ Backing::File(_) => self.backing = b,
        }
        Ok(())
    }

    /// True if the entries are neither in memory nor in files (a snapshot from a peer that
    /// could not be attached).
    pub fn is_detached(&self) -> bool {
        matches!(self.backing, Backing::Detached)
    }

    /// Keeps a detached queue in memory from now on; false if it holds entries (they are in
    /// files this state has no access to).
    pub fn detached_to_memory(&mut self) -> bool {
        match self.backing {
            Backing::Detached if self.end == self.start => {
                self.backing = Backing::Mem(VecDeque::new());
                true
            }
            Backing::Detached => false,
            Backing::Mem(_) | Backing::File(_) => true,
        }
    }

    /// Appends an entry and returns its offset. Store times never decrease (the caller stamps
    /// them from the state's monotonic clock); log positions do in dead-letter queues, whose
    /// entries point back at the original messages.
    pub fn push(&mut self, e: CqEntry) -> u64 {
        let offset = self.end;
        let e = CqEntry {
            store_ms: e.store_ms.max(self.last_store_ms),
            ..e
        };
        match &mut self.backing {
            Backing::Mem(v) => v.push_back(e),
            Backing::File(f) => f.push(e, offset),
            Backing::Detached => {} // refused at restore: never reached
        }
        self.last_store_ms = e.store_ms;
        self.end += 1;
        offset
    }

    /// The entry at `offset` (`None` below [`Self::start`] or at or past [`Self::end`], or if
    /// it could not be read — the error is recorded and stops the replica).
    pub fn get(&self, offset: u64) -> Option<CqEntry> {
        if offset < self.start || offset >= self.end {
            return None;
        }
        match &self.backing {
            Backing::Mem(v) => v.get(usize::try_from(offset - self.start).ok()?).copied(),
            Backing::File(f) => f.get(offset, self.start),
            Backing::Detached => None,
        }
    }

    /// Entries `[from, to)` within the retained ones, in offset order (`None` if one could
    /// not be read: the error is recorded and the replica stops).
    pub fn entries(&self, from: u64, to: u64) -> Option<Vec<CqEntry>> {
        if from < self.start || to > self.end || from > to {
            return None;
        }
        match &self.backing {
            Backing::Mem(v) => {
                let (a, b) = ((from - self.start) as usize, (to - self.start) as usize);
                Some(v.range(a..b).copied().collect())
            }
            Backing::File(f) => f.range(from, to),
            Backing::Detached => (from == to).then(Vec::new),
        }
    }

    /// The first retained offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The first retained offset whose store time is at or after `ms` (`end()` if none, and
    /// if an entry could not be read: the error is recorded and the replica stops).
    pub fn offset_at_time(&self, ms: u64) -> u64 {
        self.find_time(ms).unwrap_or(self.end)
    }

    /// [`Self::offset_at_time`], `None` if an entry could not be read.
    fn find_time(&self, ms: u64) -> Option<u64> {
        let (mut lo, mut hi) = (self.start, self.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid)?.store_ms < ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// Drops the front entries that sit in log entries at or below `upto` (deleted by
    /// retention) and returns the new start. A dead-letter queue's entries point back at
    /// older messages out of log order; one below `upto` behind a newer one stays until the
    /// front reaches it (readers skip it: its body is gone). `in_log_order`: the queue's log
    /// indexes only grow (every queue but a dead-letter one), so a file-backed queue finds
    /// the new start by binary search instead of reading every deleted entry.
    pub fn trim(&mut self, upto: u64, in_log_order: bool) -> u64 {
        match &mut self.backing {
            Backing::Mem(v) => {
                while v.front().is_some_and(|e| e.log_index <= upto) {
                    v.pop_front();
                    self.start += 1;
                }
                // VecDeque never gives memory back by itself.
                if v.capacity() > 64 && v.len() < v.capacity() / 4 {
                    v.shrink_to_fit();
                }
            }
            Backing::File(_) if in_log_order => {
                let (mut lo, mut hi) = (self.start, self.end);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.get(mid) {
                        Some(e) if e.log_index <= upto => lo = mid + 1,
                        Some(_) => hi = mid,
                        None => break, // unreadable: recorded, the replica stops
                    }
                }
                self.start = lo;
                if let Backing::File(f) = &mut self.backing {
                    f.trimmed(self.start);
                }
            }
            Backing::File(_) => {
                while self.start < self.end {
                    match self.get(self.start) {
                        Some(e) if e.log_index <= upto => self.start += 1,
                        _ => break,
                    }
                }
                if let Backing::File(f) = &mut self.backing {
                    f.trimmed(self.start);
                }
            }
            Backing::Detached => {}
        }
        self.start
    }

    /// Drops the front entries stored before `cutoff_ms` (a topic's own retention age) and
    /// returns the new start. Store times never decrease along a queue. An entry that cannot
    /// be read leaves the queue as it is (the error stops the replica).
    pub fn expire_before(&mut self, cutoff_ms: u64) -> u64 {
        // Most checks find nothing due: one read, no search.
        if self.get(self.start).is_none_or(|e| e.store_ms >= cutoff_ms) {
            return self.start;
        }
        let Some(start) = self.find_time(cutoff_ms) else {
            return self.start;
        };
        if start > self.start {
            match &mut self.backing {
                Backing::Mem(v) => {
                    v.drain(..(start - self.start) as usize);
                    if v.capacity() > 64 && v.len() < v.capacity() / 4 {
                        v.shrink_to_fit();
                    }
                }
                Backing::File(f) => f.trimmed(start),
                Backing::Detached => {}
            }
            self.start = start;
        }
        self.start
    }

    /// Writes pending entries out and says what the snapshot needs synced and may remove.
    pub fn checkpoint(&mut self) -> std::io::Result<QueueCheckpoint> {
        match &mut self.backing {
            Backing::File(f) => f.checkpoint(self.start),
            Backing::Mem(_) | Backing::Detached => Ok(QueueCheckpoint::default()),
        }
    }

    /// The queue is gone from the state: the files to remove once a checkpoint without it
    /// is persisted.
    pub fn retire(self) -> Vec<std::path::PathBuf> {
        match self.backing {
            Backing::File(f) => f.retire(),
            Backing::Mem(_) | Backing::Detached => Vec::new(),
        }
    }

    /// Checks internal invariants (tests and simulation); O(1) for file-backed queues beyond
    /// the tail in memory.
    pub fn check_invariants(&self) {
        assert!(self.start <= self.end, "start beyond end");
        match &self.backing {
            Backing::Mem(v) => {
                assert_eq!(v.len() as u64, self.end - self.start, "bounds");
                for (a, b) in v.iter().zip(v.iter().skip(1)) {
                    assert!(a.store_ms <= b.store_ms, "store time order");
                }
                if let Some(l) = v.back() {
                    assert_eq!(l.store_ms, self.last_store_ms);
                }
            }
            Backing::File(f) => f.check_invariants(self.start, self.end),
            Backing::Detached => {}
        }
    }
}
