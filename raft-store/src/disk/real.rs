//! [`RealDisk`]: the local filesystem through `pread`/`pwrite`/`fdatasync`.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use super::BoxFuture;
use super::Disk;
use super::DiskFile;

/// The local filesystem. Paths are used as given.
#[derive(Debug, Default, Clone)]
pub struct RealDisk;

impl RealDisk {
    /// A handle to the local filesystem.
    pub fn new() -> Self {
        Self
    }
}

struct RealFile {
    file: File,
}

fn fsync_dir_blocking(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Find the first missing ancestor so that each new entry's parent can be synced.
        let mut missing: Vec<PathBuf> = Vec::new();
        let mut cur = Some(dir);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        std::fs::create_dir_all(dir)?;
        for p in missing.iter().rev() {
            let parent = match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fsync_dir_blocking(&parent)?;
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> BoxFuture<io::Result<()>> {
        let dir = dir.to_path_buf();
        Box::pin(async move { crate::rt::spawn_blocking(move || fsync_dir_blocking(&dir)).await? })
    }

    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt as _;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(
            (st.f_bavail as u64).saturating_mul(st.f_frsize as u64),
        ))
    }
}

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(self: Arc<Self>) -> BoxFuture<io::Result<()>> {
        Box::pin(async move { crate::rt::spawn_blocking(move || self.file.sync_data()).await? })
    }
}
