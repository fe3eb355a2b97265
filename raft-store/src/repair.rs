//! Repairing a replica whose state is damaged but whose log is sound: a snapshot that fails
//! its CRC or that the application refuses (for the broker: a consume-queue file missing or
//! shorter than the snapshot says) no longer leaves the replica unable to start.
//!
//! The state machine is a cache of what the log defines, so only the state is rebuilt; the
//! log and the vote, which Raft's safety rests on, are kept as they are (a voter that dropped
//! entries it acknowledged could lose a commit):
//! - a log that was never purged holds everything: the damaged snapshot is set aside
//!   (`sm/snapshot.damaged`), the application's directories are emptied, and the replica
//!   applies its whole log again;
//! - once the log was purged, the state before the purge point exists only in snapshots: the
//!   replica copies a peer's persisted snapshot and the application files it refers to (as
//!   [`crate::seed`] does for a new replica), but only a snapshot at an entry this replica's
//!   own log holds with the same term, at or after its purge point. By Log Matching its log up
//!   to there is then the committed one the snapshot was built from, and the replica applies
//!   its own log after it.
//!
//! The work is done under a `repairing` marker in the group's directory, removed ([`settle`])
//! only once the replica has opened the rebuilt state, so a crash in between, a copy the
//! application then refuses, or a repair that found no peer to copy from, repairs again at the
//! next start rather than open a half-written state. A peer's snapshot past the end of this
//! replica's log is usable too: the copy first brings the log up to it with the peer's
//! entries, after checking that the peer's entry at this log's end is the same (what an
//! AppendEntries from the leader would do).

use std::sync::Arc;
use std::time::Duration;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::group::GroupConfig;
use crate::log::LogStore;
use crate::network;
use crate::network::Channels;
use crate::seed;
use crate::seed::SNAPSHOT_DIR;
use crate::seed::SeedBegin;
use crate::seed::SeedReply;
use crate::seed::SeedRequest;
use crate::state_machine;
use crate::types::LogId;
use crate::types::NodeId;

/// The marker that a repair is under way (in the group's data directory).
const MARKER: &str = "repairing";
/// Where the damaged snapshot is kept for inspection (in the state directory).
pub const DAMAGED_SNAPSHOT: &str = "snapshot.damaged";
/// How long a repair asks its peers before the start fails, in heartbeats (a minute with the
/// default 50 ms): they may still be starting, or be cut off. A failed start keeps the marker,
/// and the next one asks again.
const DEADLINE_HEARTBEATS: u32 = 1200;

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// The log was never purged: the replica applies all of it again.
    FromLog,
    /// Copied the snapshot at `snapshot` and the application files from `from`.
    FromPeer {
        /// The peer.
        from: NodeId,
        /// The copied snapshot's last entry.
        snapshot: LogId,
        /// Where this replica's log ended before, if the snapshot was past it (the log was
        /// then brought up to the snapshot with the peer's entries).
        extended_from: Option<u64>,
        /// Bytes copied.
        bytes: u64,
    },
}

/// What is damaged, if `e`, from [`crate::group::Group::start`] of `cfg`, says the replica's
/// state (not its log) is: what [`repair`] mends.
pub fn damaged_state(cfg: &GroupConfig, e: &Error) -> Option<String> {
    match e {
        Error::Corrupt { path, reason, .. }
            if path.starts_with(cfg.data_dir.join(SNAPSHOT_DIR)) =>
        {
            Some(format!("{}: {reason}", path.display()))
        }
        _ => None,
    }
}

/// True if the replica in `data_dir` is marked for repair: its state files must not be
/// copied to a peer ([`crate::seed::SeedSource`] refuses).
pub fn marked(disk: &dyn Disk, data_dir: &std::path::Path) -> bool {
    disk.list(data_dir)
        .is_ok_and(|names| names.iter().any(|n| n == MARKER))
}

/// True if a repair was interrupted (by a crash, or for want of a peer to copy from): the
/// state on disk must not be opened before [`repair`] runs again.
pub fn interrupted(cfg: &GroupConfig, disk: &dyn Disk) -> Result<bool> {
    match disk.list(&cfg.data_dir) {
        Ok(names) => Ok(names.iter().any(|n| n == MARKER)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&cfg.data_dir, e)),
    }
}

