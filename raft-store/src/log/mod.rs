//! The segmented Raft log: openraft's [`RaftLogStorage`] over a [`Disk`].
//!
//! - `frame`: the on-disk encoding (entry frames with CRC32C, segment headers);
//! - `segment`: one segment file (sparse index, scanner, recovery);
//! - `flusher`: the group-commit task that fsyncs batches and fires openraft's callbacks;
//! - `recovery`: the steps of opening a log after a crash;
//! - this file: [`LogStore`] (append, truncate, purge, vote) and [`LogReader`].
//!
//! Entries are appended to the active segment; once it passes `segment_bytes` the segment is
//! synced and sealed and a new one is started. Appends only write; durability is the flusher's
//! job: it takes every append queued since its last round, fsyncs the files (and the directory
//! when a segment was created) once, and only then tells openraft the entries are flushed. So
//! openraft never counts an entry towards a commit quorum before it is on disk here.

mod fds;
mod flusher;
pub mod frame;
mod import;
mod recovery;
mod segment;
mod summary;

use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::storage::IOFlushed;
use openraft::storage::LogState;
use openraft::storage::RaftLogStorage;

use self::flusher::Flusher;
use self::segment::Segment;
use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::meta::Meta;
use crate::meta::MetaFile;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::types::log_id;

const META_FILE: &str = "meta";

/// Tuning of the log store.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is sealed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// One sparse-index point per this many bytes of a segment.
    pub index_interval_bytes: u64,
    /// `limited_get_log_entries` (what replication reads) stops after about this many bytes,
    /// which bounds the size of one append-entries request.
    pub max_read_bytes: u64,
    /// When appended entries count as persisted.
    pub flush: FlushMode,
    /// Sealed segments whose file handles stay open at once (least recently read ones are
    /// closed and reopened on demand); the active segment's handle is held besides.
    pub open_segments: usize,
    /// Scan every sealed segment's frames on open, instead of trusting its summary (see
    /// `summary`): start-up then takes time proportional to the whole log, and finds damage
    /// anywhere in it before serving.
    pub verify_sealed_on_open: bool,
}

/// When an appended entry counts as persisted (and so towards a commit quorum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// After it is fsynced (group commit). An acknowledged write survives power loss of every
    /// replica.
    #[default]
    Sync,
    /// As soon as it is written; fsyncs run in the background. **Relaxed**: a power loss of a
    /// majority can lose acknowledged writes (process crashes cannot). For measurements and for
    /// users who knowingly trade durability for latency.
    Async,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 256 << 20,
            index_interval_bytes: 64 << 10,
            max_read_bytes: 4 << 20,
            flush: FlushMode::Sync,
            open_segments: 32,
            verify_sealed_on_open: false,
        }
    }
}

impl LogConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 4096 {
            return Err(Error::Config(format!(
                "segment_bytes must be at least 4096, got {}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 || self.index_interval_bytes > self.segment_bytes {
            return Err(Error::Config(format!(
                "index_interval_bytes must be in 1..=segment_bytes, got {}",
                self.index_interval_bytes
            )));
        }
        if self.max_read_bytes == 0 {
            return Err(Error::Config("max_read_bytes must be positive".into()));
        }
        if self.open_segments == 0 {
            return Err(Error::Config("open_segments must be positive".into()));
        }
        Ok(())
    }
}

/// What recovery did on open, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Bytes cut from a torn tail.
    pub torn_bytes: u64,
    /// Segment files removed (never-born tail segment, or finishing an interrupted purge).
    pub removed_segments: usize,
    /// Sealed segments opened from their summary, without a scan.
    pub summarised: usize,
    /// Segments whose frames were all read and checked.
    pub scanned: usize,
    /// The last log id after recovery.
    pub last_log_id: Option<LogId>,
}

/// One segment file, as [`LogStore::segments`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Index of its first entry (or the entry it will start with).
    pub first: u64,
    /// Index of its last entry, if it holds any.
    pub last: Option<u64>,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The sealed segments plus the active one, in index order.
struct Segments {
    list: Vec<Segment>,
    last_purged: Option<LogId>,
    /// The last entry's log id (the purge point when the log is empty).
    last: Option<LogId>,
}

impl Segments {
    fn next_index(&self) -> u64 {
        self.last.map_or(0, |l| l.index + 1)
    }

