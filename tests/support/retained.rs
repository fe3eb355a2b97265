//! Helpers shared by the replica tests (tests/replica_replacement.rs, tests/state_repair.rs):
//! a producer that records where each acknowledged send was stored, and the read-back of every
//! retained message through node 3.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use raftmq_client::ClientConfig;
use raftmq_client::Message;
use raftmq_client::Producer;

use crate::common::Cluster;

pub fn client_config(endpoints: &str) -> ClientConfig {
    let mut c = ClientConfig::with_endpoints(endpoints);
    c.request_timeout = Duration::from_secs(5);
    c.long_polling_timeout = Duration::from_secs(1);
    c
}

/// Sends `body_len`-byte messages to `topic` until `stop`, handing each acknowledged send's
/// id and receipt to `acked` (failed ones are not retried: only acknowledged messages are
/// promised).
pub async fn send_until(
    endpoints: String,
    topic: &str,
    body_len: usize,
    stop: Arc<AtomicBool>,
    mut acked: impl FnMut(String, raftmq_client::SendReceipt),
) {
    let p = Producer::builder(client_config(&endpoints))
        .topics([topic])
        .start()
        .await
        .unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("{topic}-{i}");
        i += 1;
        let m = Message::new(topic, vec![b'x'; body_len]).with_message_id(id.clone());
        match p.send(m).await {
            Ok(r) => acked(id, r),
            Err(e) => {
                eprintln!("{topic}: send {id} failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    p.shutdown().await;
}

pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`send_until`] to topic `Trimmed`, recording where each acknowledged send was stored:
/// (queue, offset) -> id.
pub async fn positioned_load(
    endpoints: String,
    acked: Arc<Mutex<std::collections::BTreeMap<(i32, i64), String>>>,
    stop: Arc<AtomicBool>,
) {
    send_until(endpoints, "Trimmed", 700, stop, |id, r| {
        let (_, queue) = r.stored_in.expect("RaftMQ says where it stored a message");
        acked.lock().unwrap().insert((queue, r.offset), id);
    })
    .await
}

/// Node 3 (the preferred leader) leads again, node 1 is killed, and a pull consumer reads each
/// queue of `Trimmed` from its first retained offset to its end through node 3: every offset
/// holds the intact 700-byte message acknowledged there (`acked`: (queue, offset) -> id), and
/// every acknowledged message at or after each queue's start is read. `trimmed`: retention
/// must have deleted the start of some queue.
pub fn read_back_through_node_3(
    c: &mut Cluster,
    rt: &tokio::runtime::Runtime,
    acked: &std::collections::BTreeMap<(i32, i64), String>,
    trimmed: bool,
) {
    // Leadership goes back to a preferred node once it matched the leader's log at two checks
    // in a row: rarely under a steady load, at once without one.
    wait_until(
        "node 3 leads (it is preferred)",
        Duration::from_secs(30),
        || c.leader_of(1) == Some(2),
    );
    // Node 1 goes: nodes 2 and 3 must commit, and node 3 serves what it copied.
    c.kill(0);
    wait_until("node 3 still leads", Duration::from_secs(30), || {
        c.leader_of(1) == Some(2)
    });
    let read = rt.block_on(async {
        let eps = format!("{},{}", c.node(2), c.node(1));
        let pc = raftmq_client::PullConsumer::builder(client_config(&eps), "trimmed-reader")
            .topics(["Trimmed"])
            .start()
            .await
            .unwrap();
        let mut read = Vec::new();
        for q in pc.queues("Trimmed").await.unwrap() {
            let begin = pc
                .offset_for(&q, raftmq_client::SeekTo::Beginning)
                .await
                .unwrap();
            let end = pc.offset_for(&q, raftmq_client::SeekTo::End).await.unwrap();
            let mut at = begin;
            while at < end {
                let p = pc
                    .pull(&q, at, 256, &raftmq_client::Filter::All)
                    .await
                    .unwrap();
                assert!(p.next_offset > at, "queue {} stuck at {at}", q.id);
                for m in p.messages {
                    read.push((q.id, m.queue_offset.unwrap(), m.message_id, m.body.len()));
                }
                at = p.next_offset;
            }
            read.push((q.id, -1, format!("{begin}..{end}"), 0));
        }
        pc.shutdown().await;
        read
    });
    let mut held = 0;
    let mut bounds = std::collections::BTreeMap::new();
    for (q, off, id, len) in &read {
        if *off < 0 {
            bounds.insert(*q, id.clone());
            continue;
        }
        held += 1;
        assert_eq!(*len, 700, "message {id} at {q}/{off}");
        if let Some(want) = acked.get(&(*q, *off)) {
            assert_eq!(want, id, "queue {q} offset {off}");
        }
    }
    // Every acknowledged message from each queue's first retained offset on was read.
    for ((q, off), id) in acked {
        let (begin, _) = bounds[q].split_once("..").unwrap();
        if *off >= begin.parse::<i64>().unwrap() {
            assert!(
                read.iter()
                    .any(|(rq, ro, rid, _)| rq == q && ro == off && rid == id),
                "acknowledged {id} at {q}/{off} is retained but was not read (bounds {bounds:?})"
            );
        }
    }
    assert!(
        !trimmed || bounds.values().any(|b| !b.starts_with("0..")),
        "retention deleted nothing: {bounds:?}"
    );
    assert!(held >= 500, "only {held} messages retained: {bounds:?}");
    assert!(c.all_alive(), "{}", tail(&c.log(2)));
}

pub fn tail(log: &str) -> &str {
    &log[log.len().saturating_sub(3000)..]
}
