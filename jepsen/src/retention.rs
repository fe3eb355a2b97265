//! The retention observer: with retention on (`--retention-secs`), reads where every queue of
//! the workload's topics starts, once a second, and records the acknowledged messages whose
//! send receipt names an offset below it as [`Op::Expired`] (with the age, so the checker can
//! call a deletion `premature-deletion`). A queue's start moves only when retention deletes,
//! so this is what the brokers deleted, as a client can see it. Messages it records are then
//! not waited for by the drain and not `lost` for the checker.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use checker::messages::Op;
use checker::messages::Result3;
use raftmq_client::PullConsumer;
use raftmq_client::SeekTo;
use simulation::workload::Ctx;

/// The consumer group the observer's offset queries name (it never pulls or commits).
const GROUP: &str = "JRetentionObserver";

/// Observes until `stop`, then once more.
pub async fn observe(ctx: Ctx, age: Duration, stop: Arc<AtomicBool>) {
    let topics = [ctx.names.topic, ctx.names.fifo_topic];
    let consumer = loop {
        match PullConsumer::builder(ctx.config.clone(), GROUP)
            .topics(topics)
            .start()
            .await
        {
            Ok(c) => break c,
            Err(e) if !stop.load(Ordering::SeqCst) => {
                tracing::debug!(error = %e, "retention observer start failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => return,
        }
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        let last = stop.load(Ordering::SeqCst);
        let invoked = ctx.now();
        let mut starts: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for topic in topics {
            let Ok(queues) = consumer.queues(topic).await else {
                continue;
            };
            for q in queues {
                // A failed query (a fault) just leaves the queue out of this round.
                if let Ok(start) = consumer.offset_for(&q, SeekTo::Beginning).await {
                    starts.insert((format!("{topic}/{}", q.broker), q.id), start);
                }
            }
        }
        let completed = ctx.now();
        let ids = deleted(&ctx.history.lock().unwrap(), &starts, &reported);
        if !ids.is_empty() {
            reported.extend(ids.iter().cloned());
            ctx.record(Op::Expired {
                ids,
                invoked,
                completed,
                age_us: Some(age.as_micros() as u64),
            });
        }
        if last {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    consumer.shutdown().await;
}

/// The acknowledged sends below their queue's start, not reported yet.
fn deleted(
    history: &[Op],
    starts: &BTreeMap<(String, i32), i64>,
    reported: &BTreeSet<String>,
) -> Vec<String> {
    history
        .iter()
        .filter_map(|op| match op {
            Op::Send {
                id,
                result: Result3::Ok,
                pos: Some((broker, queue, offset)),
                ..
            } if starts
                .get(&(broker.clone(), *queue))
                .is_some_and(|start| offset < start)
                && !reported.contains(id) =>
            {
                Some(id.clone())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: &str, queue: i32, offset: i64) -> Op {
        Op::Send {
            id: id.into(),
            body: Vec::new(),
            group: None,
            invoked: 0,
            completed: 1,
            result: Result3::Ok,
            pos: Some(("T/b1".into(), queue, offset)),
            may_repeat: false,
            topic: None,
        }
    }

    #[test]
    fn only_sends_below_their_own_queue_start_are_deleted() {
        let h = vec![sent("a", 0, 3), sent("b", 0, 4), sent("c", 1, 0)];
        let starts = BTreeMap::from([(("T/b1".to_string(), 0), 4)]);
        assert_eq!(deleted(&h, &starts, &BTreeSet::new()), vec!["a"]);
        let reported = BTreeSet::from(["a".to_string()]);
        assert!(deleted(&h, &starts, &reported).is_empty());
    }
}
