//! The leader's timer task: delivers scheduled (DELAY) messages when they are due; once per
//! group's life, proposes the [`Command::FifoGroups`] marker; and proposes the configured
//! deduplication window ([`Command::Dedup`]) when the state's differs.
//!
//! Due times are replicated state (`state::timer`); this task only decides *when* to look.
//! While its replica leads, it sleeps until the earliest pending timer is due in cluster time
//! (or until an apply may have added an earlier one), then proposes one
//! [`Command::Fire`] per due timer, each carrying the message read from the leader's log. The
//! state machine decides what actually fires, so a new leader simply continues: a timer an
//! old leader fired is gone from the state, one it did not is still due, and a `Fire` proposed
//! twice applies once.

use std::sync::Weak;
use std::time::Duration;

use futures::future::join_all;

use crate::command::Command;
use crate::command::DedupWindow;
use crate::command::Fire;
use crate::replica::Replica;
use crate::state::Outcome;
use crate::state::Reject;
use crate::state::consume_queue::CqEntry;

/// Timers fired per round: lets sends interleave with a burst of timers due at once (each
/// `Fire` is group-committed like a send). 100,000 due in the same second on `raftmq dev`
/// were all in their queues 4.1 s later with 256 per round, 3.1 s with 1,024.
const ROUND: usize = 1024;

/// Message bytes read per round: bounds a round's memory when messages are large.
const ROUND_BYTES: u64 = 32 << 20;

/// How long a fire's proposal may take before the round is given up and tried again.
const PROPOSAL_WAIT: Duration = Duration::from_secs(5);

/// The longest sleep: how soon a replica that became leader (or a clock that caught up)
/// looks at the timers without being woken.
const IDLE: Duration = Duration::from_millis(200);

/// Runs the timer task of one replica until the replica is dropped; `dedup` is this node's
/// `[dedup]` window.
pub async fn run(replica: Weak<Replica>, dedup: DedupWindow) {
    let wanted = (dedup.window_ms > 0 && dedup.max_ids > 0).then_some(dedup);
    loop {
        let Some(r) = replica.upgrade() else { return };
        let changed = r.changed().clone();
        // Registered before the state is read: an apply between the read and the sleep
        // (a new, earlier timer) still wakes this task.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut wait = IDLE;
        if r.is_leader() && r.read(|s| s.groups_from == 0) {
            // A fresh group gets it at its first election; an upgraded one at the first
            // election of a leader of this version (older replicas stop there).
            let marked = r.submit(Command::FifoGroups);
            if !matches!(
                tokio::time::timeout(PROPOSAL_WAIT, marked).await,
                Ok(Ok(Outcome::Done))
            ) {
                tracing::debug!(group = %r.group_id(), "FIFO-groups marker not committed yet");
            }
        }
        if r.is_leader() && r.read(|s| s.dedup.window != wanted) {
            // Every replica switches at the same entry; a log written before stores every
            // send, as the binary that wrote it did.
            let set = r.submit(Command::Dedup(dedup));
            if !matches!(
                tokio::time::timeout(PROPOSAL_WAIT, set).await,
                Ok(Ok(Outcome::Done))
            ) {
                tracing::debug!(group = %r.group_id(), "deduplication window not committed yet");
            }
        }
        let now = r.leader_now();
        if r.is_leader() && r.read(|s| s.timers.needs_advance(now)) {
            // An idle group's clock moves only with entries: nudge it so the next slot's
            // timers are read into memory before they are due.
            let advanced = r.submit(Command::Advance);
            let _ = tokio::time::timeout(PROPOSAL_WAIT, advanced).await;
        }
        if r.is_leader() {
            let now = r.leader_now();
            let (mut due, next) = r.read(|s| (s.timers.due(now, ROUND), s.timers.next_due()));
            let mut bytes = 0u64;
            if let Some(cut) = due.iter().position(|(_, p)| {
                bytes += p.len as u64;
                bytes > ROUND_BYTES
            }) {
                due.truncate(cut.max(1));
            }
            if !due.is_empty() {
                if fire(&r, due).await {
                    continue;
                }
                // Leadership lost or the log refused: look again shortly, not in a spin.
                wait = Duration::from_millis(20);
            } else if let Some(at) = next {
                wait = Duration::from_millis(at.saturating_sub(now).max(1)).min(IDLE);
            }
        }
        drop(r);
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Proposes a `Fire` for each due timer; false if a proposal failed (this replica stopped
/// leading, a message could not be read, or the state refused a fire as early).
async fn fire(
    r: &Replica,
    due: Vec<(crate::command::TimerKey, crate::state::timer::Pending)>,
) -> bool {
    let proposals = due.into_iter().map(|(key, p)| async move {
        let at = CqEntry::at(key.log_index, key.pos, p.len);
        let message = match r.read_message(&at) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(group = %r.group_id(), log_index = key.log_index, error = %e,
                    "timer: cannot read a scheduled message from the log");
                return false;
            }
        };
        // Bounded, so that a proposal that never resolves cannot keep every later timer of the
        // group pending with it. Proposing the fire again is harmless: it applies once.
        let proposal = r.submit(Command::Fire(Fire { key, message }));
        let Ok(res) = tokio::time::timeout(PROPOSAL_WAIT, proposal).await else {
            tracing::warn!(group = %r.group_id(), ?key, "timer: fire not answered; proposing again");
            return false;
        };
        match res {
            // Fired now, or by an earlier proposal (of this leader or the one before).
            Ok(Outcome::Sent { .. }) | Ok(Outcome::Rejected(Reject::TimerNotPending)) => true,
            Ok(other) => {
                tracing::warn!(group = %r.group_id(), ?key, ?other, "timer: fire refused");
                false
            }
            Err(e) => {
                tracing::debug!(group = %r.group_id(), error = %e, "timer: fire not proposed");
                false
            }
        }
    });
    join_all(proposals).await.into_iter().all(|ok| ok)
}
