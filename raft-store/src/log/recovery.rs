//! The steps of opening a log after a crash, in order: recover every segment (cut a torn
//! tail, drop a never-started one), finish an interrupted purge, check the log is one
//! contiguous run of indexes, and clamp the committed index to an entry this replica still has.

use std::path::Path;
use std::sync::Arc;

use super::META_FILE;
use super::RecoveryReport;
use super::Segments;
use super::fds::FdCache;
use super::segment;
use super::segment::Recovered;
use super::segment::Segment;
use super::summary;
use super::summary::Summary;
use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::meta::MetaFile;
use crate::types::LogId;

/// Recovers the segments `bases` (sorted) of `dir`; returns them and whether a directory
/// entry was removed (the directory then needs a sync).
pub(super) async fn segments(
    disk: &dyn Disk,
    fds: &Arc<FdCache>,
    dir: &Path,
    bases: &[u64],
    cfg: &super::LogConfig,
    report: &mut RecoveryReport,
) -> Result<(Vec<Segment>, bool)> {
    let mut dir_dirty = false;
    let mut list: Vec<Segment> = Vec::new();
    for (i, base) in bases.iter().copied().enumerate() {
        let is_last = i + 1 == bases.len();
        // A sealed segment with a summary that still fits its file is not scanned; the last
        // segment always is (only it can have a torn tail).
        if !is_last
            && !cfg.verify_sealed_on_open
            && let Some(summary) = read_summary(disk, dir, base)
        {
            match Segment::from_summary(fds, dir, summary, cfg.index_interval_bytes)? {
                Ok(seg) => {
                    report.summarised += 1;
                    if let Some(prev) = list.last_mut() {
                        prev.unpin();
                    }
                    list.push(seg);
                    continue;
                }
                Err(reason) => tracing::warn!(
                    dir = %dir.display(),
                    base,
                    %reason,
                    "a segment summary does not fit its segment; scanning the segment"
                ),
            }
        }
        report.scanned += 1;
        let recovered = segment::recover(disk, fds, dir, base, is_last, cfg.index_interval_bytes)
            .inspect_err(|e| {
            // Damage found by a full scan: a summary must not let a later start (without
            // the full scan) open the segment as if it were sound.
            if matches!(e, Error::Corrupt { .. }) {
                remove_summary(disk, dir, base);
            }
        })?;
        match recovered {
            Recovered::Unborn => {
                disk.remove(&dir.join(segment::file_name(base)))
                    .map_err(|e| Error::io(dir, e))?;
                report.removed_segments += 1;
                dir_dirty = true;
            }
            Recovered::Segment {
                segment,
                torn_bytes,
            } => {
                if torn_bytes > 0 {
                    tracing::warn!(
                        path = %segment.path.display(),
                        torn_bytes,
                        end = segment.end,
                        "cutting a torn tail (never acknowledged)"
                    );
                    let file = segment.file()?;
                    file.set_len(segment.end)
                        .map_err(|e| Error::io(&segment.path, e))?;
                    file.sync().await.map_err(|e| Error::io(&segment.path, e))?;
                    report.torn_bytes += torn_bytes;
                }
                // Only the last segment stays pinned: recovering a long log must not open
                // every file at once.
                if let Some(prev) = list.last_mut() {
                    prev.unpin();
                }
                if !is_last {
                    // Scanned because it had no usable summary: write one for next time.
                    if let Some(summary) = segment.summary()? {
                        write_summary(disk, dir, &summary);
                    }
                }
                list.push(segment);
            }
        }
    }
    Ok((list, dir_dirty))
}

/// The summary kept beside the segment at `base`, if there is a usable one (a missing,
/// unreadable or damaged summary only means the segment is scanned).
fn read_summary(disk: &dyn Disk, dir: &Path, base: u64) -> Option<Summary> {
    let path = dir.join(summary::file_name(base));
    let file = match disk.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open a segment summary");
            return None;
        }
    };
    let bytes = file.len().and_then(|len| {
        let mut buf = vec![0u8; len.min(64 << 20) as usize];
        crate::disk::read_exact_at(&*file, &mut buf, 0).map(|()| buf)
    });
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a segment summary");
            return None;
        }
    };
    Summary::decode(&bytes, base)
        .inspect_err(|reason| {
            tracing::warn!(path = %path.display(), %reason, "ignoring a damaged segment summary");
        })
        .ok()
}

