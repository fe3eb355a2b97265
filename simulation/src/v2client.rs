//! A hand-written v2 (gRPC) client that behaves as the official RocketMQ 5 clients do: it takes
//! routes from the nameserver (and refreshes them after errors), sends to a queue's endpoint,
//! moves on to the next queue after any error, receives from one broker at a time through one
//! of its queues' endpoints, and acks where it received. `broker_chaos` drives half of its seeds
//! through it, to hold the broker to what those clients expect; the other half run the native
//! client (`raftmq-client`).

use std::collections::BTreeMap;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::harness::brokers::NAMESERVER;
use crate::msg_checker::Result3;

/// The invisible duration every receive asks for.
pub const INVISIBLE: Duration = Duration::from_secs(3);
/// A received message: id, body, delivery attempt, receipt handle.
pub type Received = (String, Vec<u8>, u32, String);

/// A v2 client that behaves like the official ones: routes from the nameserver (refreshed
/// after errors), sends to a queue's endpoint, moves to the next queue after any error.
#[derive(Clone)]
pub struct Client {
    /// The topic it sends to and receives from.
    topic: &'static str,
    /// The consumer group it receives as.
    group: &'static str,
    /// Every request's deadline.
    timeout: Duration,
    /// One lazily connected channel per endpoint.
    channels: BTreeMap<String, MessagingServiceClient<Channel>>,
    /// (broker name, queue id, endpoint) of every queue of the topic.
    route: Vec<(String, i32, String)>,
    /// Round-robin position in `route`.
    at: usize,
}

fn req<T>(t: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(t);
    r.metadata_mut()
        .insert("x-mq-client-id", "sim-client".parse().unwrap());
    r
}

fn res(n: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: n.into(),
    })
}

fn ok(s: &Option<pb::Status>) -> bool {
    s.as_ref().is_some_and(|s| s.code == pb::Code::Ok as i32)
}

/// The first address of `e`, as `host:port`.
pub fn first_addr(e: &Option<pb::Endpoints>) -> Option<String> {
    let a = e.as_ref()?.addresses.first()?;
    Some(format!("{}:{}", a.host, a.port))
}

impl Client {
    /// A client of `topic` and consumer `group` whose requests time out after `timeout`.
    pub fn new(topic: &'static str, group: &'static str, timeout: Duration) -> Self {
        Client {
            topic,
            group,
            timeout,
            channels: BTreeMap::new(),
            route: Vec::new(),
            at: 0,
        }
    }

    fn channel(&mut self, addr: &str) -> MessagingServiceClient<Channel> {
        self.channels
            .entry(addr.to_string())
            .or_insert_with(|| {
                MessagingServiceClient::new(
                    Endpoint::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect_lazy(),
                )
            })
            .clone()
    }

    /// Asks the nameserver for the route. `rust` asks as the Rust client does (every member per
    /// queue, the leader first).
    pub async fn query_route(&mut self, rust: bool) -> Option<Vec<pb::MessageQueue>> {
        let mut c = self.channel(NAMESERVER);
        let mut r = req(pb::QueryRouteRequest {
            topic: res(self.topic),
            endpoints: None,
        });
        if rust {
            r.metadata_mut()
                .insert("x-mq-language", "RUST".parse().unwrap());
        }
        match tokio::time::timeout(self.timeout, c.query_route(r)).await {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Some(resp.into_inner().message_queues),
            other => {
                tracing::debug!(?other, "route query failed");
                None
            }
        }
    }

    async fn refresh(&mut self) {
        if let Some(qs) = self.query_route(false).await {
            let route: Vec<_> = qs
                .into_iter()
                .filter_map(|q| {
                    let b = q.broker?;
                    Some((b.name, q.id, first_addr(&b.endpoints)?))
                })
                .collect();
            if !route.is_empty() {
                self.route = route;
            }
        }
    }

