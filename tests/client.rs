//! The native client (`raftmq-client`), its examples and the `raftmq produce`/`consume`
//! commands against a real `raftmq dev` process (v2 on 127.0.0.1:18800).
#![cfg(not(madsim))]

mod common;
#[path = "support/client_failures.rs"]
mod failures;
#[path = "support/client_filters.rs"]
mod filters;
#[path = "support/client_namespaces.rs"]
mod namespaces;
#[path = "support/client_priority.rs"]
mod priority;
#[path = "support/client_reset.rs"]
mod resets;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use common::Dev;
use common::endpoint;
use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::ConsumeResult;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::PushConsumer;
use raftmq_client::SeekTo;
use raftmq_client::SimpleConsumer;
use raftmq_proto::admin::GroupSpec;
use raftmq_proto::admin::admin_client::AdminClient;

const PORT: u16 = 18800;

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(endpoint(PORT));
    c.long_polling_timeout = Duration::from_secs(1);
    c
}

/// Polls `done` every 50 ms for up to `secs`.
async fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn native_client_examples_and_cli_against_raftmq_dev() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path(), PORT, &[]);
    dev.admin(&["topic", priority::TOPIC, "--kind", "priority"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        producer_and_simple_consumer().await;
        push_consumer_bounds_concurrency_and_redelivers_failures().await;
        fifo_push_consumer_keeps_group_order().await;
        pull_consumer_seeks_pulls_and_commits().await;
        delayed_messages_wait_and_recalled_ones_never_come().await;
        failures::forwarded_messages_go_to_the_dead_letter_topic(config()).await;
        failures::nacked_messages_come_back_after_the_group_backoff(config()).await;
        failures::a_departed_push_consumers_deliveries_come_back_after_the_backoff(config()).await;
        transactions_commit_roll_back_and_check_back().await;
        a_resent_message_id_is_stored_once().await;
        filters::sql92_subscriptions_get_only_matching_messages(config()).await;
        namespaces::namespaces_keep_same_names_apart(config()).await;
        priority::a_backlog_is_received_highest_priority_first(config()).await;
        resets::a_reset_moves_a_group_for_every_consumer_model(config(), &dev).await;
    });
    examples_and_cli();
    dev.stop();
}

/// The idempotent producer (issue 15, item 4): a message sent again with the same id inside the
/// broker's deduplication window gets the first copy's receipt, and a consumer gets it once.
async fn a_resent_message_id_is_stored_once() {
    let p = Producer::builder(config())
        .topics(["dedup"])
        .start()
        .await
        .unwrap();
    let m = |body: &[u8]| Message::new("dedup", body.to_vec()).with_message_id("dedup-1");
    let first = p.send(m(b"one")).await.unwrap();
    // Another body, another queue asked for: the id names the message.
    let again = p.send(m(b"two")).await.unwrap();
    assert_eq!(
        (first.offset, &first.stored_in),
        (again.offset, &again.stored_in)
    );
    let other = p
        .send(Message::new("dedup", b"three".to_vec()).with_message_id("dedup-2"))
        .await
        .unwrap();
    assert_ne!(
        (first.offset, &first.stored_in),
        (other.offset, &other.stored_in)
    );
    let c = SimpleConsumer::builder(config(), "c-dedup")
        .subscribe("dedup", Filter::All)
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        for r in c.receive(8, Duration::from_secs(30)).await.unwrap() {
            got.push((r.message_id.clone(), r.body.clone()));
            c.ack(&r).await.unwrap();
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("dedup-1".to_string(), b"one".to_vec()),
            ("dedup-2".to_string(), b"three".to_vec())
        ]
    );
    c.shutdown().await;
    p.shutdown().await;
}

