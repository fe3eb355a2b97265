//! Retention: deleting old messages, RocketMQ-style, by whole log segments.
//!
//! The Raft log is the commit log, so retention is deleting the oldest segments of a group's
//! log. It runs in two steps so every replica agrees on what is gone:
//!
//! 1. The **leader** decides ([`horizon`]): the sealed segments whose newest message is older
//!    than `max_age`, and the oldest ones beyond `max_bytes`. It proposes
//!    [`Command::Retain`] up to the last entry of the newest such segment, but never past an
//!    entry some member of the group does not hold yet: a member that needed a deleted entry
//!    could only catch up from a snapshot, which carries the state but no message bodies. (A
//!    member that is down therefore holds deletion back; remove it from the group if it will
//!    not return — docs/operations.md.)
//! 2. **Every replica** applies the command (consume queues start later, receive state follows)
//!    and then deletes its own segment files up to that index, after a snapshot covers it
//!    (openraft only purges what a snapshot holds).
//!
//! The leader's clock is the cluster clock, and the entry time of a segment's newest message is
//! the cluster time it was stored, so retention never looks at any node's wall clock directly.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use raft_store::log::SegmentInfo;
use raft_store::types::EntryPayload;

use crate::command;
use crate::command::Command;
use crate::command::Expire;
use crate::command::Retain;
use crate::replica::Replica;

/// RocketMQ's default `fileReservedTime`: 72 hours.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 3600);

/// How long messages are kept (`[retention]` in the broker config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Delete a segment once its newest message is older than this (`None`: never by age).
    pub max_age: Option<Duration>,
    /// Delete the oldest segments while a group's log is larger than this (`None`: no limit).
    pub max_bytes: Option<u64>,
    /// How often the leader checks, and every replica deletes what was decided.
    pub interval: Duration,
    /// While the leader's disk has fewer free bytes, delete the oldest segments early, expired
    /// or not, until it has this many again (RocketMQ's forced clean-up near a full disk).
    /// `None` (the default): never delete a message before its time; the free-space floor
    /// refuses sends instead.
    pub delete_below_free: Option<u64>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            max_age: Some(DEFAULT_MAX_AGE),
            max_bytes: None,
            interval: Duration::from_secs(10),
            delete_below_free: None,
        }
    }
}

/// How old a sealed segment's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// The highest cluster time (ms) stamped on its broker entries.
    Newest(u64),
    /// It holds no broker entry (only blank and membership entries).
    NoMessages,
    /// It could not be read: never deleted by age.
    Unknown,
}

/// One segment as retention sees it: its extent and how old its content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgedSegment {
    /// Index range and size.
    pub info: SegmentInfo,
    /// Its age (the active segment's is never looked at).
    pub age: Age,
}

/// The last log index retention may delete up to, given the group's segments (oldest first,
/// the last one active), the cluster time now, the limits, and this group's share of the
/// bytes the leader's disk lacks below the early-deletion watermark (`free`: the free bytes
/// as this group should count them; `None`: unknown); `None` if nothing is due. Whole
/// segments only, and never the active one. Pure, for tests.
pub fn horizon(
    segments: &[AgedSegment],
    now_ms: u64,
    s: &RetentionSettings,
    free: Option<u64>,
) -> Option<u64> {
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let mut doomed = 0; // this many of the oldest sealed segments go
    if let Some(age) = s.max_age {
        let cutoff = now_ms.saturating_sub(age.as_millis() as u64);
        doomed = sealed
            .iter()
            .take_while(|g| match g.age {
                Age::Newest(ms) => ms < cutoff,
                Age::NoMessages => true,
                Age::Unknown => false,
            })
            .count();
    }
    if let Some(max) = s.max_bytes {
        let mut total: u64 = segments.iter().map(|g| g.info.bytes).sum();
        let mut n = 0;
        for g in sealed {
            if total <= max {
                break;
            }
            total -= g.info.bytes;
            n += 1;
        }
        doomed = doomed.max(n);
    }
    if let (Some(want), Some(free)) = (s.delete_below_free, free)
        && free < want
    {
        // The oldest segments until their bytes cover the shortfall.
        let mut short = want - free;
        let mut n = 0;
        for g in sealed {
            if short == 0 {
                break;
            }
            short = short.saturating_sub(g.info.bytes);
            n += 1;
        }
        doomed = doomed.max(n);
    }
    sealed[..doomed].iter().rev().find_map(|g| g.info.last)
}