    fn read(&self, from: u64, to: u64, budget: u64) -> Result<Vec<Entry>> {
        let first = self.last_purged.map_or(0, |p| p.index + 1);
        let from = from.max(first);
        let to = to.min(self.next_index());
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let mut read = 0u64;
        let start = self
            .list
            .partition_point(|s| s.last.is_none_or(|(l, _)| l < from));
        for seg in &self.list[start..] {
            if seg.base >= to || read >= budget {
                break;
            }
            read += seg.read_range(
                from.max(seg.base),
                to,
                budget.saturating_sub(read).max(1),
                &mut out,
            )?;
        }
        Ok(out)
    }
}

pub(crate) struct Shared {
    disk: Arc<dyn Disk>,
    fds: Arc<fds::FdCache>,
    dir: PathBuf,
    cfg: LogConfig,
    segs: RwLock<Segments>,
    meta: tokio::sync::Mutex<MetaFile>,
    /// The last vote, readable without the meta lock.
    vote: Mutex<Option<Vote>>,
    flusher: Flusher,
}

impl Shared {
    /// Reads entries `from..to` (up to about `budget` bytes). A damaged frame found here was in
    /// a sealed segment opened from its summary (start-up did not scan it). Corruption is fatal
    /// for the replica, as it would have been at start-up: the store is poisoned (the replica
    /// stops, and the node exits for its supervisor to restart it) and the segment's summary
    /// is removed, so the next start scans that segment and refuses to start, naming the
    /// damage, instead of serving until the same read fails again. Only committed entries are
    /// read concurrently with writes (truncation never touches them), so a frame missing here
    /// is damage, not a race.
    fn read(&self, from: u64, to: u64, budget: u64) -> Result<Vec<Entry>> {
        let r = self.segs.read().unwrap().read(from, to, budget);
        if let Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) = &r
        {
            tracing::error!(
                path = %path.display(),
                offset,
                %reason,
                "a damaged log entry was read; the next start will scan this segment"
            );
            if let Some(base) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_name)
            {
                recovery::remove_summary(&*self.disk, &self.dir, base);
            }
            self.flusher
                .poison(format!("{}@{offset}: {reason}", path.display()));
        }
        r
    }
}

/// The segmented log store; see the module docs.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

/// A reader over a [`LogStore`], used by openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

