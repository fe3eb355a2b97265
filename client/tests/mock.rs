//! The client against a scripted v2 server: retry and outcome classification, failover to
//! the next member, transaction commit and the broker-initiated transaction check over
//! Telemetry, and NotifyClientTermination on shutdown. Real tonic on 127.0.0.1:187xx.
#![cfg(not(madsim))]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::Stream;
use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;
use raftmq_client::TransactionResolution;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::messaging_service_server::MessagingService;
use raftmq_proto::v2::messaging_service_server::MessagingServiceServer;
use raftmq_proto::v2util;
use tokio::sync::mpsc;
use tonic::Request;
use tonic::Response;
use tonic::Status;

type Rpc<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What a send does: answer with a code, or hang past the client's deadline.
#[derive(Clone, Copy, Debug)]
enum SendScript {
    Answer(Code),
    Hang,
}

#[derive(Default)]
struct Log {
    sends: Vec<(String, i32)>,
    end_transactions: Vec<pb::EndTransactionRequest>,
    terminations: Vec<String>,
    acks: Vec<String>,
}

struct Mock {
    /// Addresses the route lists for the one queue (leader first).
    route: Vec<String>,
    script: Mutex<VecDeque<SendScript>>,
    log: Arc<Mutex<Log>>,
    /// Pushes a transaction check to the first Telemetry stream when set.
    check: Mutex<Option<pb::RecoverOrphanedTransactionCommand>>,
}

