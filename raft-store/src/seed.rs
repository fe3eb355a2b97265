//! Seeding: a replica that rejoins with an empty disk copies a peer's latest snapshot, the
//! application files it refers to, and the retained log, before its Raft starts.
//!
//! Why: once retention has purged the start of the log, Raft alone cannot bring a new replica
//! up. The leader would send its snapshot, but for the broker a snapshot holds queue bounds,
//! not message bodies: those live in the log entries the snapshot's queues point at. So a
//! replica that rejoins (`GroupConfig::join`) with an empty log asks a peer that no longer
//! counts it as a voter for:
//! 1. the peer's persisted snapshot (at index S) and the list of files in the application's
//!    directories (`GroupConfig::seed_dirs`);
//! 2. those files, in chunks;
//! 3. the log entries from the peer's first retained index through S.
//!
//! It writes them under a `seeding` marker and removes the marker last, so a crash in the
//! middle leaves a marker, and the next start wipes the partial copy and begins again. After
//! the copy the replica starts as one that has a log (its fence is open; it is not a member),
//! and `Group::add_member` replicates to it from S on, as to any lagging learner.
//!
//! A peer refuses while it still counts the asker as a voter: a voter that lost its disk must
//! be removed first (`crate::fence`), or it could count towards a commit it no longer holds.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
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
const CHUNK: u64 = 2 << 20;
/// Whole copies tried before the start fails (a copy restarts when the peer's snapshot moves
/// on and deletes a file the copy still needed).
const ATTEMPTS: usize = 4;

/// A request to a seed source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SeedRequest {
    /// What a copy needs: see [`SeedBegin`].
    Begin,
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
    /// Where the source's log starts (`None`: it never purged; the log alone brings a new
    /// replica up, no copy is needed).
    pub purged: Option<LogId>,
    /// The source's persisted snapshot file, as it is on disk.
    pub snapshot: Vec<u8>,
    /// The application's files: (directory, name, length).
    pub files: Vec<(String, String, u64)>,
}

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
}

fn plain_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\', '\0'])
}

