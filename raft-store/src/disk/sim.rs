//! [`SimDisk`]: an in-memory device with crash semantics, for the simulator and for tests.
//!
//! Every file (inode) keeps a `durable` image, a `visible` image (what reads see, like the page
//! cache) and the list of writes issued since the last sync. Every directory keeps durable and
//! visible entry maps and the list of unsynced entry operations. [`SimDisk::crash`] models a
//! power loss: for each file and directory a random prefix of the unsynced operations survives
//! (possibly none), the first lost write may be torn (a prefix of its bytes lands), and the rest
//! is gone. Files no durable directory entry points to vanish. Handles opened before a crash
//! fail with EIO afterwards, as the process holding them is gone.
//!
//! Directories are created durably (RaftMQ only creates them at startup and syncs the parent).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::BoxFuture;
use super::Disk;
use super::DiskFile;

/// Faults a [`SimDisk`] injects. Probabilities are per operation; all default to off.
#[derive(Debug, Clone)]
pub struct SimDiskFaults {
    /// A write fails with EIO and writes nothing.
    pub write_eio: f64,
    /// A write that grows a file fails with ENOSPC and writes nothing.
    pub write_enospc: f64,
    /// An fsync (file or directory) fails with EIO; the writes it covered are dropped from the
    /// durable future (they stay visible until a crash), as Linux does after a failed fsync.
    pub sync_eio: f64,
    /// Latency of one fsync, drawn uniformly from this range (virtual time under madsim).
    pub sync_latency: (Duration, Duration),
    /// On crash, keep a random prefix of the unsynced operations and maybe tear the next write.
    /// When false a crash loses exactly the unsynced operations.
    pub crash_keeps_prefix: bool,
    /// The free space the device reports ([`Disk::available_bytes`]); plenty by default. A
    /// "nearly full" fault lowers it (writes themselves still succeed: `write_enospc` is the
    /// fault for a write that meets a full disk).
    pub reported_free: u64,
}

impl Default for SimDiskFaults {
    fn default() -> Self {
        Self {
            write_eio: 0.0,
            write_enospc: 0.0,
            sync_eio: 0.0,
            sync_latency: (Duration::ZERO, Duration::ZERO),
            crash_keeps_prefix: true,
            reported_free: u64::MAX,
        }
    }
}

/// Counters, for tests that assert on the number of fsyncs (group commit) or crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// File syncs completed successfully.
    pub file_syncs: u64,
    /// Directory syncs completed successfully.
    pub dir_syncs: u64,
    /// Writes accepted.
    pub writes: u64,
    /// Bytes accepted by writes.
    pub bytes_written: u64,
    /// Crashes simulated.
    pub crashes: u64,
    /// Unsynced writes that survived a crash whole.
    pub crash_kept_writes: u64,
    /// Writes torn by a crash.
    pub crash_torn_writes: u64,
    /// Unsynced writes lost by a crash.
    pub crash_lost_writes: u64,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FileOp {
    fn apply(&self, buf: &mut Vec<u8>) {
        match self {
            FileOp::Write { offset, data } => write_into(buf, *offset, data),
            FileOp::SetLen(len) => buf.resize(*len as usize, 0),
        }
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset as usize..end].copy_from_slice(data);
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    visible: Vec<u8>,
    /// Unsynced operations with their sequence numbers, oldest first.
    pending: Vec<(u64, FileOp)>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Link(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Unlink(name) => {
                entries.remove(name);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Dir {
    durable: BTreeMap<String, u64>,
    visible: BTreeMap<String, u64>,
    pending: Vec<(u64, DirOp)>,
}

#[derive(Debug)]
struct State {
    rng: SmallRng,
    faults: SimDiskFaults,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    next_ino: u64,
    next_seq: u64,
    inodes: BTreeMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    stats: SimDiskStats,
}

impl State {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    fn sync_latency(&mut self) -> Duration {
        let (lo, hi) = self.faults.sync_latency;
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.rng.random_range(0..=span))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.visible.get(&name))
            .copied()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", path.display()),
                )
            })
    }
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a file path: {}", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, name))
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("EIO (simulated): {what}"))
}

/// An in-memory disk with crash semantics; clones share one device.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk").finish_non_exhaustive()
    }
}