fn range_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl LogStore {
    /// Opens (recovering) or creates the log in `dir` (see `recovery` for the steps).
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: impl AsRef<Path>,
        cfg: LogConfig,
    ) -> Result<(LogStore, RecoveryReport)> {
        cfg.validate()?;
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let names = disk.list(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut bases: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .collect();
        bases.sort_unstable();

        let mut meta = MetaFile::open(&*disk, &dir, META_FILE, !bases.is_empty()).await?;
        let last_purged = meta.get().last_purged;
        let mut report = RecoveryReport::default();
        let fds = fds::FdCache::new(disk.clone(), cfg.open_segments);
        let (list, mut dir_dirty) =
            recovery::segments(&*disk, &fds, &dir, &bases, &cfg, &mut report).await?;
        report.segments = list.len();
        let mut list =
            recovery::finish_purge(&*disk, list, last_purged, &mut report, &mut dir_dirty)?;
        if let Some(active) = list.last_mut() {
            active.pin()?;
        }
        if dir_dirty {
            disk.sync_dir(&dir).await.map_err(|e| Error::io(&dir, e))?;
        }
        recovery::check_contiguous(&list, last_purged)?;
        recovery::remove_stray_summaries(&*disk, &dir, &list);

        let last = list
            .last()
            .and_then(|s| s.last)
            .map(|(i, t)| log_id(t, i))
            .or(last_purged);
        report.last_log_id = last;
        let segs = Segments {
            list,
            last_purged,
            last,
        };
        recovery::clamp_committed(&mut meta, &segs, &dir)?;
        // Trust nothing this process merely read back: make the active segment, the metadata
        // and the directory durable before any of it counts as persisted (sealed segments were
        // fsynced before the next one was started). See `Segment::repersist`.
        if let Some(active) = segs.list.last() {
            active.repersist().await?;
        }
        meta.repersist().await?;
        disk.sync_dir(&dir).await.map_err(|e| Error::io(&dir, e))?;

        let vote = meta.get().vote;
        let flusher = Flusher::spawn(disk.clone(), dir.clone());
        let shared = Arc::new(Shared {
            disk,
            fds,
            dir,
            cfg,
            segs: RwLock::new(segs),
            meta: tokio::sync::Mutex::new(meta),
            vote: Mutex::new(vote),
            flusher,
        });
        Ok((LogStore { shared }, report))
    }

    /// A reader sharing this store.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// The last log id and purge point.
    pub fn state(&self) -> (Option<LogId>, Option<LogId>) {
        let segs = self.shared.segs.read().unwrap();
        (segs.last_purged, segs.last)
    }

    /// The segments held, oldest first (the last one is the active segment).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let segs = self.shared.segs.read().unwrap();
        segs.list
            .iter()
            .map(|s| SegmentInfo {
                first: s.base,
                last: s.last.map(|(l, _)| l),
                bytes: s.end,
            })
            .collect()
    }

    /// Number of segment files currently held.
    pub fn segment_count(&self) -> usize {
        self.shared.segs.read().unwrap().list.len()
    }

    /// Segment files this log holds open: the cached sealed ones plus the active one.
    pub fn open_segment_files(&self) -> usize {
        let segs = self.shared.segs.read().unwrap();
        self.shared.fds.open_count() + segs.list.last().map_or(0, |s| usize::from(s.is_pinned()))
    }

    /// Reads entries `range` (for tests and tools).
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let (from, to) = range_bounds(&range);
        self.shared.read(from, to, u64::MAX)
    }

    /// Why the store stopped, if a fatal storage error happened.
    pub fn fatal_error(&self) -> Option<String> {
        self.shared.flusher.poisoned()
    }

    fn check(&self) -> Result<()> {
        match self.shared.flusher.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
    }

    fn poison(&self, e: &Error) {
        self.shared.flusher.poison(e.to_string());
    }

    async fn do_append(&self, entries: Vec<Entry>, callback: IOFlushed<TypeConfig>) -> Result<()> {
        self.check()?;
        let sh = &*self.shared;
        if entries.is_empty() {
            sh.flusher.submit(Vec::new(), false, callback);
            return Ok(());
        }
        let mut touched: Vec<Arc<dyn crate::disk::DiskFile>> = Vec::new();
        let mut new_segment = false;
        let mut buf: Vec<u8> = Vec::new();
        // (index, term, offset in buf, len) of frames in `buf`, all bound for the active segment.
        let mut pending: Vec<(u64, u64, u64, u64)> = Vec::new();

        let first = {
            let segs = sh.segs.read().unwrap();
            // A log that has never held an entry may start anywhere (openraft starts at 0 after
            // `initialize`, but a log can also begin at the first entry a leader sends).
            if segs.last.is_none() {
                entries[0].log_id.index
            } else {
                segs.next_index()
            }
        };
        for (entry, expected) in entries.iter().zip(first..) {
            assert_eq!(
                entry.log_id.index, expected,
                "append must continue the log: got {} where {expected} was due",
                entry.log_id
            );
            let start = buf.len();
            frame::encode_entry(entry, &mut buf);
            let len = (buf.len() - start) as u64;
            let needs_new = match sh.segs.read().unwrap().list.last() {
                // Roll when the frame would overflow the active segment, unless the segment is
                // still empty (an entry larger than a segment gets a segment of its own).
                Some(a) => {
                    a.end + start as u64 + len > sh.cfg.segment_bytes
                        && (a.last.is_some() || start > 0)
                }
                None => true,
            };
            if needs_new {
                // Write what belongs to the current segment, seal it, start a new one.
                let frame_bytes = buf.split_off(start);
                self.write_pending(&buf, &pending, &mut touched)?;
                buf = frame_bytes;
                pending.clear();
                self.roll(entry.log_id.index).await?;
                new_segment = true;
            }
            pending.push((
                entry.log_id.index,
                entry.log_id.leader_id.term,
                buf.len() as u64 - len,
                len,
            ));
        }
        self.write_pending(&buf, &pending, &mut touched)?;
        match sh.cfg.flush {
            FlushMode::Sync => sh.flusher.submit(touched, new_segment, callback),
            FlushMode::Async => {
                callback.io_completed(Ok(()));
                sh.flusher.submit(touched, new_segment, IOFlushed::noop());
            }
        }
        Ok(())
    }

    /// Writes `buf` (frames described by `pending`) at the end of the active segment and records
    /// them in memory.
    fn write_pending(
        &self,
        buf: &[u8],
        pending: &[(u64, u64, u64, u64)],
        touched: &mut Vec<Arc<dyn crate::disk::DiskFile>>,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let sh = &*self.shared;
        let (file, path, pos) = {
            let segs = sh.segs.read().unwrap();
            let a = segs.list.last().expect("an active segment");
            (a.file()?, a.path.clone(), a.end)
        };
        if let Err(e) = file.write_at(buf, pos) {
            let err = Error::io(&path, e);
            self.poison(&err);
            return Err(err);
        }
        let mut segs = sh.segs.write().unwrap();
        let a = segs.list.last_mut().expect("an active segment");
        for &(index, term, off, len) in pending {
            a.note_appended(index, term, pos + off, len);
        }
        let &(index, term, _, _) = pending.last().unwrap();
        segs.last = Some(log_id(term, index));
        if !touched.iter().any(|f| Arc::ptr_eq(f, &file)) {
            touched.push(file);
        }
        Ok(())
    }

    /// Seals the active segment (fsync, so no later segment can outlive its tail) and starts a
    /// new one at `base`.
    async fn roll(&self, base: u64) -> Result<()> {
        let sh = &*self.shared;
        let old = sh
            .segs
            .read()
            .unwrap()
            .list
            .last()
            .map(|s| s.file().map(|f| (f, s.path.clone())))
            .transpose()?;
        if let Some((file, path)) = old {
            sh.flusher.sync(&[file], false).await.map_err(|reason| {
                Error::Poisoned(format!("sealing {}: {reason}", path.display()))
            })?;
        }
        let seg = match Segment::create(
            &*sh.disk,
            &sh.fds,
            &sh.dir,
            base,
            sh.cfg.index_interval_bytes,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        };
        {
            let mut segs = sh.segs.write().unwrap();
            // The old active segment is sealed and synced: its handle goes to the cache.
            if let Some(old) = segs.list.last_mut() {
                old.unpin();
            }
            segs.list.push(seg);
        }
        // Summarise the sealed segment so a restart need not scan it (best effort). Under the
        // read lock: finding the last frame may read the file (after a truncation). Not once
        // the store is poisoned: a read may just have found this segment damaged.
        let summary = {
            let segs = sh.segs.read().unwrap();
            let n = segs.list.len();
            (n >= 2 && self.check().is_ok()).then(|| segs.list[n - 2].summary())
        };
        match summary {
            Some(Ok(Some(summary))) => recovery::write_summary(&*sh.disk, &sh.dir, &summary),
            Some(Err(e)) => tracing::warn!(error = %e, "cannot summarise a sealed segment"),
            Some(Ok(None)) | None => {}
        }
        Ok(())
    }

    async fn do_truncate_after(&self, last: Option<LogId>) -> Result<()> {
        self.check()?;
        let sh = &*self.shared;
        // Let queued flushes finish so no callback refers to entries we are about to cut.
        sh.flusher.barrier().await;
        let keep = last.map(|l| l.index);
        {
            let segs = sh.segs.read().unwrap();
            if let (Some(k), Some(cur)) = (keep, segs.last)
                && k >= cur.index
            {
                return Ok(()); // nothing after `last`
            }
        }
        // Memory first: the cut entries leave the segment list (and the boundary segment's end
        // moves back) before any file changes, so a concurrent read — openraft's replication
        // may still read after its leader stepped down — is clamped to the new end instead of
        // meeting a shortened file, which would look like corruption and poison the store
        // (review of the segment summaries). On disk: first remove whole segments above the
        // cut and sync the directory, then cut the boundary segment; a crash in between leaves
        // a longer but contiguous log.
        let (doomed, boundary) = {
            let mut segs = sh.segs.write().unwrap();
            let doomed: Vec<(u64, PathBuf)> = segs
                .list
                .iter()
                .filter(|s| keep.is_none_or(|k| s.base > k))
                .map(|s| (s.base, s.path.clone()))
                .collect();
            for s in segs
                .list
                .iter_mut()
                .filter(|s| keep.is_none_or(|k| s.base > k))
            {
                s.forget_file();
            }
            segs.list.retain(|s| keep.is_some_and(|k| s.base <= k));
            // The last remaining segment is the active one again.
            if let Some(s) = segs.list.last_mut() {
                s.pin().inspect_err(|e| self.poison(e))?;
            }
            let boundary = match (keep, segs.list.last()) {
                (Some(k), Some(s)) if s.last.is_some_and(|(l, _)| l > k) => {
                    let pos = s.position_of(k + 1)?;
                    Some((s.base, s.file()?, s.path.clone(), pos))
                }
                _ => None,
            };
            if let (Some(k), Some((_, _, _, pos))) = (keep, &boundary) {
                let s = segs.list.last_mut().unwrap();
                s.forget_after(k, *pos, last.map(|l| l.leader_id.term));
            }
            segs.last = match last {
                Some(l) if segs.last_purged.is_none_or(|p| l.index >= p.index) => Some(l),
                _ => segs.last_purged,
            };
            (doomed, boundary)
        };
        // Summaries of the segments cut go first (hygiene: a stale one is never trusted).
        for (base, _) in &doomed {
            recovery::remove_summary(&*sh.disk, &sh.dir, *base);
        }
        if let Some((base, ..)) = &boundary {
            recovery::remove_summary(&*sh.disk, &sh.dir, *base);
        }
        for (_, path) in &doomed {
            sh.disk
                .remove(path)
                .map_err(|e| Error::io(path, e))
                .inspect_err(|e| self.poison(e))?;
        }
        if !doomed.is_empty() {
            sh.flusher.sync(&[], true).await.map_err(Error::Poisoned)?;
        }
        if let Some((_, file, path, pos)) = boundary {
            file.set_len(pos)
                .map_err(|e| Error::io(&path, e))
                .inspect_err(|e| self.poison(e))?;
            sh.flusher
                .sync(&[file], false)
                .await
                .map_err(Error::Poisoned)?;
        }
        Ok(())
    }

    async fn do_purge(&self, upto: LogId) -> Result<()> {
        self.check()?;
        let sh = &*self.shared;
        {
            let mut meta = sh.meta.lock().await;
            if meta.get().last_purged.is_some_and(|p| p >= upto) {
                return Ok(());
            }
            let mut m: Meta = meta.get().clone();
            m.last_purged = Some(upto);
            meta.store(m).await.inspect_err(|e| self.poison(e))?;
        }
        let doomed: Vec<(u64, PathBuf)> = {
            let mut segs = sh.segs.write().unwrap();
            segs.last_purged = Some(upto);
            if segs.last.is_none_or(|l| l.index < upto.index) {
                segs.last = Some(upto);
            }
            let n = segs
                .list
                .iter()
                .take_while(|s| s.last.is_none_or(|(l, _)| l <= upto.index))
                .count();
            // Keep the active segment if it is the only one and still empty (nothing to drop).
            segs.list
                .drain(..n)
                .map(|mut s| {
                    s.forget_file();
                    (s.base, s.path.clone())
                })
                .collect()
        };
        for (base, path) in &doomed {
            sh.disk.remove(path).map_err(|e| Error::io(path, e))?;
            recovery::remove_summary(&*sh.disk, &sh.dir, *base);
        }
        if !doomed.is_empty() {
            // Through the gate: a failed directory fsync may also have dropped the entry of a
            // segment created since, which a later directory fsync would not bring back.
            sh.flusher.sync(&[], true).await.map_err(Error::Poisoned)?;
        }
        Ok(())
    }
}

