//! Open file handles of sealed segments, shared by one log and bounded: the least recently
//! used handle is closed once more than `cap` are open, and reopened when read again.
//!
//! Issue 12: every segment used to keep its descriptor for the life of the process, so a
//! long-retained log (thousands of segments per group, several groups per node) ran into the
//! descriptor limit. The active segment is not cached here: it stays pinned by its `Segment`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use crate::disk::Disk;
use crate::disk::DiskFile;
use crate::error::Error;
use crate::error::Result;

/// The cache; see the module docs.
pub(crate) struct FdCache {
    disk: Arc<dyn Disk>,
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Rises on every use; the smallest stamp is the least recently used handle.
    tick: u64,
    /// By segment base: (last use, handle).
    open: BTreeMap<u64, (u64, Arc<dyn DiskFile>)>,
}

impl Inner {
    fn insert(&mut self, base: u64, file: Arc<dyn DiskFile>, cap: usize) {
        self.tick += 1;
        self.open.insert(base, (self.tick, file));
        while self.open.len() > cap {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(b, _)| *b);
            match oldest {
                // A reader still holding the handle keeps it open until it is done.
                Some(b) => self.open.remove(&b),
                None => break,
            };
        }
    }
}

impl FdCache {
    /// A cache keeping at most `cap` (at least 1) handles open.
    pub fn new(disk: Arc<dyn Disk>, cap: usize) -> Arc<Self> {
        Arc::new(FdCache {
            disk,
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The handle of segment `base` at `path`, opening it if it is not cached.
    pub fn get(&self, base: u64, path: &Path) -> Result<Arc<dyn DiskFile>> {
        let mut inner = self.inner.lock().unwrap();
        inner.tick += 1;
        let now = inner.tick;
        if let Some((used, file)) = inner.open.get_mut(&base) {
            *used = now;
            return Ok(file.clone());
        }
        let file = self.disk.open(path).map_err(|e| Error::io(path, e))?;
        inner.insert(base, file.clone(), self.cap);
        Ok(file)
    }

    /// Takes over the handle of a segment just sealed (no need to reopen it).
    pub fn adopt(&self, base: u64, file: Arc<dyn DiskFile>) {
        self.inner.lock().unwrap().insert(base, file, self.cap);
    }

    /// Drops the handle of a segment being removed (or becoming active again).
    pub fn forget(&self, base: u64) {
        self.inner.lock().unwrap().open.remove(&base);
    }

    /// How many handles the cache holds open.
    pub fn open_count(&self) -> usize {
        self.inner.lock().unwrap().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;

    #[test]
    fn keeps_at_most_cap_handles_and_evicts_the_least_recently_used() {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(1));
        let dir = Path::new("/fds");
        disk.create_dir_all(dir).unwrap();
        for b in 0..5u64 {
            disk.create(&dir.join(format!("{b}"))).unwrap();
        }
        let cache = FdCache::new(disk, 2);
        let path = |b: u64| dir.join(format!("{b}"));
        cache.get(0, &path(0)).unwrap();
        cache.get(1, &path(1)).unwrap();
        cache.get(0, &path(0)).unwrap(); // 0 is now more recent than 1
        cache.get(2, &path(2)).unwrap(); // evicts 1
        assert_eq!(cache.open_count(), 2);
        let held: Vec<u64> = cache.inner.lock().unwrap().open.keys().copied().collect();
        assert_eq!(held, vec![0, 2]);
        cache.forget(0);
        assert_eq!(cache.open_count(), 1);
        // A missing file is an error, not a panic.
        assert!(cache.get(9, &path(9)).is_err());
    }
}
