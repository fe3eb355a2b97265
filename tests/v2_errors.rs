//! Bad requests get the right v2 status code and change nothing, against `raftmq dev` with
//! auto-creation off. Also: a long poll answers before the client's gRPC deadline.
#![cfg(not(madsim))]

mod common;

use std::time::Duration;
use std::time::Instant;

use common::Dev;
use raftmq_proto::admin::StatusRequest;
use raftmq_proto::admin::admin_client::AdminClient;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;

fn res(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn message(topic: &str, id: &str, body: Vec<u8>) -> pb::Message {
    pb::Message {
        topic: res(topic),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: id.into(),
            message_type: pb::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: body.into(),
    }
}

fn req<T>(t: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(t);
    r.metadata_mut()
        .insert("x-mq-client-id", "errors-test".parse().unwrap());
    r
}

async fn send_code(c: &mut MessagingServiceClient<Channel>, m: pb::Message) -> i32 {
    let r = c
        .send_message(req(pb::SendMessageRequest { messages: vec![m] }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len(), 1, "one entry per message");
    let code = r.status.unwrap().code;
    assert_eq!(r.entries[0].status.as_ref().unwrap().code, code);
    code
}

async fn messages_in(port: u16, topic: &str) -> Option<u64> {
    let mut a = AdminClient::connect(format!("http://{}", common::endpoint(port)))
        .await
        .unwrap();
    let s = a.status(StatusRequest {}).await.unwrap().into_inner();
    s.topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| t.queue_ends.iter().sum())
}

#[test]
fn bad_requests_get_the_right_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), 18400, &["--no-auto-create"]);
    dev.admin(&["topic", "Known", "--queues", "4", "--kind", "normal"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c =
            MessagingServiceClient::connect(format!("http://{}", common::endpoint(dev.port)))
                .await
                .unwrap()
                .max_encoding_message_size(64 << 20)
                .max_decoding_message_size(64 << 20);

        assert_eq!(
            send_code(&mut c, message("Known", "", b"x".to_vec())).await,
            Code::IllegalMessageId as i32
        );
        assert_eq!(
            send_code(&mut c, message("Known", "big", vec![0; (4 << 20) + 1])).await,
            Code::MessageBodyTooLarge as i32
        );
        assert_eq!(
            send_code(&mut c, message("Nowhere", "id1", b"x".to_vec())).await,
            Code::TopicNotFound as i32
        );
        assert_eq!(
            send_code(&mut c, message("bad topic!", "id1", b"x".to_vec())).await,
            Code::IllegalTopic as i32
        );
        let mut tagged = message("Known", "id2", b"x".to_vec());
        tagged.system_properties.as_mut().unwrap().tag = Some("a|b".into());
        assert_eq!(
            send_code(&mut c, tagged).await,
            Code::IllegalMessageTag as i32
        );
        let mut reserved = message("Known", "id3", b"x".to_vec());
        reserved
            .user_properties
            .insert("UNIQ_KEY".into(), "v".into());
        assert_eq!(
            send_code(&mut c, reserved).await,
            Code::IllegalMessagePropertyKey as i32
        );
        let mut fifo_on_normal = message("Known", "id4", b"x".to_vec());
        let sp = fifo_on_normal.system_properties.as_mut().unwrap();
        sp.message_type = pb::MessageType::Fifo as i32;
        sp.message_group = Some("g".into());
        assert_eq!(
            send_code(&mut c, fifo_on_normal).await,
            Code::MessagePropertyConflictWithType as i32
        );

        // A batch across two namespaces of one topic name is two topics (review of issue 16:
        // only the names were compared).
        let mut other = message("Known", "id6", b"x".to_vec());
        other.topic.as_mut().unwrap().resource_namespace = "ns".into();
        let r = c
            .send_message(req(pb::SendMessageRequest {
                messages: vec![message("Known", "id7", b"x".to_vec()), other],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.unwrap().code, Code::BadRequest as i32);

        // No client id.
        let r = c
            .send_message(tonic::Request::new(pb::SendMessageRequest {
                messages: vec![message("Known", "id5", b"x".to_vec())],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.unwrap().code, Code::ClientIdRequired as i32);

        // A receipt handle that is not one, and one that is well formed but unknown.
        for handle in [
            "garbage",
            "01000000000000000100000000000000000000000000000000000000000000000000",
        ] {
            let r = c
                .ack_message(req(pb::AckMessageRequest {
                    group: res("G"),
                    topic: res("Known"),
                    entries: vec![pb::AckMessageEntry {
                        message_id: "m".into(),
                        receipt_handle: handle.into(),
                        lite_topic: None,
                    }],
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.status.unwrap().code,
                Code::InvalidReceiptHandle as i32,
                "handle {handle}"
            );
        }

        // Receive: invisible duration out of range; unknown topic.
        let receive = |topic: &str, invisible: Duration, long_poll: Duration| {
            req(pb::ReceiveMessageRequest {
                group: res("G"),
                message_queue: Some(pb::MessageQueue {
                    topic: res(topic),
                    id: -1,
                    ..Default::default()
                }),
                filter_expression: None,
                batch_size: 16,
                invisible_duration: Some(prost_types::Duration {
                    seconds: invisible.as_secs() as i64,
                    nanos: 0,
                }),
                auto_renew: false,
                long_polling_timeout: Some(prost_types::Duration {
                    seconds: long_poll.as_secs() as i64,
                    nanos: 0,
                }),
                attempt_id: None,
            })
        };
        let first_status = |mut s: tonic::Streaming<pb::ReceiveMessageResponse>| async move {
            while let Some(r) = s.message().await.unwrap() {
                if let Some(pb::receive_message_response::Content::Status(st)) = r.content {
                    return st.code;
                }
            }
            panic!("no status in the receive stream");
        };
        let s = c
            .receive_message(receive("Known", Duration::ZERO, Duration::from_secs(1)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first_status(s).await, Code::IllegalInvisibleTime as i32);
        let s = c
            .receive_message(receive(
                "Nowhere",
                Duration::from_secs(5),
                Duration::from_secs(1),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first_status(s).await, Code::TopicNotFound as i32);

        // A long poll on an empty queue ends before the client's deadline with MESSAGE_NOT_FOUND.
        let mut r = receive("Known", Duration::from_secs(5), Duration::from_secs(30));
        r.set_timeout(Duration::from_secs(2));
        let t = Instant::now();
        let s = c.receive_message(r).await.unwrap().into_inner();
        assert_eq!(first_status(s).await, Code::MessageNotFound as i32);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "long poll overran the 2 s deadline: {took:?}"
        );
        assert!(
            took >= Duration::from_millis(1500),
            "long poll returned early: {took:?}"
        );

        // Nothing of the above changed anything.
        assert_eq!(messages_in(dev.port, "Known").await, Some(0));
        assert_eq!(
            messages_in(dev.port, "Nowhere").await,
            None,
            "an unknown topic must not be created"
        );

        // A good send still works and gets an offset.
        let r = c
            .send_message(req(pb::SendMessageRequest {
                messages: vec![message("Known", "ok1", b"x".to_vec())],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.unwrap().code, Code::Ok as i32);
        assert_eq!(r.entries[0].message_id, "ok1");
        // The admin service reads node 1's replica, which may be a follower a heartbeat
        // behind: wait for the send to apply there, then check nothing else was written (a bad
        // request that had been stored would make the count exceed 1).
        let start = std::time::Instant::now();
        while messages_in(dev.port, "Known").await < Some(1) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "send never applied"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(messages_in(dev.port, "Known").await, Some(1));
    });
}
