//! The retention oracle: a tap on every group's committed log, so the simulation knows which
//! log entry each message went into and can tell a message retention deleted from a lost one.
//!
//! The v2 protocol does not tell a producer which queue the broker stored its message in, so
//! the client history alone cannot say whether an undelivered message was deleted. Every
//! 200 ms the tap reads the newly committed entries of each group (from any replica that has
//! them: committed entries are the same everywhere) and records, per message id, the
//! (group, log index) it is in, every entry's cluster time, and every `Retain` command.
//!
//! After the run: a message whose every copy sits below its group's log start was deleted
//! ([`LogTap::deleted`], recorded in the history as `Op::Expired`); and every `Retain` at
//! entry time `t` may only have deleted entries stamped before `t − max_age`
//! ([`LogTap::stop`]: `premature-deletion`). Both in cluster time: a `Retain` carries the time
//! the leader decided at, which applying refuses if it is ahead of the entry's own time by
//! more than 5 ms.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::command::Command;
use broker::model::QueueId;
use broker::model::QueueOffset;
use broker::state::Outcome;
use broker::state::dedup::Dedup;
use raft_store::types::EntryPayload;

use super::brokers::BrokerCluster;
use crate::msg_checker::Anomaly;

/// What the tap saw.
#[derive(Default)]
struct Seen {
    /// Per group: the next index to read.
    next: BTreeMap<u64, u64>,
    /// Message id → every (group, log index) holding it.
    ids: BTreeMap<String, Vec<(u64, u64)>>,
    /// (group, index) → cluster time (ms) of every normal entry.
    times: BTreeMap<(u64, u64), u64>,
    /// (group, index of the Retain entry, the state clock when it applied (the highest
    /// stamp so far), upto, decided_ms).
    retains: Vec<(u64, u64, u64, u64, u64)>,
    /// Per group: the highest stamp read so far (what the state clock is when the next entry
    /// applies, as stamps are not strictly rising across leaders).
    clock: BTreeMap<u64, u64>,
    /// Entries purged before the tap read them (their messages are unknown to it).
    missed: u64,
    /// Per group: the idempotent producer's window, replayed entry by entry as the state
    /// applies it, so a resend the window answered (it stored nothing) is not counted as a
    /// copy. Found by cluster_chaos seed 264626746232282: a resend's duplicate entry sat
    /// above the log start after retention had deleted the one stored copy, and the
    /// message was reported `lost` instead of `expired`.
    dedup: BTreeMap<u64, Dedup>,
}

