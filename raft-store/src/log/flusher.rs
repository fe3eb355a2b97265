//! Group commit, and the one gate every fsync of the log passes through.
//!
//! Appends write their frames and queue a request naming the files they touched and openraft's
//! flush callback. The flusher takes everything queued since its previous round, fsyncs each
//! touched file once (and the log directory if a segment was created), and only then completes
//! the callbacks, in order. While it waits on the disk, new appends queue up and form the next
//! batch, so the number of fsyncs falls as the load rises.
//!
//! A failed fsync poisons the store: every queued and later callback fails and every later
//! operation is refused, so openraft stops the replica. Retrying an fsync after an error is not
//! safe (the kernel may already have dropped the dirty pages).
//!
//! Every fsync of the log (group commit, sealing a segment, truncation, purge) goes through
//! [`Flusher::sync`], one at a time, with the poison checked under the same lock. Linux reports
//! a writeback error to one fsync only; a second fsync running beside the failed one can return
//! success for pages that were dropped. Serialising them means that once any fsync has failed no
//! later one is taken as proof of durability, so nothing written after the lost pages is ever
//! acknowledged. Recovery relies on this (see `segment::recover`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use openraft::storage::IOFlushed;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::disk::Disk;
use crate::disk::DiskFile;
use crate::types::TypeConfig;

enum Item {
    Flush {
        files: Vec<Arc<dyn DiskFile>>,
        sync_dir: bool,
        callback: IOFlushed<TypeConfig>,
    },
    Barrier(oneshot::Sender<()>),
}

/// Serialised fsyncs plus the poison flag they set.
struct Gate {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    turn: tokio::sync::Mutex<()>,
    poison: Mutex<Option<String>>,
}

impl Gate {
    fn poisoned(&self) -> Option<String> {
        self.poison.lock().unwrap().clone()
    }

    fn poison(&self, reason: String) {
        let mut p = self.poison.lock().unwrap();
        if p.is_none() {
            tracing::error!(%reason, "log storage failed; this replica must stop");
            *p = Some(reason);
        }
    }

    /// Fsyncs `files` (and the log directory if `sync_dir`), unless the store is poisoned; a
    /// failure poisons it before the next fsync may start.
    async fn sync(&self, files: &[Arc<dyn DiskFile>], sync_dir: bool) -> Result<(), String> {
        let _turn = self.turn.lock().await;
        if let Some(reason) = self.poisoned() {
            return Err(reason);
        }
        if crate::buggify!() {
            // A slow disk: the next batch grows while this one waits.
            let ms = crate::rt::random_u64() % 50;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        for file in files {
            if let Err(e) = file.clone().sync().await {
                let reason = format!(
                    "fsync of a log segment in {} failed: {e}",
                    self.dir.display()
                );
                self.poison(reason.clone());
                return Err(reason);
            }
        }
        if sync_dir && let Err(e) = self.disk.sync_dir(&self.dir).await {
            let reason = format!("fsync of log directory {} failed: {e}", self.dir.display());
            self.poison(reason.clone());
            return Err(reason);
        }
        // A failed write or meta update elsewhere may have poisoned the store meanwhile; once
        // poisoned, nothing more is reported durable.
        match self.poisoned() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Handle to the group-commit task.
pub(crate) struct Flusher {
    tx: mpsc::UnboundedSender<Item>,
    gate: Arc<Gate>,
}

impl Flusher {
    /// Starts the task for the log in `dir`.
    pub fn spawn(disk: Arc<dyn Disk>, dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate {
            disk,
            dir,
            turn: tokio::sync::Mutex::new(()),
            poison: Mutex::new(None),
        });
        tokio::spawn(run(rx, gate.clone()));
        Flusher { tx, gate }
    }

    /// Queues a flush of `files` whose completion is reported through `callback`.
    pub fn submit(
        &self,
        files: Vec<Arc<dyn DiskFile>>,
        sync_dir: bool,
        callback: IOFlushed<TypeConfig>,
    ) {
        let item = Item::Flush {
            files,
            sync_dir,
            callback,
        };
        if let Err(mpsc::error::SendError(Item::Flush { callback, .. })) = self.tx.send(item) {
            callback.io_completed(Err(io::Error::other("log flusher has stopped")));
        }
    }

    /// Fsyncs `files` (and the directory if `sync_dir`) now, through the gate: for sealing a
    /// segment, truncation and purge. The error is the reason the store is poisoned.
    pub async fn sync(&self, files: &[Arc<dyn DiskFile>], sync_dir: bool) -> Result<(), String> {
        self.gate.sync(files, sync_dir).await
    }

    /// Waits until every flush queued before this call has completed.
    pub async fn barrier(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The fatal error that stopped the store, if any.
    pub fn poisoned(&self) -> Option<String> {
        self.gate.poisoned()
    }

    /// Marks the store as failed.
    pub fn poison(&self, reason: String) {
        self.gate.poison(reason);
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Item>, gate: Arc<Gate>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(item) = rx.try_recv() {
            batch.push(item);
        }
        let mut files: Vec<Arc<dyn DiskFile>> = Vec::new();
        let mut sync_dir = false;
        for item in &batch {
            if let Item::Flush {
                files: f,
                sync_dir: d,
                ..
            } = item
            {
                for file in f {
                    if !files.iter().any(|x| Arc::ptr_eq(x, file)) {
                        files.push(file.clone());
                    }
                }
                sync_dir |= *d;
            }
        }

        let result = gate.sync(&files, sync_dir).await;
        for item in batch {
            match item {
                Item::Flush { callback, .. } => {
                    callback.io_completed(result.clone().map_err(io::Error::other));
                }
                Item::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}
