//! One segment file of the log: its in-memory summary (base index, write position, last entry,
//! sparse index), the sequential frame scanner used by reads and recovery, and recovery itself.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use super::fds::FdCache;
use super::frame;
use super::frame::FRAME_HEADER_LEN;
use super::frame::FrameHeader;
use super::frame::SEGMENT_HEADER_LEN;
use super::summary::Summary;
use crate::disk::Disk;
use crate::disk::DiskFile;
use crate::error::Error;
use crate::error::Result;
use crate::types::Entry;

const SCAN_CHUNK: usize = 1 << 20;
/// The read size of a scanner looking for one entry: its frame (read whole once its header
/// says how long it is), not the megabyte after the sparse-index point. Reading a megabyte
/// per message received took 7% of `raftmq dev`'s CPU at 64 senders (issue 13's profile).
const SEEK_CHUNK: usize = 16 << 10;

/// A segment file and what is known about it.
pub(crate) struct Segment {
    /// Index of the first entry this segment holds (or will hold).
    pub base: u64,
    pub path: PathBuf,
    /// The handle of the active segment (written to), held for its life; a sealed segment's
    /// handle lives in `fds`, opened on demand.
    pinned: Option<Arc<dyn DiskFile>>,
    fds: Arc<FdCache>,
    /// Byte offset where the next frame goes: the end of valid data.
    pub end: u64,
    /// Index and term of the last entry, if the segment holds any.
    pub last: Option<(u64, u64)>,
    /// Where the last entry's frame starts, when known (a truncation forgets it).
    last_pos: Option<u64>,
    /// Sparse index: (index, byte offset) of the first entry and then of one entry per
    /// `index_interval` bytes, ascending.
    sparse: Vec<(u64, u64)>,
    next_sparse_at: u64,
    index_interval: u64,
}

/// The file name of the segment starting at `base`: zero-padded so names sort numerically.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base index encoded in a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    parse_base(name, ".seg")
}

/// The base index in a file name of 20 digits and `suffix` (a segment, or its summary).
pub(crate) fn parse_base(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One step of a [`Scanner`].
pub(crate) enum Scanned<'a> {
    /// A complete frame with a valid CRC at `pos`.
    Frame {
        pos: u64,
        header: FrameHeader,
        bytes: &'a [u8],
    },
    /// Clean end of data.
    End,
    /// Something that is not a valid frame starts at `pos`.
    Bad { pos: u64, reason: String },
}

/// Reads frames sequentially from a file through a large buffer.
pub(crate) struct Scanner<'f> {
    file: &'f dyn DiskFile,
    path: &'f Path,
    /// File offset of `buf[0]`.
    buf_pos: u64,
    buf: Vec<u8>,
    /// Cursor within `buf`.
    cur: usize,
    /// Stop at this file offset (end of valid data, or file length during recovery).
    limit: u64,
    /// Bytes read at least per read call.
    chunk: usize,
}

impl<'f> Scanner<'f> {
    pub fn new(file: &'f dyn DiskFile, path: &'f Path, pos: u64, limit: u64) -> Self {
        Scanner {
            file,
            path,
            buf_pos: pos,
            buf: Vec::new(),
            cur: 0,
            limit,
            chunk: SCAN_CHUNK,
        }
    }

    /// A scanner at entry `index` for a read of `count` entries, from `pos` (a sparse-index
    /// point before it): it reads no more than it needs for one entry (see [`SEEK_CHUNK`]),
    /// and moves past the frames before `index` by their headers ([`Scanner::skip_before`]).
    pub fn at_entry(
        file: &'f dyn DiskFile,
        path: &'f Path,
        (pos, limit): (u64, u64),
        index: u64,
        count: u64,
    ) -> Result<Self> {
        let mut s = Scanner {
            chunk: if count <= 1 { SEEK_CHUNK } else { SCAN_CHUNK },
            ..Scanner::new(file, path, pos, limit)
        };
        s.skip_before(index)?;
        Ok(s)
    }

    /// Moves past the frames of entries before `index`, reading only their headers (their
    /// CRCs are not checked: nothing of them is returned). Stops at the first frame at or
    /// after `index`, at the end, or at a header that does not parse (which
    /// [`Scanner::next_frame`] then reports).
    fn skip_before(&mut self, index: u64) -> Result<()> {
        while self.pos() < self.limit && self.fill(FRAME_HEADER_LEN)? {
            let Some(header) = frame::parse_frame_header(&self.buf[self.cur..]) else {
                return Ok(());
            };
            if header.index >= index {
                return Ok(());
            }
            let next = self.pos() + header.frame_len();
            if next > self.limit {
                return Ok(());
            }
            if self.cur + header.frame_len() as usize <= self.buf.len() {
                self.cur += header.frame_len() as usize;
            } else {
                self.buf.clear();
                self.buf_pos = next;
                self.cur = 0;
            }
        }
        Ok(())
    }

