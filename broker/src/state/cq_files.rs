//! Consume queues on disk (issue 12): per (topic, queue), fixed-size entries in chunk files of
//! [`Layout::chunk`] entries, named `<topic>.<queue>.<first offset>.cqg` in the group's `cq/`
//! directory — RocketMQ's ConsumeQueue layout (offset → log position, size, tag hash, store
//! time) plus the message group's hash, so finding offset `o` is one read at `(o - base) * 40`.
//! Chunks an older build wrote (`.cq`, 32 bytes an entry, no group hash) are read and
//! appended to as they are; their entries have group hash 0 ("not known"). The replicated
//! state counts no group hash below the first chunk boundary after the marker that enables
//! them ([`crate::state::BrokerState::grouped_from`]), so every replica reads the same.
//!
//! The files are a cache of state the log defines, made durable by checkpoints: a state
//! snapshot ([`crate::app::BrokerApp`]'s checkpoint) first writes every queue's pending
//! entries, then the snapshot adapter fsyncs the chunks written since the last checkpoint and
//! the directory, and only then persists the snapshot, which records each queue's `start` and
//! `end`. A restart restores the snapshot and attaches each queue to its files: entries below
//! `end` are durable; anything after it is stale (written after the snapshot) and is
//! overwritten as the log after the snapshot is applied again. Chunks wholly below a queue's
//! `start` (deleted by retention) are removed only once a snapshot recording that start is
//! durable, so an older snapshot never finds its entries gone.
//!
//! Memory per queue is a tail of about [`Layout::flush`] + [`Layout::keep`] entries, one
//! read block and the set of chunk bases: O(queues), not O(messages).
//!
//! IO: writes of full 4 KiB blocks during apply, reads through a small cache of open handles.
//! A failed write keeps the entries in memory and is retried (the checkpoint fails if it
//! still cannot write them). A failed read is recorded ([`CqFiles::error`]) and stops the
//! replica after the entry, because an apply that could not see an entry may have diverged.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use raft_store::disk::Disk;
use raft_store::disk::DiskFile;

use super::consume_queue::CqEntry;

/// Entries per chunk file on a broker ([`Layout::default`]). The replicated state relies on
/// it ([`crate::state::BrokerState::grouped_from`]); a layout's chunk must divide it.
pub const CHUNK_ENTRIES: u64 = 1 << 17;

/// How a chunk file lays out its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 32 bytes, no group hash (`.cq`, written before issue 14's FIFO groups).
    Narrow,
    /// 40 bytes: the narrow layout and the message group's hash (`.cqg`).
    Wide,
}

impl Width {
    /// Bytes per entry.
    pub const fn bytes(self) -> usize {
        match self {
            Width::Narrow => 32,
            Width::Wide => 40,
        }
    }

    const fn ext(self) -> &'static str {
        match self {
            Width::Narrow => ".cq",
            Width::Wide => ".cqg",
        }
    }

    fn of(name: &str) -> Option<Width> {
        [Width::Wide, Width::Narrow]
            .into_iter()
            .find(|w| name.ends_with(w.ext()))
    }
}

/// Sizes, in entries. [`Layout::default`] is what brokers use; tests shrink it so that a few
/// hundred messages cross chunk, write and read-block boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Entries per chunk file (default 2^17: 4 MiB); a multiple of `read_block`.
    pub chunk: u64,
    /// Pending entries are written once this many accumulate (default 128: one 4 KiB write).
    pub flush: u64,
    /// Written entries kept in memory at the tail, where most reads are (default 64).
    pub keep: u64,
    /// Entries per read block: one read serves a consumer reading behind the tail (default
    /// 128).
    pub read_block: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            chunk: CHUNK_ENTRIES,
            flush: 128,
            keep: 64,
            read_block: 128,
        }
    }
}

impl Layout {
    /// A tiny layout for tests.
    pub fn tiny() -> Self {
        Self {
            chunk: 8,
            flush: 3,
            keep: 2,
            read_block: 4,
        }
    }

    fn chunk_of(&self, offset: u64) -> u64 {
        offset - offset % self.chunk
    }
}
/// Open chunk handles kept (a small cache: the number of queues is unbounded).
const MAX_HANDLES: usize = 64;

