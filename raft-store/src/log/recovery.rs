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
        match segment::recover(disk, fds, dir, base, is_last, cfg.index_interval_bytes)? {
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
                list.push(segment);
            }
        }
    }
    Ok((list, dir_dirty))
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
