//! The `[storage]`, `[retention]`, `[transactions]`, `[dedup]` and `[timeouts]` tables of a broker's configuration and
//! the checks of their values (split from `config/mod.rs`, which holds the node's own and the
//! cluster's tables).

use std::time::Duration;

use raft_store::log::FlushMode;
use serde::Deserialize;

/// Default floor of free disk space below which sends are refused, MiB.
pub const DEFAULT_MIN_FREE_MB: u64 = 128;

/// Default log segment size, MiB (retention deletes whole segments).
pub const DEFAULT_SEGMENT_MB: f64 = 256.0;

/// Default entries between state snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// `[storage]`: how the node treats its disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageToml {
    /// Refuse sends while the data directory's filesystem has less than this many MiB free
    /// (receives and acks go on; sends resume once space is back). 0 turns it off.
    pub min_free_mb: u64,
    /// Log segment size, MiB (fractions allowed, down to 1/16): the unit retention deletes.
    pub segment_mb: f64,
    /// While less than this many MiB are free, retention deletes the oldest segments early,
    /// expired or not (RocketMQ's forced clean-up). 0 (the default): never; sends are refused
    /// at `min_free_mb` instead. When set, it must be above `min_free_mb`.
    pub delete_below_free_mb: u64,
    /// Read and CRC-check every sealed log segment at start-up, so damage anywhere stops the
    /// node before it serves. Off (the default), only the active segment is scanned and each
    /// sealed one is opened from the summary written when it was sealed (its last frame is
    /// checked); a damaged entry is then found when it is read. Start-up time follows the log
    /// size when on, the unflushed tail when off.
    pub verify_log_on_start: bool,
    /// Snapshot the replicated state after this many log entries (one entry is a batch of
    /// commands). A snapshot is also the checkpoint of the consume queues' files: a restart
    /// replays at most this many entries after it.
    pub snapshot_every: u64,
}

impl Default for StorageToml {
    fn default() -> Self {
        Self {
            min_free_mb: DEFAULT_MIN_FREE_MB,
            segment_mb: DEFAULT_SEGMENT_MB,
            delete_below_free_mb: 0,
            verify_log_on_start: false,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// `[retention]`: how long messages are kept. Every node of a cluster should agree (the
/// group's leader applies its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionToml {
    /// Delete a log segment once its newest message is older than this many hours (RocketMQ's
    /// `fileReservedTime`, 72 by default); 0 keeps messages regardless of age.
    pub max_age_hours: f64,
    /// Delete the oldest segments while a group's log is larger than this many MiB; 0 (the
    /// default) sets no limit.
    pub max_mb_per_group: u64,
    /// How often retention runs, seconds.
    pub check_secs: f64,
}

impl Default for RetentionToml {
    fn default() -> Self {
        Self {
            max_age_hours: 72.0,
            max_mb_per_group: 0,
            check_secs: 10.0,
        }
    }
}

impl RetentionToml {
    /// Validates and converts.
    pub fn settings(&self) -> Result<crate::retention::RetentionSettings, String> {
        let hours = self.max_age_hours;
        if !hours.is_finite() || !(0.0..=24.0 * 365.0 * 100.0).contains(&hours) {
            return Err(format!(
                "retention.max_age_hours: {hours} is not between 0 and 876000"
            ));
        }
        if hours > 0.0 && hours * 3600.0 < 1.0 {
            return Err(format!(
                "retention.max_age_hours: {hours} is under a second (0 keeps messages)"
            ));
        }
        let check = self.check_secs;
        if !check.is_finite() || !(0.01..=3600.0).contains(&check) {
            return Err(format!(
                "retention.check_secs: {check} is not between 0.01 and 3600"
            ));
        }
        let max_bytes = match self.max_mb_per_group {
            0 => None,
            mb => Some(
                mb.checked_mul(1 << 20)
                    .ok_or_else(|| format!("retention.max_mb_per_group: {mb} is too large"))?,
            ),
        };
        Ok(crate::retention::RetentionSettings {
            max_age: (hours > 0.0).then(|| Duration::from_secs_f64(hours * 3600.0)),
            max_bytes,
            interval: Duration::from_secs_f64(check),
            delete_below_free: None,
        })
    }
}

/// `[transactions]`: when undecided transactions are checked back. Every node should agree
/// (each check's schedule comes from the leader that proposes it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionsToml {
    /// First check-back this many seconds after a half message is stored (unless the producer
    /// says otherwise); RocketMQ's `transactionTimeOut` is 6.
    pub check_after_secs: f64,
    /// Then one every this many seconds (RocketMQ's documentation: 60).
    pub check_interval_secs: f64,
    /// Check-backs before the transaction ends (RocketMQ's `transactionCheckMax`: 15).
    pub max_checks: u32,
    /// Then: `"discard"` (as a rollback; RocketMQ), or `"keep"`: undecided and no longer
    /// checked until an operator decides (`raftmq admin tx commit | rollback`).
    pub after_max: String,
}

impl Default for TransactionsToml {
    fn default() -> Self {
        Self {
            check_after_secs: 6.0,
            check_interval_secs: 60.0,
            max_checks: 15,
            after_max: "discard".into(),
        }
    }
}

impl TransactionsToml {
    /// Validates and converts.
    pub fn settings(&self) -> Result<crate::checkback::TxSettings, String> {
        let max = crate::limits::MAX_TX_CHECK_MS as f64 / 1000.0;
        let secs = |what: &str, v: f64| {
            if v.is_finite() && (1.0..=max).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!(
                    "transactions.{what}: {v} is not between 1 and {max}"
                ))
            }
        };
        if !(1..=crate::limits::MAX_TX_CHECKS).contains(&self.max_checks) {
            return Err(format!(
                "transactions.max_checks: {} is not between 1 and {}",
                self.max_checks,
                crate::limits::MAX_TX_CHECKS
            ));
        }
        let after_max = match self.after_max.as_str() {
            "discard" => crate::command::AfterMax::Discard,
            // A kept transaction holds retention back until an operator decides it
            // (`raftmq admin tx`; tests/cluster.rs keeps two through a leader's SIGKILL).
            "keep" => crate::command::AfterMax::Keep,
            other => {
                return Err(format!(
                    "transactions.after_max: {other:?} is neither \"discard\" nor \"keep\""
                ));
            }
        };
        Ok(crate::checkback::TxSettings {
            check_after: secs("check_after_secs", self.check_after_secs)?,
            check_interval: secs("check_interval_secs", self.check_interval_secs)?,
            max_checks: self.max_checks,
            after_max,
        })
    }
}