/// Encodes one entry (little-endian: log index, position, length, tag hash, store time, and
/// in a wide chunk the group hash; a narrow chunk drops it).
pub fn encode(e: &CqEntry, w: Width, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.log_index.to_le_bytes());
    out.extend_from_slice(&e.pos.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
    out.extend_from_slice(&e.tag_hash.to_le_bytes());
    out.extend_from_slice(&e.store_ms.to_le_bytes());
    if w == Width::Wide {
        out.extend_from_slice(&e.group_hash.to_le_bytes());
    }
}

/// Decodes one entry from `w.bytes()` bytes.
pub fn decode(b: &[u8], w: Width) -> CqEntry {
    let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    CqEntry {
        log_index: u64at(0),
        pos: u32at(8),
        len: u32at(12),
        tag_hash: u64at(16),
        store_ms: u64at(24),
        group_hash: if w == Width::Wide { u64at(32) } else { 0 },
    }
}

/// The file-name prefix of a queue: the topic with every byte outside `[A-Za-z0-9_-]`
/// written `%XX` (so `.` separates the parts), the queue id, and a dot. A name whose escape
/// would be too long for a file name is replaced by a hash of it plus its head. Case is kept:
/// the data directory must be on a case-sensitive filesystem (Linux).
pub fn prefix(topic: &str, queue: u32) -> String {
    let mut esc = String::with_capacity(topic.len());
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            esc.push(b as char);
        } else {
            esc.push_str(&format!("%{b:02X}"));
        }
    }
    if esc.len() > 160 {
        // SHA-256 (128 bits of it): two names sharing files must not be findable.
        use sha2::Digest;
        let h = sha2::Sha256::digest(topic.as_bytes());
        let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
        let head: String = esc.chars().take(100).collect();
        esc = format!("{head}~{hex}");
    }
    format!("{esc}.{queue}.")
}

fn chunk_name(prefix: &str, base: u64, w: Width) -> String {
    format!("{prefix}{base:020}{}", w.ext())
}

/// One group's consume-queue directory: the disk, open handles, and a sticky read error.
pub struct CqFiles {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    layout: Layout,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Open handles by file name, with the tick of their last use.
    handles: BTreeMap<String, (Arc<dyn DiskFile>, u64)>,
    tick: u64,
    /// Files found in the directory at open and not yet claimed by a queue.
    unclaimed: BTreeSet<String>,
    /// A read failed: the apply that needed it may have diverged.
    error: Option<String>,
}

impl std::fmt::Debug for CqFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CqFiles({})", self.dir.display())
    }
}

impl CqFiles {
    /// Opens (creating) the directory `dir` on `disk`.
    pub fn open(disk: Arc<dyn Disk>, dir: impl AsRef<Path>) -> io::Result<Arc<Self>> {
        Self::open_with(disk, dir, Layout::default())
    }

