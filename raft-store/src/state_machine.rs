//! Adapts a caller's deterministic state machine ([`App`]) to openraft, with durable snapshots.
//!
//! The adapter tracks what openraft needs (last applied log id, last membership), hands each
//! committed proposal to [`App::apply`] in log order and sends the answer back to the proposer.
//! Snapshots are written through the [`Disk`] as `snapshot` (temporary file, fsync, rename,
//! directory fsync), so a replica restarts from its latest snapshot and replays only the log
//! after it, and a lagging follower can be sent one.

use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use futures::Stream;
use futures::StreamExt;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::entry::RaftEntry;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use serde::Deserialize;
use serde::Serialize;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::types::EntryPayload;
use crate::types::LogId;
use crate::types::LogIndex;
use crate::types::Response;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;
use crate::types::TypeConfig;

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
pub(crate) const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// A replicated application: a deterministic function of the committed log.
///
/// Every replica calls [`App::apply`] with the same proposals in the same order, so `apply` must
/// not read clocks, randomness or anything outside `self` and its arguments (time, when needed,
/// travels inside the proposal).
pub trait App: Send + Sync + 'static {
    /// Applies one committed proposal at `index`; the returned bytes go back to the proposer.
    ///
    /// `Err` means this replica cannot interpret the entry at all (say it is newer than the
    /// binary): the replica stops with a storage error instead of diverging. It must never be
    /// used for input that is merely invalid — that is an answer, the same on every replica.
    fn apply(&mut self, index: LogIndex, request: &[u8]) -> std::result::Result<Vec<u8>, String>;

    /// The whole state, encoded (for snapshots).
    fn snapshot(&self) -> Vec<u8>;

    /// Prepares a snapshot of an application that keeps part of its state in its own files
    /// (the broker's consume queues): the encoded state plus what must be durable before the
    /// snapshot is (files and directories to fsync) and what the snapshot makes unnecessary
    /// (files to remove once it is persisted). Runs under the apply lock; the syncs do not.
    fn checkpoint(&mut self) -> std::result::Result<Checkpoint, String> {
        Ok(Checkpoint {
            data: self.snapshot(),
            ..Checkpoint::default()
        })
    }

    /// Why the application's own files failed, if they did (the broker: a consume-queue read):
    /// after an [`App::apply`] error this marks the state for repair at the next start
    /// ([`crate::repair`]) instead of a restart that would open the same files again.
    fn damaged(&self) -> Option<String> {
        None
    }

    /// False if `snapshot` is in a format this binary does not know at all (one written by a
    /// newer version): refusing it is then no sign of damage, and the replica must not
    /// rebuild its state over it ([`crate::repair`]), but say to upgrade.
    fn readable(&self, _snapshot: &[u8]) -> bool {
        true
    }

    /// Replaces the whole state with a snapshot this replica persisted (at startup).
    fn restore(&mut self, snapshot: &[u8]) -> std::result::Result<(), String>;

    /// Replaces the whole state with a snapshot sent by the leader (it may refer to files
    /// only the leader has: the application refuses what it cannot serve).
    fn install(&mut self, snapshot: &[u8]) -> std::result::Result<(), String> {
        self.restore(snapshot)
    }
}

/// A snapshot about to be persisted; see [`App::checkpoint`].
#[derive(Default)]
pub struct Checkpoint {
    /// The encoded state.
    pub data: Vec<u8>,
    /// Files to fsync before the snapshot is persisted. Paths, not open handles: each is
    /// opened, synced and closed in turn, so a state of 10,000 queues does not hold 10,000
    /// files open until the snapshot is persisted (a `raftmq dev` with 1,250 topics ran out of
    /// descriptors that way and stopped its groups; issue 13, item 4).
    pub sync: Vec<PathBuf>,
    /// Directories to fsync before the snapshot is persisted.
    pub sync_dirs: Vec<PathBuf>,
    /// Files to remove after the snapshot is persisted.
    pub obsolete: Vec<PathBuf>,
}

/// The application plus what openraft tracks about it.
pub struct Applied<A> {
    /// The application state.
    pub app: A,
    /// The last log id applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub last_membership: StoredMembership,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
    data_crc: u32,
    data_len: u64,
}