    fn pos(&self) -> u64 {
        self.buf_pos + self.cur as u64
    }

    /// Makes at least `want` bytes available at the cursor, if the file has them.
    fn fill(&mut self, want: usize) -> Result<bool> {
        let avail = self.buf.len() - self.cur;
        if avail >= want {
            return Ok(true);
        }
        let pos = self.pos();
        let remaining = self.limit.saturating_sub(pos);
        if (remaining as usize) < want {
            return Ok(false);
        }
        // Drop consumed bytes and read a chunk (at least `want`).
        self.buf.drain(..self.cur);
        self.buf_pos = pos;
        self.cur = 0;
        let have = self.buf.len();
        let target = want.max(self.chunk).min(remaining as usize);
        self.buf.resize(target, 0);
        let mut filled = have;
        while filled < target {
            let n = self
                .file
                .read_at(&mut self.buf[filled..], self.buf_pos + filled as u64)
                .map_err(|e| Error::io(self.path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.buf.truncate(filled);
        Ok(filled >= want)
    }

    /// The next frame, or where and why scanning must stop.
    pub fn next_frame(&mut self) -> Result<Scanned<'_>> {
        let pos = self.pos();
        if pos >= self.limit {
            return Ok(Scanned::End);
        }
        if !self.fill(FRAME_HEADER_LEN)? {
            return Ok(Scanned::Bad {
                pos,
                reason: "partial frame header at end of file".into(),
            });
        }
        let Some(header) = frame::parse_frame_header(&self.buf[self.cur..]) else {
            return Ok(Scanned::Bad {
                pos,
                reason: "bad frame magic or length".into(),
            });
        };
        let len = header.frame_len() as usize;
        if !self.fill(len)? {
            return Ok(Scanned::Bad {
                pos,
                reason: format!("frame of {len} bytes runs past the end of the data"),
            });
        }
        let bytes = &self.buf[self.cur..self.cur + len];
        if !frame::frame_crc_ok(&header, bytes) {
            return Ok(Scanned::Bad {
                pos,
                reason: format!("CRC mismatch in the frame of entry {}", header.index),
            });
        }
        self.cur += len;
        Ok(Scanned::Frame { pos, header, bytes })
    }
}

impl Segment {
    /// Creates a new segment file starting at `base` and writes its header (not synced; the
    /// caller syncs the file and the directory before acknowledging anything in it).
    pub fn create(
        disk: &dyn Disk,
        fds: &Arc<FdCache>,
        dir: &Path,
        base: u64,
        index_interval: u64,
    ) -> Result<Segment> {
        let path = dir.join(file_name(base));
        let file = disk.create(&path).map_err(|e| Error::io(&path, e))?;
        file.write_at(&frame::segment_header(base), 0)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Segment {
            base,
            path,
            pinned: Some(file),
            fds: fds.clone(),
            end: SEGMENT_HEADER_LEN,
            last: None,
            last_pos: None,
            sparse: Vec::new(),
            next_sparse_at: 0,
            index_interval,
        })
    }

    /// The segment's file handle: the pinned one, or a cached (maybe reopened) one.
    pub fn file(&self) -> Result<Arc<dyn DiskFile>> {
        match &self.pinned {
            Some(f) => Ok(f.clone()),
            None => self.fds.get(self.base, &self.path),
        }
    }

    /// True while the segment holds its own handle (it is the active one).
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Makes this the active segment: its handle stays open until [`Segment::unpin`].
    pub fn pin(&mut self) -> Result<()> {
        if self.pinned.is_none() {
            self.pinned = Some(self.fds.get(self.base, &self.path)?);
            self.fds.forget(self.base);
        }
        Ok(())
    }

    /// The segment is sealed (and synced): its handle goes to the shared cache.
    pub fn unpin(&mut self) {
        if let Some(f) = self.pinned.take() {
            self.fds.adopt(self.base, f);
        }
    }

    /// The segment's file is being removed: close its cached handle.
    pub fn forget_file(&mut self) {
        self.pinned = None;
        self.fds.forget(self.base);
    }

    /// Rewrites the segment's bytes in place, unchanged, and fsyncs them.
    ///
    /// What a starting process reads may exist only in the page cache: after a failed fsync,
    /// Linux keeps the dropped pages readable (and clean) until they are evicted, and a later
    /// fsync reports success. Writing the same bytes back dirties them again, so the fsync
    /// that follows either really persists them or fails. A torn rewrite of identical bytes
    /// changes nothing on disk.
    pub async fn repersist(&self) -> Result<()> {
        let file = self.file()?;
        let mut buf = vec![0u8; SCAN_CHUNK];
        let mut pos = 0;
        while pos < self.end {
            let want = ((self.end - pos) as usize).min(buf.len());
            crate::disk::read_exact_at(&*file, &mut buf[..want], pos)
                .map_err(|e| Error::io(&self.path, e))?;
            file.write_at(&buf[..want], pos)
                .map_err(|e| Error::io(&self.path, e))?;
            pos += want as u64;
        }
        file.sync().await.map_err(|e| Error::io(&self.path, e))
    }

    /// Records that the frame of entry (`index`, `term`) of `len` bytes now sits at `pos`.
    pub fn note_appended(&mut self, index: u64, term: u64, pos: u64, len: u64) {
        let expected = self.last.map_or(self.base, |(i, _)| i + 1);
        assert_eq!(
            index,
            expected,
            "segment {} appended out of order",
            self.path.display()
        );
        assert_eq!(
            pos,
            self.end,
            "segment {} appended at the wrong offset",
            self.path.display()
        );
        if pos >= self.next_sparse_at {
            self.sparse.push((index, pos));
            self.next_sparse_at = pos + self.index_interval;
        }
        self.last = Some((index, term));
        self.last_pos = Some(pos);
        self.end = pos + len;
    }

    /// True if the segment holds `index`.
    pub fn contains(&self, index: u64) -> bool {
        self.last
            .is_some_and(|(last, _)| index >= self.base && index <= last)
    }

    /// The byte offset of the closest sparse-index point at or before `index`.
    fn seek_pos(&self, index: u64) -> u64 {
        let i = self.sparse.partition_point(|(idx, _)| *idx <= index);
        if i == 0 {
            SEGMENT_HEADER_LEN
        } else {
            self.sparse[i - 1].1
        }
    }

    /// Reads entries `from..to` (clamped to this segment) into `out`, stopping early once
    /// `budget` bytes have been read (at least one entry is always read). Returns the bytes read.
    pub fn read_range(&self, from: u64, to: u64, budget: u64, out: &mut Vec<Entry>) -> Result<u64> {
        let Some((last, _)) = self.last else {
            return Ok(0);
        };
        let from = from.max(self.base);
        let to = to.min(last + 1);
        if from >= to {
            return Ok(0);
        }
        let file = self.file()?;
        let bounds = (self.seek_pos(from), self.end);
        let mut scanner = Scanner::at_entry(&*file, &self.path, bounds, from, to - from)?;
        let mut read = 0;
        let mut want = from;
        loop {
            match scanner.next_frame()? {
                Scanned::Frame { pos, header, bytes } => {
                    // The frames skipped had their headers read but not their CRCs checked:
                    // a damaged one could land the scan elsewhere, so the frames returned
                    // must be exactly `from`, `from + 1`, ... (review).
                    if header.index != want {
                        return Err(Error::Corrupt {
                            path: self.path.clone(),
                            offset: pos,
                            reason: format!("entry {want} expected, found {}", header.index),
                        });
                    }
                    want += 1;
                    let entry =
                        frame::decode_entry(&header, bytes).map_err(|reason| Error::Corrupt {
                            path: self.path.clone(),
                            offset: pos,
                            reason,
                        })?;
                    out.push(entry);
                    read += header.frame_len();
                    if header.index + 1 == to || read >= budget {
                        return Ok(read);
                    }
                }
                Scanned::End => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        offset: self.end,
                        reason: format!("entries {from}..{to} expected but the segment ended"),
                    });
                }
                Scanned::Bad { pos, reason } => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        offset: pos,
                        reason,
                    });
                }
            }
        }
    }

    /// The byte offset of entry `index`'s frame, which must be in this segment.
    pub fn position_of(&self, index: u64) -> Result<u64> {
        assert!(
            self.contains(index),
            "position_of({index}) outside {}",
            self.path.display()
        );
        let file = self.file()?;
        let bounds = (self.seek_pos(index), self.end);
        let mut scanner = Scanner::at_entry(&*file, &self.path, bounds, index, 1)?;
        loop {
            match scanner.next_frame()? {
                Scanned::Frame { pos, header, .. } if header.index == index => return Ok(pos),
                Scanned::Frame { .. } => continue,
                Scanned::End => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        offset: self.end,
                        reason: format!("entry {index} expected but not found"),
                    });
                }
                Scanned::Bad { pos, reason } => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        offset: pos,
                        reason,
                    });
                }
            }
        }
    }

    /// Forgets entries after `index` in memory (the caller truncates the file). `index` may be
    /// below `base`, which empties the segment.
    pub fn forget_after(&mut self, index: u64, new_end: u64, term_at_index: Option<u64>) {
        self.sparse.retain(|(i, _)| *i <= index);
        self.end = new_end;
        self.last_pos = None;
        self.last = if index >= self.base {
            Some((index, term_at_index.expect("term of the kept last entry")))
        } else {
            None
        };
        self.next_sparse_at = self
            .sparse
            .last()
            .map_or(0, |(_, p)| *p + self.index_interval);
    }
}