    /// Opens with a given layout (tests).
    pub fn open_with(
        disk: Arc<dyn Disk>,
        dir: impl AsRef<Path>,
        layout: Layout,
    ) -> io::Result<Arc<Self>> {
        assert!(layout.read_block > 0 && layout.chunk.is_multiple_of(layout.read_block));
        assert!(CHUNK_ENTRIES.is_multiple_of(layout.chunk));
        assert!(layout.flush > 0);
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir)?;
        let unclaimed = disk
            .list(&dir)?
            .into_iter()
            .filter(|n| Width::of(n).is_some())
            .collect();
        Ok(Arc::new(Self {
            disk,
            dir,
            layout,
            inner: Mutex::new(Inner {
                handles: BTreeMap::new(),
                tick: 0,
                unclaimed,
                error: None,
            }),
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first recorded read error, if any (it stays: the replica must stop).
    pub fn error(&self) -> Option<String> {
        self.inner.lock().unwrap().error.clone()
    }

    fn fail(&self, what: String) {
        tracing::error!(dir = %self.dir.display(), "{what}");
        let mut g = self.inner.lock().unwrap();
        g.error.get_or_insert(what);
    }

    /// Claims the files of `prefix` found at open: their chunk bases, names and widths.
    fn claim(&self, prefix: &str) -> Vec<(u64, String, Width)> {
        let mut g = self.inner.lock().unwrap();
        let names: Vec<String> = g
            .unclaimed
            .range(prefix.to_string()..)
            .take_while(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for n in names {
            let Some(w) = Width::of(&n) else {
                continue; // unreachable: only chunk names are kept at open
            };
            let base = n[prefix.len()..n.len() - w.ext().len()].parse::<u64>();
            match base {
                Ok(b) if b % self.layout.chunk == 0 => {
                    g.unclaimed.remove(&n);
                    out.push((b, n, w));
                }
                _ => {} // not ours (another queue whose prefix extends this one's)
            }
        }
        out
    }

    /// Removes every file found at open that no queue claimed (queues created after the
    /// snapshot a restart restored, written before the crash).
    pub fn remove_unclaimed(&self) {
        let names = std::mem::take(&mut self.inner.lock().unwrap().unclaimed);
        for n in names {
            self.remove(&n);
        }
    }

    fn remove(&self, name: &str) {
        self.inner.lock().unwrap().handles.remove(name);
        let path = self.dir.join(name);
        if let Err(e) = self.disk.remove(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove a consume-queue file: {e}");
        }
    }

    fn handle(&self, name: &str, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut g = self.inner.lock().unwrap();
        g.tick += 1;
        let tick = g.tick;
        if !create && let Some((h, t)) = g.handles.get_mut(name) {
            *t = tick;
            return Ok(h.clone());
        }
        let path = self.dir.join(name);
        let h = if create {
            self.disk.create(&path)?
        } else {
            self.disk.open(&path)?
        };
        if g.handles.len() >= MAX_HANDLES && !g.handles.contains_key(name) {
            let oldest = g
                .handles
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                g.handles.remove(&n);
            }
        }
        g.handles.insert(name.to_string(), (h.clone(), tick));
        Ok(h)
    }
}

/// One queue's entries on disk, with its tail in memory.
pub struct FileQueue {
    files: Arc<CqFiles>,
    lay: Layout,
    prefix: String,
    /// Chunks that exist on disk, by base, with their layout.
    chunks: BTreeMap<u64, Width>,
    /// Entries `[tail_base, end)` (the unwritten ones and a few written ones).
    tail_base: u64,
    tail: Vec<CqEntry>,
    /// Entries below this were handed to the disk.
    written: u64,
    /// Chunks written since the last checkpoint.
    dirty: BTreeSet<u64>,
    /// The last block read from disk: (first offset, entries).
    read: Mutex<Option<(u64, Vec<CqEntry>)>>,
}

impl std::fmt::Debug for FileQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileQueue({}, tail {}+{}, written {})",
            self.prefix,
            self.tail_base,
            self.tail.len(),
            self.written
        )
    }
}

/// What a checkpoint of one queue needs done around the snapshot.
#[derive(Default)]
pub struct QueueCheckpoint {
    /// Fsync before the snapshot is persisted (paths: see `raft_store`'s `Checkpoint::sync`).
    pub sync: Vec<PathBuf>,
    /// Remove once the snapshot is persisted.
    pub obsolete: Vec<PathBuf>,
}

impl FileQueue {
    /// A new, empty queue starting at `start`; any files left under its name are removed.
    pub fn create(files: Arc<CqFiles>, topic: &str, queue: u32, start: u64) -> Self {
        let prefix = prefix(topic, queue);
        for (_, name, _) in files.claim(&prefix) {
            files.remove(&name);
        }
        Self {
            lay: files.layout,
            files,
            prefix,
            chunks: BTreeMap::new(),
            tail_base: start,
            tail: Vec::new(),
            written: start,
            dirty: BTreeSet::new(),
            read: Mutex::new(None),
        }
    }