fn client_id<T>(r: &Request<T>) -> String {
    r.metadata()
        .get("x-mq-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tonic::async_trait]
impl MessagingService for Mock {
    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn query_route(
        &self,
        req: Request<pb::QueryRouteRequest>,
    ) -> Rpc<pb::QueryRouteResponse> {
        let topic = req.into_inner().topic.unwrap().name;
        Ok(Response::new(pb::QueryRouteResponse {
            status: Some(v2util::ok()),
            message_queues: vec![v2util::message_queue(
                &topic,
                0,
                "g1",
                v2util::endpoints(&self.route),
                vec![1, 2, 3, 4],
            )],
        }))
    }

    async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Rpc<pb::HeartbeatResponse> {
        Ok(Response::new(pb::HeartbeatResponse {
            status: Some(v2util::ok()),
        }))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Rpc<pb::SendMessageResponse> {
        let script = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SendScript::Answer(Code::Ok));
        let req = req.into_inner();
        let m = &req.messages[0];
        let sp = m.system_properties.clone().unwrap();
        self.log
            .lock()
            .unwrap()
            .sends
            .push((sp.message_id.clone(), sp.message_type));
        let code = match script {
            SendScript::Hang => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Code::Ok
            }
            SendScript::Answer(c) => c,
        };
        let tx = sp.message_type == pb::MessageType::Transaction as i32;
        Ok(Response::new(pb::SendMessageResponse {
            status: Some(v2util::status(code, format!("{code:?}"))),
            entries: vec![pb::SendResultEntry {
                status: Some(v2util::status(code, format!("{code:?}"))),
                message_id: sp.message_id,
                transaction_id: if tx { "TX-1".into() } else { String::new() },
                offset: 7,
                recall_handle: String::new(),
            }],
        }))
    }

    async fn query_assignment(
        &self,
        _: Request<pb::QueryAssignmentRequest>,
    ) -> Rpc<pb::QueryAssignmentResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn receive_message(
        &self,
        req: Request<pb::ReceiveMessageRequest>,
    ) -> Rpc<Self::ReceiveMessageStream> {
        let topic = req.into_inner().message_queue.unwrap().topic.unwrap().name;
        let good = pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: topic.clone(),
            }),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: "GOOD".into(),
                body_digest: Some(pb::Digest {
                    r#type: pb::DigestType::Md5 as i32,
                    checksum: "5D41402ABC4B2A76B9719D911017C592".into(), // md5("hello")
                }),
                receipt_handle: Some("R1".into()),
                delivery_attempt: Some(1),
                ..Default::default()
            }),
            body: b"hello".to_vec().into(),
        };
        let mut bad = good.clone();
        bad.body = b"jello".to_vec().into();
        bad.system_properties.as_mut().unwrap().message_id = "BAD".into();
        let items = vec![
            pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Message(good)),
            },
            pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Message(bad)),
            },
            pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(v2util::ok())),
            },
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(
            items.into_iter().map(Ok),
        ))))
    }

    async fn ack_message(
        &self,
        req: Request<pb::AckMessageRequest>,
    ) -> Rpc<pb::AckMessageResponse> {
        let req = req.into_inner();
        self.log
            .lock()
            .unwrap()
            .acks
            .push(req.entries[0].message_id.clone());
        Ok(Response::new(pb::AckMessageResponse {
            status: Some(v2util::ok()),
            entries: vec![pb::AckMessageResultEntry {
                message_id: req.entries[0].message_id.clone(),
                receipt_handle: req.entries[0].receipt_handle.clone(),
                status: Some(v2util::ok()),
            }],
        }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Rpc<pb::ForwardMessageToDeadLetterQueueResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn pull_message(
        &self,
        _: Request<pb::PullMessageRequest>,
    ) -> Rpc<Self::PullMessageStream> {
        Err(Status::unimplemented("no"))
    }

    async fn update_offset(
        &self,
        _: Request<pb::UpdateOffsetRequest>,
    ) -> Rpc<pb::UpdateOffsetResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn get_offset(&self, _: Request<pb::GetOffsetRequest>) -> Rpc<pb::GetOffsetResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn query_offset(
        &self,
        _: Request<pb::QueryOffsetRequest>,
    ) -> Rpc<pb::QueryOffsetResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn end_transaction(
        &self,
        req: Request<pb::EndTransactionRequest>,
    ) -> Rpc<pb::EndTransactionResponse> {
        self.log
            .lock()
            .unwrap()
            .end_transactions
            .push(req.into_inner());
        Ok(Response::new(pb::EndTransactionResponse {
            status: Some(v2util::ok()),
        }))
    }

    async fn telemetry(
        &self,
        req: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> Rpc<Self::TelemetryStream> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let check = self.check.lock().unwrap().take();
        tokio::spawn(async move {
            while let Ok(Some(cmd)) = inbound.message().await {
                if let Some(pb::telemetry_command::Command::Settings(s)) = cmd.command {
                    let _ = tx.send(Ok(v2util::settings_reply(s, None, 4 << 20))).await;
                    if let Some(c) = check.clone() {
                        let _ = tx
                            .send(Ok(pb::TelemetryCommand {
                                status: None,
                                command: Some(
                                    pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(c),
                                ),
                            }))
                            .await;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn notify_client_termination(
        &self,
        req: Request<pb::NotifyClientTerminationRequest>,
    ) -> Rpc<pb::NotifyClientTerminationResponse> {
        self.log.lock().unwrap().terminations.push(client_id(&req));
        Ok(Response::new(pb::NotifyClientTerminationResponse {
            status: Some(v2util::ok()),
        }))
    }

    async fn change_invisible_duration(
        &self,
        _: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Rpc<pb::ChangeInvisibleDurationResponse> {
        Err(Status::unimplemented("no"))
    }

    async fn recall_message(
        &self,
        _: Request<pb::RecallMessageRequest>,
    ) -> Rpc<pb::RecallMessageResponse> {
        Err(Status::unimplemented("no"))
    }
}

/// Serves a mock on 127.0.0.1:`port` whose route lists `route`.
async fn serve(
    port: u16,
    route: Vec<String>,
    script: Vec<SendScript>,
    check: Option<pb::RecoverOrphanedTransactionCommand>,
) -> Arc<Mutex<Log>> {
    let log = Arc::new(Mutex::new(Log::default()));
    let mock = Mock {
        route,
        script: Mutex::new(script.into()),
        log: log.clone(),
        check: Mutex::new(check),
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MessagingServiceServer::new(mock))
            .serve(addr),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    log
}

fn config(port: u16) -> ClientConfig {
    let mut c = ClientConfig::new(format!("127.0.0.1:{port}"));
    c.request_timeout = Duration::from_millis(500);
    c.backoff_initial = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(5);
    c
}

#[tokio::test]
async fn definite_failures_are_retried_and_unknown_ones_are_not() {
    let port = 18701;
    let me = vec![format!("127.0.0.1:{port}")];
    let log = serve(
        port,
        me,
        vec![
            // send 1: two refusals then OK.
            SendScript::Answer(Code::HaNotAvailable),
            SendScript::Answer(Code::TooManyRequests),
            SendScript::Answer(Code::Ok),
            // send 2: a persistence timeout: unknown, not retried.
            SendScript::Answer(Code::MasterPersistenceTimeout),
            // send 3: a permanent refusal.
            SendScript::Answer(Code::TopicNotFound),
            // send 4: the server hangs past the deadline: unknown.
            SendScript::Hang,
            // send 5 (retry_unknown): unknown, then OK with the same id.
            SendScript::Answer(Code::MasterPersistenceTimeout),
            SendScript::Answer(Code::Ok),
        ],
        None,
    )
    .await;
    let p = Producer::builder(config(port))
        .topics(["t"])
        .start()
        .await
        .unwrap();

    let r = p.send(Message::new("t", b"a".to_vec())).await.unwrap();
    assert_eq!(r.offset, 7);
    let sends = log.lock().unwrap().sends.clone();
    assert_eq!(sends.len(), 3, "two definite failures, then success");
    assert!(
        sends.iter().all(|(id, _)| id == &r.message_id),
        "retries keep the id"
    );

    let e = p.send(Message::new("t", b"b".to_vec())).await.unwrap_err();
    assert!(matches!(e, ClientError::Unknown { attempts: 1, .. }), "{e}");
    assert!(!e.is_definite());

    let e = p.send(Message::new("t", b"c".to_vec())).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::TopicNotFound), "{e}");
    assert!(e.is_definite());

    let e = p.send(Message::new("t", b"d".to_vec())).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Unknown { .. }),
        "a timeout is unknown: {e}"
    );
    assert_eq!(log.lock().unwrap().sends.len(), 6);
    p.shutdown().await;

    let mut c = config(port);
    c.retry_unknown = true;
    let p = Producer::builder(c).topics(["t"]).start().await.unwrap();
    let r = p.send(Message::new("t", b"e".to_vec())).await.unwrap();
    let sends = log.lock().unwrap().sends.clone();
    assert_eq!(sends.len(), 8);
    assert_eq!(sends[6].0, r.message_id);
    assert_eq!(
        sends[7].0, r.message_id,
        "a resend after an unknown outcome keeps the id"
    );
    let id = p.client_id().to_string();
    p.shutdown().await;
    assert!(
        log.lock().unwrap().terminations.contains(&id),
        "shutdown sends NotifyClientTermination"
    );
}

#[tokio::test]
async fn a_dead_member_is_skipped() {
    let port = 18711;
    // The route lists a dead address first (the "leader" that just died), then a live one.
    let dead = "127.0.0.1:18719".to_string();
    let live = format!("127.0.0.1:{port}");
    let log = serve(port, vec![dead, live.clone()], vec![], None).await;
    let p = Producer::builder(config(port))
        .topics(["t"])
        .start()
        .await
        .unwrap();
    let r = p.send(Message::new("t", b"x".to_vec())).await.unwrap();
    assert_eq!(
        r.endpoint, live,
        "connection refused is definite: try the next member"
    );
    assert_eq!(log.lock().unwrap().sends.len(), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_checks_are_answered() {
    let port = 18721;
    let check = pb::RecoverOrphanedTransactionCommand {
        message: Some(pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: "t".into(),
            }),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: "ORPHAN".into(),
                message_type: pb::MessageType::Transaction as i32,
                ..Default::default()
            }),
            body: b"half".to_vec().into(),
        }),
        transaction_id: "TX-9".into(),
    };
    let log = serve(port, vec![format!("127.0.0.1:{port}")], vec![], Some(check)).await;
    let p = Producer::builder(config(port))
        .topics(["t"])
        .transaction_checker(|m: &raftmq_client::ReceivedMessage| {
            if m.message_id == "ORPHAN" {
                TransactionResolution::Rollback
            } else {
                TransactionResolution::Unknown
            }
        })
        .start()
        .await
        .unwrap();
    let mut tx = p.begin_transaction();
    let r = tx.send(Message::new("t", b"debit".to_vec())).await.unwrap();
    assert_eq!(r.transaction_id.as_deref(), Some("TX-1"));
    assert_eq!(
        log.lock().unwrap().sends[0].1,
        pb::MessageType::Transaction as i32
    );
    tx.commit().await.unwrap();

    // The check pushed over Telemetry is answered by the checker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ends = log.lock().unwrap().end_transactions.clone();
        let client = ends
            .iter()
            .find(|e| e.source == pb::TransactionSource::SourceClient as i32);
        let server = ends
            .iter()
            .find(|e| e.source == pb::TransactionSource::SourceServerCheck as i32);
        if let (Some(c), Some(s)) = (client, server) {
            assert_eq!(c.resolution, pb::TransactionResolution::Commit as i32);
            assert_eq!(c.transaction_id, "TX-1");
            assert_eq!(c.message_id, r.message_id);
            assert_eq!(s.resolution, pb::TransactionResolution::Rollback as i32);
            assert_eq!(s.transaction_id, "TX-9");
            assert_eq!(s.message_id, "ORPHAN");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no EndTransaction seen: {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Transactional messages cannot be FIFO or delayed.
    let mut tx = p.begin_transaction();
    let e = tx
        .send(Message::new("t", b"x".to_vec()).with_message_group("g"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidMessage(_)));
    p.shutdown().await;
}

#[tokio::test]
async fn corrupted_messages_are_not_delivered() {
    let port = 18731;
    let log = serve(port, vec![format!("127.0.0.1:{port}")], vec![], None).await;
    let c = SimpleConsumer::builder(config(port), "g")
        .subscribe("t", Filter::All)
        .start()
        .await
        .unwrap();
    let got = c.receive(8, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the message whose body fails its digest is dropped"
    );
    assert_eq!(got[0].message_id, "GOOD");
    assert_eq!(got[0].body, b"hello");
    c.ack(&got[0]).await.unwrap();
    assert_eq!(log.lock().unwrap().acks, vec!["GOOD".to_string()]);
    c.shutdown().await;
}
