//! The client side of the Raft transport: openraft's network traits over tonic.
//!
//! One [`Channels`] pool per process keeps one HTTP/2 channel per peer address, shared by every
//! group. Each group's [`NetworkFactory`] stamps its group id on every request. Every RPC has a
//! deadline (openraft's hard TTL); a transport failure or a missing peer group is reported as
//! "unreachable" so openraft backs off, a deadline as a timeout.
//!
//! Replication runs over one long-lived `AppendStream` per session (see
//! [`Connection::open_append_stream`]): openraft hands over AppendEntries as its log grows and
//! they leave at once, without waiting for the previous answer. A unary call per AppendEntries
//! cost an HTTP/2 stream (headers, trailers, a task on each side) and its round trip before the
//! next could leave; the profile of issue 13 had the transport as most of the CPU per message.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::Stream;
use futures::StreamExt;
use openraft::RaftNetworkFactory;
use openraft::base::BoxFuture;
use openraft::base::BoxStream;
use openraft::errors::NetworkError;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Timeout;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RPCTypes;
use openraft::network::stream_append_sequential;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::StreamAppendResult;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use raftmq_proto::auth::ClusterKey;
use raftmq_proto::raft::AppendFrame;
use raftmq_proto::raft::RaftReply;
use raftmq_proto::raft::RaftRequest;
use raftmq_proto::raft::SnapshotChunk;
use raftmq_proto::raft::raft_service_client::RaftServiceClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::types::GroupId;
use crate::types::Node;
use crate::types::NodeId;
use crate::types::Snapshot;
use crate::types::TypeConfig;
use crate::types::Vote;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// How long to wait for a TCP connection to a peer.
    pub connect_timeout: Duration,
    /// Snapshot transfers are streamed in chunks of this many bytes.
    pub snapshot_chunk_bytes: usize,
    /// Largest message accepted or sent, in bytes (tonic's default of 4 MiB is too small
    /// for large append batches).
    pub max_message_bytes: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            snapshot_chunk_bytes: 1 << 20,
            max_message_bytes: 64 << 20,
        }
    }
}

/// One lazily connected channel per peer address, shared by all groups in the process, and
/// the cluster key every request is signed with.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Mutex<BTreeMap<String, Channel>>>,
    key: ClusterKey,
    /// Peers that answered `AppendStream` with UNIMPLEMENTED (an older version, during a
    /// rolling upgrade), and when: they get unary AppendEntries until [`STREAM_RETRY`] later.
    no_stream: Arc<Mutex<BTreeMap<String, Instant>>>,
}

/// How long a peer that could not take `AppendStream` gets unary AppendEntries before the
/// stream is tried again (it may have been upgraded since).
pub const STREAM_RETRY: Duration = Duration::from_secs(60);

/// Names the Raft RPCs are signed under (the credential binds a request to its method).
pub mod method {
    /// AppendEntries.
    pub const APPEND: &str = "raft.AppendEntries";
    /// Vote.
    pub const VOTE: &str = "raft.Vote";
    /// PreVote.
    pub const PRE_VOTE: &str = "raft.PreVote";
    /// TransferLeader.
    pub const TRANSFER: &str = "raft.TransferLeader";
    /// InstallSnapshot (the stream's first chunk).
    pub const SNAPSHOT: &str = "raft.InstallSnapshot";
    /// Probe (raft-store's fence).
    pub const PROBE: &str = "raft.Probe";
    /// Seed (copying a peer's retained log to a rejoining replica).
    pub const SEED: &str = "raft.Seed";
    /// AppendStream (the stream's credential and every frame's MAC).
    pub const APPEND_STREAM: &str = "raft.AppendStream";
}

impl Channels {
    /// An empty pool whose requests carry credentials made with `key`.
    pub fn new(key: ClusterKey) -> Self {
        Self {
            inner: Arc::default(),
            key,
            no_stream: Arc::default(),
        }
    }

    /// Whether replication to `addr` may use `AppendStream`.
    fn streams_to(&self, addr: &str) -> bool {
        let mut no = self.no_stream.lock().unwrap();
        match no.get(addr) {
            Some(since) if since.elapsed() < STREAM_RETRY => false,
            Some(_) => {
                no.remove(addr);
                true
            }
            None => true,
        }
    }