/// openraft's state machine for an [`App`]; clones share the state.
pub struct StateMachineStore<A> {
    state: Arc<Mutex<Applied<A>>>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// Held by a snapshot build (from its checkpoint to its last file removal) and by an
    /// install: openraft builds in a task of its own, so an install from the leader could
    /// otherwise land between a build's checkpoint and its persist, and the build would then
    /// overwrite the newer snapshot with an older one whose files the new state reuses.
    snapshots: Arc<tokio::sync::Mutex<()>>,
    /// Why a committed entry could not be applied, and whether the application's files were
    /// damaged (the replica then stops). Set under the state lock, which snapshot builds check
    /// under the same lock: a state that half-applied the failed entry is never persisted.
    failed: Arc<Mutex<Option<(String, bool)>>>,
}

impl<A> Clone for StateMachineStore<A> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            snapshots: self.snapshots.clone(),
            failed: self.failed.clone(),
        }
    }
}

fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let header = SnapshotHeader {
        meta: meta.clone(),
        data_crc: crc32c::crc32c(data),
        data_len: data.len() as u64,
    };
    let h = bincode::serde::encode_to_vec(&header, bincode::config::standard())
        .expect("snapshot header encodes");
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> std::result::Result<(SnapshotMeta, &[u8]), String> {
    if bytes.len() < 8 {
        return Err("snapshot file too short".into());
    }
    let hlen = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let hcrc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let h = bytes.get(8..8 + hlen).ok_or("snapshot header truncated")?;
    if crc32c::crc32c(h) != hcrc {
        return Err("snapshot header CRC mismatch".into());
    }
    let (header, _): (SnapshotHeader, _) =
        bincode::serde::decode_from_slice(h, crate::codec::config()).map_err(|e| e.to_string())?;
    let data = &bytes[8 + hlen..];
    if data.len() as u64 != header.data_len || crc32c::crc32c(data) != header.data_crc {
        return Err("snapshot data length or CRC mismatch".into());
    }
    Ok((header.meta, data))
}

impl<A: App> StateMachineStore<A> {
    /// Opens the state machine in `dir`, restoring `app` from the last durable snapshot if any.
    pub async fn open(disk: Arc<dyn Disk>, dir: impl AsRef<Path>, mut app: A) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut last_applied = None;
        let mut last_membership = StoredMembership::default();
        let names = disk.list(&dir).map_err(|e| Error::io(&dir, e))?;
        if names.iter().any(|n| n == SNAPSHOT_FILE) {
            let path = dir.join(SNAPSHOT_FILE);
            let bytes = read_all(&*disk, &path)?;
            let (meta, data) = decode_snapshot(&bytes).map_err(|reason| Error::Corrupt {
                path: path.clone(),
                offset: 0,
                reason,
            })?;
            if !app.readable(data) {
                return Err(Error::Config(format!(
                    "{} was written by a newer version of this program: run that version (or \
                     newer) on this node",
                    path.display()
                )));
            }
            app.restore(data).map_err(|reason| Error::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("the application rejected the snapshot: {reason}"),
            })?;
            last_applied = meta.last_log_id;
            last_membership = meta.last_membership.clone();
            tracing::info!(dir = %dir.display(), last_applied = ?last_applied, "restored state from snapshot");
        }
        Ok(Self {
            state: Arc::new(Mutex::new(Applied {
                app,
                last_applied,
                last_membership,
            })),
            disk,
            dir,
            snapshots: Arc::new(tokio::sync::Mutex::new(())),
            failed: Arc::default(),
        })
    }

    /// Why a committed entry could not be applied, if one could not (the replica stopped),
    /// and whether the application's files were damaged (its state is then repaired at the
    /// next start).
    pub fn failure(&self) -> Option<(String, bool)> {
        self.failed.lock().unwrap().clone()
    }

    /// After an apply failure: a damaged application marks the state for repair.
    async fn fail(&self, why: String, damaged: bool) -> io::Error {
        tracing::error!(dir = %self.dir.display(), error = %why, damaged, "the state machine stopped");
        if damaged
            && let Some(data_dir) = self.dir.parent()
            && let Err(e) = crate::repair::mark(&*self.disk, data_dir).await
        {
            tracing::error!(error = %e, "could not mark the damaged state for repair");
        }
        io::Error::other(why)
    }

    /// The lock snapshot builds and installs hold (see the field).
    pub fn snapshot_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.snapshots.clone()
    }

    /// Runs `f` with the applied state (never across an await).
    pub fn with<T>(&self, f: impl FnOnce(&Applied<A>) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    async fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<()> {
        let bytes = encode_snapshot(meta, data);
        crate::disk::replace_file(
            &*self.disk,
            &self.dir,
            (SNAPSHOT_TMP, SNAPSHOT_FILE),
            &bytes,
        )
        .await
    }

    async fn build(&self) -> Result<Snapshot> {
        let _one_at_a_time = self.snapshots.lock().await;
        let (meta, cp) = {
            let mut st = self.state.lock().unwrap();
            if let Some((why, _)) = self.failure() {
                return Err(Error::Stopped(format!(
                    "no snapshot after a failed apply: {why}"
                )));
            }
            let meta = SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.last_membership.clone(),
            };
            let cp = st.app.checkpoint().map_err(|reason| {
                Error::io(
                    &self.dir,
                    io::Error::other(format!("the application cannot checkpoint: {reason}")),
                )
            })?;
            (meta, cp)
        };
        // What the snapshot refers to is durable before the snapshot is.
        for p in &cp.sync {
            let f = self.disk.open(p).map_err(|e| Error::io(p, e))?;
            f.sync().await.map_err(|e| Error::io(p, e))?;
        }
        for d in &cp.sync_dirs {
            self.disk.sync_dir(d).await.map_err(|e| Error::io(d, e))?;
        }
        self.persist(&meta, &cp.data).await?;
        for p in &cp.obsolete {
            if let Err(e) = self.disk.remove(p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), "cannot remove a file the snapshot made obsolete: {e}");
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: cp.data,
        })
    }
}

