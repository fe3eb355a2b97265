//! Seeding: a replica that rejoins with an empty disk copies a peer's latest snapshot, the
//! application files it refers to, and the retained log, before its Raft starts.
//!
//! Why: once retention has purged the start of the log (or decided to, at the next snapshot),
//! Raft alone cannot bring a new replica up. The leader would send its snapshot, but for the broker a snapshot holds queue bounds,
//! not message bodies: those live in the log entries the snapshot's queues point at. So a
//! replica that rejoins (`GroupConfig::join`) with an empty log asks a peer that no longer
//! counts it as a voter for:
//! 1. the peer's persisted snapshot (at index S) and the list of files in the application's
//!    directories (`GroupConfig::seed_dirs`);
//! 2. those files, in chunks;
//! 3. the log entries from the peer's first retained index through S.
//!
//! It copies whenever a peer has applied entries, purged or not (without a snapshot: the log
//! from its start through the peer's last applied entry, which the replica then applies
//! itself). That is never slower than Raft's own catch-up, which would send the same log, and
//! Raft's catch-up could lose a race with a purge retention has already decided.
//!
//! It writes them under a `seeding` marker, removed ([`settle`]) only once the replica has
//! opened the copy (the application checks its files at restore), so a crash or a bad copy
//! leaves the marker, and the next start wipes the copy and begins again. After the copy the
//! replica starts as one that has a log (its fence is open; it is not a member), and
//! `Group::add_member` replicates to it from S on, as to any lagging learner.
//!
//! It copies only when its peers' answers let a pristine replica join ([`fence::decide`]:
//! the newest membership does not count it as a voter), and a peer refuses while its own
//! membership counts the asker, while that membership is not yet applied, or while its own
//! gate is closed: a voter that lost its disk must be removed first, or it could count
//! towards a commit it no longer holds.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::fence;
use crate::fence::Decision;
use crate::group::GroupConfig;
use crate::log::LogStore;
use crate::network;
use crate::network::Channels;
use crate::state_machine;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::NodeId;

/// The marker that a copy is under way (in the group's data directory).
const MARKER: &str = "seeding";
/// Bytes per file chunk and (at least one entry) per batch of entries.
pub(crate) const CHUNK: u64 = 2 << 20;
/// How long one request of a copy may take.
pub(crate) const SEED_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Whole copies tried before the start fails (a copy restarts when the peer's snapshot moves
/// on and deletes a file the copy still needed).
const ATTEMPTS: usize = 4;

/// A request to a seed source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SeedRequest {
    /// What a copy needs: see [`SeedBegin`].
    Begin,
    /// The same, for a member whose own state is damaged and which copies only the snapshot
    /// and the application's files ([`crate::repair`]): answered to a voter too. A source
    /// whose snapshot ends before `at_least` (the member's purge point) but which has applied
    /// that far builds a newer one, for the member's next request.
    State {
        /// The member's purge point.
        at_least: u64,
    },
    /// Up to `max` bytes of file `name` in application directory `dir`, from `offset`.
    File {
        /// One of the group's `seed_dirs`.
        dir: String,
        /// A plain file name.
        name: String,
        /// Where to read from.
        offset: u64,
        /// How much at most.
        max: u64,
    },
    /// Log entries from `from` through `to`, about `max_bytes` of them (at least one).
    Entries {
        /// First index.
        from: u64,
        /// Last index wanted.
        to: u64,
        /// Size budget of the answer.
        max_bytes: u64,
    },
}

/// What a copy needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedBegin {
    /// The source's purge point (`None`: it never purged).
    pub purged: Option<LogId>,
    /// The first entry in its log (copied from here).
    pub first: u64,
    /// The last entry the source's persisted snapshot covers (`None`: it has no snapshot,
    /// and a new replica copies the log through Raft alone).
    pub snapshot_last: Option<LogId>,
    /// The source's last applied entry (a copy without a snapshot goes this far).
    pub applied: Option<LogId>,
    /// The snapshot file's length (it is fetched in chunks as file [`SNAPSHOT_DIR`]/`snapshot`).
    pub snapshot_len: u64,
    /// The application's files: (directory, name, length), listed together with the snapshot
    /// (no snapshot build runs in between, so none of them is one it made obsolete).
    pub files: Vec<(String, String, u64)>,
}