/// Marks the replica in `data_dir` for repair at its next start (its state is damaged: a
/// repair under way, or an application file that failed while it ran).
pub async fn mark(disk: &dyn Disk, data_dir: &std::path::Path) -> Result<()> {
    let marker = data_dir.join(MARKER);
    let m = disk.create(&marker).map_err(|e| Error::io(&marker, e))?;
    m.sync().await.map_err(|e| Error::io(&marker, e))?;
    disk.sync_dir(data_dir)
        .await
        .map_err(|e| Error::io(data_dir, e))
}

async fn clear_marker(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    let marker = cfg.data_dir.join(MARKER);
    disk.remove(&marker).map_err(|e| Error::io(&marker, e))?;
    disk.sync_dir(&cfg.data_dir)
        .await
        .map_err(|e| Error::io(&cfg.data_dir, e))
}

/// Empties the state and application directories, keeping the current snapshot (if any) as
/// [`DAMAGED_SNAPSHOT`].
async fn clear_state(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    let sm = cfg.data_dir.join(SNAPSHOT_DIR);
    disk.create_dir_all(&sm).map_err(|e| Error::io(&sm, e))?;
    let names = disk.list(&sm).map_err(|e| Error::io(&sm, e))?;
    // The first damaged snapshot is the evidence; later ones are not kept over it.
    if names.iter().any(|n| n == state_machine::SNAPSHOT_FILE)
        && !names.iter().any(|n| n == DAMAGED_SNAPSHOT)
    {
        let (from, to) = (
            sm.join(state_machine::SNAPSHOT_FILE),
            sm.join(DAMAGED_SNAPSHOT),
        );
        disk.rename(&from, &to).map_err(|e| Error::io(&from, e))?;
    }
    for n in disk.list(&sm).map_err(|e| Error::io(&sm, e))? {
        if n != DAMAGED_SNAPSHOT {
            let p = sm.join(n);
            disk.remove(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    disk.sync_dir(&sm).await.map_err(|e| Error::io(&sm, e))?;
    for d in &cfg.seed_dirs {
        let dir = cfg.data_dir.join(d);
        seed::clear_dir(disk, &dir)?;
        disk.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        disk.sync_dir(&dir).await.map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// The id of entry `index` in `log`, whose purge point is `purged`, if the log holds it.
fn id_at(log: &LogStore, purged: Option<LogId>, index: u64) -> Option<LogId> {
    if let Some(p) = purged.filter(|p| p.index == index) {
        return Some(p);
    }
    log.read(index..=index)
        .ok()?
        .first()
        .map(|e| e.log_id)
        .filter(|id| id.index == index)
}

/// Ends a repair once the replica has opened its rebuilt state: the marker goes. Until then
/// a restart repairs again (a copied snapshot the application then refused is not kept).
pub async fn settle(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    if interrupted(cfg, disk)? {
        clear_marker(cfg, disk).await?;
        tracing::info!(group = %cfg.group, "the repaired state is open");
    }
    Ok(())
}

/// How a peer's snapshot at `s` fits this replica's log, purged through `purged` and ending
/// at `last`: `Some(false)` if the log holds entry `s` (same index and term), `Some(true)` if
/// the copy must first bring the log up to `s` (it ends before `s`, or its tail diverged from
/// the committed log: an old leader's uncommitted entries), `None` if it cannot be used (the
/// snapshot is older than the purge point).
fn fits(log: &LogStore, purged: LogId, last: u64, s: LogId) -> Option<bool> {
    if s.index < purged.index {
        return None;
    }
    Some(s.index > last || id_at(log, Some(purged), s.index) != Some(s))
}

/// Rebuilds the state of the replica of `cfg`, damaged for reason `why`, before its Raft
/// starts (see the module docs). The marker stays until [`settle`]. Fails, leaving it, when
/// the log was purged and no peer has a snapshot to copy within [`DEADLINE_HEARTBEATS`].
pub async fn repair(
    cfg: &GroupConfig,
    disk: Arc<dyn Disk>,
    channels: &Channels,
    why: &str,
) -> Result<Repaired> {
    tracing::warn!(group = %cfg.group, reason = why, "the replica's state is damaged; rebuilding it");
    mark(&*disk, &cfg.data_dir).await?;
    let (log, _) = LogStore::open(disk.clone(), cfg.data_dir.join("log"), cfg.log.clone()).await?;
    let (purged, last) = log.state();
    let Some(purged) = purged else {
        drop(log);
        clear_state(cfg, &*disk).await?;
        return Ok(Repaired::FromLog);
    };
    let last = last.map_or(purged.index, |l| l.index);
    // Asking is cheap (a listing); fetching files and entries reads up to 2 MiB a request.
    let ask_ttl = Duration::from_secs(2).max(cfg.election_timeout.1 * 4);
    let fetch_ttl = seed::SEED_TTL.max(cfg.election_timeout.1 * 4);
    let ask = |peer: NodeId, req: SeedRequest, ttl: Duration| {
        let addr = cfg.members.get(&peer).cloned().unwrap_or_default();
        async move {
            network::seed(
                channels,
                &cfg.net,
                (cfg.group, cfg.node_id),
                (peer, addr.as_str()),
                req,
                ttl,
            )
            .await
        }
    };
    let deadline = tokio::time::Instant::now() + cfg.heartbeat_interval * DEADLINE_HEARTBEATS;
    let mut reasons = Vec::new();
    for round in 0.. {
        reasons.clear();
        // The newest usable snapshot; one this log holds beats one it must be extended to.
        let mut best: Option<(NodeId, SeedBegin, LogId, bool)> = None;
        for peer in cfg.members.keys().copied().filter(|p| *p != cfg.node_id) {
            let req = SeedRequest::State {
                at_least: purged.index,
            };
            match ask(peer, req, ask_ttl).await {
                Ok(SeedReply::Begin(b)) => {
                    match b.snapshot_last.map(|s| (s, fits(&log, purged, last, s))) {
                        Some((s, Some(extend))) => {
                            if best
                                .as_ref()
                                .is_none_or(|(_, _, x, e)| (!extend, s) > (!*e, *x))
                            {
                                best = Some((peer, b, s, extend));
                            }
                        }
                        s => reasons.push(format!(
                            "node {peer}: its snapshot ({:?}) is not one this log (purged through \
                         {}, last {last}) continues",
                            s.map(|(s, _)| s),
                            purged.index
                        )),
                    }
                }
                Ok(_) => reasons.push(format!("node {peer}: an answer of the wrong kind")),
                Err(e) => reasons.push(format!("node {peer}: {e}")),
            }
        }
        if let Some((peer, begin, at, extend)) = best {
            let fetch = |req| ask(peer, req, fetch_ttl);
            let copied = async {
                let mut bytes = 0;
                if extend {
                    bytes += extend_log(&log, purged, last, at, &fetch).await?;
                }
                Ok::<u64, String>(bytes + copy_state(cfg, &disk, &fetch, &begin, at).await?)
            };
            match copied.await {
                Ok(bytes) => {
                    return Ok(Repaired::FromPeer {
                        from: peer,
                        snapshot: at,
                        extended_from: extend.then_some(last),
                        bytes,
                    });
                }
                Err(e) => reasons.push(format!("node {peer}: {e}")),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        if round % 10 == 0 {
            tracing::info!(group = %cfg.group, round, reasons = %reasons.join("; "), "no peer's state to copy yet");
        }
        tokio::time::sleep(cfg.heartbeat_interval * 10).await;
    }
    Err(Error::Corrupt {
        path: cfg
            .data_dir
            .join(SNAPSHOT_DIR)
            .join(state_machine::SNAPSHOT_FILE),
        offset: 0,
        reason: format!(
            "{why}; the log was purged through {}, so the state must come from a peer, and \
             none had a snapshot to copy ({}); the next start tries again",
            purged.index,
            reasons.join("; ")
        ),
    })
}

/// Brings the log, which ends at `last`, up to the peer's snapshot at `at`: finds the newest
/// entry at or before `at` the log shares with the peer (same index and term), cuts this log's
/// entries after it, and copies the peer's from there through `at`. By Log Matching the log up
/// to the shared entry is the committed one, and every entry of this log after it differs from
/// the committed log (an old leader's tail that never committed: tests/replica_replacement.rs
/// found one), while the peer's entries through its snapshot are committed. What an
/// AppendEntries from the leader would do. Returns the bytes copied.
async fn extend_log<F, Fut>(
    log: &LogStore,
    purged: LogId,
    last: u64,
    at: LogId,
    ask: &F,
) -> std::result::Result<u64, String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    // An uncommitted tail is short (the entries in flight when the old leader stopped).
    const MAX_WALK_BACK: u64 = 4096;
    let mut shared = last.min(at.index);
    let mine = loop {
        let mine = id_at(log, Some(purged), shared).ok_or("this log's entries cannot be read")?;
        let theirs = match ask(SeedRequest::Entries {
            from: shared,
            to: shared,
            max_bytes: 1,
        })
        .await?
        {
            SeedReply::Entries(e) => e.first().map(|e| e.log_id),
            _ => return Err("an answer of the wrong kind".into()),
        };
        if theirs == Some(mine) {
            break mine;
        }
        if shared <= purged.index || last.min(at.index) - shared >= MAX_WALK_BACK {
            return Err(format!(
                "this log shares no entry with the peer's from {shared} to {}",
                last.min(at.index)
            ));
        }
        shared -= 1;
    };
    if shared < last {
        tracing::warn!(
            from = shared + 1,
            to = last,
            "cutting a log tail that diverged from the committed log"
        );
        log.cut_after(mine).await.map_err(|e| e.to_string())?;
    }
    let (newest, bytes) = seed::copy_entries(ask, log, shared, at.index, Some(mine)).await?;
    if newest != Some(at) {
        return Err(format!(
            "the peer's log ends at {newest:?}, its snapshot at {at}"
        ));
    }
    log.finish_import(None).await.map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Copies `begin`'s snapshot (at `at`) and files into the state and application
/// directories; returns the bytes copied.
async fn copy_state<F, Fut>(
    cfg: &GroupConfig,
    disk: &Arc<dyn Disk>,
    ask: &F,
    begin: &SeedBegin,
    at: LogId,
) -> std::result::Result<u64, String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let snapshot = seed::fetch_snapshot(ask, begin.snapshot_len, at).await?;
    clear_state(cfg, &**disk).await.map_err(|e| e.to_string())?;
    let mut bytes = snapshot.len() as u64;
    bytes += seed::fetch_files(cfg, disk, ask, &begin.files).await?;
    let sm = cfg.data_dir.join(SNAPSHOT_DIR);
    crate::disk::replace_file(
        &**disk,
        &sm,
        (state_machine::SNAPSHOT_TMP, state_machine::SNAPSHOT_FILE),
        &snapshot,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use crate::disk::SimDisk;
    use crate::types::Entry;
    use crate::types::EntryPayload;
    use crate::types::Request;
    use crate::types::log_id;

    fn entry(term: u64, i: u64) -> Entry {
        Entry {
            log_id: log_id(term, i),
            payload: EntryPayload::Normal(Request(vec![i as u8; 64])),
        }
    }

    /// An old leader's log (entries 1..=20, of which 18..=20 never committed: term 1) is
    /// brought up to a peer's snapshot at 30 whose log took 18..=30 in term 2: the diverged
    /// tail is cut at the newest shared entry (17) and the peer's committed entries copied.
    #[tokio::test]
    async fn a_diverged_tail_is_cut_and_replaced_by_the_peers_committed_entries() {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(3));
        let (log, _) = LogStore::open(disk.clone(), "/g/log", Default::default())
            .await
            .unwrap();
        log.import((1..=20).map(|i| entry(1, i)).collect())
            .await
            .unwrap();
        log.finish_import(None).await.unwrap();
        let peer: Vec<Entry> = (1..=30)
            .map(|i| entry(if i < 18 { 1 } else { 2 }, i))
            .collect();
        let ask = |req: SeedRequest| {
            let peer = peer.clone();
            async move {
                match req {
                    SeedRequest::Entries { from, to, .. } => Ok(SeedReply::Entries(
                        peer[from as usize - 1..to.min(from + 4) as usize].to_vec(),
                    )),
                    _ => Err("not served".into()),
                }
            }
        };
        let purged = log_id(0, 0);
        assert_eq!(fits(&log, purged, 20, log_id(2, 30)), Some(true));
        assert_eq!(fits(&log, purged, 20, log_id(1, 15)), Some(false));
        assert_eq!(fits(&log, purged, 20, log_id(2, 19)), Some(true));
        extend_log(&log, purged, 20, log_id(2, 30), &ask)
            .await
            .unwrap();
        let got: Vec<LogId> = log.read(1..=30).unwrap().iter().map(|e| e.log_id).collect();
        let want: Vec<LogId> = peer.iter().map(|e| e.log_id).collect();
        assert_eq!(got, want);
        assert_eq!(log.state().1, Some(log_id(2, 30)));
    }
}
