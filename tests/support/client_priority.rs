//! Priority messages with the native client against `raftmq dev` (issue 16, item 2): a
//! backlog of priorities 0-9 and plain messages on a priority topic (`raftmq admin topic prio
//! --kind priority`, made by `tests/client.rs`) is received highest priority first, each
//! message with its priority; a mixed topic refuses priority messages (the broker's check:
//! this client does not compare types with the route), and a priority with a message group
//! is refused before sending.

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;
use raftmq_proto::v2::Code;

/// The priority topic `tests/client.rs` creates.
pub const TOPIC: &str = "prio";

pub async fn a_backlog_is_received_highest_priority_first(config: ClientConfig) {
    let p = Producer::builder(config.clone())
        .topics([TOPIC, "sql"])
        .start()
        .await
        .unwrap();
    let mut sent = BTreeMap::new();
    for i in 0..60u32 {
        // A spread of priorities in no order; every seventh message plain (priority 0).
        let priority = (i % 7 != 3).then_some((i * 7) % 10);
        let mut m = Message::new(TOPIC, format!("p-{i}").into_bytes());
        if let Some(pr) = priority {
            m = m.with_priority(pr);
        }
        sent.insert(p.send(m).await.unwrap().message_id, priority);
    }
    let c = SimpleConsumer::builder(config.clone(), "c-prio")
        .subscribe(TOPIC, Filter::All)
        .start()
        .await
        .unwrap();
    let mut order = Vec::new();
    let start = Instant::now();
    while order.len() < sent.len() && start.elapsed() < Duration::from_secs(60) {
        for m in c.receive(5, Duration::from_secs(30)).await.unwrap() {
            let want = sent[&m.message_id];
            assert_eq!(m.priority, want, "{}", m.message_id);
            order.push(want.unwrap_or(0));
            c.ack(&m).await.unwrap();
        }
    }
    assert_eq!(order.len(), sent.len());
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "highest priority first");
    c.shutdown().await;

    // A mixed topic refuses them (the broker says so).
    let e = p
        .send(Message::new("sql", b"x".to_vec()).with_priority(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::MessagePropertyConflictWithType), "{e}");
    // A priority goes with a plain message only.
    let e = p
        .send(
            Message::new(TOPIC, b"x".to_vec())
                .with_priority(1)
                .with_message_group("g"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidMessage(_)), "{e}");
    p.shutdown().await;
}
