//! Refuses sends while the disk holding a node's data is nearly full (issue 12): with less
//! than `min_free_bytes` free, a send is refused at once with `HA_NOT_AVAILABLE` and the
//! reason (nothing was proposed, so the client may try another broker), while receives, acks,
//! offset commits and reads go on, so consumers can drain. Once the free space is back above
//! the floor plus a margin, sends are accepted again, without a restart.
//!
//! The check runs before proposing, so the log itself rarely meets ENOSPC; a write that still
//! does (another process filled the disk between two readings) stops the replica, and the
//! process exits for its supervisor (docs/operations.md).

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::time::Duration;

use raft_store::disk::Disk;

use crate::core::BrokerCore;
use crate::error::BrokerError;
use crate::error::Result;

const MIB: u64 = 1 << 20;

/// The refusal state; see the module docs.
#[derive(Debug, Default)]
pub struct StorageGuard {
    /// Refuse below this many free bytes; 0 turns the guard off.
    min_free: u64,
    /// Why sends are refused, while they are.
    refusal: Mutex<Option<String>>,
    /// The last reading of free bytes (0 before the first).
    last_free: std::sync::atomic::AtomicU64,
    /// Whether there has been a reading (a disk that cannot say never gives one).
    has_reading: std::sync::atomic::AtomicBool,
}

impl StorageGuard {
    /// A guard refusing sends below `min_free` free bytes (0: never).
    pub fn new(min_free: u64) -> Self {
        Self {
            min_free,
            refusal: Mutex::new(None),
            last_free: std::sync::atomic::AtomicU64::new(0),
            has_reading: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Free space needed to accept sends again: the floor plus an eighth (at least 1 MiB), so
    /// a disk hovering at the floor does not flap.
    fn resume_at(&self) -> u64 {
        self.min_free + (self.min_free / 8).max(MIB)
    }

    /// Records one reading of the free bytes of the filesystem holding `dir`; returns the new
    /// state (true: refusing) when it changed.
    pub fn observe(&self, dir: &Path, available: u64) -> Option<bool> {
        self.last_free
            .store(available, std::sync::atomic::Ordering::Relaxed);
        self.has_reading
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.min_free == 0 {
            return None;
        }
        let mut refusal = self.refusal.lock().unwrap();
        match refusal.is_some() {
            false if available < self.min_free => {
                *refusal = Some(format!(
                    "the disk holding {} has {} MiB free, less than the {} MiB floor \
                     (storage.min_free_mb): sends are refused until space is freed; \
                     receives and acks go on",
                    dir.display(),
                    available / MIB,
                    self.min_free / MIB
                ));
                Some(true)
            }
            true if available >= self.resume_at() => {
                *refusal = None;
                Some(false)
            }
            _ => None,
        }
    }

    /// Free bytes at the last reading (`None` before the first, or if the disk cannot say).
    pub fn free_bytes(&self) -> Option<u64> {
        self.has_reading
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| self.last_free.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Ok while sends are accepted; the reason otherwise (a definite refusal).
    pub fn check(&self) -> Result<()> {
        match &*self.refusal.lock().unwrap() {
            Some(why) => Err(BrokerError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Why sends are refused (empty while accepted), and the free bytes last read (0: none
    /// yet, or a disk that cannot tell), for `raftmq admin status`.
    pub fn report(&self) -> (String, u64) {
        (
            self.refusal.lock().unwrap().clone().unwrap_or_default(),
            self.last_free.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// Reads the free space of `dir` every `period` and updates the node's guard, until the node
/// is gone. A disk that cannot tell (the simulated one) leaves the guard off.
pub async fn watch(core: Weak<BrokerCore>, disk: Arc<dyn Disk>, dir: PathBuf, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match disk.available_bytes(&dir) {
            Ok(Some(available)) => match core.storage.observe(&dir, available) {
                Some(true) => tracing::warn!(
                    dir = %dir.display(),
                    free_mib = available / MIB,
                    "disk nearly full: refusing sends"
                ),
                Some(false) => tracing::info!(
                    dir = %dir.display(),
                    free_mib = available / MIB,
                    "disk space is back: accepting sends again"
                ),
                None => {}
            },
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read free disk space")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_floor_and_resumes_above_it_with_a_margin() {
        let g = StorageGuard::new(16 * MIB);
        let dir = Path::new("/data");
        assert!(g.check().is_ok());
        assert_eq!(g.observe(dir, 20 * MIB), None);
        assert_eq!(g.observe(dir, 15 * MIB), Some(true));
        let why = g.check().unwrap_err().to_string();
        assert!(
            why.contains("15 MiB free") && why.contains("16 MiB floor"),
            "{why}"
        );
        // Just above the floor is not enough: no flapping.
        assert_eq!(g.observe(dir, 17 * MIB), None);
        assert!(g.check().is_err());
        assert_eq!(g.observe(dir, 18 * MIB), Some(false));
        assert!(g.check().is_ok());
    }

    #[test]
    fn a_zero_floor_never_refuses() {
        let g = StorageGuard::new(0);
        assert_eq!(g.observe(Path::new("/d"), 0), None);
        assert!(g.check().is_ok());
    }
}
