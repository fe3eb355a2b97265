//! Batched forwarding of commands: a node that does not lead a group gathers the commands its
//! clients send at once into one `SubmitBatch` call per leader and group (a lane), instead of
//! one call each.
//!
//! Why: the official clients spread their requests over every member of a group (the Rust
//! client balances over all addresses, the others get one member per queue, so a dead node
//! costs a retry rather than a whole route), so two thirds of a 3-node group's sends arrive at
//! followers. One forwarding call per command cost the cluster about a third of its CPU per
//! message under the peers harness (docs/benchmarks.md, issue 13); a lane pays the HTTP/2
//! stream, the MAC and the leader's handler once per batch.
//!
//! Like the leader's group commit, a lane has no linger: a batch leaves as soon as one of its
//! call slots is free, so an idle lane sends a lone command at once. A command whose submitter
//! has gone is never sent, and each sent command carries how long its submitter still waits,
//! past which the leader does not propose it (what one call per command got from the call's
//! cancellation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::client::Calls;
use super::wire::BatchAnswer;
use super::wire::ForwardError;
use super::wire::Forwarded;
use crate::command::Command;
use crate::error::BrokerError;
use crate::state::Outcome;

/// Calls one lane keeps in flight at once.
const LANE_INFLIGHT: usize = 8;
/// Commands in one call at most.
const LANE_MAX_COMMANDS: usize = 1024;
/// Bytes (approximate) in one call at most.
const LANE_MAX_BYTES: usize = 4 << 20;
/// Commands waiting in one lane at most; beyond, a submitter waits for room.
const LANE_QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Outcome, BrokerError>>;

struct Item {
    command: Command,
    deadline: Instant,
    reply: Reply,
}

/// A lane's queue, by (leader address, group).
type LaneMap = BTreeMap<(String, u64), mpsc::Sender<Item>>;

/// The lanes of one node.
#[derive(Clone, Default)]
pub struct Lanes {
    lanes: Arc<Mutex<LaneMap>>,
}

impl Lanes {
    /// Runs `command` on group `group`'s leader at `addr`, batched with whatever else this node
    /// forwards there at the same time; waits at most `timeout`.
    pub async fn submit(
        &self,
        fwd: &Calls,
        addr: &str,
        group: u64,
        command: &Command,
        timeout: Duration,
    ) -> Result<Outcome, BrokerError> {
        let deadline = Instant::now() + timeout;
        let (reply, rx) = oneshot::channel();
        let item = Item {
            command: command.clone(),
            deadline,
            reply,
        };
        let tx = self.lane(fwd, addr, group);
        // The whole wait is bounded, the wait for room in a full lane included.
        // (madsim's time has no `timeout_at`.)
        let waited = tokio::time::timeout(timeout, async move {
            if tx.send(item).await.is_err() {
                return Err(BrokerError::Unavailable("forwarding stopped".into()));
            }
            rx.await.map_err(|_| {
                BrokerError::Unknown(format!(
                    "forwarding to {addr} stopped with the command in flight"
                ))
            })?
        })
        .await;
        waited.unwrap_or_else(|_| Err(BrokerError::Unknown(format!("forward to {addr} timed out"))))
    }

    fn lane(&self, fwd: &Calls, addr: &str, group: u64) -> mpsc::Sender<Item> {
        let mut m = self.lanes.lock().unwrap();
        let key = (addr.to_string(), group);
        if let Some(tx) = m.get(&key).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        tokio::spawn(run(rx, fwd.clone(), addr.to_string(), group));
        m.insert(key, tx.clone());
        tx
    }
}