/// How old a sealed segment is: the highest stamp among its last broker entries (stamps are
/// not strictly rising across leaders), reading back from its end in chunks until one is
/// found; a read or decode failure makes it `Unknown` (never deleted by age).
fn segment_age(replica: &Replica, seg: &SegmentInfo) -> Age {
    let Some(last) = seg.last else {
        return Age::NoMessages;
    };
    let mut to = last;
    loop {
        let from = seg.first.max(to.saturating_sub(255));
        let Ok(entries) = replica.group().log().read(from..=to) else {
            return Age::Unknown;
        };
        let mut newest = None;
        for e in &entries {
            if let EntryPayload::Normal(r) = &e.payload {
                match command::decode_entry(&r.0) {
                    Ok(d) => newest = newest.max(Some(d.now_ms)),
                    Err(_) => return Age::Unknown,
                }
            }
        }
        if let Some(ms) = newest {
            return Age::Newest(ms);
        }
        if from <= seg.first {
            return Age::NoMessages;
        }
        to = from - 1;
    }
}

/// The highest log index every member holds, as the leader knows it, and the member holding
/// the least (`None` if it does not know for some member yet, e.g. just after an election).
fn held_by_all(replica: &Replica) -> Option<(u64, u64)> {
    let m = replica.metrics();
    let mut low = (m.last_log?.0, m.node);
    for v in m.voters.iter().filter(|v| **v != m.node) {
        low = low.min((m.replication.get(v).copied().flatten()?.0, *v));
    }
    // Learners (a replacement catching up) count too, and so does a node being added that
    // is not a learner yet (`Replica::hold_for_joining`).
    for (n, matched) in &m.replication {
        low = low.min((matched.map(|l| l.0)?, *n));
    }
    if let Some(j) = replica.joining_low() {
        low = low.min(j);
    }
    Some(low)
}

/// The highest log index every learner and every node being added holds, as the leader knows
/// it (0 for one it knows nothing of yet; `u64::MAX` if there are none). Voters are not
/// counted: a deletion was decided only up to what each of them held.
fn held_by_joiners(replica: &Replica) -> u64 {
    let m = replica.metrics();
    let learners = m.replication.iter().filter(|(n, _)| !m.voters.contains(n));
    let low = learners.map(|(_, l)| l.map_or(0, |l| l.0)).min();
    low.into_iter()
        .chain(replica.joining_low().map(|(l, _)| l))
        .min()
        .unwrap_or(u64::MAX)
}

