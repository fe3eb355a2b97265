//! Raft metadata that must survive restarts: the vote, the committed log id and the purge
//! point, in one small file with two slots.
//!
//! Each record is written whole into a slot as `crc32c u32 | seq u64 | len u32 | bincode`. A
//! write always goes to the slot that does *not* hold the newest synced record, so a torn or
//! lost write can never damage the last durable state; on load, the valid slot with the highest
//! sequence number wins. `save_vote` syncs before it returns (Raft §5.1: a vote must not be
//! forgotten); committed-index updates are written without a sync and ride along with the next
//! one (openraft re-derives a lost committed index from the leader).

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use crate::disk::Disk;
use crate::disk::DiskFile;
use crate::error::Error;
use crate::error::Result;
use crate::types::LogId;
use crate::types::Vote;

const SLOT_LEN: u64 = 4096;
const RECORD_HEADER_LEN: usize = 16;

/// The persisted Raft metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The last vote cast or seen (term and candidate), fsynced before use.
    pub vote: Option<Vote>,
    /// The highest log id known to be committed (may lag; see the module docs).
    pub committed: Option<LogId>,
    /// Everything up to and including this log id has been purged.
    pub last_purged: Option<LogId>,
}

/// The metadata file and its current contents.
pub struct MetaFile {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    seq: u64,
    /// The slot holding the newest synced record; writes go to the other one.
    durable_slot: u64,
    current: Meta,
    /// True if the newest record written has not been synced yet.
    dirty: bool,
}

