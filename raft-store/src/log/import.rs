//! Importing a log copied from a peer ([`crate::seed`]) into a store no Raft runs on yet.

use openraft::storage::IOFlushed;

use super::LogStore;
use crate::error::Error;
use crate::error::Result;
use crate::types::Entry;
use crate::types::LogId;

impl LogStore {
    /// Appends entries copied from a peer ([`crate::seed`]) to a log no Raft runs on yet:
    /// they continue the log, or start an empty one at any index.
    pub async fn import(&self, entries: Vec<Entry>) -> Result<()> {
        self.do_append(entries, IOFlushed::noop()).await
    }

    /// Cuts the entries after `last` from a log no Raft runs on yet: a tail that diverged
    /// from the committed log ([`crate::repair`] replaces it with a peer's committed entries).
    pub async fn cut_after(&self, last: LogId) -> Result<()> {
        self.do_truncate_after(Some(last)).await
    }

    /// Ends an import: the active segment and the directory are made durable, then the log
    /// records that it starts after `purged` if given (entries up to it are the snapshot's).
    pub async fn finish_import(&self, purged: Option<LogId>) -> Result<()> {
        let sh = &*self.shared;
        sh.flusher.barrier().await;
        let active = {
            let segs = sh.segs.read().unwrap();
            segs.list.last().map(|s| s.file()).transpose()?
        };
        sh.flusher
            .sync(&active.into_iter().collect::<Vec<_>>(), true)
            .await
            .map_err(Error::Poisoned)?;
        match purged {
            Some(p) => self.do_purge(p).await,
            None => Ok(()),
        }
    }
}