impl Segment {
    /// What a scan of this (sealed) segment would find, to be kept beside it; `None` if it
    /// holds no entry.
    pub fn summary(&self) -> Result<Option<Summary>> {
        let Some(last) = self.last else {
            return Ok(None);
        };
        let last_pos = match self.last_pos {
            Some(p) => p,
            None => self.position_of(last.0)?,
        };
        Ok(Some(Summary {
            base: self.base,
            end: self.end,
            last,
            last_pos,
            sparse: self.sparse.clone(),
        }))
    }

    /// Opens the sealed segment `summary` describes without scanning it, if its file still
    /// matches: the length, the header, and the last frame (position, index, term, CRC) are
    /// checked; see `summary`. `Ok(Err(reason))` means the summary does not fit the file and
    /// the segment must be scanned.
    pub fn from_summary(
        fds: &Arc<FdCache>,
        dir: &Path,
        summary: Summary,
        index_interval: u64,
    ) -> Result<std::result::Result<Segment, String>> {
        let path = dir.join(file_name(summary.base));
        let file = fds.get(summary.base, &path)?;
        let len = file.len().map_err(|e| Error::io(&path, e))?;
        if len != summary.end {
            fds.forget(summary.base);
            return Ok(Err(format!(
                "the file is {len} bytes, the summary says {}",
                summary.end
            )));
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        crate::disk::read_exact_at(&*file, &mut header, 0).map_err(|e| Error::io(&path, e))?;
        if frame::parse_segment_header(&header) != Ok(summary.base) {
            fds.forget(summary.base);
            return Ok(Err("the segment header does not match".into()));
        }
        let mut scanner = Scanner::new(&*file, &path, summary.last_pos, len);
        let fits = match scanner.next_frame()? {
            Scanned::Frame { pos, header, .. } => {
                (header.index, header.term) == summary.last
                    && pos + header.frame_len() == summary.end
            }
            Scanned::End | Scanned::Bad { .. } => false,
        };
        if !fits {
            fds.forget(summary.base);
            return Ok(Err(format!(
                "no valid frame of entry {} (term {}) ends the file at {}",
                summary.last.0, summary.last.1, summary.last_pos
            )));
        }
        let next_sparse_at = summary
            .sparse
            .last()
            .map_or(0, |(_, p)| *p + index_interval);
        Ok(Ok(Segment {
            base: summary.base,
            path,
            pinned: None,
            fds: fds.clone(),
            end: summary.end,
            last: Some(summary.last),
            last_pos: Some(summary.last_pos),
            sparse: summary.sparse,
            next_sparse_at,
            index_interval,
        }))
    }
}

/// What recovery found in one segment file.
pub(crate) enum Recovered {
    /// A usable segment; `torn_bytes` were cut from its tail.
    Segment { segment: Segment, torn_bytes: u64 },
    /// The last segment's header never became durable: the file holds nothing acknowledged.
    Unborn,
}

/// Opens and validates a segment file. Only the last segment may have a torn tail; any other
/// damage is [`Error::Corrupt`].
pub(crate) fn recover(
    disk: &dyn Disk,
    fds: &Arc<FdCache>,
    dir: &Path,
    base: u64,
    is_last: bool,
    index_interval: u64,
) -> Result<Recovered> {
    let path = dir.join(file_name(base));
    let file = disk.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };

    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    let n = file
        .read_at(&mut header, 0)
        .map_err(|e| Error::io(&path, e))?;
    match frame::parse_segment_header(&header[..n]) {
        Ok(b) if b == base => {}
        Ok(b) => {
            return Err(corrupt(
                0,
                format!("header says base {b}, file name says {base}"),
            ));
        }
        Err(_) if is_last && len <= SEGMENT_HEADER_LEN => return Ok(Recovered::Unborn),
        Err(reason) => return Err(corrupt(0, reason)),
    }