async fn producer_and_simple_consumer() {
    let p = Producer::builder(config())
        .topics(["plain", "redeliver"])
        .start()
        .await
        .unwrap();
    let mut sent = BTreeMap::new();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let tag = if i % 2 == 0 { "a" } else { "b" };
            p.send_async(
                Message::new("plain", format!("body-{i}").into_bytes())
                    .with_tag(tag)
                    .with_keys([format!("key-{i}")])
                    .with_property("n", i.to_string()),
            )
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await.expect("send acknowledged");
        sent.insert(r.message_id, i);
    }
    let batch: Vec<Message> = (200..210)
        .map(|i| {
            Message::new("plain", format!("body-{i}").into_bytes())
                .with_tag("a")
                .with_keys([format!("key-{i}")])
                .with_property("n", i.to_string())
        })
        .collect();
    let receipts = p.send_batch(batch).await.unwrap();
    assert_eq!(receipts.len(), 10);
    for (k, r) in receipts.into_iter().enumerate() {
        sent.insert(r.message_id, 200 + k);
    }
    assert_eq!(sent.len(), 210, "message ids are unique");

    // Tag filter: only the 110 messages tagged "a", every field intact.
    let c = SimpleConsumer::builder(config(), "c-simple")
        .subscribe("plain", Filter::Tags(vec!["a".into()]))
        .start()
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    let start = Instant::now();
    while got.len() < 110 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "received {}",
            got.len()
        );
        for m in c.receive(32, Duration::from_secs(30)).await.unwrap() {
            let i = sent[&m.message_id];
            assert_eq!(m.tag.as_deref(), Some("a"));
            assert!(i % 2 == 0 || i >= 200, "message {i} is not tagged a");
            assert_eq!(m.body, format!("body-{i}").into_bytes());
            assert_eq!(m.keys, vec![format!("key-{i}")]);
            assert_eq!(m.properties.get("n"), Some(&i.to_string()));
            assert_eq!(m.topic, "plain");
            assert_eq!(m.delivery_attempt, 1);
            assert!(m.store_ms.is_some() && m.queue_offset.is_some());
            c.ack(&m).await.unwrap();
            assert!(got.insert(m.message_id), "no duplicates without failures");
        }
    }
    // Nothing more: acknowledged messages do not come back.
    let rest = c.receive(32, Duration::from_secs(30)).await.unwrap();
    assert!(rest.is_empty(), "{} unexpected messages", rest.len());

    // Change invisible duration: the old receipt no longer acks; the message comes back.
    let r = p
        .send(Message::new("redeliver", b"again".to_vec()))
        .await
        .unwrap();
    let c2 = SimpleConsumer::builder(config(), "c-redeliver")
        .subscribe("redeliver", Filter::All)
        .start()
        .await
        .unwrap();
    let mut m = loop {
        let mut ms = c2.receive(1, Duration::from_secs(30)).await.unwrap();
        if let Some(m) = ms.pop() {
            break m;
        }
    };
    assert_eq!(m.message_id, r.message_id);
    let old = m.clone();
    c2.change_invisible_duration(&mut m, Duration::from_secs(1))
        .await
        .unwrap();
    assert_ne!(m.receipt_handle, old.receipt_handle);
    let e = c2.ack(&old).await.unwrap_err();
    assert!(
        e.is_definite(),
        "a stale receipt is a definite refusal: {e}"
    );
    let again = loop {
        let mut ms = c2.receive(1, Duration::from_secs(30)).await.unwrap();
        if let Some(m) = ms.pop() {
            break m;
        }
    };
    assert_eq!(again.message_id, r.message_id);
    assert_eq!(again.delivery_attempt, 2);
    c2.ack(&again).await.unwrap();
    c2.shutdown().await;
    c.shutdown().await;
    p.shutdown().await;
}

async fn push_consumer_bounds_concurrency_and_redelivers_failures() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
    let (f, m, s) = (in_flight.clone(), max_seen.clone(), seen.clone());
    let consumer = PushConsumer::builder(config(), "c-push")
        .subscribe("plain", Filter::All)
        .max_concurrency(4)
        .start(move |msg| {
            let (f, m, s) = (f.clone(), m.clone(), s.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                let first = {
                    let mut s = s.lock().unwrap();
                    let v = s.entry(msg.message_id.clone()).or_default();
                    v.push(msg.delivery_attempt);
                    v.len() == 1
                };
                f.fetch_sub(1, Ordering::SeqCst);
                // Every tenth message fails its first delivery.
                let n: usize = msg.properties["n"].parse().unwrap();
                if first && n.is_multiple_of(10) {
                    ConsumeResult::Failure
                } else {
                    ConsumeResult::Success
                }
            }
        })
        .await
        .unwrap();
    // 210 messages, 21 of them twice.
    wait_for(90, "push consumption", || {
        let s = seen.lock().unwrap();
        s.len() == 210 && s.values().filter(|v| v.len() >= 2).count() >= 21
    })
    .await;
    consumer.shutdown().await;
    let s = seen.lock().unwrap();
    assert!(
        max_seen.load(Ordering::SeqCst) <= 4,
        "listener calls in flight exceeded the bound"
    );
    for v in s.values().filter(|v| v.len() >= 2) {
        assert_eq!(
            v[..2],
            [1, 2],
            "a failed message comes back with the next attempt"
        );
    }
}

