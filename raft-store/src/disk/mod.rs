//! The storage device every byte of RaftMQ's durable state goes through.
//!
//! [`Disk`] and [`DiskFile`] are a small POSIX-like surface (positional reads and writes,
//! `fdatasync`, directory sync) with two implementations:
//! - [`RealDisk`]: the local filesystem, with `pwrite`/`pread`, `fdatasync` and directory fsync
//!   on create, rename and unlink;
//! - [`LossyDisk`]: the local filesystem with file writes held in the process until synced,
//!   so a SIGKILL acts as a power loss (a test mode for the real-process chaos suite);
//! - [`SimDisk`]: an in-memory device with durable and pending state per file and directory,
//!   which loses what was not synced when [`SimDisk::crash`] is called, can tear the last
//!   unsynced write, and injects EIO, ENOSPC and slow fsyncs.
//!
//! Callers must treat an error from [`DiskFile::sync`] or [`Disk::sync_dir`] as fatal: after a
//! failed fsync the kernel may have dropped the dirty pages, so retrying and carrying on could
//! acknowledge data that is gone (the "fsyncgate" lesson from PostgreSQL).

mod lossy;
mod real;
mod sim;

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use lossy::LossyDisk;
pub use real::RealDisk;
pub use sim::SimDisk;
pub use sim::SimDiskFaults;
pub use sim::SimDiskStats;

/// A boxed, sendable future; the disk's only async operations are syncs.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A storage device: a tree of directories holding files.
pub trait Disk: Send + Sync + 'static {
    /// Creates `dir` and any missing parents. New directory entries are made durable before
    /// this returns (startup path only, so it may block).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Names of the files in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;

    /// Creates a new, empty file (truncating one that exists). The directory entry is durable
    /// only after [`Disk::sync_dir`] on the parent.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;

    /// Removes a file. Durable only after [`Disk::sync_dir`] on the parent.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to` (replacing `to`). Durable only after
    /// [`Disk::sync_dir`] on the parent(s).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> BoxFuture<io::Result<()>>;

    /// Bytes an unprivileged writer may still write on the filesystem holding `path`, when
    /// the device can tell (the simulated disk cannot: `None`).
    fn available_bytes(&self, _path: &Path) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// An open file on a [`Disk`].
#[allow(clippy::len_without_is_empty)] // a fallible length; emptiness is never asked
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (short at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed. Not durable until
    /// [`DiskFile::sync`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Current length in bytes (including unsynced writes).
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends the file. Not durable until [`DiskFile::sync`].
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes every write issued before this call durable (`fdatasync`).
    fn sync(self: Arc<Self>) -> BoxFuture<io::Result<()>>;
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old contents or the new, never
/// a mix: written to `dir/tmp`, synced, renamed over `name`, the directory synced.
pub async fn replace_file(
    disk: &dyn Disk,
    dir: &Path,
    (tmp, name): (&str, &str),
    bytes: &[u8],
) -> crate::error::Result<()> {
    use crate::error::Error;
    let (tmp, dst) = (dir.join(tmp), dir.join(name));
    let file = disk.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_at(bytes, 0).map_err(|e| Error::io(&tmp, e))?;
    file.sync().await.map_err(|e| Error::io(&tmp, e))?;
    disk.rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    disk.sync_dir(dir).await.map_err(|e| Error::io(dir, e))
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "short read: wanted {} bytes at offset {offset}, file ended after {done}",
                    buf.len()
                ),
            ));
        }
        done += n;
    }
    Ok(())
}
