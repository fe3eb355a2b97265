//! The nameserver's services: `raftmq.nameserver.Registry` for brokers and the access-point
//! part of `apache.rocketmq.v2.MessagingService` for clients. Data RPCs (send, receive, ack)
//! belong to brokers; a client that sends them here is told so.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use futures::Stream;
use raftmq_proto::auth::ClusterKey;
use raftmq_proto::names;
use raftmq_proto::nameserver as nspb;
use raftmq_proto::nameserver::registry_server::Registry;
use raftmq_proto::nameserver::registry_server::RegistryServer;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use raftmq_proto::v2::messaging_service_server::MessagingService;
use raftmq_proto::v2::messaging_service_server::MessagingServiceServer;
use raftmq_proto::v2util;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::Response;

use crate::route_table::ConsumerGroupReport;
use crate::route_table::GroupReport;
use crate::route_table::GroupRole;
use crate::route_table::Registration;
use crate::route_table::RouteTable;
use crate::route_table::TopicReport;

type RpcResult<T> = Result<Response<T>, tonic::Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The nameserver's shared state.
#[derive(Clone)]
pub struct NameServer {
    table: Arc<Mutex<RouteTable>>,
    key: ClusterKey,
}

/// Most queues a registered topic may claim (the broker's own bound, `limits::MAX_QUEUES`).
pub const MAX_QUEUES: u32 = 1024;

impl NameServer {
    /// A nameserver forgetting a broker `ttl` after its last registration, taking
    /// registrations only when signed with `key` by the node they describe.
    pub fn new(ttl: Duration, key: ClusterKey) -> Self {
        Self {
            table: Arc::new(Mutex::new(RouteTable::new(ttl.as_millis() as u64))),
            key,
        }
    }

    /// A copy of the current table (tests, admin).
    pub fn table(&self) -> RouteTable {
        self.table.lock().unwrap().clone()
    }
}

/// Refuses registrations that would make routes huge: a topic claiming more queues than a
/// broker can have (`u32::MAX` queues used to build 4e9 route entries under the table lock).
fn bounded(r: &nspb::RegisterRequest) -> Result<(), String> {
    for g in &r.groups {
        if let Some(t) = g.topics.iter().find(|t| t.queues > MAX_QUEUES) {
            return Err(format!(
                "group {}: topic {:?} claims {} queues, more than {MAX_QUEUES}",
                g.group, t.name, t.queues
            ));
        }
    }
    Ok(())
}

fn from_pb(r: nspb::RegisterRequest) -> Registration {
    Registration {
        node: r.node,
        client_addr: r.client_addr,
        groups: r
            .groups
            .into_iter()
            .map(|g| GroupReport {
                group: g.group,
                name: g.name,
                role: match g.role.as_str() {
                    "leader" => GroupRole::Leader,
                    "follower" => GroupRole::Follower,
                    _ => GroupRole::Other,
                },
                term: g.term,
                leader: (g.leader != 0).then_some(g.leader),
                members: g
                    .members
                    .into_iter()
                    .map(|m| (m.node, m.client_addr))
                    .collect(),
                topics: g
                    .topics
                    .into_iter()
                    .map(|t| TopicReport {
                        name: t.name,
                        queues: t.queues,
                        kind: t.kind,
                    })
                    .collect(),
                consumer_groups: g
                    .consumer_groups
                    .into_iter()
                    .map(|c| ConsumerGroupReport {
                        name: c.name,
                        max_delivery_attempts: c.max_delivery_attempts,
                        fifo: c.fifo,
                        retry_backoff_ms: c.retry_backoff_ms,
                    })
                    .collect(),
            })
            .collect(),
        auto_create_queues: if r.auto_create { r.default_queues } else { 0 },
    }
}

#[tonic::async_trait]
impl Registry for NameServer {
    async fn register(
        &self,
        req: Request<nspb::RegisterRequest>,
    ) -> RpcResult<nspb::RegisterReply> {
        let (meta, _, req) = req.into_parts();
        let body = prost::Message::encode_to_vec(&req);
        let sender = self
            .key
            .check(&meta, nspb::REGISTER_METHOD, &body, now_ms())?;
        // A registration speaks only for the node that signed it.
        if sender != req.node {
            return Err(tonic::Status::permission_denied(format!(
                "node {sender} may not register for node {}",
                req.node
            )));
        }
        if let Err(why) = bounded(&req) {
            return Ok(Response::new(nspb::RegisterReply { error: why }));
        }
        let reg = from_pb(req);
        if reg.node == 0 {
            return Ok(Response::new(nspb::RegisterReply {
                error: "node id 0 is reserved".into(),
            }));
        }
        let now = now_ms();
        let mut t = self.table.lock().unwrap();
        t.register(now, reg);
        t.expire(now);
        Ok(Response::new(nspb::RegisterReply {
            error: String::new(),
        }))
    }
}