/// Runs retention for one replica until it is dropped; see the module docs. `free` reads the
/// free bytes on the node's disk (`None`: unknown); `sharing` groups of this node share it
/// (each takes its share of early deletion).
pub async fn run(
    replica: Weak<Replica>,
    settings: RetentionSettings,
    free: impl Fn() -> Option<u64> + Send + 'static,
    sharing: u64,
) {
    // The age of each sealed segment, by (first, last) index: computed once per segment and
    // term of leadership (a follower's unsealed tail may be truncated and rewritten, and a
    // replica can lose and regain leadership between two checks). Unknown ages are retried.
    let mut ages: BTreeMap<(u64, Option<u64>), Age> = BTreeMap::new();
    let mut ages_term = 0;
    let mut held_back_warned = false;
    loop {
        tokio::time::sleep(settings.interval).await;
        let Some(r) = replica.upgrade() else { return };
        let log_start = r.read(|s| s.log_start);

        // Every replica: delete the segments the group agreed to delete. The leader, whose
        // log replication reads, keeps what a member still lacks: a learner added after the
        // decision, or a node being added (sim cluster_chaos 555144).
        // A follower with learners waits until they are voters: it may lead before they
        // have caught up, and it does not know how far they have.
        let upto = match (log_start, r.is_leader()) {
            (0, _) => 0,
            (s, false) if r.metrics().learners.is_empty() => s - 1,
            (_, false) => 0,
            (s, true) => held_by_joiners(&r).min(s - 1),
        };
        if upto > 0 {
            let m = r.metrics();
            if m.purged.is_none_or(|p| p.0 < upto) {
                if m.snapshot.is_none_or(|s| s.0 < upto) {
                    let _ = r.group().snapshot().await;
                } else if let Err(e) = r.request_purge(upto).await {
                    tracing::warn!(group = %r.group_id(), error = %e, "retention: purge failed");
                }
            }
        }

        // The leader: expire the messages of topics with an age of their own.
        if r.is_leader() {
            let decided_ms = r.leader_now();
            if r.read(|s| s.expiry_due(decided_ms)) {
                match r.submit(Command::Expire(Expire { decided_ms })).await {
                    Ok(crate::state::Outcome::Done) => {
                        tracing::debug!(group = %r.group_id(), "retention: topics expired")
                    }
                    Ok(other) => {
                        tracing::info!(group = %r.group_id(), ?other, "retention: expiry refused")
                    }
                    Err(e) => {
                        tracing::debug!(group = %r.group_id(), error = %e, "retention: expiry failed")
                    }
                }
            }
        }

        // The leader: decide which segments go next. A topic that keeps its messages longer
        // than the cluster holds the (shared) segments back.
        let settings = {
            let mut eff = settings.clone();
            let longest = r.read(|s| s.topic_max_age_ms.values().max().copied());
            if let (Some(a), Some(t)) = (eff.max_age, longest) {
                eff.max_age = Some(a.max(Duration::from_millis(t)));
            }
            eff
        };
        let off = settings.max_age.is_none()
            && settings.max_bytes.is_none()
            && settings.delete_below_free.is_none();
        if !r.is_leader() || off {
            ages.clear();
            r.set_retention_note(String::new());
            continue;
        }
        let term = r.group().term();
        if term != ages_term {
            ages.clear();
            ages_term = term;
        }
        let segs = r.group().log().segments();
        ages.retain(|(first, last), age| {
            *age != Age::Unknown && segs.iter().any(|s| s.first == *first && s.last == *last)
        });
        let sealed = segs.len().saturating_sub(1);
        let aged: Vec<AgedSegment> = segs
            .iter()
            .enumerate()
            .map(|(i, s)| AgedSegment {
                info: *s,
                age: if i < sealed {
                    *ages
                        .entry((s.first, s.last))
                        .or_insert_with(|| segment_age(&r, s))
                } else {
                    Age::Unknown
                },
            })
            .collect();
        // An estimate, not a stamp (a stamp that never reaches the log would leave this
        // replica's timeline ahead of the log's), on the timeline the Retain entry will be
        // stamped on; applying refuses a decision ahead of the entry's time.
        let decided_ms = r.leader_now();
        // Several groups led on this disk each free their share of the shortfall.
        let free = free().map(|f| {
            let want = settings.delete_below_free.unwrap_or(0);
            want.saturating_sub(want.saturating_sub(f) / sharing.max(1))
        });
        let Some(due) = horizon(&aged, decided_ms, &settings, free) else {
            continue;
        };
        if let (Some(want), Some(free)) = (settings.delete_below_free, free)
            && free < want
        {
            tracing::warn!(group = %r.group_id(), free_mib = free >> 20, want_mib = want >> 20,
                "retention: the disk is nearly full; deleting the oldest segments early, \
                 expired or not (storage.delete_below_free_mb)");
        }
        if due < log_start {
            continue;
        }
        let Some((held, by)) = held_by_all(&r) else {
            continue;
        };
        let mut upto = due.min(held);
        // A pending scheduled message is read from its entry when it fires: applying a
        // `Retain` keeps that entry and everything after it, whatever the age, size or free
        // space says (docs/operations.md). Say so, rather than propose deletions that apply
        // as nothing.
        // Likewise an undecided transaction's half message (a commit copies it).
        let oldest_timer = r.read(|s| match (s.timers.oldest_index(), s.txns.oldest_index()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
        if held < due {
            r.set_retention_note(format!(
                "held back: entries up to {due} are due for deletion, but node {by} holds \
                 only up to {held}"
            ));
        } else {
            r.set_retention_note(String::new());
        }
        if let Some(t) = oldest_timer
            && t <= upto
        {
            upto = t - 1;
            r.set_retention_note(format!(
                "held back: entries up to {due} are due for deletion, but entry {t} holds a \
                 scheduled message not delivered yet or an undecided transaction"
            ));
            if upto < log_start {
                continue;
            }
        }
        if upto < log_start {
            if !held_back_warned {
                tracing::warn!(group = %r.group_id(), due, held, node = by,
                    "retention held back: a member of the group lags (or is down); remove it \
                     if it will not return");
                held_back_warned = true;
            }
            continue;
        }
        held_back_warned = false;
        match r.submit(Command::Retain(Retain { upto, decided_ms })).await {
            Ok(crate::state::Outcome::Done) => {
                tracing::info!(group = %r.group_id(), upto, "retention: deleting messages in log entries up to {upto}")
            }
            Ok(other) => {
                tracing::info!(group = %r.group_id(), upto, ?other, "retention: refused")
            }
            Err(e) => {
                tracing::debug!(group = %r.group_id(), error = %e, "retention: proposal failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: u64, last: u64, bytes: u64, newest_ms: u64) -> AgedSegment {
        AgedSegment {
            info: SegmentInfo {
                first,
                last: Some(last),
                bytes,
            },
            age: Age::Newest(newest_ms),
        }
    }

    fn settings(age_ms: Option<u64>, bytes: Option<u64>) -> RetentionSettings {
        RetentionSettings {
            max_age: age_ms.map(Duration::from_millis),
            max_bytes: bytes,
            interval: Duration::from_secs(1),
            delete_below_free: None,
        }
    }

    /// Age: every sealed segment whose newest message is older than the limit, oldest first;
    /// the active segment never, however old.
    #[test]
    fn age_deletes_whole_old_sealed_segments() {
        let segs = [
            seg(1, 10, 100, 1_000),
            seg(11, 20, 100, 2_000),
            seg(21, 30, 100, 3_000),
            seg(31, 35, 50, 3_500),
        ];
        let s = settings(Some(1_000), None);
        assert_eq!(horizon(&segs, 1_500, &s, None), None);
        assert_eq!(horizon(&segs, 2_001, &s, None), Some(10));
        assert_eq!(horizon(&segs, 3_001, &s, None), Some(20));
        assert_eq!(
            horizon(&segs, 100_000, &s, None),
            Some(30),
            "never the active segment"
        );
        assert_eq!(horizon(&segs[3..], 100_000, &s, None), None);
        assert_eq!(horizon(&[], 100_000, &s, None), None);
    }

    /// Size: the oldest sealed segments until the log fits, whatever their age.
    #[test]
    fn size_deletes_the_oldest_until_the_log_fits() {
        let segs = [
            seg(1, 10, 100, 1_000),
            seg(11, 20, 100, 2_000),
            seg(21, 30, 100, 3_000),
            seg(31, 35, 50, 3_500),
        ];
        assert_eq!(horizon(&segs, 0, &settings(None, Some(350)), None), None);
        assert_eq!(
            horizon(&segs, 0, &settings(None, Some(349)), None),
            Some(10)
        );
        assert_eq!(
            horizon(&segs, 0, &settings(None, Some(150)), None),
            Some(20)
        );
        assert_eq!(horizon(&segs, 0, &settings(None, Some(0)), None), Some(30));
        // Both limits: whichever deletes more.
        assert_eq!(
            horizon(&segs, 3_001, &settings(Some(1_000), Some(349)), None),
            Some(20)
        );
    }

    /// Below the free-space watermark, the oldest segments go whatever their age, enough of
    /// them to cover the shortfall; never the active one; an unknown reading (0) changes
    /// nothing.
    #[test]
    fn a_nearly_full_disk_deletes_the_oldest_segments_early() {
        let segs = [
            seg(1, 10, 100, 1_000),
            seg(11, 20, 100, 2_000),
            seg(21, 30, 100, 3_000),
            seg(31, 35, 50, 3_500),
        ];
        let mut s = settings(Some(1_000_000), None);
        s.delete_below_free = Some(1_000);
        assert_eq!(
            horizon(&segs, 4_000, &s, Some(1_000)),
            None,
            "at the watermark"
        );
        assert_eq!(horizon(&segs, 4_000, &s, None), None, "unknown");
        assert_eq!(horizon(&segs, 4_000, &s, Some(950)), Some(10));
        assert_eq!(horizon(&segs, 4_000, &s, Some(850)), Some(20));
        assert_eq!(
            horizon(&segs, 4_000, &s, Some(0)),
            Some(30),
            "never the active segment"
        );
    }

    /// A sealed segment without a broker entry (only blank/membership entries) is not in the
    /// way of age-based deletion; one that could not be read stops it.
    #[test]
    fn a_segment_without_messages_counts_as_old() {
        let mut segs = [seg(1, 3, 10, 0), seg(4, 20, 100, 2_000), seg(21, 22, 10, 0)];
        segs[0].age = Age::NoMessages;
        assert_eq!(
            horizon(&segs, 1_500, &settings(Some(1_000), None), None),
            Some(3)
        );
        segs[0].age = Age::Unknown;
        assert_eq!(
            horizon(&segs, 100_000, &settings(Some(1_000), None), None),
            None
        );
    }
}