    fn get(&self, addr: &str, cfg: &NetConfig) -> Result<Channel, String> {
        let mut map = self.inner.lock().unwrap();
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true);
        let ch = endpoint.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

/// Creates connections to the peers of one group.
#[derive(Clone)]
pub struct NetworkFactory {
    group: GroupId,
    self_id: NodeId,
    channels: Channels,
    cfg: NetConfig,
}

impl NetworkFactory {
    /// A factory for `group`, on node `self_id`, using the shared `channels`.
    pub fn new(group: GroupId, self_id: NodeId, channels: Channels, cfg: NetConfig) -> Self {
        Self {
            group,
            self_id,
            channels,
            cfg,
        }
    }
}

/// A connection from this replica to one peer replica of the same group.
pub struct Connection {
    group: GroupId,
    self_id: NodeId,
    target: NodeId,
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
    cfg: NetConfig,
    key: ClusterKey,
    channels: Channels,
}

/// The answers of an open `AppendStream`, with what the deadline of each needs.
struct Answers {
    replies: tonic::Streaming<RaftReply>,
    /// When each frame not yet answered was handed to the transport, oldest first.
    sent: Arc<Mutex<VecDeque<Instant>>>,
    /// When the last answer came.
    last_answer: Instant,
    /// Signalled as each frame is handed to the transport: an idle stream sleeps on it instead
    /// of waking every `ttl` to look for a deadline.
    frame_sent: Arc<tokio::sync::Notify>,
    ttl: Duration,
    self_id: NodeId,
    target: NodeId,
    addr: String,
    /// Dropped with the answers, which ends the frames: openraft's request stream (shared with
    /// its next session) is then no longer polled by this stream's HTTP/2 body.
    _done: tokio::sync::oneshot::Sender<()>,
}

impl Answers {
    /// The next answer, `None` at the end of the stream. An answer must come within `ttl` of
    /// its frame's sending or of the answer before it, whichever is later: each AppendEntries
    /// gets the deadline a unary call had once the ones before it are answered, so a follower
    /// catching up through many pipelined frames is not cut off while it makes progress
    /// (simulation cluster_chaos 5054: a replaced replica never caught up when each frame's
    /// deadline counted from its sending). A follower that stops answering (frozen,
    /// partitioned) ends the stream with a timeout, and openraft starts a new one.
    async fn next(
        &mut self,
    ) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
        loop {
            let oldest = self.sent.lock().unwrap().front().copied();
            let wait = match oldest {
                Some(t) => {
                    (t.max(self.last_answer) + self.ttl).saturating_duration_since(Instant::now())
                }
                None => self.ttl,
            };
            let answer = if oldest.is_none() {
                // Nothing is awaited: no deadline runs. Wait for an answer (the end of the
                // stream, an error) or for a frame to leave, whose deadline then starts. A
                // frame sent between the look above and here left a permit in the Notify.
                // Biased: tokio's branch choice is random, outside the simulator's seed.
                tokio::select! {
                    biased;
                    r = self.replies.message() => Ok(r),
                    _ = self.frame_sent.notified() => continue,
                }
            } else {
                tokio::time::timeout(wait, self.replies.message()).await
            };
            match answer {
                Err(_) => {
                    return Some(Err(RPCError::Timeout(Timeout {
                        action: RPCTypes::AppendEntries,
                        id: self.self_id,
                        target: self.target,
                        timeout: self.ttl,
                    })));
                }
                Ok(Err(status)) => {
                    return Some(Err(unreachable(format!(
                        "{} ({}): {status}",
                        self.target, self.addr
                    ))));
                }
                Ok(Ok(None)) => return None,
                Ok(Ok(Some(reply))) => {
                    self.sent.lock().unwrap().pop_front();
                    self.last_answer = Instant::now();
                    return Some(decode_reply(&reply));
                }
            }
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let client = self.channels.get(&node.addr, &self.cfg).map(|ch| {
            RaftServiceClient::new(ch)
                .max_decoding_message_size(self.cfg.max_message_bytes)
                .max_encoding_message_size(self.cfg.max_message_bytes)
        });
        Connection {
            group: self.group,
            self_id: self.self_id,
            target,
            addr: node.addr.clone(),
            client,
            cfg: self.cfg.clone(),
            key: self.channels.key.clone(),
            channels: self.channels.clone(),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("raft message encodes")
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    crate::codec::decode(b).map_err(|e| format!("undecodable raft message: {e}"))
}

fn unreachable(msg: impl Into<String>) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(msg.into())))
}