impl SimDisk {
    /// A new empty device whose crash and fault decisions come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: SmallRng::seed_from_u64(seed),
                faults: SimDiskFaults::default(),
                generation: 0,
                next_ino: 0,
                next_seq: 0,
                inodes: BTreeMap::new(),
                dirs: BTreeMap::new(),
                stats: SimDiskStats::default(),
            })),
        }
    }

    /// Replaces the fault configuration.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// The current fault configuration.
    pub fn faults(&self) -> SimDiskFaults {
        self.state.lock().unwrap().faults.clone()
    }

    /// Counters since creation.
    pub fn stats(&self) -> SimDiskStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// Simulates a power loss (see the module docs). Open handles die.
    pub fn crash(&self) {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        st.generation += 1;
        st.stats.crashes += 1;
        let keep_prefix = st.faults.crash_keeps_prefix;

        for inode in st.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            let keep = if keep_prefix {
                st.rng.random_range(0..=pending.len())
            } else {
                0
            };
            for (_, op) in &pending[..keep] {
                op.apply(&mut inode.durable);
            }
            st.stats.crash_kept_writes += keep as u64;
            st.stats.crash_lost_writes += (pending.len() - keep) as u64;
            if keep_prefix
                && let Some((_, FileOp::Write { offset, data })) = pending.get(keep)
                && data.len() > 1
                && st.rng.random::<bool>()
            {
                let torn = st.rng.random_range(1..data.len());
                write_into(&mut inode.durable, *offset, &data[..torn]);
                st.stats.crash_torn_writes += 1;
            }
            inode.visible = inode.durable.clone();
        }

        for dir in st.dirs.values_mut() {
            let pending = std::mem::take(&mut dir.pending);
            let mut keep = if keep_prefix {
                st.rng.random_range(0..=pending.len())
            } else {
                0
            };
            // Operations sharing a sequence number (the halves of a rename) survive together.
            while keep > 0 && keep < pending.len() && pending[keep].0 == pending[keep - 1].0 {
                keep += 1;
            }
            for (_, op) in &pending[..keep] {
                op.apply(&mut dir.durable);
            }
            dir.visible = dir.durable.clone();
        }

        // Files that no durable directory entry reaches are gone.
        let live: std::collections::BTreeSet<u64> = st
            .dirs
            .values()
            .flat_map(|d| d.durable.values().copied())
            .collect();
        st.inodes.retain(|ino, _| live.contains(ino));
    }

    /// Flips one bit of a file's durable and visible bytes (a media error). Returns false if the
    /// file or offset does not exist.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut st = self.state.lock().unwrap();
        let Ok(ino) = st.lookup(path) else {
            return false;
        };
        let inode = st.inodes.get_mut(&ino).expect("linked inode exists");
        let mask = 1u8 << (bit % 8);
        let mut flipped = false;
        for buf in [&mut inode.durable, &mut inode.visible] {
            if let Some(b) = buf.get_mut(offset as usize) {
                *b ^= mask;
                flipped = true;
            }
        }
        flipped
    }

    /// True if `needle` appears in the last `tail` durable bytes of some file: what would
    /// survive a power loss now (the oracle for "acknowledged only once durable"). Looks at
    /// file contents only, not whether a new file's directory entry is durable yet.
    pub fn durable_tail_contains(&self, needle: &[u8], tail: usize) -> bool {
        if needle.is_empty() {
            return true;
        }
        let st = self.state.lock().unwrap();
        st.inodes.values().any(|i| {
            let from = i.durable.len().saturating_sub(tail);
            i.durable[from..].windows(needle.len()).any(|w| w == needle)
        })
    }

    /// The visible length of a file, if it exists (for tests).
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        let st = self.state.lock().unwrap();
        let ino = st.lookup(path).ok()?;
        Some(st.inodes[&ino].visible.len() as u64)
    }

    fn link(&self, path: &Path, ino: u64) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut st = self.state.lock().unwrap();
        let seq = st.seq();
        let d = st.dir_mut(&dir)?;
        d.visible.insert(name.clone(), ino);
        d.pending.push((seq, DirOp::Link(name, ino)));
        Ok(())
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    generation: u64,
}