fn encode(seq: u64, meta: &Meta) -> Vec<u8> {
    let body =
        bincode::serde::encode_to_vec(meta, bincode::config::standard()).expect("meta encodes");
    assert!(
        body.len() + RECORD_HEADER_LEN <= SLOT_LEN as usize,
        "meta record too large"
    );
    let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    rec.extend_from_slice(&[0; 4]);
    rec.extend_from_slice(&seq.to_le_bytes());
    rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
    rec.extend_from_slice(&body);
    let crc = crc32c::crc32c(&rec[4..]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
    rec
}

fn decode(slot: &[u8]) -> Option<(u64, Meta)> {
    if slot.len() < RECORD_HEADER_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(slot[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(slot[4..12].try_into().unwrap());
    let len = u32::from_le_bytes(slot[12..16].try_into().unwrap()) as usize;
    if seq == 0 || RECORD_HEADER_LEN + len > slot.len() {
        return None;
    }
    let rec = &slot[..RECORD_HEADER_LEN + len];
    if crc32c::crc32c(&rec[4..]) != crc {
        return None;
    }
    let (meta, _) =
        bincode::serde::decode_from_slice(&rec[RECORD_HEADER_LEN..], crate::codec::config())
            .ok()?;
    Some((seq, meta))
}

impl MetaFile {
    /// Opens the metadata file at `path`, or creates it durably if it does not exist.
    ///
    /// `expect_existing` says the directory already holds log data: then a missing or unreadable
    /// metadata file is corruption (the vote would be forgotten), not a fresh start.
    pub async fn open(
        disk: &dyn Disk,
        dir: &Path,
        name: &str,
        expect_existing: bool,
    ) -> Result<Self> {
        let path = dir.join(name);
        let names = disk.list(dir).map_err(|e| Error::io(dir, e))?;
        if !names.iter().any(|n| n == name) {
            if expect_existing {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason: "metadata file is missing but log segments exist".into(),
                });
            }
            let file = disk.create(&path).map_err(|e| Error::io(&path, e))?;
            let mut meta = MetaFile {
                path: path.clone(),
                file,
                seq: 0,
                durable_slot: 1,
                current: Meta::default(),
                dirty: false,
            };
            meta.write(Meta::default())?;
            meta.sync().await?;
            disk.sync_dir(dir).await.map_err(|e| Error::io(dir, e))?;
            return Ok(meta);
        }

        let file = disk.open(&path).map_err(|e| Error::io(&path, e))?;
        let mut best: Option<(u64, u64, Meta)> = None;
        for slot in 0..2u64 {
            let mut buf = vec![0u8; SLOT_LEN as usize];
            let n = file
                .read_at(&mut buf, slot * SLOT_LEN)
                .map_err(|e| Error::io(&path, e))?;
            buf.truncate(n);
            if let Some((seq, meta)) = decode(&buf)
                && best.as_ref().is_none_or(|(s, _, _)| seq > *s)
            {
                best = Some((seq, slot, meta));
            }
        }
        match best {
            Some((seq, slot, current)) => Ok(MetaFile {
                path,
                file,
                seq,
                durable_slot: slot,
                current,
                dirty: false,
            }),
            None if !expect_existing => {
                // Created but never synced before a crash: nothing was ever acknowledged.
                let mut meta = MetaFile {
                    path,
                    file,
                    seq: 0,
                    durable_slot: 1,
                    current: Meta::default(),
                    dirty: false,
                };
                meta.write(Meta::default())?;
                meta.sync().await?;
                Ok(meta)
            }
            None => Err(Error::Corrupt {
                path,
                offset: 0,
                reason: "no valid metadata record in either slot".into(),
            }),
        }
    }

    /// The current metadata.
    pub fn get(&self) -> &Meta {
        &self.current
    }

    /// Writes a new record without syncing it.
    pub fn write(&mut self, meta: Meta) -> Result<()> {
        self.seq += 1;
        let slot = 1 - self.durable_slot;
        let rec = encode(self.seq, &meta);
        self.file
            .write_at(&rec, slot * SLOT_LEN)
            .map_err(|e| Error::io(&self.path, e))?;
        self.current = meta;
        self.dirty = true;
        Ok(())
    }

    /// Makes the newest record durable.
    pub async fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.file
            .clone()
            .sync()
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        self.durable_slot = 1 - self.durable_slot;
        self.dirty = false;
        Ok(())
    }

    /// Rewrites the newest record in place, byte for byte, and syncs it. After a failed fsync
    /// the record this process read back may exist only in the page cache; rewriting identical
    /// bytes into the same slot makes it durable, and a torn rewrite changes nothing.
    pub async fn repersist(&mut self) -> Result<()> {
        if self.dirty {
            return self.sync().await;
        }
        let mut rec = vec![0u8; SLOT_LEN as usize];
        let n = self
            .file
            .read_at(&mut rec, self.durable_slot * SLOT_LEN)
            .map_err(|e| Error::io(&self.path, e))?;
        rec.truncate(n);
        self.file
            .write_at(&rec, self.durable_slot * SLOT_LEN)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file
            .clone()
            .sync()
            .await
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes and syncs.
    pub async fn store(&mut self, meta: Meta) -> Result<()> {
        self.write(meta)?;
        self.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;
    use crate::types::log_id;

    fn vote(term: u64, node: u64) -> Vote {
        Vote::new(term, node)
    }

    #[tokio::test]
    async fn synced_vote_survives_any_crash_of_later_unsynced_writes() {
        for seed in 0..200 {
            let disk = SimDisk::new(seed);
            let dir = Path::new("/n1");
            disk.create_dir_all(dir).unwrap();
            let mut m = MetaFile::open(&disk, dir, "meta", false).await.unwrap();
            let durable = Meta {
                vote: Some(vote(3, 2)),
                ..Meta::default()
            };
            m.store(durable.clone()).await.unwrap();
            // Many unsynced committed-index updates; then a crash.
            for i in 0..5 {
                let mut next = m.get().clone();
                next.committed = Some(log_id(3, i));
                m.write(next).unwrap();
            }
            disk.crash();
            let m = MetaFile::open(&disk, dir, "meta", true).await.unwrap();
            assert_eq!(m.get().vote, durable.vote, "seed {seed}");
        }
    }

    #[tokio::test]
    async fn missing_meta_with_log_data_is_corruption() {
        let disk = SimDisk::new(1);
        let dir = Path::new("/n1");
        disk.create_dir_all(dir).unwrap();
        let err = MetaFile::open(&disk, dir, "meta", true)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