/// The state machine's directory, from which a copy fetches the snapshot file.
pub const SNAPSHOT_DIR: &str = "sm";

/// An answer of a seed source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SeedReply {
    /// To [`SeedRequest::Begin`].
    Begin(SeedBegin),
    /// To [`SeedRequest::File`] (empty at the end of the file).
    File(Vec<u8>),
    /// To [`SeedRequest::Entries`].
    Entries(Vec<Entry>),
}

/// The serving side: a running replica's log and files.
pub struct SeedSource {
    /// The replica's log.
    pub log: LogStore,
    /// Its disk.
    pub disk: Arc<dyn Disk>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The application's directories in it.
    pub dirs: Vec<String>,
    /// Held by snapshot builds from their checkpoint to their last file removal: a
    /// [`SeedRequest::Begin`] holds it while it reads the snapshot and lists the files.
    pub snapshots: Arc<tokio::sync::Mutex<()>>,
}

fn plain_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\', '\0'])
}

impl SeedSource {
    /// Answers [`SeedRequest::Begin`] for a replica that has applied up to `applied` (the
    /// caller holds [`SeedSource::snapshots`]).
    pub fn begin(&self, applied: Option<LogId>) -> std::result::Result<SeedBegin, String> {
        self.state_sound()?;
        // Copied whenever the source has a snapshot, purged or not: the application may have
        // decided to delete the log's start and purge at its next snapshot (retention), and
        // a replica catching up through Raft would then be sent a snapshot it cannot take
        // (sim cluster_chaos seed 5054).
        let (purged, _) = self.log.state();
        // The first segment may begin before the purge point (it is deleted only once wholly
        // below it): entries up to the point are gone all the same (sim cluster_chaos 7006).
        let after_purge = purged.map_or(0, |p| p.index + 1);
        let first = self
            .log
            .segments()
            .first()
            .map_or(after_purge, |s| s.first.max(after_purge));
        let sm = self.data_dir.join(SNAPSHOT_DIR);
        let names = self.disk.list(&sm).unwrap_or_default();
        if !names.iter().any(|n| n == state_machine::SNAPSHOT_FILE) {
            return Ok(SeedBegin {
                purged,
                first,
                snapshot_last: None,
                applied,
                snapshot_len: 0,
                files: Vec::new(),
            });
        }
        let path = sm.join(state_machine::SNAPSHOT_FILE);
        let snapshot = state_machine::read_all(&*self.disk, &path).map_err(|e| e.to_string())?;
        let (meta, _) = state_machine::decode_snapshot(&snapshot)?;
        let mut files = Vec::new();
        for d in &self.dirs {
            let dir = self.data_dir.join(d);
            let names = match self.disk.list(&dir) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            };
            for n in names.into_iter().filter(|n| plain_name(n)) {
                let p = dir.join(&n);
                let len = self
                    .disk
                    .open(&p)
                    .and_then(|f| f.len())
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                files.push((d.clone(), n, len));
            }
        }
        Ok(SeedBegin {
            purged,
            first,
            snapshot_last: meta.last_log_id,
            applied,
            snapshot_len: snapshot.len() as u64,
            files,
        })
    }

    /// Refuses to hand out state from a replica whose state is marked damaged (a failed read
    /// while it ran: its files may be what failed; found in review).
    fn state_sound(&self) -> std::result::Result<(), String> {
        if crate::repair::marked(&*self.disk, &self.data_dir) {
            return Err("this replica's state is damaged and awaits repair".into());
        }
        Ok(())
    }

    /// Answers a [`SeedRequest::File`] or [`SeedRequest::Entries`].
    pub fn answer(&self, req: SeedRequest) -> std::result::Result<SeedReply, String> {
        match req {
            SeedRequest::Begin | SeedRequest::State { .. } => {
                Err("Begin is answered with the replica's progress".into())
            }
            SeedRequest::File {
                dir,
                name,
                offset,
                max,
            } => {
                self.state_sound()?;
                let snapshot = dir == SNAPSHOT_DIR && name == state_machine::SNAPSHOT_FILE;
                if !snapshot && (!self.dirs.contains(&dir) || !plain_name(&name)) {
                    return Err(format!("no file {dir}/{name} to copy"));
                }
                let p = self.data_dir.join(&dir).join(&name);
                let f = self
                    .disk
                    .open(&p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                let len = f.len().map_err(|e| format!("{}: {e}", p.display()))?;
                let n = len.saturating_sub(offset).min(max.min(CHUNK));
                let mut buf = vec![0; n as usize];
                crate::disk::read_exact_at(&*f, &mut buf, offset)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                Ok(SeedReply::File(buf))
            }
            SeedRequest::Entries {
                from,
                to,
                max_bytes,
            } => {
                let budget = max_bytes.min(CHUNK);
                let mut out = Vec::new();
                let mut bytes = 0u64;
                let mut next = from;
                // In runs of entries (one read each), until the budget is spent.
                while next <= to && bytes < budget {
                    let end = to.min(next + 255);
                    let run = self.log.read(next..=end).map_err(|e| e.to_string())?;
                    if run.first().is_none_or(|e| e.log_id.index != next) {
                        return Err(format!("entry {next} is not in this log any more"));
                    }
                    for e in run {
                        if bytes >= budget {
                            break;
                        }
                        bytes += match &e.payload {
                            crate::types::EntryPayload::Normal(r) => r.0.len() as u64 + 32,
                            _ => 64,
                        };
                        next = e.log_id.index + 1;
                        out.push(e);
                    }
                }
                Ok(SeedReply::Entries(out))
            }
        }
    }
}

