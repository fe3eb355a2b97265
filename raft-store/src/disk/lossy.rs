//! [`LossyDisk`]: the local filesystem, except that file writes stay in this process's memory
//! until [`DiskFile::sync`] — so a SIGKILL loses exactly what was not synced, as a power loss
//! would. A test mode for the real-process chaos suite (`raftmq broker --test-lossy-disk`):
//! without it, a killed process's unsynced writes survive in the kernel's page cache and a
//! bug that acknowledges before fsync cannot show.
//!
//! Reads see the unsynced writes (as with a page cache). Directory operations (create, rename,
//! remove) go straight to the filesystem, as in LazyFS; they are made durable by the
//! directory syncs the log already does. Handles to one path share one buffer, and a rename
//! carries the buffer along.

use std::collections::BTreeMap;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use super::BoxFuture;
use super::Disk;
use super::DiskFile;
use super::RealDisk;

/// An unsynced change, replayed in order.
#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

struct Inner {
    file: File,
    pending: Vec<Pending>,
}

/// One file: the real file plus what was written since the last sync.
struct Shared {
    inner: Mutex<Inner>,
}

impl Inner {
    /// Length with the pending changes.
    fn len(&self) -> io::Result<u64> {
        let mut len = self.file.metadata()?.len();
        for p in &self.pending {
            len = match p {
                Pending::Write(off, data) => len.max(off + data.len() as u64),
                Pending::SetLen(l) => *l,
            };
        }
        Ok(len)
    }

    /// Reads `buf.len()` bytes at `offset` as the pending changes would leave them.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut len = self.file.metadata()?.len();
        let mut n = 0;
        while n < buf.len() {
            match self.file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf[n..].fill(0);
        let end = offset + buf.len() as u64;
        for p in &self.pending {
            match p {
                Pending::Write(off, data) => {
                    let (a, b) = ((*off).max(offset), (off + data.len() as u64).min(end));
                    if a < b {
                        let src = &data[(a - off) as usize..(b - off) as usize];
                        buf[(a - offset) as usize..(b - offset) as usize].copy_from_slice(src);
                    }
                    len = len.max(off + data.len() as u64);
                }
                Pending::SetLen(l) => {
                    // Bytes past a truncation are gone (and read as zeros if it later grows).
                    if *l < end {
                        buf[(l.saturating_sub(offset)) as usize..].fill(0);
                    }
                    len = *l;
                }
            }
        }
        Ok(len.saturating_sub(offset).min(buf.len() as u64) as usize)
    }

    /// Writes the pending changes to the file (not yet synced).
    fn apply(&mut self) -> io::Result<()> {
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Write(off, data) => self.file.write_all_at(&data, off)?,
                Pending::SetLen(l) => self.file.set_len(l)?,
            }
        }
        Ok(())
    }
}

/// See the module docs.
#[derive(Default, Clone)]
pub struct LossyDisk {
    real: RealDisk,
    files: Arc<Mutex<BTreeMap<PathBuf, Arc<Shared>>>>,
}

impl LossyDisk {
    /// A lossy view of the local filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn handle(&self, path: &Path, file: Option<File>) -> io::Result<Arc<dyn DiskFile>> {
        let mut files = self.files.lock().unwrap();
        let shared = match (files.get(path), file) {
            (Some(s), None) => s.clone(),
            (_, file) => {
                let file = match file {
                    Some(f) => f,
                    None => OpenOptions::new().read(true).write(true).open(path)?,
                };
                let s = Arc::new(Shared {
                    inner: Mutex::new(Inner {
                        file,
                        pending: Vec::new(),
                    }),
                });
                files.insert(path.to_path_buf(), s.clone());
                s
            }
        };
        Ok(Arc::new(LossyFile(shared)))
    }
}

struct LossyFile(Arc<Shared>);

impl Disk for LossyDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.real.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.real.list(dir)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        self.handle(path, None)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        self.handle(path, Some(file))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.files.lock().unwrap().remove(path);
        self.real.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.files.lock().unwrap();
        self.real.rename(from, to)?;
        files.remove(to);
        if let Some(s) = files.remove(from) {
            files.insert(to.to_path_buf(), s);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> BoxFuture<io::Result<()>> {
        self.real.sync_dir(dir)
    }

    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        self.real.available_bytes(path)
    }
}

impl DiskFile for LossyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.inner.lock().unwrap().read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut inner = self.0.inner.lock().unwrap();
        inner.pending.push(Pending::Write(offset, buf.to_vec()));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.0.inner.lock().unwrap().len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut inner = self.0.inner.lock().unwrap();
        inner.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync(self: Arc<Self>) -> BoxFuture<io::Result<()>> {
        Box::pin(async move {
            crate::rt::spawn_blocking(move || {
                // Once in the kernel's page cache a write survives a SIGKILL, so it counts as
                // durable from here; the fdatasync then covers a real power loss too.
                let mut inner = self.0.inner.lock().unwrap();
                inner.apply()?;
                let file = inner.file.try_clone()?;
                drop(inner);
                file.sync_data()
            })
            .await?
        })
    }
}

// Real files and a real blocking pool: not under the simulator.
#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    fn read_all(f: &dyn DiskFile) -> Vec<u8> {
        let mut buf = vec![0; f.len().unwrap() as usize];
        let n = f.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn unsynced_writes_are_visible_but_vanish_with_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let disk = LossyDisk::new();
        let f = disk.create(&path).unwrap();
        f.write_at(b"entry1;", 0).unwrap();
        f.clone().sync().await.unwrap();
        f.write_at(b"entry2;", 7).unwrap();
        // Another handle to the same file sees the unsynced write.
        let g = disk.open(&path).unwrap();
        assert_eq!(read_all(&*g), b"entry1;entry2;");
        // The process dies: a fresh disk (a restarted process) sees only what was synced.
        drop((f, g, disk));
        let after = LossyDisk::new().open(&path).unwrap();
        assert_eq!(read_all(&*after), b"entry1;");
    }

    #[tokio::test]
    async fn truncation_and_overwrites_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let disk = LossyDisk::new();
        let f = disk.create(&path).unwrap();
        f.write_at(b"abcdef", 0).unwrap();
        f.set_len(2).unwrap();
        f.write_at(b"Z", 4).unwrap();
        assert_eq!(f.len().unwrap(), 5);
        assert_eq!(read_all(&*f), b"ab\0\0Z");
        f.clone().sync().await.unwrap();
        drop((f, disk));
        assert_eq!(
            read_all(&*LossyDisk::new().open(&path).unwrap()),
            b"ab\0\0Z"
        );
    }

    #[tokio::test]
    async fn a_rename_carries_the_unsynced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tmp"), dir.path().join("b"));
        let disk = LossyDisk::new();
        let f = disk.create(&a).unwrap();
        f.write_at(b"meta", 0).unwrap();
        disk.rename(&a, &b).unwrap();
        assert_eq!(read_all(&*disk.open(&b).unwrap()), b"meta");
        f.clone().sync().await.unwrap();
        drop((f, disk));
        assert_eq!(read_all(&*LossyDisk::new().open(&b).unwrap()), b"meta");
    }
}