    let mut segment = Segment {
        base,
        path: path.clone(),
        pinned: Some(file.clone()),
        fds: fds.clone(),
        end: SEGMENT_HEADER_LEN,
        last: None,
        last_pos: None,
        sparse: Vec::new(),
        next_sparse_at: 0,
        index_interval,
    };
    let mut scanner = Scanner::new(&*file, &path, SEGMENT_HEADER_LEN, len);
    let bad = loop {
        match scanner.next_frame()? {
            Scanned::Frame { pos, header, .. } => {
                let expected = segment.last.map_or(base, |(i, _)| i + 1);
                if header.index != expected {
                    break Some((
                        pos,
                        format!("entry {} where {expected} was expected", header.index),
                    ));
                }
                segment.note_appended(header.index, header.term, pos, header.frame_len());
            }
            Scanned::End => break None,
            Scanned::Bad { pos, reason } => break Some((pos, reason)),
        }
    };
    let Some((bad_pos, reason)) = bad else {
        return Ok(Recovered::Segment {
            segment,
            torn_bytes: 0,
        });
    };
    if !is_last {
        return Err(corrupt(bad_pos, format!("{reason} (in a sealed segment)")));
    }
    // A torn tail is the last thing in the file. If a valid frame follows the damage, the
    // damage is lost data in the middle of the log, with one exception: a run of zeros up to
    // that frame is a region that never reached the disk (a fsync failed and its pages were
    // dropped, while writes issued after it landed). Nothing from there on was acknowledged:
    // an acknowledgement needs a successful fsync after the write, no fsync is trusted once one
    // has failed (the flusher's gate), and every successful fsync covers all earlier writes. A
    // media error in acknowledged data is not zeros; it still stops the replica.
    let after = segment.last.map_or(base, |(i, _)| i + 1);
    if let Some((at, found)) = valid_frame_after(&*file, &path, bad_pos + 1, len, after)? {
        if !all_zero(&*file, &path, bad_pos, at)? {
            return Err(corrupt(
                bad_pos,
                format!("{reason}; a valid entry ({found}) follows, so this is not a torn tail"),
            ));
        }
        tracing::warn!(
            path = %path.display(),
            hole_at = bad_pos,
            hole_bytes = at - bad_pos,
            first_entry_after = found,
            "a never-written region precedes later frames (lost to a failed fsync); cutting both"
        );
    }
    Ok(Recovered::Segment {
        torn_bytes: len - bad_pos,
        segment,
    })
}

