//! Failed deliveries with the native client against `raftmq dev` (issue 14, items 4 and 5):
//! forwarding to the dead-letter topic, nacks with the group's retry backoff, and a departed
//! push consumer's renewed deliveries. Run by `tests/client.rs` on its `raftmq dev`.

use std::time::Duration;
use std::time::Instant;

use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;
use raftmq_proto::admin::GroupSpec;
use raftmq_proto::admin::admin_client::AdminClient;

/// ForwardMessageToDeadLetterQueue (issue 14, item 5): the message moves to `%DLQ%<group>`
/// with its id and ends its delivery; a repeat (a lost answer) is OK and moves nothing again.
pub async fn forwarded_messages_go_to_the_dead_letter_topic(config: ClientConfig) {
    let p = Producer::builder(config.clone())
        .topics(["given-up"])
        .start()
        .await
        .unwrap();
    let sent = p
        .send(Message::new("given-up", b"poison".to_vec()).with_keys(["kp"]))
        .await
        .unwrap();
    let c = SimpleConsumer::builder(config.clone(), "c-gives-up")
        .subscribe("given-up", Filter::All)
        .start()
        .await
        .unwrap();
    let m = loop {
        if let Some(m) = c.receive(1, Duration::from_secs(1)).await.unwrap().pop() {
            break m;
        }
    };
    assert_eq!(m.message_id, sent.message_id);
    c.forward_to_dead_letter_queue(&m).await.unwrap();
    // Its delivery ended: the receipt no longer acks, and a repeat is OK and moves nothing.
    let e = c.ack(&m).await.unwrap_err();
    assert!(e.is_definite(), "{e}");
    c.forward_to_dead_letter_queue(&m).await.unwrap();
    // Never delivered to the group again, even after its invisibility would have run out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rest = c.receive(8, Duration::from_secs(1)).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // Exactly once in the dead-letter topic, with its id and keys.
    let dlq = SimpleConsumer::builder(config.clone(), "c-reads-dlq")
        .subscribe("%DLQ%c-gives-up", Filter::All)
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        for d in dlq.receive(8, Duration::from_secs(30)).await.unwrap() {
            dlq.ack(&d).await.unwrap();
            got.push(d);
        }
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message_id, sent.message_id);
    assert_eq!(got[0].body, b"poison");
    assert_eq!(got[0].keys, vec!["kp".to_string()]);
    // A receipt that was never issued is refused: garbage, or well-formed for an offset the
    // group was never given (not answered OK as a stale one is).
    let mut forged = m.clone();
    forged.receipt_handle = "not-a-receipt".into();
    let e = c.forward_to_dead_letter_queue(&forged).await.unwrap_err();
    assert!(e.is_definite(), "{e}");
    let (g, r) = broker::receipt::decode(&m.receipt_handle).unwrap();
    let never = broker::command::Receipt {
        offset: broker::model::QueueOffset(r.offset.0 + 1_000),
        ..r
    };
    forged.receipt_handle = broker::receipt::encode(g, &never);
    let e = c.forward_to_dead_letter_queue(&forged).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { code, .. } if code == raftmq_proto::v2::Code::InvalidReceiptHandle as i32),
        "{e}"
    );
    dlq.shutdown().await;
    c.shutdown().await;
    p.shutdown().await;
}