impl Connection {
    fn client(&self) -> Result<RaftServiceClient<Channel>, RPCError<TypeConfig>> {
        self.client.clone().map_err(unreachable)
    }

    /// Sends one unary RPC with a deadline and decodes the reply.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        method: &str,
        req: &Req,
        ttl: Duration,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftRequest>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftReply>, tonic::Status>>,
    {
        let payload = encode(req);
        let body = raftmq_proto::auth::group_body(self.group.0, &payload);
        let mut request = tonic::Request::new(RaftRequest {
            group: self.group.0,
            payload: payload.into(),
        });
        self.key.attach(
            &mut request,
            method,
            self.self_id,
            crate::rt::wall_ms(),
            &body,
        );
        let fut = send(self.client()?, request);
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.self_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => {
                return Err(unreachable(format!(
                    "{} ({}): {status}",
                    self.target, self.addr
                )));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        decode_reply(&reply)
    }
}

impl Connection {
    /// Opens an `AppendStream` carrying `input` (see the module doc). Each frame is signed
    /// (`ClusterKey::frame_tag`) when the transport takes it; its answers come back in order.
    async fn open_append_stream<S>(
        &mut self,
        input: S,
        option: RPCOption,
    ) -> Result<Answers, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let mut client = self.client()?;
        let ts = crate::rt::wall_ms();
        let (key, group, sender) = (self.key.clone(), self.group.0, self.self_id);
        let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let sent_by_frames = sent.clone();
        let frame_sent = Arc::new(tokio::sync::Notify::new());
        let notify = frame_sent.clone();
        let mut seq = 0u64;
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        let frames = input.take_until(ended).map(move |req| {
            let payload = encode(&req);
            let mac = key.frame_tag(method::APPEND_STREAM, sender, ts, seq, group, &payload);
            let frame = AppendFrame {
                group,
                payload: payload.into(),
                seq,
                mac: mac.into(),
            };
            seq += 1;
            sent_by_frames.lock().unwrap().push_back(Instant::now());
            notify.notify_one();
            frame
        });
        let mut request = tonic::Request::new(frames);
        self.key
            .attach(&mut request, method::APPEND_STREAM, sender, ts, &[]);
        let ttl = option.hard_ttl();
        let replies = match tokio::time::timeout(ttl, client.append_stream(request)).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: RPCTypes::AppendEntries,
                    id: self.self_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unimplemented {
                    // An older peer: unary AppendEntries for a while. What this session had
                    // handed over is resent by openraft's next session.
                    tracing::info!(peer = %self.addr, "peer has no AppendStream; using unary AppendEntries");
                    self.channels
                        .no_stream
                        .lock()
                        .unwrap()
                        .insert(self.addr.clone(), Instant::now());
                }
                return Err(unreachable(format!(
                    "{} ({}): {status}",
                    self.target, self.addr
                )));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        Ok(Answers {
            replies,
            sent,
            last_answer: Instant::now(),
            frame_sent,
            ttl,
            self_id: self.self_id,
            target: self.target,
            addr: self.addr.clone(),
            _done: done,
        })
    }
}