async fn fifo_push_consumer_keeps_group_order() {
    let mut admin = AdminClient::connect(format!("http://{}", endpoint(PORT)))
        .await
        .unwrap();
    admin
        .upsert_group(GroupSpec {
            name: "c-fifo".into(),
            max_delivery_attempts: 16,
            fifo: true,
            retry_backoff_ms: vec![],
            exponential: None,
        })
        .await
        .unwrap();
    let p = Producer::builder(config())
        .topics(["fifo"])
        .start()
        .await
        .unwrap();
    // Four groups sent concurrently, each group's sends one after another.
    let sends = (0..4).map(|g| {
        let p = &p;
        async move {
            for step in 0..20 {
                let m = Message::new("fifo", format!("{step}").into_bytes())
                    .with_message_group(format!("account-{g}"));
                p.send(m).await.unwrap();
            }
        }
    });
    futures::future::join_all(sends).await;

    let log: Arc<Mutex<Vec<(String, u32, bool)>>> = Arc::default();
    let busy: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let overlap = Arc::new(AtomicUsize::new(0));
    let (l, b, o) = (log.clone(), busy.clone(), overlap.clone());
    let consumer = PushConsumer::builder(config(), "c-fifo")
        .subscribe("fifo", Filter::All)
        .max_concurrency(8)
        .start(move |msg| {
            let (l, b, o) = (l.clone(), b.clone(), o.clone());
            async move {
                let group = msg.message_group.clone().unwrap();
                if !b.lock().unwrap().insert(group.clone()) {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                let step: u32 = String::from_utf8(msg.body.clone())
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut l = l.lock().unwrap();
                // Step 5 of account-1 fails once: it is retried before step 6 runs.
                let fail = group == "account-1"
                    && step == 5
                    && !l.iter().any(|(g, s, _)| g == &group && *s == 5);
                l.push((group.clone(), step, !fail));
                b.lock().unwrap().remove(&group);
                if fail {
                    ConsumeResult::Failure
                } else {
                    ConsumeResult::Success
                }
            }
        })
        .await
        .unwrap();
    wait_for(60, "FIFO consumption", || {
        log.lock().unwrap().iter().filter(|e| e.2).count() >= 80
    })
    .await;
    consumer.shutdown().await;
    p.shutdown().await;
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "one message per group at a time"
    );
    let log = log.lock().unwrap();
    for g in 0..4 {
        let name = format!("account-{g}");
        let steps: Vec<u32> = log
            .iter()
            .filter(|(n, _, ok)| n == &name && *ok)
            .map(|e| e.1)
            .collect();
        assert_eq!(steps, (0..20).collect::<Vec<_>>(), "order of {name}");
    }
    let fails: Vec<_> = log.iter().filter(|e| !e.2).collect();
    assert_eq!(fails.len(), 1);
}