/// A nack (issue 14, item 4): the group's retry policy, not the consumer, decides when the
/// message comes back; an exponential policy is expanded into steps, a bad one refused.
pub async fn nacked_messages_come_back_after_the_group_backoff(config: ClientConfig) {
    let mut admin = AdminClient::connect(format!("http://{}", config.endpoints[0].clone()))
        .await
        .unwrap();
    let spec = |backoff: Vec<u64>, exponential| GroupSpec {
        name: "c-nack".into(),
        max_delivery_attempts: 5,
        fifo: false,
        retry_backoff_ms: backoff,
        exponential,
    };
    let bad = raftmq_proto::admin::ExponentialBackoff {
        initial_ms: 1_000,
        max_ms: 10,
        multiplier: 2.0,
    };
    let r = admin.upsert_group(spec(vec![], Some(bad))).await.unwrap();
    assert!(
        r.get_ref().error.contains("exponential"),
        "{:?}",
        r.get_ref()
    );
    let good = raftmq_proto::admin::ExponentialBackoff {
        initial_ms: 1_500,
        max_ms: 60_000,
        multiplier: 4.0,
    };
    let r = admin.upsert_group(spec(vec![], Some(good))).await.unwrap();
    assert_eq!(r.get_ref().error, "");
    let p = Producer::builder(config.clone())
        .topics(["nacked"])
        .start()
        .await
        .unwrap();
    let sent = p
        .send(Message::new("nacked", b"fails once".to_vec()))
        .await
        .unwrap();
    let c = SimpleConsumer::builder(config.clone(), "c-nack")
        .subscribe("nacked", Filter::All)
        .start()
        .await
        .unwrap();
    let receive_one = || async {
        loop {
            if let Some(m) = c.receive(1, Duration::from_secs(60)).await.unwrap().pop() {
                break m;
            }
        }
    };
    let mut m = receive_one().await;
    assert_eq!(
        (m.message_id.as_str(), m.delivery_attempt),
        (sent.message_id.as_str(), 1)
    );
    let old = m.clone();
    let nacked = Instant::now();
    c.nack(&mut m).await.unwrap();
    // The failed delivery's receipt no longer acks.
    assert!(c.ack(&old).await.unwrap_err().is_definite());
    // Back after the first step (1.5 s), long before the 60 s invisible duration.
    let again = receive_one().await;
    let waited = nacked.elapsed();
    assert_eq!(again.message_id, sent.message_id);
    assert_eq!(again.delivery_attempt, 2);
    assert!(
        waited >= Duration::from_millis(1_400) && waited < Duration::from_secs(20),
        "came back after {waited:?}"
    );
    c.ack(&again).await.unwrap();
    c.shutdown().await;
    p.shutdown().await;
}

/// An official push consumer's deliveries are renewed by the broker (`auto_renew`); when the
/// client says goodbye they come back after the group's retry backoff for their attempt, as
/// RocketMQ's proxy does, not when the 60 s lease would have run out (issue 14, item 4).
pub async fn a_departed_push_consumers_deliveries_come_back_after_the_backoff(
    config: ClientConfig,
) {
    use raftmq_proto::v2 as pb;
    use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
    let mut admin = AdminClient::connect(format!("http://{}", config.endpoints[0].clone()))
        .await
        .unwrap();
    let r = admin
        .upsert_group(GroupSpec {
            name: "c-departs".into(),
            max_delivery_attempts: 5,
            fifo: false,
            retry_backoff_ms: vec![2_000],
            exponential: None,
        })
        .await
        .unwrap();
    assert_eq!(r.get_ref().error, "");
    let p = Producer::builder(config.clone())
        .topics(["departs"])
        .start()
        .await
        .unwrap();
    let sent = p
        .send(Message::new("departs", b"held".to_vec()))
        .await
        .unwrap();
    let res = |name: &str| {
        Some(pb::Resource {
            resource_namespace: String::new(),
            name: name.into(),
        })
    };
    fn req<T>(t: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(t);
        r.metadata_mut()
            .insert("x-mq-client-id", "departing-push".parse().unwrap());
        r
    }
    let mut v2 = MessagingServiceClient::connect(format!("http://{}", config.endpoints[0].clone()))
        .await
        .unwrap();
    let mut held = None;
    while held.is_none() {
        let mut stream = v2
            .receive_message(req(pb::ReceiveMessageRequest {
                group: res("c-departs"),
                message_queue: Some(pb::MessageQueue {
                    topic: res("departs"),
                    id: -1,
                    ..Default::default()
                }),
                filter_expression: None,
                batch_size: 1,
                invisible_duration: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                auto_renew: true,
                long_polling_timeout: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                attempt_id: None,
            }))
            .await
            .unwrap()
            .into_inner();
        while let Some(r) = stream.message().await.unwrap() {
            if let Some(pb::receive_message_response::Content::Message(m)) = r.content {
                held = m.system_properties.map(|s| s.message_id);
            }
        }
    }
    assert_eq!(held.as_deref(), Some(sent.message_id.as_str()));
    v2.notify_client_termination(req(pb::NotifyClientTerminationRequest {
        group: res("c-departs"),
    }))
    .await
    .unwrap();
    let gone = Instant::now();
    let c = SimpleConsumer::builder(config.clone(), "c-departs")
        .subscribe("departs", Filter::All)
        .start()
        .await
        .unwrap();
    let again = loop {
        assert!(gone.elapsed() < Duration::from_secs(30), "never came back");
        if let Some(m) = c.receive(1, Duration::from_secs(30)).await.unwrap().pop() {
            break m;
        }
    };
    let waited = gone.elapsed();
    assert_eq!(again.message_id, sent.message_id);
    assert_eq!(again.delivery_attempt, 2);
    // The backoff (2 s), within a renewal tick (1 s): not the lease's 60 s.
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_secs(15),
        "came back after {waited:?}"
    );
    c.ack(&again).await.unwrap();
    c.shutdown().await;
    p.shutdown().await;
}