async fn run(mut rx: mpsc::Receiver<Item>, fwd: Calls, addr: String, group: u64) {
    let slots = Arc::new(Semaphore::new(LANE_INFLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.command.approx_size();
        let mut batch = vec![first];
        while bytes < LANE_MAX_BYTES && batch.len() < LANE_MAX_COMMANDS {
            match rx.try_recv() {
                Ok(i) => {
                    bytes += i.command.approx_size();
                    batch.push(i);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        batch.retain(|i| !i.reply.is_closed() && i.deadline > now);
        if batch.is_empty() {
            continue;
        }
        let (fwd, addr) = (fwd.clone(), addr.clone());
        tokio::spawn(async move {
            send(&fwd, &addr, group, batch).await;
            drop(slot);
        });
    }
}

/// Sends one batch and hands each submitter its result.
async fn send(fwd: &Calls, addr: &str, group: u64, batch: Vec<Item>) {
    let now = Instant::now();
    let last = batch.iter().map(|i| i.deadline).max().unwrap_or(now);
    let (commands, waiting): (Vec<Forwarded>, Vec<_>) = batch
        .into_iter()
        .map(|i| {
            let f = Forwarded {
                budget_ms: i.deadline.saturating_duration_since(now).as_millis() as u64,
                command: i.command,
            };
            (f, (i.deadline, i.reply))
        })
        .unzip();
    let answer = fwd
        .submit_batch(addr, group, &commands, last.saturating_duration_since(now))
        .await;
    let fail = |waiting: Vec<(Instant, Reply)>, e: ForwardError| {
        for (_, reply) in waiting {
            let _ = reply.send(Err(e.clone().into()));
        }
    };
    match answer {
        Ok(Some(results)) if results.len() == waiting.len() => {
            for ((_, reply), r) in waiting.into_iter().zip(results) {
                let _ = reply.send(r.map_err(BrokerError::from));
            }
        }
        Ok(Some(results)) => {
            let e = ForwardError::Corrupt(format!(
                "{addr} answered {} results to a batch of {}",
                results.len(),
                waiting.len()
            ));
            fail(waiting, e);
        }
        // A leader that predates batched forwarding (a rolling upgrade): nothing ran, so each
        // command goes by itself.
        Ok(None) => {
            let one = commands
                .into_iter()
                .zip(waiting)
                .map(|(f, (deadline, reply))| async move {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let r = fwd.submit_one(addr, group, &f.command, left).await;
                    let _ = reply.send(r);
                });
            join_all(one).await;
        }
        Err(e) => fail(waiting, ForwardError::from(e)),
    }
}

/// The leader's side of a batch: each command proposed like a single forwarded one, but not
/// after its budget runs out (dropping its submission before the proposal withdraws it).
pub async fn serve_batch<F, Fut>(commands: Vec<Forwarded>, submit: F) -> BatchAnswer
where
    F: Fn(Command) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, BrokerError>>,
{
    let runs = commands.into_iter().map(|f| {
        let run = submit(f.command);
        async move {
            match tokio::time::timeout(Duration::from_millis(f.budget_ms), run).await {
                Ok(r) => r.map_err(ForwardError::from),
                Err(_) => Err(ForwardError::Unknown(
                    "the forwarding node stopped waiting for this command".into(),
                )),
            }
        }
    });
    join_all(runs).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::command::Ack;
    use crate::command::Receipt;
    use crate::model::QueueId;
    use crate::model::QueueOffset;

    fn ack(seq: u64) -> Command {
        Command::Ack(Ack {
            group: "g".into(),
            topic: "t".into(),
            receipt: Receipt {
                queue: QueueId(0),
                offset: QueueOffset(seq),
                seq,
            },
        })
    }

    /// The leader's side keeps each command's budget: one whose submitter stops waiting before
    /// its proposal is withdrawn (it never reaches the proposal), the others run, and the
    /// answers keep the batch's order.
    #[tokio::test]
    async fn a_command_past_its_budget_is_not_proposed() {
        let proposed = Arc::new(AtomicUsize::new(0));
        let batch = vec![
            Forwarded {
                budget_ms: 5_000,
                command: ack(1),
            },
            Forwarded {
                budget_ms: 20,
                command: ack(2),
            },
            Forwarded {
                budget_ms: 5_000,
                command: ack(3),
            },
        ];
        let answers = serve_batch(batch, |cmd| {
            let proposed = proposed.clone();
            async move {
                // Command 2 waits for a slot longer than its budget.
                if cmd == ack(2) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                proposed.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::Acked)
            }
        })
        .await;
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0], Ok(Outcome::Acked));
        assert!(
            matches!(answers[1], Err(ForwardError::Unknown(_))),
            "{answers:?}"
        );
        assert_eq!(answers[2], Ok(Outcome::Acked));
        assert_eq!(proposed.load(Ordering::SeqCst), 2);
    }
}