/// The stored name of a request's topic (`ns%name` in a namespace), as brokers register it.
fn topic_of(r: Option<&pb::Resource>) -> Result<String, pb::Status> {
    let r = r.ok_or_else(|| v2util::status(Code::IllegalTopic, "topic is required"))?;
    names::topic(&r.resource_namespace, &r.name)
        .map_err(|e| v2util::status(Code::IllegalTopic, e.0))
}

fn not_here(rpc: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!(
        "{rpc} is served by broker nodes: send it to the endpoints of the topic's route"
    ))
}

#[tonic::async_trait]
impl MessagingService for NameServer {
    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn query_route(
        &self,
        req: Request<pb::QueryRouteRequest>,
    ) -> RpcResult<pb::QueryRouteResponse> {
        let reply = |s, q| {
            Ok(Response::new(pb::QueryRouteResponse {
                status: Some(s),
                message_queues: q,
            }))
        };
        if let Err(s) = v2util::client_id(req.metadata()) {
            return reply(s, vec![]);
        }
        let all = v2util::is_rust_client(req.metadata());
        let topic = match topic_of(req.get_ref().topic.as_ref()) {
            Ok(t) => t,
            Err(s) => return reply(s, vec![]),
        };
        let route = self.table.lock().unwrap().route(now_ms(), &topic);
        if route.is_empty() {
            return reply(
                v2util::status(
                    Code::TopicNotFound,
                    format!("no live broker hosts topic {topic}"),
                ),
                vec![],
            );
        }
        let queues = route
            .into_iter()
            .map(|q| {
                v2util::message_queue(
                    &topic,
                    q.queue as i32,
                    &q.broker,
                    v2util::queue_endpoints(&q.endpoints, q.queue as u64, all),
                    v2util::accepted_types(&q.kind),
                )
            })
            .collect();
        reply(v2util::ok(), queues)
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> RpcResult<pb::HeartbeatResponse> {
        let status = match v2util::client_id(req.metadata()) {
            Ok(_) => v2util::ok(),
            Err(s) => s,
        };
        Ok(Response::new(pb::HeartbeatResponse {
            status: Some(status),
        }))
    }

    async fn send_message(
        &self,
        _req: Request<pb::SendMessageRequest>,
    ) -> RpcResult<pb::SendMessageResponse> {
        Err(not_here("SendMessage"))
    }

    async fn query_assignment(
        &self,
        req: Request<pb::QueryAssignmentRequest>,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        let reply = |s, a| {
            Ok(Response::new(pb::QueryAssignmentResponse {
                status: Some(s),
                assignments: a,
            }))
        };
        let client = match v2util::client_id(req.metadata()) {
            Ok(c) => c,
            Err(s) => return reply(s, vec![]),
        };
        let all = v2util::is_rust_client(req.metadata());
        let spread = client.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let topic = match topic_of(req.get_ref().topic.as_ref()) {
            Ok(t) => t,
            Err(s) => return reply(s, vec![]),
        };
        // An invalid group is no group: the assignment of a plain one.
        let group = req
            .get_ref()
            .group
            .as_ref()
            .and_then(|g| names::group(&g.resource_namespace, &g.name).ok())
            .unwrap_or_default();
        let now = now_ms();
        let table = self.table.lock().unwrap();
        let fifo = table.consumer_group(now, &group).is_some_and(|c| c.fifo);
        let route = table.route(now, &topic);
        if route.is_empty() {
            return reply(
                v2util::status(
                    Code::TopicNotFound,
                    format!("no live broker hosts topic {topic}"),
                ),
                vec![],
            );
        }
        let mut out: Vec<pb::Assignment> = Vec::new();
        for q in route {
            // Non-FIFO groups: one assignment per broker (queue -1, receive from any queue).
            if !fifo
                && out.iter().any(|a| {
                    a.message_queue
                        .as_ref()
                        .and_then(|m| m.broker.as_ref())
                        .is_some_and(|b| b.name == q.broker)
                })
            {
                continue;
            }
            out.push(pb::Assignment {
                message_queue: Some(v2util::message_queue(
                    &topic,
                    if fifo { q.queue as i32 } else { -1 },
                    &q.broker,
                    v2util::queue_endpoints(
                        &q.endpoints,
                        if fifo { q.queue as u64 } else { spread },
                        all,
                    ),
                    v2util::accepted_types(&q.kind),
                )),
            });
        }
        reply(v2util::ok(), out)
    }

    async fn receive_message(
        &self,
        _req: Request<pb::ReceiveMessageRequest>,
    ) -> RpcResult<Self::ReceiveMessageStream> {
        Err(not_here("ReceiveMessage"))
    }

    async fn ack_message(
        &self,
        _req: Request<pb::AckMessageRequest>,
    ) -> RpcResult<pb::AckMessageResponse> {
        Err(not_here("AckMessage"))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _req: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        Err(not_here("ForwardMessageToDeadLetterQueue"))
    }

    async fn pull_message(
        &self,
        _req: Request<pb::PullMessageRequest>,
    ) -> RpcResult<Self::PullMessageStream> {
        Err(not_here("PullMessage"))
    }

    async fn update_offset(
        &self,
        _req: Request<pb::UpdateOffsetRequest>,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        Err(not_here("UpdateOffset"))
    }

    async fn get_offset(
        &self,
        _req: Request<pb::GetOffsetRequest>,
    ) -> RpcResult<pb::GetOffsetResponse> {
        Err(not_here("GetOffset"))
    }

    async fn query_offset(
        &self,
        _req: Request<pb::QueryOffsetRequest>,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        Err(not_here("QueryOffset"))
    }

    /// The Rust SDK ends transactions (and answers check-backs) on its access point: the
    /// transaction id names the Raft group, and the request goes to its members.
    async fn end_transaction(
        &self,
        req: Request<pb::EndTransactionRequest>,
    ) -> RpcResult<pb::EndTransactionResponse> {
        let answer = |s: pb::Status| {
            Ok(Response::new(pb::EndTransactionResponse {
                status: Some(s),
            }))
        };
        let Some(group) = v2util::transaction_group(&req.get_ref().transaction_id) else {
            return answer(v2util::status(
                Code::InvalidTransactionId,
                "the transaction id is not one RaftMQ issued",
            ));
        };
        match self
            .to_group(
                group,
                req,
                |mut c, r| async move { c.end_transaction(r).await },
            )
            .await
        {
            Ok(resp) => Ok(resp),
            Err(s) => answer(s),
        }
    }

    async fn telemetry(
        &self,
        req: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> RpcResult<Self::TelemetryStream> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let table = self.table.clone();
        tokio::spawn(async move {
            while let Ok(Some(cmd)) = inbound.message().await {
                if let Some(pb::telemetry_command::Command::Settings(s)) = cmd.command {
                    let policy = match &s.pub_sub {
                        Some(pb::settings::PubSub::Subscription(sub)) => {
                            // By stored name, in the group's namespace (an invalid one: none).
                            let name = sub
                                .group
                                .as_ref()
                                .and_then(|g| names::group(&g.resource_namespace, &g.name).ok())
                                .unwrap_or_default();
                            table
                                .lock()
                                .unwrap()
                                .consumer_group(now_ms(), &name)
                                .map(|c| v2util::GroupPolicy {
                                    max_delivery_attempts: c.max_delivery_attempts,
                                    fifo: c.fifo,
                                    retry_backoff: c
                                        .retry_backoff_ms
                                        .iter()
                                        .map(|ms| Duration::from_millis(*ms))
                                        .collect(),
                                })
                        }
                        _ => None,
                    };
                    if tx
                        .send(Ok(v2util::settings_reply(s, policy, 4 << 20)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn notify_client_termination(
        &self,
        _req: Request<pb::NotifyClientTerminationRequest>,
    ) -> RpcResult<pb::NotifyClientTerminationResponse> {
        Ok(Response::new(pb::NotifyClientTerminationResponse {
            status: Some(v2util::ok()),
        }))
    }

    async fn change_invisible_duration(
        &self,
        _req: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        Err(not_here("ChangeInvisibleDuration"))
    }

    /// The Python SDK sends recalls to its access point, which is usually a nameserver: the
    /// handle names the message's Raft group, and the recall goes to that group's members
    /// (leader first; any member forwards it to the leader), with the client's metadata.
    async fn recall_message(
        &self,
        req: Request<pb::RecallMessageRequest>,
    ) -> RpcResult<pb::RecallMessageResponse> {
        let answer = |s: pb::Status| {
            Ok(Response::new(pb::RecallMessageResponse {
                status: Some(s),
                message_id: String::new(),
            }))
        };
        let Some(group) = v2util::recall_handle_group(&req.get_ref().recall_handle) else {
            return answer(v2util::status(
                Code::BadRequest,
                "the recall handle is not one RaftMQ issued",
            ));
        };
        match self
            .to_group(
                group,
                req,
                |mut c, r| async move { c.recall_message(r).await },
            )
            .await
        {
            Ok(resp) => Ok(resp),
            Err(s) => answer(s),
        }
    }
}

impl NameServer {
    /// Sends a client's request to the members of Raft `group` (leader first; any member
    /// forwards it to the leader), with the client's metadata, within its deadline: the first
    /// answer, or the status to answer with. (The Rust SDK sends EndTransaction and the Python
    /// SDK RecallMessage to its access point, usually a nameserver.)
    async fn to_group<Q, A, F, Fut>(
        &self,
        group: u64,
        req: Request<Q>,
        call: F,
    ) -> Result<Response<A>, pb::Status>
    where
        Q: Clone,
        F: Fn(MessagingServiceClient<tonic::transport::Channel>, Request<Q>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<A>, tonic::Status>>,
    {
        let endpoints = self
            .table
            .lock()
            .unwrap()
            .groups(now_ms())
            .into_iter()
            .find(|g| g.group == group)
            .map(|g| g.endpoints)
            .unwrap_or_default();
        let (meta, _, body) = req.into_parts();
        // Within the client's deadline, less a margin for the answer's way back.
        let deadline = tokio::time::Instant::now()
            + v2util::grpc_timeout(&meta).map_or(Duration::from_secs(5), |t| {
                t.saturating_sub(Duration::from_millis(100))
            });
        let mut last = format!("no live member of group {group} is registered");
        for addr in endpoints {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let mut r = Request::new(body.clone());
            *r.metadata_mut() = meta.clone();
            r.set_timeout(left);
            let sent = async {
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| Forward::NotSent(e.to_string()))?
                    .connect_timeout(left.min(Duration::from_secs(1)))
                    .connect()
                    .await
                    .map_err(|e| Forward::NotSent(e.to_string()))?;
                call(MessagingServiceClient::new(ch), r).await.map_err(|s| {
                    if v2util::is_connect_failure(&s) {
                        Forward::NotSent(s.to_string())
                    } else {
                        Forward::Unknown(s.to_string())
                    }
                })
            };
            match sent.await {
                Ok(resp) => return Ok(resp),
                // Not sent: the next member may take it.
                Err(Forward::NotSent(e)) => last = format!("{addr}: {e}"),
                // It may have been applied, and a retry would then be answered as a repeat
                // (a recall finds nothing): unknown.
                Err(Forward::Unknown(e)) => {
                    return Err(v2util::status(
                        Code::ProxyTimeout,
                        format!("the outcome is unknown ({addr}: {e})"),
                    ));
                }
            }
        }
        Err(v2util::status(
            Code::HaNotAvailable,
            format!("the request could not reach its group: {last}"),
        ))
    }
}

/// How a forwarded call failed.
enum Forward {
    /// Before the request left: nothing happened.
    NotSent(String),
    /// Afterwards: it may have happened.
    Unknown(String),
}

/// The server builder: bounded streams per connection and, in real builds, registrations'
/// credentials checked before their bodies are read (clients' v2 RPCs are not internal and
/// pass).
#[cfg(not(madsim))]
fn builder(
    key: ClusterKey,
) -> tonic::transport::Server<
    tower_layer::Stack<raftmq_proto::auth::layer::AuthLayer, tower_layer::Identity>,
> {
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(1_000))
        .layer(raftmq_proto::auth::layer::AuthLayer::new(
            key,
            "/raftmq.nameserver.",
            now_ms,
        ))
}

#[cfg(madsim)]
fn builder(_key: ClusterKey) -> tonic::transport::Server {
    tonic::transport::Server::builder()
}

/// Serves a nameserver on `listen` until `shutdown` completes.
pub async fn run(
    listen: SocketAddr,
    ttl: Duration,
    key: ClusterKey,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let ns = NameServer::new(ttl, key.clone());
    tracing::info!(%listen, "nameserver started");
    builder(key)
        .add_service(
            RegistryServer::new(ns.clone()).max_decoding_message_size(nspb::MAX_REGISTRATION_BYTES),
        )
        .add_service(MessagingServiceServer::new(ns))
        .serve_with_shutdown(listen, shutdown)
        .await
        .map_err(|e| format!("nameserver on {listen}: {e}"))
}
