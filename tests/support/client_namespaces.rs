//! Namespaces with the native client against `raftmq dev` (issue 16, item 5): topic and group
//! `ns` in namespaces `na`, `nb` and none are three topics and three groups. A simple and a
//! pull consumer of each get exactly their namespace's messages, named as their namespace
//! knows them; an illegal namespace is refused. Run by `tests/client.rs` on its `raftmq dev`.

use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::SeekTo;
use raftmq_client::SimpleConsumer;
use raftmq_proto::v2::Code;

const TOPIC: &str = "ns";
const GROUP: &str = "c-ns";
const PER_NAMESPACE: usize = 30;

fn within(config: &ClientConfig, namespace: &str) -> ClientConfig {
    let mut c = config.clone();
    c.namespace = namespace.to_string();
    c
}

pub async fn namespaces_keep_same_names_apart(config: ClientConfig) {
    let spaces = ["na", "nb", ""];
    let mut sent = Vec::new();
    for ns in spaces {
        let p = Producer::builder(within(&config, ns))
            .topics([TOPIC])
            .start()
            .await
            .unwrap();
        let mut ids = BTreeSet::new();
        for i in 0..PER_NAMESPACE {
            let m = Message::new(TOPIC, format!("{ns}-{i}").into_bytes());
            ids.insert(p.send(m).await.unwrap().message_id);
        }
        p.shutdown().await;
        sent.push(ids);
    }
    for (ns, ids) in spaces.iter().zip(&sent) {
        // A simple consumer: its namespace's messages and nothing else.
        let c = SimpleConsumer::builder(within(&config, ns), GROUP)
            .subscribe(TOPIC, Filter::All)
            .start()
            .await
            .unwrap();
        let mut got = BTreeSet::new();
        let start = Instant::now();
        while got.len() < ids.len() && start.elapsed() < Duration::from_secs(60) {
            for m in c.receive(32, Duration::from_secs(30)).await.unwrap() {
                assert!(ids.contains(&m.message_id), "{ns:?} got another's message");
                assert_eq!(m.topic, TOPIC);
                assert!(m.body.starts_with(format!("{ns}-").as_bytes()));
                got.insert(m.message_id.clone());
                c.ack(&m).await.unwrap();
            }
        }
        assert_eq!(&got, ids, "namespace {ns:?}");
        let rest = c.receive(32, Duration::from_secs(30)).await.unwrap();
        assert!(rest.is_empty(), "{ns:?}: {} more", rest.len());
        c.shutdown().await;

        // A pull consumer, queue by queue to the end of its namespace's topic.
        let pull = PullConsumer::builder(within(&config, ns), format!("{GROUP}-pull"))
            .topics([TOPIC])
            .start()
            .await
            .unwrap();
        let mut pulled = BTreeSet::new();
        for q in pull.queues(TOPIC).await.unwrap() {
            let end = pull.offset_for(&q, SeekTo::End).await.unwrap();
            let mut at = 0;
            while at < end {
                let r = pull.pull(&q, at, 16, &Filter::All).await.unwrap();
                pulled.extend(r.messages.into_iter().map(|m| m.message_id));
                at = r.next_offset;
            }
        }
        assert_eq!(&pulled, ids, "pulled in namespace {ns:?}");
        pull.shutdown().await;
    }
    // A namespace with a `%` could name another's resources: refused.
    let p = Producer::builder(within(&config, "na%x"))
        .topics([TOPIC])
        .start()
        .await;
    let e = match p {
        Err(e) => e,
        Ok(p) => p
            .send(Message::new(TOPIC, b"x".to_vec()))
            .await
            .unwrap_err(),
    };
    assert_eq!(e.code(), Some(Code::IllegalTopic), "{e}");
}