impl SimFile {
    fn with_inode<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock().unwrap();
        if st.generation != self.generation {
            return Err(eio("handle from before a crash"));
        }
        if !st.inodes.contains_key(&self.ino) {
            return Err(eio("file vanished"));
        }
        f(&mut st, self.ino)
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let mut cur = Some(dir);
        while let Some(p) = cur {
            st.dirs.entry(p.to_path_buf()).or_default();
            cur = p.parent();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.state.lock().unwrap();
        Ok(st.dir_mut(dir)?.visible.keys().cloned().collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let st = self.state.lock().unwrap();
        let ino = st.lookup(path)?;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
            generation: st.generation,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let (ino, generation) = {
            let mut st = self.state.lock().unwrap();
            let (dir, _) = split(path)?;
            st.dir_mut(&dir)?;
            st.next_ino += 1;
            let ino = st.next_ino;
            st.inodes.insert(ino, Inode::default());
            (ino, st.generation)
        };
        self.link(path, ino)?;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
            generation,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut st = self.state.lock().unwrap();
        st.lookup(path)?;
        let seq = st.seq();
        let d = st.dir_mut(&dir)?;
        d.visible.remove(&name);
        d.pending.push((seq, DirOp::Unlink(name)));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let mut st = self.state.lock().unwrap();
        let ino = st.lookup(from)?;
        st.dir_mut(&to_dir)?;
        // One sequence number: a crash keeps both halves of a same-directory rename or neither.
        let seq = st.seq();
        let d = st.dir_mut(&from_dir)?;
        d.visible.remove(&from_name);
        d.pending.push((seq, DirOp::Unlink(from_name)));
        let d = st.dir_mut(&to_dir)?;
        d.visible.insert(to_name.clone(), ino);
        d.pending.push((seq, DirOp::Link(to_name, ino)));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> BoxFuture<io::Result<()>> {
        let state = self.state.clone();
        let dir = dir.to_path_buf();
        Box::pin(async move {
            let (upto, generation, latency) = {
                let mut st = state.lock().unwrap();
                let generation = st.generation;
                let latency = st.sync_latency();
                let upto = st.next_seq;
                st.dir_mut(&dir)?;
                (upto, generation, latency)
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut st = state.lock().unwrap();
            if st.generation != generation {
                return Err(eio("crash during directory sync"));
            }
            let p = st.faults.sync_eio;
            let fail = st.chance(p);
            let d = st.dir_mut(&dir)?;
            let split_at = d.pending.partition_point(|(seq, _)| *seq <= upto);
            let done: Vec<_> = d.pending.drain(..split_at).collect();
            if fail {
                return Err(eio("directory fsync failed"));
            }
            for (_, op) in &done {
                op.apply(&mut d.durable);
            }
            st.stats.dir_syncs += 1;
            Ok(())
        })
    }

    fn available_bytes(&self, _path: &Path) -> io::Result<Option<u64>> {
        Ok(Some(self.state.lock().unwrap().faults.reported_free))
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(|st, ino| {
            let data = &st.inodes[&ino].visible;
            if offset as usize >= data.len() {
                return Ok(0);
            }
            let n = buf.len().min(data.len() - offset as usize);
            buf[..n].copy_from_slice(&data[offset as usize..offset as usize + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_inode(|st, ino| {
            if st.chance(st.faults.write_eio) {
                return Err(eio("write failed"));
            }
            let grows = offset as usize + buf.len() > st.inodes[&ino].visible.len();
            if grows && st.chance(st.faults.write_enospc) {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "ENOSPC (simulated)",
                ));
            }
            let seq = st.seq();
            st.stats.writes += 1;
            st.stats.bytes_written += buf.len() as u64;
            let inode = st.inodes.get_mut(&ino).expect("checked");
            write_into(&mut inode.visible, offset, buf);
            inode.pending.push((
                seq,
                FileOp::Write {
                    offset,
                    data: buf.to_vec(),
                },
            ));
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(|st, ino| Ok(st.inodes[&ino].visible.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_inode(|st, ino| {
            let seq = st.seq();
            let inode = st.inodes.get_mut(&ino).expect("checked");
            inode.visible.resize(len as usize, 0);
            inode.pending.push((seq, FileOp::SetLen(len)));
            Ok(())
        })
    }

    fn sync(self: Arc<Self>) -> BoxFuture<io::Result<()>> {
        Box::pin(async move {
            let (upto, latency) = self.with_inode(|st, _| Ok((st.next_seq, st.sync_latency())))?;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            self.with_inode(|st, ino| {
                let fail = st.chance(st.faults.sync_eio);
                let inode = st.inodes.get_mut(&ino).expect("checked");
                let split_at = inode.pending.partition_point(|(seq, _)| *seq <= upto);
                let done: Vec<_> = inode.pending.drain(..split_at).collect();
                if fail {
                    return Err(eio("fsync failed"));
                }
                for (_, op) in &done {
                    op.apply(&mut inode.durable);
                }
                st.stats.file_syncs += 1;
                Ok(())
            })
        })
    }
}