impl SeedSource {
    /// Answers `req`; `asker_is_voter` is whether this replica's membership counts the asker.
    pub fn answer(
        &self,
        asker: NodeId,
        asker_is_voter: bool,
        req: SeedRequest,
    ) -> std::result::Result<SeedReply, String> {
        match req {
            SeedRequest::Begin => {
                if asker_is_voter {
                    return Err(format!(
                        "node {asker} is still a voter here: remove it from the group first \
                         (raftmq admin replica remove)"
                    ));
                }
                let (purged, _) = self.log.state();
                if purged.is_none() {
                    return Ok(SeedReply::Begin(SeedBegin {
                        purged: None,
                        snapshot: Vec::new(),
                        files: Vec::new(),
                    }));
                }
                let path = self.data_dir.join("sm").join(state_machine::SNAPSHOT_FILE);
                let snapshot =
                    state_machine::read_all(&*self.disk, &path).map_err(|e| e.to_string())?;
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
                Ok(SeedReply::Begin(SeedBegin {
                    purged,
                    snapshot,
                    files,
                }))
            }
            SeedRequest::File {
                dir,
                name,
                offset,
                max,
            } => {
                if !self.dirs.contains(&dir) || !plain_name(&name) {
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
                for i in from..=to {
                    let mut e = self.log.read(i..=i).map_err(|e| e.to_string())?;
                    let Some(e) = e.pop() else {
                        return Err(format!("entry {i} is not in this log any more"));
                    };
                    bytes += bincode::serde::encode_to_vec(&e, bincode::config::standard())
                        .map_or(0, |b| b.len() as u64);
                    out.push(e);
                    if bytes >= budget {
                        break;
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
    /// The replica has a log already, or its peers' logs start at the beginning (Raft alone
    /// brings it up).
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
fn clear_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
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

async fn wipe(cfg: &GroupConfig, disk: &dyn Disk) -> Result<()> {
    let dirs = ["log", "sm"]
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

/// Before the replica of `cfg` starts: if it rejoins (`cfg.join`) with an empty log while its
/// peers' logs no longer start at the beginning, copies a peer's snapshot, files and retained
/// log into its data directory (see the module docs).
pub async fn seed(cfg: &GroupConfig, disk: Arc<dyn Disk>, channels: &Channels) -> Result<Seeded> {
    let marker = cfg.data_dir.join(MARKER);
    disk.create_dir_all(&cfg.data_dir)
        .map_err(|e| Error::io(&cfg.data_dir, e))?;
    let interrupted = disk
        .list(&cfg.data_dir)
        .map_err(|e| Error::io(&cfg.data_dir, e))?
        .iter()
        .any(|n| n == MARKER);
    if interrupted {
        tracing::warn!(group = %cfg.group, "an interrupted copy from a peer is wiped and begun again");
        wipe(cfg, &*disk).await?;
        disk.remove(&marker).map_err(|e| Error::io(&marker, e))?;
        disk.sync_dir(&cfg.data_dir)
            .await
            .map_err(|e| Error::io(&cfg.data_dir, e))?;
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
    let ttl = cfg.election_timeout.1 * 4;
    let mut reasons = Vec::new();
    for (peer, addr) in cfg.members.iter().filter(|(id, _)| **id != cfg.node_id) {
        let ask = |req: SeedRequest| {
            network::seed(
                channels,
                &cfg.net,
                (cfg.group, cfg.node_id),
                (*peer, addr.as_str()),
                req,
                ttl,
            )
        };
        for attempt in 1..=ATTEMPTS {
            let begin = match ask(SeedRequest::Begin).await {
                Ok(SeedReply::Begin(b)) => b,
                Ok(_) => {
                    reasons.push(format!("node {peer}: an answer of the wrong kind"));
                    break;
                }
                Err(e) => {
                    reasons.push(format!("node {peer}: {e}"));
                    break;
                }
            };
            let Some(purged) = begin.purged else {
                return Ok(Seeded::NotNeeded);
            };
            match copy(cfg, &disk, &ask, purged, &begin).await {
                Ok((first, last, bytes)) => {
                    return Ok(Seeded::Copied {
                        from: *peer,
                        first,
                        last,
                        bytes,
                    });
                }
                Err(e) => {
                    tracing::warn!(group = %cfg.group, peer, attempt, error = %e, "copying from a peer failed; starting over");
                    wipe(cfg, &*disk).await?;
                    if attempt == ATTEMPTS {
                        return Err(Error::Raft(format!(
                            "group {}: copying the retained log from node {peer} failed {ATTEMPTS} times, last: {e}",
                            cfg.group
                        )));
                    }
                }
            }
        }
    }
    Ok(Seeded::Skipped(reasons.join("; ")))
}

/// One whole copy; returns (first index, last index, bytes).
async fn copy<F, Fut>(
    cfg: &GroupConfig,
    disk: &Arc<dyn Disk>,
    ask: &F,
    purged: LogId,
    begin: &SeedBegin,
) -> std::result::Result<(u64, u64, u64), String>
where
    F: Fn(SeedRequest) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SeedReply, String>>,
{
    let (meta, _) = state_machine::decode_snapshot(&begin.snapshot)?;
    let last = meta
        .last_log_id
        .ok_or("the peer's snapshot covers no entry")?;
    if last.index < purged.index {
        return Err(format!(
            "the peer's snapshot (at {}) is older than its log's start ({})",
            last.index, purged.index
        ));
    }
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    // The marker first: from here until it is gone, a restart wipes what is here.
    let marker = cfg.data_dir.join(MARKER);
    let m = disk.create(&marker).map_err(|e| io(&marker, e))?;
    m.sync().await.map_err(|e| io(&marker, e))?;
    disk.sync_dir(&cfg.data_dir)
        .await
        .map_err(|e| io(&cfg.data_dir, e))?;
    let mut bytes = begin.snapshot.len() as u64;
    for (d, name, len) in &begin.files {
        if !cfg.seed_dirs.contains(d) || !plain_name(name) {
            return Err(format!(
                "the peer listed a file {d}/{name} outside the copy"
            ));
        }
        let dir = cfg.data_dir.join(d);
        disk.create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let p = dir.join(name);
        let f = disk.create(&p).map_err(|e| io(&p, e))?;
        let mut at = 0;
        while at < *len {
            let chunk = match ask(SeedRequest::File {
                dir: d.clone(),
                name: name.clone(),
                offset: at,
                max: (*len - at).min(CHUNK),
            })
            .await?
            {
                SeedReply::File(b) => b,
                _ => return Err("an answer of the wrong kind".into()),
            };
            if chunk.is_empty() {
                return Err(format!("{d}/{name} shrank on the peer while it was copied"));
            }
            f.write_at(&chunk, at).map_err(|e| io(&p, e))?;
            at += chunk.len() as u64;
        }
        f.sync().await.map_err(|e| io(&p, e))?;
        bytes += at;
    }
    for d in &cfg.seed_dirs {
        let dir = cfg.data_dir.join(d);
        disk.create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        disk.sync_dir(&dir).await.map_err(|e| io(&dir, e))?;
    }
    let (log, _) = LogStore::open(disk.clone(), cfg.data_dir.join("log"), cfg.log.clone())
        .await
        .map_err(|e| e.to_string())?;
    let first = purged.index + 1;
    let mut next = first;
    while next <= last.index {
        let entries = match ask(SeedRequest::Entries {
            from: next,
            to: last.index,
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
                .any(|(e, i)| e.log_id.index != i || i > last.index)
        {
            return Err(format!("the peer answered entries not starting at {next}"));
        }
        next += entries.len() as u64;
        bytes += entries
            .iter()
            .map(|e| match &e.payload {
                crate::types::EntryPayload::Normal(r) => r.0.len() as u64,
                _ => 0,
            })
            .sum::<u64>();
        log.import(entries).await.map_err(|e| e.to_string())?;
    }
    log.finish_import(purged).await.map_err(|e| e.to_string())?;
    drop(log);
    let sm = cfg.data_dir.join("sm");
    disk.create_dir_all(&sm).map_err(|e| io(&sm, e))?;
    crate::disk::replace_file(
        &**disk,
        &sm,
        (state_machine::SNAPSHOT_TMP, state_machine::SNAPSHOT_FILE),
        &begin.snapshot,
    )
    .await
    .map_err(|e| e.to_string())?;
    disk.remove(&marker).map_err(|e| io(&marker, e))?;
    disk.sync_dir(&cfg.data_dir)
        .await
        .map_err(|e| io(&cfg.data_dir, e))?;
    Ok((first, last.index, bytes))
}