fn decode_reply<Resp: DeserializeOwned>(reply: &RaftReply) -> Result<Resp, RPCError<TypeConfig>> {
    if !reply.error.is_empty() {
        return Err(unreachable(reply.error.clone()));
    }
    let result: Result<Resp, String> = decode(&reply.payload)
        .map_err(|e| RPCError::Network(NetworkError::new(&io::Error::other(e))))?;
    result.map_err(unreachable)
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            RPCTypes::AppendEntries,
            method::APPEND,
            &rpc,
            option.hard_ttl(),
            |mut c, r| async move { c.append_entries(r).await },
        )
        .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>>
            + openraft::OptionalSend
            + Unpin
            + 'static,
    {
        // A stream known to hold one request (openraft's heartbeats) goes as one unary call:
        // opening an HTTP/2 stream for it would cost the same, and every version takes it.
        let single = input.size_hint() == (1, Some(1));
        if single || !self.channels.streams_to(&self.addr) {
            return stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            // The first request is taken before the stream opens: taking it is where openraft
            // waits out its backoff after an error (without that, a peer refusing connections
            // was retried in a busy loop), and a session with nothing to send opens nothing.
            let mut input = input;
            let Some(first) = input.next().await else {
                let empty: BoxStream<'s, _> = Box::pin(futures::stream::empty());
                return Ok(empty);
            };
            let input = futures::stream::once(futures::future::ready(first)).chain(input);
            let answers = self.open_append_stream(input, option).await?;
            // After an error (a conflict, a higher vote, a timeout) the stream is done: openraft
            // starts the next session from what was acknowledged.
            let stream = futures::stream::unfold(Some(answers), |state| async move {
                let mut answers = state?;
                let item = answers.next().await?;
                let go_on = matches!(item, Ok(Ok(_)));
                Some((item, go_on.then_some(answers)))
            });
            let stream: BoxStream<'s, _> = Box::pin(stream);
            Ok(stream)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            RPCTypes::Vote,
            method::VOTE,
            &rpc,
            option.hard_ttl(),
            |mut c, r| async move { c.vote(r).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            RPCTypes::Vote,
            method::PRE_VOTE,
            &rpc,
            option.hard_ttl(),
            |mut c, r| async move { c.pre_vote(r).await },
        )
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            RPCTypes::TransferLeader,
            method::TRANSFER,
            &req,
            option.hard_ttl(),
            |mut c, r| async move { c.transfer_leader(r).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = encode(&(vote, snapshot.meta.clone()));
        let mut chunks: Vec<SnapshotChunk> = snapshot
            .snapshot
            .chunks(self.cfg.snapshot_chunk_bytes.max(1))
            .map(|c| SnapshotChunk {
                group: 0,
                header: Default::default(),
                data: c.to_vec().into(),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(SnapshotChunk::default());
        }
        let body = raftmq_proto::auth::group_body(self.group.0, &header);
        chunks[0].group = self.group.0;
        chunks[0].header = header.into();
        let mut client = self.client().map_err(StreamingError::from)?;
        let mut request = tonic::Request::new(futures::stream::iter(chunks));
        self.key.attach(
            &mut request,
            method::SNAPSHOT,
            self.self_id,
            crate::rt::wall_ms(),
            &body,
        );
        let send = client.install_snapshot(request);
        let ttl = option.hard_ttl();
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => match r {
                Err(_) => Err(StreamingError::Timeout(Timeout {
                    action: RPCTypes::InstallSnapshot,
                    id: self.self_id,
                    target: self.target,
                    timeout: ttl,
                })),
                Ok(Err(status)) => Err(StreamingError::Unreachable(Unreachable::new(&io::Error::other(
                    format!("{} ({}): {status}", self.target, self.addr),
                )))),
                Ok(Ok(reply)) => decode_reply(&reply.into_inner()).map_err(StreamingError::from),
            },
        }
    }
}

/// Asks node `target` (at `addr`) what it knows of this replica of `group`, within `ttl`
/// (see [`crate::fence`]).
pub async fn probe(
    channels: &Channels,
    cfg: &NetConfig,
    (group, self_id): (GroupId, NodeId),
    (target, addr): (NodeId, &str),
    ttl: Duration,
) -> Result<crate::fence::ProbeReply, String> {
    let mut factory = NetworkFactory::new(group, self_id, channels.clone(), cfg.clone());
    let conn = factory.new_client(target, &Node::new(addr)).await;
    conn.unary(
        RPCTypes::Vote,
        method::PROBE,
        &(),
        ttl,
        |mut c, r| async move { c.probe(r).await },
    )
    .await
    .map_err(|e| e.to_string())
}

/// Asks node `target` (at `addr`) for part of a copy of `group` ([`crate::seed`]), within
/// `ttl`.
pub async fn seed(
    channels: &Channels,
    cfg: &NetConfig,
    (group, self_id): (GroupId, NodeId),
    (target, addr): (NodeId, &str),
    req: crate::seed::SeedRequest,
    ttl: Duration,
) -> Result<crate::seed::SeedReply, String> {
    let mut factory = NetworkFactory::new(group, self_id, channels.clone(), cfg.clone());
    let conn = factory.new_client(target, &Node::new(addr)).await;
    conn.unary(
        RPCTypes::Vote,
        method::SEED,
        &req,
        ttl,
        |mut c, r| async move { c.seed(r).await },
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;

    use raftmq_proto::raft::raft_service_server::RaftService;
    use raftmq_proto::raft::raft_service_server::RaftServiceServer;
    use tonic::Status;

    use super::*;

    /// A peer of an older version: no `AppendStream`; every unary AppendEntries succeeds.
    struct OldPeer {
        appends: Arc<AtomicU64>,
    }

    type Answer = Result<tonic::Response<RaftReply>, Status>;

    #[tonic::async_trait]
    impl RaftService for OldPeer {
        type AppendStreamStream = futures::stream::Empty<Result<RaftReply, Status>>;

        async fn append_stream(
            &self,
            _: tonic::Request<tonic::Streaming<AppendFrame>>,
        ) -> Result<tonic::Response<Self::AppendStreamStream>, Status> {
            Err(Status::unimplemented("an older peer"))
        }

        async fn append_entries(&self, _: tonic::Request<RaftRequest>) -> Answer {
            self.appends.fetch_add(1, Ordering::SeqCst);
            let ok: Result<AppendEntriesResponse<TypeConfig>, String> =
                Ok(AppendEntriesResponse::Success);
            Ok(tonic::Response::new(RaftReply {
                payload: encode(&ok).into(),
                error: String::new(),
            }))
        }

        async fn vote(&self, _: tonic::Request<RaftRequest>) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }

        async fn pre_vote(&self, _: tonic::Request<RaftRequest>) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }

        async fn transfer_leader(&self, _: tonic::Request<RaftRequest>) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<tonic::Streaming<SnapshotChunk>>,
        ) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }

        async fn probe(&self, _: tonic::Request<RaftRequest>) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }

        async fn seed(&self, _: tonic::Request<RaftRequest>) -> Answer {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// A rolling upgrade: a new leader replicating to an old follower fails its first stream,
    /// remembers the peer, and replicates with unary AppendEntries from the next session on.
    #[tokio::test]
    async fn a_peer_without_append_stream_gets_unary_append_entries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let appends = Arc::new(AtomicU64::new(0));
        let peer = OldPeer {
            appends: appends.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(peer))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channels = Channels::new(ClusterKey::insecure_for_tests());
        let mut factory =
            NetworkFactory::new(GroupId(1), 1, channels.clone(), NetConfig::default());
        let node = Node { addr: addr.clone() };
        let mut conn = factory.new_client(2, &node).await;
        let two = || {
            let req = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(1, 1),
                prev_log_id: None,
                leader_commit: None,
                entries: vec![],
            };
            futures::stream::iter(vec![req.clone(), req])
        };
        let option = RPCOption::new(Duration::from_secs(5));

        assert!(channels.streams_to(&addr));
        assert!(conn.stream_append(two(), option.clone()).await.is_err());
        assert!(!channels.streams_to(&addr), "the old peer is remembered");
        assert_eq!(appends.load(Ordering::SeqCst), 0);

        let answers: Vec<_> = conn
            .stream_append(two(), option)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(answers.len(), 2);
        assert!(
            answers.iter().all(|a| matches!(a, Ok(Ok(None)))),
            "{answers:?}"
        );
        assert_eq!(appends.load(Ordering::SeqCst), 2, "two unary calls");
    }
}
