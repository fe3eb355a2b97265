//! The client side of the Raft transport: openraft's network traits over tonic.
//!
//! One [`Channels`] pool per process keeps one HTTP/2 channel per peer address, shared by every
//! group. Each group's [`NetworkFactory`] stamps its group id on every request. Every RPC has a
//! deadline (openraft's hard TTL); a transport failure or a missing peer group is reported as
//! "unreachable" so openraft backs off, a deadline as a timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::RaftNetworkFactory;
use openraft::errors::NetworkError;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Timeout;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RPCTypes;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use raftmq_proto::auth::ClusterKey;
use raftmq_proto::raft::RaftReply;
use raftmq_proto::raft::RaftRequest;
use raftmq_proto::raft::SnapshotChunk;
use raftmq_proto::raft::raft_service_client::RaftServiceClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
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
}

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
}

impl Channels {
    /// An empty pool whose requests carry credentials made with `key`.
    pub fn new(key: ClusterKey) -> Self {
        Self {
            inner: Arc::default(),
            key,
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