    /// Attaches to the files a checkpoint left for a queue holding `[start, end)`, whose
    /// entries all sit in log entries at or below `applied`. Fails if they are missing or
    /// short, or the tail does not fit the snapshot (the files are damaged).
    pub fn attach(
        files: Arc<CqFiles>,
        topic: &str,
        queue: u32,
        start: u64,
        end: u64,
        applied: u64,
    ) -> Result<Self, String> {
        let prefix = prefix(topic, queue);
        let found = files.claim(&prefix);
        let mut q = Self {
            lay: files.layout,
            files: files.clone(),
            prefix,
            chunks: BTreeMap::new(),
            tail_base: end,
            tail: Vec::new(),
            written: end,
            dirty: BTreeSet::new(),
            read: Mutex::new(None),
        };
        let (lo, hi) = if end > start {
            (files.layout.chunk_of(start), files.layout.chunk_of(end - 1))
        } else {
            (1, 0) // keep nothing
        };
        for (base, name, w) in found {
            if base >= lo && base <= hi {
                if q.chunks.insert(base, w).is_some() {
                    // Never written so: a chunk is created only where none exists.
                    return Err(format!(
                        "consume queue {}: two files for the chunk at offset {base}",
                        q.prefix
                    ));
                }
            } else {
                files.remove(&name); // wholly below start (retention) or after end (stale)
            }
        }
        if end == start {
            return Ok(q);
        }
        let mut base = lo;
        while base <= hi {
            let Some(w) = q.chunks.get(&base).copied() else {
                return Err(format!(
                    "consume queue file {} is missing",
                    chunk_name(&q.prefix, base, Width::Wide)
                ));
            };
            let need = (end.min(base + q.lay.chunk) - base) * w.bytes() as u64;
            let name = chunk_name(&q.prefix, base, w);
            let len = files
                .handle(&name, false)
                .and_then(|h| h.len())
                .map_err(|e| format!("consume queue file {name}: {e}"))?;
            if len < need {
                return Err(format!(
                    "consume queue file {name} holds {len} bytes, the snapshot needs {need}"
                ));
            }
            base += q.lay.chunk;
        }
        let tail_base = end.saturating_sub(q.lay.keep).max(start);
        let tail = q
            .read_range(tail_base, end)
            .map_err(|e| format!("consume queue {}: {e}", q.prefix))?;
        for w in tail.windows(2) {
            if w[1].store_ms < w[0].store_ms {
                return Err(format!(
                    "consume queue {}: store times out of order near offset {end}",
                    q.prefix
                ));
            }
        }
        if let Some(last) = tail.last()
            && (last.log_index > applied || last.log_index == 0)
        {
            return Err(format!(
                "consume queue {}: its last entry points at log entry {}, the snapshot is at {applied}",
                q.prefix, last.log_index
            ));
        }
        q.tail_base = tail_base;
        q.tail = tail;
        Ok(q)
    }

    /// Appends the entry at offset `end` (the caller's end before the push).
    pub fn push(&mut self, e: CqEntry, end: u64) {
        debug_assert_eq!(end, self.tail_base + self.tail.len() as u64);
        self.tail.push(e);
        let end = end + 1;
        let pending = end - self.written;
        // Retry a failed write every `flush` entries, not on every push.
        if pending >= self.lay.flush
            && pending.is_multiple_of(self.lay.flush)
            && let Err(err) = self.write_pending()
        {
            tracing::warn!(queue = %self.prefix, pending, "consume queue write failed, kept in memory: {err}");
        }
        self.shed();
    }

    /// Drops written entries from the tail beyond the few kept for reads.
    fn shed(&mut self) {
        let end = self.tail_base + self.tail.len() as u64;
        let keep_from = self.written.min(end.saturating_sub(self.lay.keep));
        if keep_from > self.tail_base + self.lay.flush {
            let n = (keep_from - self.tail_base) as usize;
            self.tail.drain(..n);
            self.tail_base = keep_from;
        }
    }

    /// Writes the entries not yet written.
    fn write_pending(&mut self) -> io::Result<()> {
        let end = self.tail_base + self.tail.len() as u64;
        while self.written < end {
            let base = self.lay.chunk_of(self.written);
            let upto = end.min(base + self.lay.chunk);
            // A chunk an older build started stays narrow to its end; new chunks are wide.
            let (w, fresh) = match self.chunks.get(&base) {
                Some(w) => (*w, false),
                None => (Width::Wide, true),
            };
            let mut buf = Vec::with_capacity((upto - self.written) as usize * w.bytes());
            for o in self.written..upto {
                encode(&self.tail[(o - self.tail_base) as usize], w, &mut buf);
            }
            let name = chunk_name(&self.prefix, base, w);
            let h = self.files.handle(&name, fresh)?;
            if fresh {
                self.chunks.insert(base, w);
            }
            h.write_at(&buf, (self.written - base) * w.bytes() as u64)?;
            self.dirty.insert(base);
            self.written = upto;
        }
        Ok(())
    }

