//! SQL92 subscriptions with the native client against `raftmq dev` (issue 16, item 1): a
//! simple, a push and a pull consumer each get exactly the messages their expression matches
//! (properties, the `TAGS` and `KEYS` pseudo-properties, numbers read from strings), and a
//! malformed expression is refused with ILLEGAL_FILTER_EXPRESSION and its position. Run by
//! `tests/client.rs` on its `raftmq dev`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use raftmq_client::ClientConfig;
use raftmq_client::ConsumeResult;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::PushConsumer;
use raftmq_client::SeekTo;
use raftmq_client::SimpleConsumer;
use raftmq_proto::v2::Code;

const TOPIC: &str = "sql";
const COUNT: usize = 200;

/// The messages: property `n` = i, tag "a" for even i and "b" for odd, key "key-i"; every
/// tenth has `color = red`.
fn message(i: usize) -> Message {
    let mut m = Message::new(TOPIC, format!("body-{i}").into_bytes())
        .with_tag(if i.is_multiple_of(2) { "a" } else { "b" })
        .with_keys([format!("key-{i}")])
        .with_property("n", i.to_string());
    if i.is_multiple_of(10) {
        m = m.with_property("color", "red");
    }
    m
}

pub async fn sql92_subscriptions_get_only_matching_messages(config: ClientConfig) {
    let p = Producer::builder(config.clone())
        .topics([TOPIC])
        .start()
        .await
        .unwrap();
    let mut index = BTreeMap::new();
    for i in 0..COUNT {
        let r = p.send(message(i)).await.unwrap();
        index.insert(r.message_id, i);
    }
    p.shutdown().await;

    // A simple consumer: numbers compared with a string property, and TAGS.
    let want: BTreeSet<usize> = (50..150).filter(|i| i % 2 == 0).collect();
    let got = simple(
        &config,
        "n BETWEEN 50 AND 149 AND TAGS = 'a'",
        &index,
        want.len(),
    )
    .await;
    assert_eq!(got, want, "simple consumer");

    // KEYS, IN, IS NULL and OR.
    let want: BTreeSet<usize> = (0..COUNT)
        .filter(|i| *i == 7 || (i % 10 == 0 && *i >= 150))
        .collect();
    let expr = "KEYS = 'key-7' OR (color IN ('red', 'blue') AND n >= 150) OR missing IS NOT NULL";
    let got = simple(&config, expr, &index, want.len()).await;
    assert_eq!(got, want, "simple consumer, keys");

    // A push consumer.
    let seen: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let (s, ix) = (seen.clone(), Arc::new(index.clone()));
    let push = PushConsumer::builder(config.clone(), "c-sql-push")
        .subscribe(TOPIC, Filter::Sql("n < 10".into()))
        .start(move |m| {
            let (s, ix) = (s.clone(), ix.clone());
            async move {
                s.lock().unwrap().insert(ix[&m.message_id]);
                ConsumeResult::Success
            }
        })
        .await
        .unwrap();
    let start = Instant::now();
    while seen.lock().unwrap().len() < 10 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    push.shutdown().await;
    assert_eq!(*seen.lock().unwrap(), (0..10).collect(), "push consumer");

    // A pull consumer, queue by queue to the end.
    let c = PullConsumer::builder(config.clone(), "c-sql-pull")
        .topics([TOPIC])
        .start()
        .await
        .unwrap();
    let filter = Filter::Sql("n >= 190 OR n = 3".into());
    let mut pulled = BTreeSet::new();
    for q in c.queues(TOPIC).await.unwrap() {
        let end = c.offset_for(&q, SeekTo::End).await.unwrap();
        let mut at = 0;
        while at < end {
            let got = c.pull(&q, at, 4, &filter).await.unwrap();
            assert!(got.messages.len() <= 4);
            for m in &got.messages {
                assert!(m.queue_offset.unwrap() >= at);
                assert!(pulled.insert(index[&m.message_id]), "pulled twice");
            }
            assert!(got.next_offset > at, "a pull moves on");
            at = got.next_offset;
        }
    }
    let want: BTreeSet<usize> = (190..COUNT).chain([3]).collect();
    assert_eq!(pulled, want, "pull consumer");

    // A malformed expression is refused, naming where.
    let bad = SimpleConsumer::builder(config.clone(), "c-sql-bad")
        .subscribe(TOPIC, Filter::Sql("n > AND".into()))
        .start()
        .await
        .unwrap();
    let e = bad.receive(1, Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::IllegalFilterExpression), "{e}");
    assert!(e.to_string().contains("column"), "{e}");
    bad.shutdown().await;
    c.shutdown().await;
}

/// Receives with a SQL92 subscription until `count` arrive, then checks that nothing else
/// does; the indexes of what came.
async fn simple(
    config: &ClientConfig,
    expr: &str,
    index: &BTreeMap<String, usize>,
    count: usize,
) -> BTreeSet<usize> {
    let group = format!("c-sql-{}", expr.len());
    let c = SimpleConsumer::builder(config.clone(), group)
        .subscribe(TOPIC, Filter::Sql(expr.into()))
        .start()
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    let start = Instant::now();
    while got.len() < count {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{expr}: received {got:?}"
        );
        for m in c.receive(32, Duration::from_secs(30)).await.unwrap() {
            assert!(got.insert(index[&m.message_id]), "{expr}: a duplicate");
            c.ack(&m).await.unwrap();
        }
    }
    // Nothing more.
    let rest = c.receive(32, Duration::from_secs(30)).await.unwrap();
    let rest: Vec<usize> = rest.iter().map(|m| index[&m.message_id]).collect();
    assert!(rest.is_empty(), "{expr}: unexpected {rest:?}");
    c.shutdown().await;
    got
}
