//! Group commit at the leader: concurrent commands (sends, receives, acks) are gathered into
//! one log entry, bounded in bytes and count, and several entries are kept in flight at once
//! (Raft pipelines their replication; the log store folds their fsyncs).
//!
//! There is no artificial linger: a batch closes as soon as a proposal slot is free, so an idle
//! broker proposes a lone command at once and a busy one proposes big batches.

use std::sync::Arc;

use raft_store::group::Group;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::app::BrokerApp;
use crate::app::decode_outcomes;
use crate::clock::ClusterClock;
use crate::command::Command;
use crate::command::encode_entry;
use crate::error::BrokerError;
use crate::error::Result;
use crate::state::Outcome;

/// Group-commit limits.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Close a batch at about this many bytes.
    pub max_bytes: usize,
    /// Close a batch at this many commands.
    pub max_commands: usize,
    /// Proposals in flight at once.
    pub max_inflight: usize,
    /// Commands waiting for a batch or in flight; beyond, submitters are refused at once
    /// (TOO_MANY_REQUESTS).
    pub queue_capacity: usize,
    /// Bytes of commands waiting or in flight (until committed); beyond, submitters are
    /// refused at once. Bounds the memory a burst of large sends can take.
    pub max_queued_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            max_commands: 4096,
            max_inflight: 16,
            queue_capacity: 1 << 16,
            max_queued_bytes: 256 << 20,
        }
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Submits commands to the group commit of one replica.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
    admission: Admission,
}

/// Admission to the group commit: a command takes bytes (its approximate size) and a slot
/// until its outcome is known, or is refused at once when either runs out. (Issue 10: sends
/// used to queue without a byte bound and wait for a slot without a time bound.)
#[derive(Clone)]
pub struct Admission {
    bytes: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    max_bytes: usize,
}

/// What an admitted command holds until its outcome is known.
pub struct Admitted {
    _bytes: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

impl Admission {
    /// Room for `max_commands` commands of `max_bytes` bytes in all.
    pub fn new(max_commands: usize, max_bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(max_bytes)),
            slots: Arc::new(Semaphore::new(max_commands)),
            max_bytes,
        }
    }

    /// Admits a command of `size` bytes, or says why not (a definite refusal: nothing was
    /// proposed). A command larger than the whole budget is admitted alone when nothing else
    /// waits, so no valid command is refused forever.
    pub fn admit(&self, size: usize) -> Result<Admitted> {
        let want = size.clamp(1, self.max_bytes) as u32;
        let overloaded = || {
            BrokerError::Overloaded(format!(
                "the replica's proposal queue is full ({} bytes); retry later",
                self.max_bytes
            ))
        };
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| overloaded())?;
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(want)
            .map_err(|_| overloaded())?;
        Ok(Admitted {
            _bytes: bytes,
            _slot: slot,
        })
    }
}

/// Milliseconds since the epoch by this node's wall clock (virtual, and skewed per node, in the
/// simulator). For local bookkeeping only; replicated time comes from [`ClusterClock`].
pub fn now_ms() -> u64 {
    raft_store::rt::wall_ms()
}

impl Batcher {
    /// Starts the batching task for `group`; each entry is stamped with `clock`.
    pub fn spawn(group: Arc<Group<BrokerApp>>, cfg: BatchConfig, clock: Arc<ClusterClock>) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let admission = Admission::new(cfg.queue_capacity, cfg.max_queued_bytes);
        tokio::spawn(run(rx, group, cfg, clock));
        Batcher { tx, admission }
    }

    /// Proposes `command` in the next batch and waits for its outcome.
    pub async fn submit(&self, command: Command) -> Result<Outcome> {
        let _admitted = self.admission.admit(command.approx_size())?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| BrokerError::Unavailable("replica stopped".into()))?;
        rx.await.map_err(|_| {
            BrokerError::Unknown("replica stopped while the command was in flight".into())
        })?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    group: Arc<Group<BrokerApp>>,
    cfg: BatchConfig,
    clock: Arc<ClusterClock>,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_inflight));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while we waited for a slot joins this batch.
        let mut bytes = first.command.approx_size();
        let mut batch = vec![first];
        // Under the simulator, sometimes one command per entry.
        let max_commands = if raft_store::buggify!() {
            1
        } else {
            cfg.max_commands
        };
        while bytes < cfg.max_bytes && batch.len() < max_commands {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.command.approx_size();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        // A command whose submitter has gone (its RPC timed out or was cancelled, and the
        // client was told the outcome is unknown) is never proposed: proposing it late could
        // store it after commands the client sent since (jepsen `partition`: a FIFO send
        // stored after 42 later sends of its group). What is already proposed may still land.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let group = group.clone();
        // A new term of this replica's leadership continues the log's timeline, not its own
        // (`ClusterClock::lead_from`).
        clock.begin_term(group.term(), || crate::replica::log_time(&group));
        // Stamped here, in proposal order, so the entries of one leader carry rising times.
        let stamp = clock.stamp();
        tokio::spawn(async move {
            let (commands, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            let payload = encode_entry(stamp, &commands);
            drop(commands);
            let proposed = group.propose(payload).await;
            if proposed.is_ok() && raft_store::buggify!() {
                // The leader steps down right after a commit.
                let g = group.clone();
                tokio::spawn(async move {
                    g.step_down().await;
                });
            }
            match proposed {
                Ok(p) => match decode_outcomes(&p.response) {
                    Ok(outcomes) if outcomes.len() == replies.len() => {
                        for (reply, o) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(o));
                        }
                    }
                    other => {
                        let msg = format!("entry {} answered with {other:?}", p.index);
                        for reply in replies {
                            let _ = reply.send(Err(BrokerError::Corrupt(msg.clone())));
                        }
                    }
                },
                Err(e) => {
                    let msg = e.to_string();
                    let definite_leader = match &e {
                        raft_store::Error::NotLeader { leader, .. } => Some(*leader),
                        _ => None,
                    };
                    for reply in replies {
                        // Only a refusal before appending is definite. A replica that stopped
                        // (say its fsync failed) may already have replicated the entry, and a
                        // new leader may commit it. (Found by the whole-cluster simulation:
                        // clients retried such sends and stored them twice.)
                        let err = match definite_leader {
                            Some(leader) => BrokerError::NotLeader { leader },
                            None => BrokerError::Unknown(msg.clone()),
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_refuses_at_once_beyond_its_bytes_or_slots() {
        let a = Admission::new(2, 1000);
        let x = a.admit(600).unwrap();
        assert!(
            matches!(a.admit(600), Err(BrokerError::Overloaded(_))),
            "bytes"
        );
        let y = a.admit(300).unwrap();
        assert!(
            matches!(a.admit(1), Err(BrokerError::Overloaded(_))),
            "slots"
        );
        drop(x);
        let z = a.admit(600).unwrap();
        drop((y, z));
        // Larger than the whole budget: admitted alone.
        let big = a.admit(5000).unwrap();
        assert!(a.admit(1).is_err());
        drop(big);
        assert!(a.admit(1).is_ok());
    }
}