fn io_err(e: Error) -> io::Error {
    e.into()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (from, to) = range_bounds(&range);
        self.shared.read(from, to, u64::MAX).map_err(io_err)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(*self.shared.vote.lock().unwrap())
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let budget = self.shared.cfg.max_read_bytes;
        self.shared.read(start, end, budget).map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        self.reader().try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(*self.shared.vote.lock().unwrap())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let segs = self.shared.segs.read().unwrap();
        Ok(LogState {
            last_purged_log_id: segs.last_purged,
            last_log_id: segs.last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.check().map_err(io_err)?;
        // openraft takes a persisted vote as proof that every log write submitted before it is
        // persisted too (its I/O ids order votes and appends as one sequence; see openraft's
        // `docs::protocol::io_ordering`). The vote goes to its own file, so first wait for the
        // appends already queued: otherwise a follower that votes while its last append is
        // still in the flusher acknowledges that append to the old leader unsynced. Found by
        // cluster_chaos (`raft-ack-not-durable`, seed 990091).
        self.shared.flusher.barrier().await;
        self.check().map_err(io_err)?;
        let mut meta = self.shared.meta.lock().await;
        let mut m = meta.get().clone();
        m.vote = Some(*vote);
        meta.store(m)
            .await
            .inspect_err(|e| self.poison(e))
            .map_err(io_err)?;
        *self.shared.vote.lock().unwrap() = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.check().map_err(io_err)?;
        let mut meta = self.shared.meta.lock().await;
        if meta.get().committed == committed {
            return Ok(());
        }
        let mut m = meta.get().clone();
        m.committed = committed;
        meta.write(m)
            .inspect_err(|e| self.poison(e))
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.shared.meta.lock().await.get().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.do_append(entries.into_iter().collect(), callback)
            .await
            .map_err(io_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.do_truncate_after(last_log_id).await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.do_purge(log_id).await.map_err(io_err)
    }
}