/// `[dedup]`: the idempotent producer. A send whose topic and message id were stored within
/// the window gets the first store's receipt instead of a second copy (a client's resend after
/// an unknown outcome). Every node should agree: each group's leader proposes its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupToml {
    /// How long an id is remembered, seconds (0: no deduplication).
    pub window_secs: f64,
    /// Most ids a group remembers (about 110 bytes each, in memory and in every snapshot);
    /// the oldest go first, so a busy group's window is shorter than `window_secs`.
    pub max_ids: u64,
}

impl Default for DedupToml {
    fn default() -> Self {
        Self {
            window_secs: 600.0,
            max_ids: 300_000,
        }
    }
}

impl DedupToml {
    /// The defaults as a window.
    pub fn window(&self) -> crate::command::DedupWindow {
        crate::command::DedupWindow {
            window_ms: (self.window_secs * 1000.0) as u64,
            max_ids: self.max_ids,
        }
    }

    /// Validates and converts.
    pub fn settings(&self) -> Result<crate::command::DedupWindow, String> {
        let max = crate::limits::MAX_DEDUP_WINDOW_MS as f64 / 1000.0;
        if !(self.window_secs.is_finite() && (0.0..=max).contains(&self.window_secs)) {
            return Err(format!(
                "dedup.window_secs: {} is not between 0 and {max}",
                self.window_secs
            ));
        }
        if self.max_ids > crate::limits::MAX_DEDUP_IDS {
            return Err(format!(
                "dedup.max_ids: {} is more than {}",
                self.max_ids,
                crate::limits::MAX_DEDUP_IDS
            ));
        }
        Ok(self.window())
    }
}

/// Raft timing, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsToml {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// How long a request waits for an election before failing.
    pub leader_wait_ms: u64,
    /// How long a node keeps forwarding after handing leadership over on shutdown.
    pub shutdown_drain_ms: u64,
}

impl Default for TimeoutsToml {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_min_ms: 200,
            election_max_ms: 400,
            leader_wait_ms: 3000,
            shutdown_drain_ms: 1500,
        }
    }
}

/// `[storage] delete_below_free_mb` in bytes (`None`: off), checked against `min_free_mb`:
/// early deletion must start before sends are refused.
pub fn delete_below_free(mb: u64, min_free_mb: u64) -> Result<Option<u64>, String> {
    if mb == 0 {
        return Ok(None);
    }
    if mb <= min_free_mb {
        return Err(format!(
            "storage.delete_below_free_mb ({mb}) must be above storage.min_free_mb \
             ({min_free_mb}): early deletion has to start before sends are refused"
        ));
    }
    mb.checked_mul(1 << 20)
        .map(Some)
        .ok_or_else(|| format!("storage.delete_below_free_mb: {mb} is too large"))
}

/// The log segment size for `[storage] segment_mb`, checked. Small segments (from 64 KiB)
/// let tests and small deployments see retention delete within seconds.
pub fn segment_bytes(mb: f64) -> Result<u64, String> {
    if !(0.0625..=4096.0).contains(&mb) {
        return Err(format!(
            "storage.segment_mb: {mb} is not between 0.0625 (64 KiB) and 4096"
        ));
    }
    Ok((mb * f64::from(1u32 << 20)) as u64)
}

impl TimeoutsToml {
    /// Raft needs heartbeats well inside the election timeout.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0
            || self.election_min_ms <= 2 * self.heartbeat_ms
            || self.election_max_ms <= self.election_min_ms
        {
            return Err(
                "timeouts: need 0 < 2*heartbeat_ms < election_min_ms < election_max_ms".into(),
            );
        }
        Ok(())
    }
}

/// The log durability a `flush` value names.
pub(super) fn flush_mode(flush: &str) -> Result<FlushMode, String> {
    match flush {
        "sync" => Ok(FlushMode::Sync),
        "async" => Ok(FlushMode::Async),
        other => Err(format!(
            "flush: {other:?} is neither \"sync\" nor \"async\""
        )),
    }
}