pub(crate) fn read_all(disk: &dyn Disk, path: &Path) -> Result<Vec<u8>> {
    let file = disk.open(path).map_err(|e| Error::io(path, e))?;
    let len = file.len().map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; len as usize];
    crate::disk::read_exact_at(&*file, &mut buf, 0).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

impl<A: App> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<A> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        Ok(self.build().await?)
    }
}

impl<A: App> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let st = self.state.lock().unwrap();
        Ok((st.last_applied, st.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            // Ok(response), or Err((why, whether the application's files are damaged)).
            let response = {
                let mut st = self.state.lock().unwrap();
                let out = match &entry.payload {
                    EntryPayload::Blank => Ok(Vec::new()),
                    EntryPayload::Normal(req) => {
                        st.app.apply(LogIndex(log_id.index), &req.0).map_err(|e| {
                            let why =
                                format!("committed entry {} cannot be applied: {e}", log_id.index);
                            let damaged = st.app.damaged().is_some();
                            *self.failed.lock().unwrap() = Some((why.clone(), damaged));
                            (why, damaged)
                        })
                    }
                    EntryPayload::Membership(m) => {
                        st.last_membership = StoredMembership::new(Some(log_id), m.clone());
                        Ok(Vec::new())
                    }
                };
                if out.is_ok() {
                    st.last_applied = Some(log_id);
                }
                out
            };
            let response = match response {
                Ok(r) => r,
                Err((why, damaged)) => return Err(self.fail(why, damaged).await),
            };
            if let Some(r) = responder {
                r.send(Response(response));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let _one_at_a_time = self.snapshots.lock().await;
        {
            let mut st = self.state.lock().unwrap();
            st.app.install(&snapshot).map_err(|e| {
                io::Error::other(format!("snapshot rejected by the application: {e}"))
            })?;
            st.last_applied = meta.last_log_id;
            st.last_membership = meta.last_membership.clone();
        }
        self.persist(meta, &snapshot).await?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let names = self.disk.list(&self.dir)?;
        if !names.iter().any(|n| n == SNAPSHOT_FILE) {
            return Ok(None);
        }
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = read_all(&*self.disk, &path)?;
        let (meta, data) = decode_snapshot(&bytes).map_err(|reason| {
            io::Error::from(Error::Corrupt {
                path: path.clone(),
                offset: 0,
                reason,
            })
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: data.to_vec(),
        }))
    }
}