/// Writes the summary of a sealed segment beside it. Best effort and not fsynced: a summary
/// that is missing or torn after a crash only means that segment is scanned next time.
pub(super) fn write_summary(disk: &dyn Disk, dir: &Path, summary: &Summary) {
    let path = dir.join(summary::file_name(summary.base));
    if let Err(e) = disk
        .create(&path)
        .and_then(|f| f.write_at(&summary.encode(), 0))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot write a segment summary");
    }
}

/// Removes the summary of the segment at `base`, if any (best effort: a stale summary is
/// never trusted, since it must name the segment's actual last frame).
pub(super) fn remove_summary(disk: &dyn Disk, dir: &Path, base: u64) {
    let path = dir.join(summary::file_name(base));
    match disk.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a segment summary")
        }
    }
}

/// Removes summaries that describe no sealed segment: those of deleted segments, and of the
/// active one (it grows again). Lists the directory afresh: recovery itself may have just
/// summarised a segment that then became the active one (an empty tail after it removed).
pub(super) fn remove_stray_summaries(disk: &dyn Disk, dir: &Path, list: &[Segment]) {
    let names = match disk.list(dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the log directory");
            return;
        }
    };
    let sealed = &list[..list.len().saturating_sub(1)];
    for base in names.iter().filter_map(|n| summary::parse_name(n)) {
        if sealed.binary_search_by_key(&base, |s| s.base).is_err() {
            remove_summary(disk, dir, base);
        }
    }
}

/// Finishes an interrupted purge: drops segments wholly at or below the purge point, and an
/// empty tail segment (the next append starts a fresh one).
pub(super) fn finish_purge(
    disk: &dyn Disk,
    list: Vec<Segment>,
    last_purged: Option<LogId>,
    report: &mut RecoveryReport,
    dir_dirty: &mut bool,
) -> Result<Vec<Segment>> {
    let purged_index = last_purged.map(|p| p.index);
    let mut kept = Vec::with_capacity(list.len());
    let count = list.len();
    for (i, mut seg) in list.into_iter().enumerate() {
        let below_purge = match (seg.last, purged_index) {
            (Some((l, _)), Some(p)) => l <= p,
            _ => false,
        };
        let empty_tail = seg.last.is_none() && i + 1 == count;
        if below_purge || empty_tail {
            seg.forget_file();
            disk.remove(&seg.path)
                .map_err(|e| Error::io(&seg.path, e))?;
            report.removed_segments += 1;
            *dir_dirty = true;
        } else {
            kept.push(seg);
        }
    }
    Ok(kept)
}

/// The log must be one contiguous run of indexes, starting right after the purge point.
pub(super) fn check_contiguous(list: &[Segment], last_purged: Option<LogId>) -> Result<()> {
    for pair in list.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        match a.last {
            Some((l, _)) if l + 1 == b.base => {}
            _ => {
                return Err(Error::Corrupt {
                    path: b.path.clone(),
                    offset: 0,
                    reason: format!(
                        "gap in the log: {} ends at {:?} but {} starts at {}",
                        a.path.display(),
                        a.last.map(|(l, _)| l),
                        b.path.display(),
                        b.base
                    ),
                });
            }
        }
    }
    if let (Some(first), Some(p)) = (list.first(), last_purged)
        && first.base > p.index + 1
    {
        return Err(Error::Corrupt {
            path: first.path.clone(),
            offset: 0,
            reason: format!(
                "log starts at {} but only entries up to {} were purged",
                first.base, p.index
            ),
        });
    }
    Ok(())
}

/// The committed index must point at an entry we still have (or the purge point): after a
/// crash, entries this replica wrote but never synced may be gone even though the group
/// committed them elsewhere.
pub(super) fn clamp_committed(meta: &mut MetaFile, segs: &Segments, dir: &Path) -> Result<()> {
    let last_purged = segs.last_purged;
    let committed = meta.get().committed;
    let clamped = match committed {
        None => None,
        Some(c) if last_purged.is_some_and(|p| c.index <= p.index) => last_purged,
        Some(c) => {
            let idx = c.index.min(segs.next_index().saturating_sub(1));
            match segs.read(idx, idx + 1, 1)?.first() {
                Some(e) if e.log_id.index == c.index && e.log_id != c => {
                    return Err(Error::Corrupt {
                        path: dir.join(META_FILE),
                        offset: 0,
                        reason: format!(
                            "committed log id {c} disagrees with the log ({})",
                            e.log_id
                        ),
                    });
                }
                Some(e) => Some(e.log_id),
                None => last_purged,
            }
        }
    };
    if clamped != committed {
        let mut m = meta.get().clone();
        m.committed = clamped;
        meta.write(m)?;
    }
    Ok(())
}