/// See the module docs.
pub struct LogTap {
    seen: Arc<Mutex<Seen>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LogTap {
    /// Starts tapping every group of `cluster`.
    pub fn start(cluster: Arc<tokio::sync::Mutex<BrokerCluster>>) -> LogTap {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let running = Arc::new(AtomicBool::new(true));
        let (s, r) = (seen.clone(), running.clone());
        let task = tokio::spawn(async move {
            while r.load(Ordering::SeqCst) {
                read_new(&*cluster.lock().await, &mut s.lock().unwrap());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        LogTap {
            seen,
            running,
            task,
        }
    }

    /// Reads what was committed since the last round (before a final check).
    pub fn catch_up(&self, cluster: &BrokerCluster) {
        read_new(cluster, &mut self.seen.lock().unwrap());
    }

    /// The ids of messages retention deleted: every copy sits below its group's log start
    /// (`log_start`, per group, as a leader applied it).
    pub fn deleted(&self, log_start: &BTreeMap<u64, u64>) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        seen.ids
            .iter()
            .filter(|(_, at)| {
                at.iter()
                    .all(|(g, i)| log_start.get(g).is_some_and(|s| i < s))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Stops the tap; `premature-deletion` for any `Retain` that covered an entry younger
    /// than `max_age` at the time of the `Retain`.
    pub async fn stop(self, max_age: Duration) -> (Vec<Anomaly>, u64) {
        self.running.store(false, Ordering::SeqCst);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap();
        let age = max_age.as_millis() as u64;
        let mut out = Vec::new();
        for &(g, at, t, upto, decided) in &seen.retains {
            // Applying refuses a decision ahead of the state clock (beyond the slack); one that
            // was applied is the time the entries were judged at.
            let refused = decided > t + broker::state::RETAIN_CLOCK_SLACK_MS;
            if refused {
                continue;
            }
            let young = seen
                .times
                .range((g, 0)..=(g, upto))
                .find(|(_, time)| **time >= decided.saturating_sub(age));
            if let Some(((_, i), time)) = young {
                out.push(Anomaly {
                    kind: "premature-deletion",
                    detail: format!(
                        "group {g}: Retain at index {at} (time {t}, decided at {decided}) \
                         deleted up to {upto}, including entry {i} stamped {time}, younger \
                         than {age} ms"
                    ),
                });
            }
        }
        (out, seen.missed)
    }
}

/// Reads every group's entries committed since the last round from some replica that has
/// them.
fn read_new(c: &BrokerCluster, seen: &mut Seen) {
    for g in 1..=c.groups() {
        let next = *seen.next.get(&g).unwrap_or(&0);
        // A replica that is up, still holds `next` if any does, and has the most committed.
        let best = (0..c.nodes.len())
            .filter_map(|i| c.core(i)?.group(g).ok().map(|h| h.replica.clone()))
            .max_by_key(|r| {
                let holds = r.group().log().state().0.is_none_or(|p| p.index < next);
                (holds, r.metrics().committed.map_or(0, |x| x.0))
            });
        let Some(r) = best else { continue };
        let committed = r.metrics().committed.map_or(0, |x| x.0);
        if committed < next {
            continue;
        }
        let log = r.group().log();
        let first = log.state().0.map_or(0, |p| p.index + 1);
        let from = if next < first {
            seen.missed += first - next;
            first
        } else {
            next
        };
        // A bounded bite per round.
        let to = committed.min(from + 4095);
        let Ok(entries) = log.read(from..=to) else {
            continue;
        };
        let mut last = from.saturating_sub(1);
        for e in entries {
            let index = e.log_id.index;
            last = index;
            let EntryPayload::Normal(req) = &e.payload else {
                continue;
            };
            let Ok(d) = broker::command::decode_entry(&req.0) else {
                continue;
            };
            seen.times.insert((g, index), d.now_ms);
            let clock = seen.clock.entry(g).or_default();
            *clock = (*clock).max(d.now_ms);
            let clock = *clock;
            let dedup = seen.dedup.entry(g).or_default();
            let mut stored = Vec::new();
            for l in d.commands {
                match l.command {
                    // Deduplicated by id (`State::once`): stored only if the window does not
                    // answer it. (A send apply refuses would be counted as stored and its
                    // resend as a duplicate; the simulator's topics all exist, so none is.)
                    Ok(Command::Send(m) | Command::Schedule(m))
                    | Ok(Command::Half(broker::command::Half { message: m, .. })) => {
                        let key = dedup.key(&m.topic, &m.message_id);
                        if dedup.seen(clock, key).is_none() {
                            let o = Outcome::Sent {
                                queue: QueueId(0),
                                offset: QueueOffset(0),
                            };
                            dedup.record(clock, key, &o);
                            stored.push(m.message_id);
                        }
                    }
                    // A scheduled message sits in its schedule entry and, once fired, in
                    // the fire's copy (which its queue entry points at): it is deleted when
                    // both are (retention keeps a pending timer's entry). Likewise a half
                    // message and its commit's copy.
                    Ok(Command::Fire(broker::command::Fire { message: m, .. }))
                    | Ok(Command::CommitTx(broker::command::CommitTx { message: m, .. })) => {
                        stored.push(m.message_id);
                    }
                    Ok(Command::Dedup(w)) => dedup.set(clock, w),
                    Ok(Command::Retain(rt)) => {
                        seen.retains.push((g, index, clock, rt.upto, rt.decided_ms));
                    }
                    _ => {}
                }
            }
            for id in stored {
                seen.ids.entry(id).or_default().push((g, index));
            }
        }
        seen.next.insert(g, last + 1);
    }
}
