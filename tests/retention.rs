//! Retention on a real `raftmq dev` process (issue 12): with 1 MiB segments and a retention of
//! a few seconds, the oldest segment files disappear from every replica's disk, consumers
//! behind the horizon go on from the first retained message (pull: RocketMQ's out-of-range
//! correction; receive: the group starts there), nothing newer is lost, and a restart comes
//! back with the same horizon.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use common::Dev;
use common::endpoint;
use futures::StreamExt;
use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::SeekTo;

fn client_config(port: u16) -> ClientConfig {
    let mut c = ClientConfig::new(endpoint(port));
    c.request_timeout = Duration::from_secs(5);
    c.long_polling_timeout = Duration::from_secs(1);
    c
}

/// Segment files of each replica's log.
fn segments(dev: &Dev) -> Vec<usize> {
    (1..=3)
        .map(|i| {
            let dir = dev.dir.join(format!("data/n{i}/group-1/log"));
            count_segs(&dir)
        })
        .collect()
}

fn count_segs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

async fn send_all(port: u16, topic: &str, prefix: &str, n: usize) -> Vec<String> {
    let p = Producer::builder(client_config(port))
        .topics([topic])
        .start()
        .await
        .unwrap();
    let body = vec![b'r'; 1024];
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    // 32 in flight: group commit makes this quick even in a debug build.
    futures::stream::iter(ids.iter())
        .map(|id| {
            let m = Message::new(topic, body.clone()).with_message_id(id.clone());
            let p = &p;
            async move {
                p.send(m).await.unwrap_or_else(|e| panic!("send {id}: {e}"));
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    p.shutdown().await;
    ids
}

async fn receive_all(port: u16, topic: &str, group: &str, want: usize) -> BTreeSet<String> {
    common::receive_all(client_config(port), topic, group, want, false).await
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn old_segments_are_deleted_and_consumers_go_on_from_the_first_retained_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = 19600;
    let retention = [
        "--segment-mb",
        "1",
        "--retention-hours",
        "0.001",
        "--retention-check-secs",
        "0.2",
    ];
    // 3.6 s of retention.
    let mut dev = Dev::start(dir.path(), port, &retention);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // ~4 MiB: four segments per replica (retention may start deleting while they are sent).
    let old = rt.block_on(send_all(port, "Ret", "old", 4000));

    // Once they are older than the retention, every replica deletes the sealed segments.
    wait_until(
        "old segments deleted on every replica",
        Duration::from_secs(30),
        || segments(&dev).iter().all(|n| *n <= 1),
    );

    let new = rt.block_on(send_all(port, "Ret", "new", 200));
    rt.block_on(async {
        // A pull consumer behind the horizon is moved to the first retained offset.
        let pc = PullConsumer::builder(client_config(port), "ret-pull")
            .topics(["Ret"])
            .start()
            .await
            .unwrap();
        let mut pulled = BTreeSet::new();
        let mut moved = 0;
        for q in pc.queues("Ret").await.unwrap() {
            let start = pc.offset_for(&q, SeekTo::Beginning).await.unwrap();
            let end = pc.offset_for(&q, SeekTo::End).await.unwrap();
            assert!(
                start > 0,
                "queue {} kept everything (start 0, end {end})",
                q.id
            );
            let first = pc.pull(&q, 0, 32, &Filter::All).await.unwrap();
            assert!(first.messages.is_empty());
            assert_eq!(first.next_offset, start, "pull below the start moves to it");
            moved += 1;
            let mut off = start;
            while off < end {
                let p = pc.pull(&q, off, 256, &Filter::All).await.unwrap();
                assert!(p.next_offset > off, "no progress at {off} of {end}");
                for m in p.messages {
                    pulled.insert(m.message_id.clone());
                }
                off = p.next_offset;
            }
        }
        assert!(moved > 0);
        pc.shutdown().await;
        for id in &new {
            assert!(
                pulled.contains(id),
                "{id}, sent after the deletion, was not pulled"
            );
        }
        let old_pulled = old.iter().filter(|id| pulled.contains(*id)).count();
        assert!(
            old_pulled < old.len() / 2,
            "{old_pulled} of {} old messages survived",
            old.len()
        );

        // A receive group that never read the topic starts at the first retained message.
        let got = receive_all(port, "Ret", "ret-recv", pulled.len()).await;
        assert_eq!(got, pulled, "receive and pull disagree on what is retained");
    });

    // The admin status says what retention did.
    let status = dev.admin(&["status"]);
    assert!(status.contains("older deleted"), "{status}");
    assert!(status.contains("deleted by retention"), "{status}");

    // A restart keeps the horizon (snapshot plus purged log) and serves what is retained.
    dev.stop();
    let log = std::fs::read_to_string(dev.log_path()).unwrap();
    assert!(
        log.contains("retention: deleting messages"),
        "no retention in the log"
    );
    let kept = segments(&dev);
    dev.restart();
    assert_eq!(segments(&dev), kept);
    let after = rt.block_on(send_all(port, "Ret", "after", 50));
    let got = rt.block_on(receive_all(port, "Ret", "ret-recv", after.len()));
    for id in &after {
        assert!(got.contains(id), "{id} lost after the restart");
    }
    dev.stop();
}

#[test]
fn a_size_limit_keeps_each_group_log_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = 19700;
    let dev = Dev::start(
        dir.path(),
        port,
        &[
            "--segment-mb",
            "1",
            "--retention-hours",
            "0",
            "--retention-mb",
            "2",
            "--retention-check-secs",
            "0.2",
        ],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sent = rt.block_on(send_all(port, "Size", "s", 6000));
    wait_until(
        "every replica's log within 2 MiB plus a segment",
        Duration::from_secs(30),
        || segments(&dev).iter().all(|n| *n <= 3),
    );
    // The newest messages are all there.
    let got = rt.block_on(receive_all(port, "Size", "size-recv", sent.len()));
    assert!(got.len() < sent.len(), "nothing was deleted");
    for id in &sent[sent.len() - 500..] {
        assert!(got.contains(id), "{id}, among the newest, was deleted");
    }
}

/// A topic with a retention age of its own (`raftmq admin topic --retention-hours`) loses its
/// old messages while the cluster keeps everything else: its queues start later, a consumer
/// group gets only what is younger, another topic on the same log keeps every message, and
/// the age survives a restart. Clearing it (0) brings the cluster's age back.
#[test]
fn a_topic_with_its_own_age_expires_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = 19300;
    // The cluster keeps messages 72 h (the default); retention checks five times a second.
    let mut dev = Dev::start(dir.path(), port, &["--retention-check-secs", "0.2"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    dev.admin(&["topic", "Short", "--queues", "4"]);
    dev.admin(&["topic", "Long", "--queues", "4"]);
    // Bad ages are refused with a readable message.
    let err = dev.admin_refused(&["topic", "Short", "--retention-hours=-1"]);
    assert!(err.contains("not between 0 and 876000"), "{err}");
    // 3.6 s.
    dev.admin(&["topic", "Short", "--retention-hours", "0.001"]);
    let status = dev.admin(&["status"]);
    assert!(
        status.contains("topic Short keeps messages 3.600 s"),
        "{status}"
    );
    // Setting the age alone keeps the topic's queues and kind.
    assert!(status.contains("topic Short (mixed, 4 queues)"), "{status}");
    // Of a topic that does not exist: refused, readably.
    let err = dev.admin_refused(&["topic", "Nope", "--retention-hours", "1"]);
    assert!(err.contains("TopicNotFound"), "{err}");

    let old_short = rt.block_on(send_all(port, "Short", "os", 300));
    let old_long = rt.block_on(send_all(port, "Long", "ol", 300));
    wait_until(
        "the short topic's old messages deleted",
        Duration::from_secs(30),
        || {
            let s = dev.admin(&["status"]);
            s.lines()
                .any(|l| l.starts_with("topic Short") && l.contains("300 deleted by retention"))
        },
    );
    let new_short = rt.block_on(send_all(port, "Short", "ns", 50));
    let got = rt.block_on(receive_all(port, "Short", "short-recv", new_short.len()));
    for id in &new_short {
        assert!(got.contains(id), "{id} is younger than the topic's age");
    }
    assert!(
        old_short.iter().all(|id| !got.contains(id)),
        "an expired message was delivered"
    );
    // The other topic, in the same log, keeps everything.
    let got = rt.block_on(receive_all(port, "Long", "long-recv", old_long.len()));
    assert_eq!(got.len(), old_long.len());
    let status = dev.admin(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("topic Long") && !l.contains("deleted")),
        "{status}"
    );

    // The age is replicated state: it survives a restart.
    dev.stop();
    dev.restart();
    let status = dev.admin(&["status"]);
    assert!(
        status.contains("topic Short keeps messages 3.600 s"),
        "{status}"
    );
    // 0: the cluster's age again (nothing more expires).
    dev.admin(&["topic", "Short", "--retention-hours", "0"]);
    let status = dev.admin(&["status"]);
    assert!(!status.contains("topic Short keeps"), "{status}");
    let kept = rt.block_on(send_all(port, "Short", "kept", 20));
    std::thread::sleep(Duration::from_secs(5));
    // The group that already took the younger messages: only these 20 are left for it (a new
    // group would also get those still within the old age, and could stop at 20 of them).
    let got = rt.block_on(receive_all(port, "Short", "short-recv", kept.len()));
    for id in &kept {
        assert!(
            got.contains(id),
            "{id} expired after the topic's age was cleared"
        );
    }
}
