//! Resets of a consumer group with `raftmq admin reset` against `raftmq dev` (issue 16, item
//! 4), seen by the native client: a receive-based group that consumed everything gets it all
//! again after `--earliest`; `--latest` skips what waits and forgets what is in flight (its ack
//! is refused); `--time-ms` starts at the first message stored from then on; the committed
//! offset of pull consumers of the group moves too; a bad reset is refused readably. Run by
//! `tests/client.rs` on its `raftmq dev`.

use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::SeekTo;
use raftmq_client::SimpleConsumer;

use crate::common::Dev;

const TOPIC: &str = "rst";
const GROUP: &str = "c-rst";

async fn send(p: &Producer, from: usize, count: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in from..from + count {
        let m = Message::new(TOPIC, format!("r-{i}").into_bytes());
        ids.insert(p.send(m).await.unwrap().message_id);
    }
    ids
}

/// Receives (and acks) until `want` arrived, then checks nothing more comes.
async fn receive_exactly(c: &SimpleConsumer, want: &BTreeSet<String>, what: &str) {
    let mut got = BTreeSet::new();
    let start = Instant::now();
    while got.len() < want.len() && start.elapsed() < Duration::from_secs(60) {
        for m in c.receive(16, Duration::from_secs(30)).await.unwrap() {
            assert!(
                want.contains(&m.message_id),
                "{what}: unexpected {}",
                m.message_id
            );
            assert!(got.insert(m.message_id.clone()), "{what}: twice");
            c.ack(&m).await.unwrap();
        }
    }
    assert_eq!(&got, want, "{what}");
    let rest = c.receive(16, Duration::from_secs(30)).await.unwrap();
    assert!(rest.is_empty(), "{what}: {} more", rest.len());
}

fn admin(dev: &Dev, args: &[&str]) -> String {
    tokio::task::block_in_place(|| dev.admin(args))
}

pub async fn a_reset_moves_a_group_for_every_consumer_model(config: ClientConfig, dev: &Dev) {
    let p = Producer::builder(config.clone())
        .topics([TOPIC])
        .start()
        .await
        .unwrap();
    let first = send(&p, 0, 20).await;
    let c = SimpleConsumer::builder(config.clone(), GROUP)
        .subscribe(TOPIC, Filter::All)
        .start()
        .await
        .unwrap();
    receive_exactly(&c, &first, "before any reset").await;

    // Earliest: everything again.
    let out = admin(dev, &["reset", GROUP, TOPIC, "--earliest"]);
    assert!(out.contains("group c-rst reset"), "{out}");
    receive_exactly(&c, &first, "after --earliest").await;

    // Latest, with one message held: it is forgotten (its ack refused), the rest skipped.
    let out = admin(dev, &["reset", GROUP, TOPIC, "--earliest"]);
    assert!(out.contains("-> 0"), "{out}");
    let held = c.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(held.len(), 1);
    let out = admin(dev, &["reset", GROUP, TOPIC, "--latest"]);
    assert!(out.contains("(1 in flight forgotten)"), "{out}");
    assert!(
        c.ack(&held[0]).await.is_err(),
        "a receipt from before the reset"
    );
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = send(&p, 20, 5).await;
    receive_exactly(&c, &second, "after --latest").await;

    // A time: the messages stored from then on.
    admin(
        dev,
        &["reset", GROUP, TOPIC, "--time-ms", &since.to_string()],
    );
    receive_exactly(&c, &second, "after --time-ms").await;
    c.shutdown().await;

    // The committed offset of the group's pull consumers moved with it: to the end after
    // --latest, to each queue's start after --earliest.
    admin(dev, &["reset", GROUP, TOPIC, "--latest"]);
    let pull = PullConsumer::builder(config.clone(), GROUP)
        .topics([TOPIC])
        .start()
        .await
        .unwrap();
    for q in pull.queues(TOPIC).await.unwrap() {
        let end = pull.offset_for(&q, SeekTo::End).await.unwrap();
        assert_eq!(pull.committed(&q).await.unwrap(), Some(end));
    }
    admin(dev, &["reset", GROUP, TOPIC, "--earliest"]);
    for q in pull.queues(TOPIC).await.unwrap() {
        assert_eq!(pull.committed(&q).await.unwrap(), Some(0));
    }
    pull.shutdown().await;
    p.shutdown().await;

    // Refused readably.
    let err =
        tokio::task::block_in_place(|| dev.admin_refused(&["reset", GROUP, "nope", "--latest"]));
    assert!(err.contains("hosts topic nope"), "{err}");
    let err = tokio::task::block_in_place(|| dev.admin_refused(&["reset", GROUP, TOPIC]));
    assert!(err.contains("required"), "{err}");
}
