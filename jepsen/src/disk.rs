//! Small disks for the `disk-full` nemesis: each node's data directory is its own tmpfs, and a
//! fault fills it with a preallocated file until less than the brokers' free-space floor is
//! left; healing deletes the file. The brokers must keep running, refuse sends with a clear
//! error while full, serve receives and acks, and accept sends again once space is back.
//!
//! The tmpfs mounts are undone when the run stops, so a disk-full run keeps its logs but not
//! its data directories.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use anyhow::bail;

/// Size of each node's tmpfs.
pub const SIZE_MIB: u64 = 384;
/// The brokers' free-space floor (`[storage] min_free_mb`).
pub const FLOOR_MIB: u64 = 64;
/// What a fault leaves free: well under the floor, enough for receives and acks.
const LEAVE_MIB: u64 = 24;
const MIB: u64 = 1 << 20;

/// The per-node tmpfs mounts of one run.
pub struct SmallDisks {
    mounts: Vec<PathBuf>,
}

fn filler(mount: &Path) -> PathBuf {
    mount.join("jepsen-filler")
}

/// Free bytes on the filesystem holding `path` (the broker's own reading: `RealDisk`).
fn available(path: &Path) -> anyhow::Result<u64> {
    use raft_store::disk::Disk as _;
    raft_store::disk::RealDisk::new()
        .available_bytes(path)
        .with_context(|| format!("statvfs {}", path.display()))?
        .context("the real disk always reports free space")
}

impl SmallDisks {
    /// Mounts a tmpfs at `data/n<i>` under `dir` for each of `nodes` nodes.
    pub fn mount(dir: &Path, nodes: usize) -> anyhow::Result<SmallDisks> {
        let mut disks = SmallDisks { mounts: Vec::new() };
        for i in 1..=nodes {
            let m = dir.join(format!("data/n{i}"));
            std::fs::create_dir_all(&m).with_context(|| format!("creating {}", m.display()))?;
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={SIZE_MIB}m"), "tmpfs"])
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                bail!(
                    "cannot mount a tmpfs at {} (the disk-full nemesis needs root)",
                    m.display()
                );
            }
            disks.mounts.push(m);
        }
        Ok(disks)
    }

    /// Fills node `i`'s disk until [`LEAVE_MIB`] is left; returns the MiB left.
    pub fn fill(&self, i: usize) -> anyhow::Result<u64> {
        let m = &self.mounts[i - 1];
        let free = available(m)?;
        let want = free.saturating_sub(LEAVE_MIB * MIB);
        if want > 0 {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(filler(m))?;
            let len = f.metadata()?.len();
            use std::os::fd::AsRawFd as _;
            // SAFETY: a valid open descriptor; preallocation (not a sparse file) takes the space.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, len as i64, want as i64) };
            if r != 0 {
                bail!(
                    "fallocate on {}: {}",
                    m.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(available(m)? / MIB)
    }

    /// Frees node `i`'s disk again.
    pub fn unfill(&self, i: usize) {
        let _ = std::fs::remove_file(filler(&self.mounts[i - 1]));
    }

    /// Frees every disk.
    pub fn unfill_all(&self) {
        for i in 1..=self.mounts.len() {
            self.unfill(i);
        }
    }

    /// Unmounts everything (idempotent).
    pub fn unmount(&mut self) {
        for m in self.mounts.drain(..) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

impl Drop for SmallDisks {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Unmounts node tmpfs mounts a killed earlier run left under `store` (a `data/n<i>` tmpfs
/// below it), unless another jepsen process is running.
pub fn sweep_stale(store: &Path) {
    let me = std::process::id();
    let others = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "jepsen")
        });
    let (Ok(mounts), Ok(store)) = (
        std::fs::read_to_string("/proc/mounts"),
        std::fs::canonicalize(store),
    ) else {
        return;
    };
    if others {
        return;
    }
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(fs), Some(at)) = (f.next(), f.next()) else {
            continue;
        };
        let at = Path::new(at);
        let node_dir = at
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('n'))
            && at.parent().is_some_and(|p| p.ends_with("data"));
        if fs == "tmpfs" && node_dir && at.starts_with(&store) {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}