/// What [`seed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The replica has a log already, or no peer has applied anything (Raft alone brings it
    /// up).
    NotNeeded,
    /// No peer answered, or every one still counts this node as a voter (the reason): the
    /// replica starts empty and its fence decides.
    Skipped(String),
    /// Copied from `from`: the log from `first` through `last` and `bytes` in all.
    Copied {
        /// The peer.
        from: NodeId,
        /// First log index copied.
        first: u64,
        /// Last (the snapshot's).
        last: u64,
        /// Bytes copied.
        bytes: u64,
    },
}

/// Removes every file in `dir` (not recursive: the log, state and application directories
/// are flat).
pub(crate) fn clear_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    let names = match disk.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for n in names {
        let p = dir.join(n);
        disk.remove(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// Empties the log, state and application directories.
async fn wipe(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    let dirs = ["log", SNAPSHOT_DIR]
        .into_iter()
        .map(String::from)
        .chain(cfg.seed_dirs.iter().cloned());
    for d in dirs {
        let dir = cfg.data_dir.join(d);
        clear_dir(disk, &dir)?;
        if disk.list(&dir).is_ok() {
            disk.sync_dir(&dir).await.map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

fn has_marker(cfg: &GroupConfig, disk: &dyn Disk) -> Result<bool> {
    match disk.list(&cfg.data_dir) {
        Ok(names) => Ok(names.iter().any(|n| n == MARKER)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&cfg.data_dir, e)),
    }
}

async fn remove_marker(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    let marker = cfg.data_dir.join(MARKER);
    match disk.remove(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&marker, e)),
    }
    disk.sync_dir(&cfg.data_dir)
        .await
        .map_err(|e| Error::io(&cfg.data_dir, e))
}

/// Ends a copy once the replica has opened what it copied (its log, and its state with the
/// application's files, which the application checks at restore): the marker goes. Until then
/// a restart wipes the copy and makes it again. A no-op for a replica that copied nothing.
pub async fn settle(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    if has_marker(cfg, disk)? {
        remove_marker(cfg, disk).await?;
        tracing::info!(group = %cfg.group, "the copy from a peer is complete");
    }
    Ok(())
}

/// Asks the peers, as a pristine replica's fence does, whether this one may join: only if
/// none of the newest membership counts it as a voter ([`fence::decide`] says join).
async fn may_join(cfg: &GroupConfig, channels: &Channels) -> std::result::Result<(), String> {
    let members: BTreeSet<NodeId> = cfg.members.keys().copied().collect();
    let mut replies = BTreeMap::new();
    // For about 5 s (at least 10 rounds): a peer that is paused or slow to apply the removal
    // answers late. Giving up after 1 s started the replica empty, and a peer's snapshot it
    // then could not use stopped it for good (`cluster_chaos` seed 5054: a peer paused for
    // 1.75 s while node 3 was replaced). Bounded in time, not rounds: each round asks the
    // peers one after another, and an unreachable one takes its whole timeout.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    for round in 0.. {
        if round >= 10 && tokio::time::Instant::now() >= until {
            break;
        }
        crate::probe::ask_peers(cfg, channels, &mut replies).await;
        match fence::decide(cfg.group, cfg.node_id, &members, true, &replies) {
            Some(Decision::Join) if replies.values().all(|r| !r.voter) => return Ok(()),
            Some(Decision::Join) | None => {}
            Some(Decision::AwaitRemoval(why) | Decision::Refuse(why)) => return Err(why),
            Some(Decision::Initialize) => return Err("the group is new".into()),
        }
        tokio::time::sleep(cfg.heartbeat_interval * 2).await;
    }
    Err(format!(
        "not every peer answered that it no longer counts node {} (answers from {:?})",
        cfg.node_id,
        replies.keys().collect::<Vec<_>>()
    ))
}

/// Before the replica of `cfg` starts: if it rejoins (`cfg.join`) with an empty log while its
/// peers' logs no longer start at the beginning, copies a peer's snapshot, files and retained
/// log into its data directory (see the module docs). A copy a crash interrupted is wiped
/// first, with or without `cfg.join`.
pub async fn seed(cfg: &GroupConfig, disk: Arc<dyn Disk>, channels: &Channels) -> Result<Seeded> {
    disk.create_dir_all(&cfg.data_dir)
        .map_err(|e| Error::io(&cfg.data_dir, e))?;
    if has_marker(cfg, &*disk)? {
        tracing::warn!(group = %cfg.group, "an unfinished copy from a peer is wiped");
        wipe(cfg, &*disk).await?;
        remove_marker(cfg, &*disk).await?;
    }
    if !cfg.join {
        return Ok(Seeded::NotNeeded);
    }
    {
        let (log, report) =
            LogStore::open(disk.clone(), cfg.data_dir.join("log"), cfg.log.clone()).await?;
        drop(log);
        if report.last_log_id.is_some() {
            return Ok(Seeded::NotNeeded);
        }
    }
    if let Err(why) = may_join(cfg, channels).await {
        return Ok(Seeded::Skipped(why));
    }
    // Each request reads up to 2 MiB from the peer's disk: an election timeout is too short
    // a bound (a loaded debug build took over 1.6 s).
    let ttl = SEED_TTL.max(cfg.election_timeout.1 * 4);
    let ask = |peer: NodeId, req: SeedRequest| {
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
    let mut reasons = Vec::new();
    for attempt in 1..=ATTEMPTS {
        // Every peer's answer: the copy comes from the one whose snapshot is newest (a
        // lagging follower's may be older than the leader's purge point). A peer whose log
        // was never purged says nothing about the others (each purges on its own).
        let mut best: Option<(NodeId, SeedBegin)> = None;
        let mut answered = 0;
        for peer in cfg.members.keys().copied().filter(|p| *p != cfg.node_id) {
            match ask(peer, SeedRequest::Begin).await {
                Ok(SeedReply::Begin(b)) => {
                    answered += 1;
                    // The newest snapshot; without any, the longest applied log.
                    let key = |b: &SeedBegin| (b.snapshot_last, b.applied);
                    if b.applied.is_some() && best.as_ref().is_none_or(|(_, x)| key(&b) > key(x)) {
                        best = Some((peer, b));
                    }
                }
                Ok(_) => reasons.push(format!("node {peer}: an answer of the wrong kind")),
                Err(e) => reasons.push(format!("node {peer}: {e}")),
            }
        }
        let Some((peer, begin)) = best else {
            if answered > 0 && attempt == 1 {
                tracing::info!(group = %cfg.group, "rejoining: no peer has applied anything yet, so Raft copies the log");
                return Ok(Seeded::NotNeeded);
            }
            return Ok(Seeded::Skipped(reasons.join("; ")));
        };
        match copy(cfg, &disk, &|req| ask(peer, req), &begin).await {
            Ok((first, last, bytes)) => {
                return Ok(Seeded::Copied {
                    from: peer,
                    first,
                    last,
                    bytes,
                });
            }
            Err(e) => {
                tracing::warn!(group = %cfg.group, peer, attempt, error = %e, "copying from a peer failed; starting over");
                // Nothing half-copied stays, nor the marker: a replica that then starts
                // without a copy must not be wiped at a later restart.
                wipe(cfg, &*disk).await?;
                remove_marker(cfg, &*disk).await?;
                reasons.push(format!("node {peer}: {e}"));
            }
        }
    }
    // The replica starts empty then: Raft copies the log if the peers still hold it all, and
    // otherwise `replica add` refuses it, saying how to start over.
    Ok(Seeded::Skipped(format!(
        "copying from a peer failed {ATTEMPTS} times: {}",
        reasons.join("; ")
    )))
}

pub(crate) async fn fetch_file<F, Fut>(
    ask: &F,
    dir: &str,
    name: &str,
    len: u64,
    mut sink: impl FnMut(u64, &[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<u64, String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let mut at = 0;
    while at < len {
        let chunk = match ask(SeedRequest::File {
            dir: dir.to_string(),
            name: name.to_string(),
            offset: at,
            max: (len - at).min(CHUNK),
        })
        .await?
        {
            SeedReply::File(b) => b,
            _ => return Err("an answer of the wrong kind".into()),
        };
        if chunk.is_empty() {
            return Err(format!(
                "{dir}/{name} shrank on the peer while it was copied"
            ));
        }
        sink(at, &chunk)?;
        at += chunk.len() as u64;
    }
    Ok(at)
}

/// One whole copy; returns (first index, last index, bytes). Leaves the marker (see
/// [`settle`]).
async fn copy<F, Fut>(
    cfg: &GroupConfig,
    disk: &Arc<dyn Disk>,
    ask: &F,
    begin: &SeedBegin,
) -> std::result::Result<(u64, u64, u64), String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    // The marker first: from here until the replica has opened the copy, a restart wipes it.
    let marker = cfg.data_dir.join(MARKER);
    let m = disk.create(&marker).map_err(|e| io(&marker, e))?;
    m.sync().await.map_err(|e| io(&marker, e))?;
    disk.sync_dir(&cfg.data_dir)
        .await
        .map_err(|e| io(&cfg.data_dir, e))?;
    wipe(cfg, &**disk).await.map_err(|e| e.to_string())?;
    // The snapshot, in chunks; a build that replaces it meanwhile fails its CRC or id.
    // Without one (a young log, or retention decided but not yet purged: sim cluster_chaos
    // seed 5054), the log from its first entry through the peer's last applied one, which
    // this replica applies itself.
    let mut snapshot = Vec::new();
    let last = if let Some(want) = begin.snapshot_last {
        snapshot = fetch_snapshot(ask, begin.snapshot_len, want).await?;
        want
    } else if begin.purged.is_none() {
        begin.applied.ok_or("the peer has applied nothing")?
    } else {
        return Err("the peer purged its log but has no snapshot".into());
    };
    if last.index + 1 < begin.first {
        return Err(format!(
            "the peer's copy ends at {} before its log's start ({})",
            last.index, begin.first
        ));
    }
    let mut bytes = snapshot.len() as u64;
    bytes += fetch_files(cfg, disk, ask, &begin.files).await?;
    let (log, _) = LogStore::open(disk.clone(), cfg.data_dir.join("log"), cfg.log.clone())
        .await
        .map_err(|e| e.to_string())?;
    let first = begin.first;
    let (copied, entry_bytes) = copy_entries(ask, &log, first, last.index, None).await?;
    bytes += entry_bytes;
    let newest = copied.or(begin.purged.filter(|p| p.index + 1 == first));
    // The log must end exactly where the copy does (same index and term).
    if newest != Some(last) {
        return Err(format!(
            "the copied log ends at {newest:?}, the snapshot at {last:?}"
        ));
    }
    log.finish_import(begin.purged)
        .await
        .map_err(|e| e.to_string())?;
    drop(log);
    if begin.snapshot_last.is_some() {
        let sm = cfg.data_dir.join(SNAPSHOT_DIR);
        disk.create_dir_all(&sm).map_err(|e| io(&sm, e))?;
        crate::disk::replace_file(
            &**disk,
            &sm,
            (state_machine::SNAPSHOT_TMP, state_machine::SNAPSHOT_FILE),
            &snapshot,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok((first, last.index, bytes))
}

/// Fetches the peer's persisted snapshot (`len` bytes, in chunks) and checks that it is whole
/// and still the one at `want`: a build that replaced it meanwhile fails its CRC or its id.
pub(crate) async fn fetch_snapshot<F, Fut>(
    ask: &F,
    len: u64,
    want: LogId,
) -> std::result::Result<Vec<u8>, String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let mut snapshot = Vec::new();
    fetch_file(
        ask,
        SNAPSHOT_DIR,
        state_machine::SNAPSHOT_FILE,
        len,
        |_, b| {
            snapshot.extend_from_slice(b);
            Ok(())
        },
    )
    .await?;
    let (meta, _) = state_machine::decode_snapshot(&snapshot)
        .map_err(|e| format!("the peer's snapshot changed while it was copied ({e})"))?;
    if meta.last_log_id != Some(want) {
        return Err("the peer's snapshot changed while it was copied".into());
    }
    Ok(snapshot)
}

/// Fetches the application's `files` (directory, name, length) a peer listed into this
/// replica's application directories and makes them durable; returns the bytes copied.
pub(crate) async fn fetch_files<F, Fut>(
    cfg: &GroupConfig,
    disk: &Arc<dyn Disk>,
    ask: &F,
    files: &[(String, String, u64)],
) -> std::result::Result<u64, String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let mut bytes = 0;
    for (d, name, len) in files {
        if !cfg.seed_dirs.contains(d) || !plain_name(name) {
            return Err(format!(
                "the peer listed a file {d}/{name} outside the copy"
            ));
        }
        let dir = cfg.data_dir.join(d);
        disk.create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let p = dir.join(name);
        let f = disk.create(&p).map_err(|e| io(&p, e))?;
        bytes += fetch_file(ask, d, name, *len, |at, b| {
            f.write_at(b, at).map_err(|e| io(&p, e))
        })
        .await?;
        f.sync().await.map_err(|e| io(&p, e))?;
    }
    for d in &cfg.seed_dirs {
        let dir = cfg.data_dir.join(d);
        disk.create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        disk.sync_dir(&dir).await.map_err(|e| io(&dir, e))?;
    }
    Ok(bytes)
}

/// Copies a peer's entries `from..=to` into `log`, in runs of about [`CHUNK`] bytes.
/// `check_first`: the id this log holds at `from`, which the peer's entry there must equal
/// (Log Matching: it is then not copied again). Returns the last entry copied, if any, and the
/// bytes of the entries' payloads.
pub(crate) async fn copy_entries<F, Fut>(
    ask: &F,
    log: &LogStore,
    from: u64,
    to: u64,
    check_first: Option<LogId>,
) -> std::result::Result<(Option<LogId>, u64), String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let mut next = from;
    let mut newest = None;
    let mut bytes = 0;
    while next <= to {
        let mut entries = match ask(SeedRequest::Entries {
            from: next,
            to,
            max_bytes: CHUNK,
        })
        .await?
        {
            SeedReply::Entries(e) => e,
            _ => return Err("an answer of the wrong kind".into()),
        };
        if entries.is_empty()
            || entries
                .iter()
                .zip(next..)
                .any(|(e, i)| e.log_id.index != i || i > to)
        {
            return Err(format!("the peer answered entries not starting at {next}"));
        }
        next += entries.len() as u64;
        if let Some(mine) = check_first.filter(|m| m.index == from)
            && entries[0].log_id.index == from
        {
            if entries[0].log_id != mine {
                return Err(format!(
                    "the peer's entry {from} is {}, this log's {mine}: they differ",
                    entries[0].log_id
                ));
            }
            entries.remove(0);
        }
        let Some(last) = entries.last() else { continue };
        newest = Some(last.log_id);
        bytes += entries
            .iter()
            .map(|e| match &e.payload {
                crate::types::EntryPayload::Normal(r) => r.0.len() as u64,
                _ => 0,
            })
            .sum::<u64>();
        log.import(entries).await.map_err(|e| e.to_string())?;
    }
    Ok((newest, bytes))
}