/// True if bytes `from..to` of `file` are all zero.
fn all_zero(file: &dyn DiskFile, path: &Path, from: u64, to: u64) -> Result<bool> {
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut pos = from;
    while pos < to {
        let want = ((to - pos) as usize).min(buf.len());
        crate::disk::read_exact_at(file, &mut buf[..want], pos).map_err(|e| Error::io(path, e))?;
        if buf[..want].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += want as u64;
    }
    Ok(true)
}

/// Looks for any valid frame with index >= `min_index` starting at or after `from`; returns its
/// position and index.
fn valid_frame_after(
    file: &dyn DiskFile,
    path: &Path,
    from: u64,
    len: u64,
    min_index: u64,
) -> Result<Option<(u64, u64)>> {
    let magic = frame::FRAME_MAGIC.to_le_bytes();
    let mut pos = from;
    let mut buf = vec![0u8; SCAN_CHUNK];
    while pos + FRAME_HEADER_LEN as u64 <= len {
        let n = file
            .read_at(&mut buf, pos)
            .map_err(|e| Error::io(path, e))?;
        if n < 4 {
            break;
        }
        for i in 0..=n - 4 {
            if buf[i..i + 4] != magic {
                continue;
            }
            let at = pos + i as u64;
            let mut hdr = [0u8; FRAME_HEADER_LEN];
            let got = file.read_at(&mut hdr, at).map_err(|e| Error::io(path, e))?;
            let Some(h) = frame::parse_frame_header(&hdr[..got]) else {
                continue;
            };
            if h.index < min_index || at + h.frame_len() > len {
                continue;
            }
            let mut bytes = vec![0u8; h.frame_len() as usize];
            crate::disk::read_exact_at(file, &mut bytes, at).map_err(|e| Error::io(path, e))?;
            if frame::frame_crc_ok(&h, &bytes) {
                return Ok(Some((at, h.index)));
            }
        }
        pos += (n - 3) as u64;
    }
    Ok(None)
}
