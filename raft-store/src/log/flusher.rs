//! Group commit: one task that makes appended entries durable in batches.
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

/// Handle to the group-commit task.
pub(crate) struct Flusher {
    tx: mpsc::UnboundedSender<Item>,
    poison: Arc<Mutex<Option<String>>>,
}

impl Flusher {
    /// Starts the task for the log in `dir`.
    pub fn spawn(disk: Arc<dyn Disk>, dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let poison = Arc::new(Mutex::new(None));
        tokio::spawn(run(rx, disk, dir, poison.clone()));
        Flusher { tx, poison }
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

    /// Waits until every flush queued before this call has completed.
    pub async fn barrier(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The fatal error that stopped the store, if any.
    pub fn poisoned(&self) -> Option<String> {
        self.poison.lock().unwrap().clone()
    }

    /// Marks the store as failed.
    pub fn poison(&self, reason: String) {
        let mut p = self.poison.lock().unwrap();
        if p.is_none() {
            tracing::error!(%reason, "log storage failed; this replica must stop");
            *p = Some(reason);
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Item>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    poison: Arc<Mutex<Option<String>>>,
) {
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

        let prior = poison.lock().unwrap().clone();
        let result: Result<(), String> = match prior {
            Some(reason) => Err(reason),
            None => {
                let mut r = Ok(());
                if crate::buggify!() {
                    // A slow disk: the next batch grows while this one waits.
                    let ms = crate::rt::random_u64() % 50;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                for file in files {
                    if let Err(e) = file.sync().await {
                        r = Err(format!(
                            "fsync of a log segment in {} failed: {e}",
                            dir.display()
                        ));
                        break;
                    }
                }
                if r.is_ok()
                    && sync_dir
                    && let Err(e) = disk.sync_dir(&dir).await
                {
                    r = Err(format!(
                        "fsync of log directory {} failed: {e}",
                        dir.display()
                    ));
                }
                if let Err(reason) = &r {
                    let mut p = poison.lock().unwrap();
                    if p.is_none() {
                        tracing::error!(%reason, "log storage failed; this replica must stop");
                        *p = Some(reason.clone());
                    }
                }
                r
            }
        };

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