    async fn ensure_route(&mut self) -> bool {
        if self.route.is_empty() {
            self.refresh().await;
        }
        !self.route.is_empty()
    }

    async fn failed(&mut self) {
        self.at += 1;
        if self.at.is_multiple_of(4) {
            self.refresh().await;
        }
    }

    /// Sends one message to the next queue in the route.
    pub async fn send(&mut self, id: &str, body: &[u8]) -> Result3 {
        if !self.ensure_route().await {
            return Result3::Fail;
        }
        let (_, qid, addr) = self.route[self.at % self.route.len()].clone();
        self.at += 1;
        let msg = pb::Message {
            topic: res(self.topic),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: id.into(),
                message_type: pb::MessageType::Normal as i32,
                queue_id: qid,
                ..Default::default()
            }),
            body: body.to_vec().into(),
        };
        let mut c = self.channel(&addr);
        let r = tokio::time::timeout(
            self.timeout,
            c.send_message(req(pb::SendMessageRequest {
                messages: vec![msg],
            })),
        )
        .await;
        match r {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Result3::Ok,
            _ => {
                self.failed().await;
                Result3::Info
            }
        }
    }

    /// Receives from one broker (group), through the endpoint of one of its queues. Returns the
    /// endpoint used (acks go there) and the messages.
    pub async fn receive(&mut self) -> Option<(String, Vec<Received>)> {
        if !self.ensure_route().await {
            return None;
        }
        let (broker, _, addr) = self.route[self.at % self.route.len()].clone();
        self.at += 1;
        let r = pb::ReceiveMessageRequest {
            group: res(self.group),
            message_queue: Some(pb::MessageQueue {
                topic: res(self.topic),
                id: -1,
                broker: Some(pb::Broker {
                    name: broker,
                    id: 0,
                    endpoints: None,
                }),
                ..Default::default()
            }),
            filter_expression: None,
            batch_size: 16,
            invisible_duration: Some(prost_types::Duration {
                seconds: INVISIBLE.as_secs() as i64,
                nanos: 0,
            }),
            auto_renew: false,
            long_polling_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            attempt_id: None,
        };
        let mut c = self.channel(&addr);
        let call = async {
            let mut stream = c.receive_message(req(r)).await?.into_inner();
            let mut msgs = Vec::new();
            let mut status = None;
            while let Some(x) = stream.message().await? {
                match x.content {
                    Some(pb::receive_message_response::Content::Status(s)) => status = Some(s),
                    Some(pb::receive_message_response::Content::Message(m)) => {
                        let sp = m.system_properties.unwrap_or_default();
                        msgs.push((
                            sp.message_id,
                            m.body.to_vec(),
                            sp.delivery_attempt.unwrap_or(0) as u32,
                            sp.receipt_handle.unwrap_or_default(),
                        ));
                    }
                    _ => {}
                }
            }
            Ok::<_, tonic::Status>((status, msgs))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((Some(s), msgs))) if s.code == pb::Code::Ok as i32 => Some((addr, msgs)),
            Ok(Ok((Some(s), _))) if s.code == pb::Code::MessageNotFound as i32 => {
                Some((addr, vec![]))
            }
            _ => {
                self.failed().await;
                None
            }
        }
    }

    /// Acks a received message at the endpoint it came from.
    pub async fn ack(&mut self, addr: &str, id: &str, handle: &str) -> Result3 {
        let r = pb::AckMessageRequest {
            group: res(self.group),
            topic: res(self.topic),
            entries: vec![pb::AckMessageEntry {
                message_id: id.into(),
                receipt_handle: handle.into(),
                lite_topic: None,
            }],
        };
        let mut c = self.channel(addr);
        match tokio::time::timeout(self.timeout, c.ack_message(req(r))).await {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Result3::Ok,
            Ok(Ok(resp))
                if resp
                    .get_ref()
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == pb::Code::InvalidReceiptHandle as i32) =>
            {
                Result3::Fail
            }
            _ => Result3::Info,
        }
    }
}