    /// Reads entries `[from, to)`, all written, from their chunk files.
    fn read_range(&self, from: u64, to: u64) -> io::Result<Vec<CqEntry>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut o = from;
        while o < to {
            let base = self.lay.chunk_of(o);
            let upto = to.min(base + self.lay.chunk);
            let Some(w) = self.chunks.get(&base).copied() else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no chunk at offset {base}"),
                ));
            };
            let mut buf = vec![0u8; (upto - o) as usize * w.bytes()];
            let h = self
                .files
                .handle(&chunk_name(&self.prefix, base, w), false)?;
            raft_store::disk::read_exact_at(&*h, &mut buf, (o - base) * w.bytes() as u64)?;
            out.extend(buf.chunks_exact(w.bytes()).map(|b| decode(b, w)));
            o = upto;
        }
        Ok(out)
    }

    /// The entry at `offset`, which the caller checked is in `[start, end)`. A read error is
    /// recorded on the directory and answered `None`.
    pub fn get(&self, offset: u64, start: u64) -> Option<CqEntry> {
        if offset >= self.tail_base {
            return self.tail.get((offset - self.tail_base) as usize).copied();
        }
        let mut cache = self.read.lock().unwrap();
        if let Some((b, v)) = cache.as_ref()
            && offset >= *b
            && offset < b + v.len() as u64
        {
            return Some(v[(offset - b) as usize]);
        }
        // A block never straddles a chunk (the block size divides the chunk size) nor reaches
        // into the tail; it starts no lower than the queue's start (older chunks may be gone).
        let rb = self.lay.read_block;
        let b = (offset - offset % rb).max(start);
        let to = (offset - offset % rb + rb).min(self.tail_base);
        match self.read_range(b, to) {
            Ok(v) => {
                let e = v[(offset - b) as usize];
                *cache = Some((b, v));
                Some(e)
            }
            Err(err) => {
                self.files.fail(format!(
                    "cannot read consume queue {} at offset {offset}: {err}",
                    self.prefix
                ));
                None
            }
        }
    }

    /// Entries `[from, to)`, which the caller checked are in `[start, end)`, read a chunk at
    /// a time (a timer slot read into memory whole). A read error is recorded on the
    /// directory and answered `None`.
    pub fn range(&self, from: u64, to: u64) -> Option<Vec<CqEntry>> {
        let split = to.min(self.tail_base).max(from);
        let mut out = match self.read_range(from, split) {
            Ok(v) => v,
            Err(err) => {
                self.files.fail(format!(
                    "cannot read consume queue {} at offsets {from}..{split}: {err}",
                    self.prefix
                ));
                return None;
            }
        };
        // The rest is in the tail (then `split` is at or past its base).
        if to > split {
            let tail = (split - self.tail_base) as usize..(to - self.tail_base) as usize;
            out.extend_from_slice(self.tail.get(tail)?);
        }
        Some(out)
    }

    /// Retention moved the start: drop tail entries below it and forget a stale read block.
    pub fn trimmed(&mut self, start: u64) {
        if start > self.tail_base {
            let n = ((start - self.tail_base) as usize).min(self.tail.len());
            self.tail.drain(..n);
            self.tail_base = start;
            self.written = self.written.max(start);
        }
        *self.read.lock().unwrap() = None;
    }

    /// Writes every pending entry and returns what the snapshot needs synced, and the chunks
    /// wholly below `start` to remove once it is persisted.
    pub fn checkpoint(&mut self, start: u64) -> io::Result<QueueCheckpoint> {
        self.write_pending()?;
        self.shed();
        // A failed write above leaves the queue as it was (a failed snapshot build stops the
        // replica anyway).
        let mut cp = QueueCheckpoint::default();
        for base in &self.dirty {
            if let Some(w) = self.chunks.get(base) {
                let name = chunk_name(&self.prefix, *base, *w);
                cp.sync.push(self.files.dir.join(name));
            }
        }
        self.dirty.clear();
        let gone: Vec<(u64, Width)> = self
            .chunks
            .iter()
            .map(|(b, w)| (*b, *w))
            .take_while(|(b, _)| b + self.lay.chunk <= start)
            .collect();
        for (base, w) in gone {
            self.chunks.remove(&base);
            cp.obsolete.push(self.forget(base, w));
        }
        Ok(cp)
    }

    /// The queue is gone: every chunk file it has, to remove after the next checkpoint.
    pub fn retire(self) -> Vec<PathBuf> {
        (self.chunks.iter())
            .map(|(base, w)| self.forget(*base, *w))
            .collect()
    }

    /// Closes the chunk file at `base` and names it, for removal after a checkpoint.
    fn forget(&self, base: u64, w: Width) -> PathBuf {
        let name = chunk_name(&self.prefix, base, w);
        self.files.inner.lock().unwrap().handles.remove(&name);
        self.files.dir.join(name)
    }

    /// Checks the tail (the part in memory) against the queue's bounds.
    pub fn check_invariants(&self, start: u64, end: u64) {
        assert_eq!(
            self.tail_base + self.tail.len() as u64,
            end,
            "tail ends at end"
        );
        assert!(self.tail_base >= start, "tail below start");
        assert!(self.written >= self.tail_base && self.written <= end);
        for w in self.tail.windows(2) {
            assert!(w[0].store_ms <= w[1].store_ms, "store time order");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_names_are_safe() {
        let e = CqEntry {
            log_index: u64::MAX - 3,
            pos: 7,
            len: u32::MAX,
            tag_hash: 0xdead_beef,
            store_ms: 1 << 40,
            group_hash: 0x0123_4567_89ab_cdef,
        };
        let mut b = Vec::new();
        encode(&e, Width::Wide, &mut b);
        assert_eq!(b.len(), Width::Wide.bytes());
        assert_eq!(decode(&b, Width::Wide), e);
        // A narrow (older) chunk has no group hash: read back as "not known".
        let mut n = Vec::new();
        encode(&e, Width::Narrow, &mut n);
        assert_eq!(n.len(), 32);
        assert_eq!(n[..], b[..32]);
        assert_eq!(decode(&n, Width::Narrow), CqEntry { group_hash: 0, ..e });
        assert_eq!(
            Width::of("a.0.00000000000000000000.cq"),
            Some(Width::Narrow)
        );
        assert_eq!(Width::of("a.0.00000000000000000000.cqg"), Some(Width::Wide));
        assert_eq!(Width::of("a.0.tmp"), None);
        assert_eq!(prefix("%DLQ%g-1", 0), "%25DLQ%25g-1.0.");
        assert_eq!(prefix("a|b", 12), "a%7Cb.12.");
        let long = prefix(&"%".repeat(127), 3);
        assert!(long.len() < 200 && long.ends_with(".3."));
        assert_ne!(long, prefix(&"%".repeat(126), 3));
    }

    /// A queue an older build kept (a narrow chunk) is attached, appended to in that chunk
    /// (whose entries have no room for a hash) and past it in a wide one, and read back alike
    /// after a checkpoint and a fresh attach.
    #[test]
    fn a_narrow_chunk_of_an_older_build_is_read_and_appended_to() {
        use raft_store::disk::Disk;
        let disk = Arc::new(raft_store::disk::SimDisk::new(1));
        let e = |i: u64, g: u64| CqEntry {
            log_index: 10 + i,
            pos: 0,
            len: 5,
            tag_hash: 1,
            store_ms: 1_000 + i,
            group_hash: g,
        };
        let lay = Layout::tiny(); // 8 entries a chunk
        let d: Arc<dyn Disk> = disk.clone();
        d.create_dir_all(Path::new("/cq")).unwrap();
        let mut old = Vec::new();
        for i in 0..5 {
            encode(&e(i, 0), Width::Narrow, &mut old);
        }
        let narrow = d
            .create(Path::new("/cq/t.0.00000000000000000000.cq"))
            .unwrap();
        narrow.write_at(&old, 0).unwrap();
        let files = CqFiles::open_with(d.clone(), "/cq", lay).unwrap();
        let mut q = FileQueue::attach(files, "t", 0, 0, 5, 100).unwrap();
        for i in 5..12 {
            q.push(e(i, 7), i);
        }
        let cp = q.checkpoint(0).unwrap();
        let names: Vec<String> = cp
            .sync
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "t.0.00000000000000000000.cq",
                "t.0.00000000000000000008.cqg"
            ]
        );
        let files = CqFiles::open_with(d, "/cq", lay).unwrap();
        let q = FileQueue::attach(files, "t", 0, 0, 12, 100).unwrap();
        for i in 0..12 {
            // Stored by this build in the narrow chunk: the hash is not on disk.
            let g = if i < 8 { 0 } else { 7 };
            assert_eq!(q.get(i, 0), Some(e(i, g)), "offset {i}");
        }
    }
}