async fn pull_consumer_seeks_pulls_and_commits() {
    let p = Producer::builder(config())
        .topics(["pull"])
        .start()
        .await
        .unwrap();
    let mut first = BTreeSet::new();
    let mut second = BTreeSet::new();
    // Where each receipt says its message went (the broker picks the queue).
    let mut places = BTreeMap::new();
    for i in 0..40 {
        let r = p
            .send(Message::new("pull", format!("{i}").into_bytes()))
            .await
            .unwrap();
        let (broker, queue) = r.stored_in.clone().expect("the broker names the queue");
        places.insert(r.message_id.clone(), (broker, queue, r.offset));
        if i < 20 { &mut first } else { &mut second }.insert(r.message_id);
        if i == 19 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    p.shutdown().await;
    // Store times of the two halves are 30 ms apart; seek to the middle of the gap.
    let c = PullConsumer::builder(config(), "c-pull")
        .topics(["pull"])
        .start()
        .await
        .unwrap();
    let queues = c.queues("pull").await.unwrap();
    let (mut total, mut pulled) = (0, BTreeSet::new());
    for q in &queues {
        assert_eq!(c.offset_for(q, SeekTo::Beginning).await.unwrap(), 0);
        let end = c.offset_for(q, SeekTo::End).await.unwrap();
        total += end;
        let mut at = 0;
        while at < end {
            let got = c.pull(q, at, 7, &Filter::All).await.unwrap();
            for (k, m) in got.messages.iter().enumerate() {
                assert_eq!(m.queue_offset, Some(at + k as i64), "offsets are dense");
                assert_eq!(m.queue_id, q.id);
                assert_eq!(
                    places[&m.message_id],
                    (q.broker.clone(), q.id, at + k as i64),
                    "the send receipt named this place"
                );
                pulled.insert(m.message_id.clone());
            }
            assert!(got.next_offset > at);
            at = got.next_offset;
        }
        // At the end: an empty answer after the long poll, same offset.
        if q.id == queues[0].id {
            let got = c.pull(q, end, 7, &Filter::All).await.unwrap();
            assert!(got.messages.is_empty());
            assert_eq!(got.next_offset, end);
            // Commits only move forward unless reset.
            assert_eq!(c.committed(q).await.unwrap(), None);
            c.commit(q, end).await.unwrap();
            assert_eq!(c.committed(q).await.unwrap(), Some(end));
            c.commit(q, 0).await.unwrap();
            assert_eq!(
                c.committed(q).await.unwrap(),
                Some(end),
                "a stale commit is ignored"
            );
            c.reset(q, 0).await.unwrap();
            assert_eq!(c.committed(q).await.unwrap(), Some(0), "a reset rewinds");
            let e = c.commit(q, end + 100).await.unwrap_err();
            assert_eq!(e.code(), Some(raftmq_proto::v2::Code::IllegalOffset), "{e}");
        }
    }
    assert_eq!(total, 40);
    // Through followers only: they pass every offset RPC on to the leader, with the same
    // answers.
    let q = &queues[0];
    let mut via_followers = q.clone();
    via_followers.addrs = q.addrs[1..].to_vec();
    assert!(
        !via_followers.addrs.is_empty(),
        "the route lists every member"
    );
    let end = c.offset_for(q, SeekTo::End).await.unwrap();
    assert_eq!(
        c.offset_for(&via_followers, SeekTo::End).await.unwrap(),
        end
    );
    let direct = c.pull(q, 0, 64, &Filter::All).await.unwrap();
    let passed = c.pull(&via_followers, 0, 64, &Filter::All).await.unwrap();
    let ids = |p: &raftmq_client::Pulled| {
        p.messages
            .iter()
            .map(|m| (m.queue_offset, m.message_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&passed), ids(&direct));
    assert_eq!(passed.next_offset, direct.next_offset);
    c.commit(&via_followers, end).await.unwrap();
    assert_eq!(c.committed(&via_followers).await.unwrap(), Some(end));
    assert_eq!(c.committed(q).await.unwrap(), Some(end));
    let all: BTreeSet<_> = first.union(&second).cloned().collect();
    assert_eq!(pulled, all);
    // Backtracking by time: from the gap on, exactly the second half.
    let mut gap = None;
    for q in &queues {
        let end = c.offset_for(q, SeekTo::End).await.unwrap();
        let mut at = 0;
        while at < end {
            let got = c.pull(q, at, 32, &Filter::All).await.unwrap();
            for m in &got.messages {
                if m.body == b"19" {
                    gap = m.store_ms.map(|t| t + 15);
                }
            }
            at = got.next_offset;
        }
    }
    let gap = gap.expect("message 19 found");
    let mut later = BTreeSet::new();
    for q in &queues {
        let from = c.offset_for(q, SeekTo::Timestamp(gap)).await.unwrap();
        let got = c.pull(q, from, 64, &Filter::All).await.unwrap();
        later.extend(got.messages.into_iter().map(|m| m.message_id));
    }
    assert_eq!(
        later, second,
        "seeking to a time replays what was stored from then on"
    );
    c.shutdown().await;
}

/// Messages with a delivery time (issue 14): invisible until then, delivered intact with
/// their delivery time, a recalled one never; recalls after delivery and delivery times past
/// the broker's horizon are definite refusals.
async fn delayed_messages_wait_and_recalled_ones_never_come() {
    let p = Producer::builder(config())
        .topics(["delayed"])
        .start()
        .await
        .unwrap();
    let c = SimpleConsumer::builder(config(), "c-delayed")
        .subscribe("delayed", Filter::All)
        .start()
        .await
        .unwrap();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let due = now_ms() + 2_000;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(due);
    let a = p
        .send(
            Message::new("delayed", b"a".to_vec())
                .with_delivery_time(at)
                .with_keys(["ka"])
                .with_property("p", "1"),
        )
        .await
        .unwrap();
    let b = p
        .send(Message::new("delayed", b"b".to_vec()).with_delivery_time(at))
        .await
        .unwrap();
    assert!(a.recall_handle.is_some() && b.recall_handle.is_some());
    p.recall("delayed", &b).await.unwrap();
    let e = p.recall("delayed", &b).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");

    let start = Instant::now();
    let m = loop {
        assert!(start.elapsed() < Duration::from_secs(20), "never delivered");
        let mut got = c.receive(8, Duration::from_secs(30)).await.unwrap();
        let t = now_ms();
        if let Some(m) = got.pop() {
            assert!(got.is_empty(), "the recalled message was delivered");
            // One clock here (dev), so early is early.
            assert!(t >= due, "delivered {} ms early", due - t);
            break m;
        }
    };
    assert_eq!(m.message_id, a.message_id);
    assert_eq!(m.body, b"a");
    assert_eq!(m.keys, vec!["ka".to_string()]);
    assert_eq!(m.properties.get("p").map(String::as_str), Some("1"));
    assert_eq!(m.delivery_ms, Some(due));
    c.ack(&m).await.unwrap();
    // The recalled one never comes, and a delivered one cannot be recalled.
    let rest = c.receive(8, Duration::from_secs(30)).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let e = p.recall("delayed", &a).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    // A delivery time in the past is delivered at once.
    let past = p
        .send(
            Message::new("delayed", b"past".to_vec())
                .with_delivery_time(std::time::UNIX_EPOCH + Duration::from_millis(due - 60_000)),
        )
        .await
        .unwrap();
    let got = c.receive(8, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, past.message_id);
    c.ack(&got[0]).await.unwrap();
    // Beyond the horizon (3 days by default).
    let e = p
        .send(
            Message::new("delayed", b"far".to_vec()).with_delay(Duration::from_secs(4 * 24 * 3600)),
        )
        .await
        .unwrap_err();
    assert!(e.is_definite(), "{e}");
    c.shutdown().await;
    p.shutdown().await;
}

/// Transactions (issue 15): a committed half message is delivered once, a rolled-back one
/// never; one left undecided is delivered once the broker's check-back (after 6 s) reaches
/// the producer's checker, and one its checker does not know stays undecided; a repeated
/// commit is accepted, a contrary rollback refused. And an invalid topic is a definite
/// refusal.
async fn transactions_commit_roll_back_and_check_back() {
    let checked = Arc::new(Mutex::new(Vec::new()));
    let seen = checked.clone();
    let p = Producer::builder(config())
        .topics(["tx"])
        .transaction_checker(move |m: &raftmq_client::ReceivedMessage| {
            seen.lock().unwrap().push(m.message_id.clone());
            match m.body.last() {
                Some(b'c') => raftmq_client::TransactionResolution::Commit,
                Some(b'r') => raftmq_client::TransactionResolution::Rollback,
                _ => raftmq_client::TransactionResolution::Unknown,
            }
        })
        .start()
        .await
        .unwrap();
    let half = |body: &'static [u8]| Message::new("tx", body.to_vec());
    let mut a = p.begin_transaction();
    let ra = a.send(half(b"a-c")).await.unwrap();
    assert!(ra.transaction_id.as_deref().is_some_and(|t| !t.is_empty()));
    a.commit().await.unwrap();
    let mut b = p.begin_transaction();
    let rb = b.send(half(b"b-r")).await.unwrap();
    b.rollback().await.unwrap();
    // Left to the check-back: the checker commits the first, does not know the second.
    let mut c = p.begin_transaction();
    let rc = c.send(half(b"c-c")).await.unwrap();
    let mut d = p.begin_transaction();
    let rd = d.send(half(b"d-u")).await.unwrap();
    drop((c, d));

    let consumer = SimpleConsumer::builder(config(), "c-tx")
        .subscribe("tx", Filter::All)
        .start()
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        for m in consumer.receive(8, Duration::from_secs(30)).await.unwrap() {
            *got.entry(m.body.clone()).or_insert(0) += 1;
            consumer.ack(&m).await.unwrap();
        }
        if got.contains_key(b"c-c".as_slice()) && start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let want = BTreeMap::from([(b"a-c".to_vec(), 1), (b"c-c".to_vec(), 1)]);
    assert_eq!(got, want, "committed once each, the rest never");
    let asked = checked.lock().unwrap().clone();
    assert!(
        asked.contains(&rc.message_id) && asked.contains(&rd.message_id),
        "{asked:?}"
    );
    assert!(
        !asked.contains(&ra.message_id) && !asked.contains(&rb.message_id),
        "a decided transaction was checked back: {asked:?}"
    );
    // The one its checker does not know waits, listed by `raftmq admin tx list`, until an
    // operator commits it.
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_raftmq"))
            .args(["admin", "--endpoint", &endpoint(PORT), "tx"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = admin(&["list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d_id = rd.transaction_id.clone().unwrap();
    let entry = listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["transaction_id"] == d_id.as_str())
        .unwrap_or_else(|| panic!("{d_id} not listed: {listed}"))
        .clone();
    assert_eq!(entry["message_id"], rd.message_id.as_str());
    assert!(entry["checks"].as_u64().unwrap() >= 1, "{entry}");
    let out = admin(&["commit", &d_id]);
    assert!(out.status.success(), "{out:?}");
    let out = admin(&["rollback", &d_id]);
    assert!(
        !out.status.success(),
        "a rollback after the commit was accepted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("committed already"),
        "{out:?}"
    );
    let start = Instant::now();
    let late = loop {
        assert!(start.elapsed() < Duration::from_secs(10), "never delivered");
        let got = consumer.receive(8, Duration::from_secs(30)).await.unwrap();
        if let Some(m) = got.into_iter().next() {
            consumer.ack(&m).await.unwrap();
            break m;
        }
    };
    assert_eq!(late.body, b"d-u");
    consumer.shutdown().await;
    let e = p
        .send(Message::new("bad topic", b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidMessage(_)), "{e}");
    p.shutdown().await;
}

/// The examples (built by `cargo test`) and the CLI commands, as processes.
fn examples_and_cli() {
    let deps = std::env::current_exe().unwrap();
    let examples: PathBuf = deps.parent().unwrap().parent().unwrap().join("examples");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("spawn");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let ep = endpoint(PORT);
    let out = run(Command::new(examples.join("produce")).args([&ep, "ex-topic"]));
    assert!(out.contains("produce example done"), "{out}");
    let out = run(Command::new(examples.join("simple_consume")).args([&ep, "ex-topic", "ex-g"]));
    assert!(
        out.contains("simple_consume example done: 14 messages"),
        "{out}"
    );
    let out = run(Command::new(examples.join("push_consume")).args([&ep, "ex-topic", "ex-p", "3"]));
    assert!(
        out.contains("push_consume example done: 14 messages"),
        "{out}"
    );

    let bin = env!("CARGO_BIN_EXE_raftmq");
    let out = run(Command::new(bin).args([
        "produce",
        "--endpoints",
        &ep,
        "--topic",
        "cli",
        "--count",
        "500",
        "--size",
        "100",
        "--tag",
        "t",
    ]));
    assert!(out.contains("sent 500 of 500"), "{out}");
    let out = run(Command::new(bin).args([
        "consume",
        "--endpoints",
        &ep,
        "--topic",
        "cli",
        "--count",
        "500",
        "--idle-exit",
        "20",
    ]));
    assert!(out.contains("consumed 500 from cli"), "{out}");
    // A readable error for a bad endpoint.
    let out = Command::new(bin)
        .args(["produce", "--endpoints", "nowhere", "--topic", "cli"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not host:port"));
}
