//! The server side of the Raft transport: one tonic service per process that routes each
//! request to the replica of the group it names.
//!
//! A replication stream (`AppendStream`) is handed to openraft's `Raft::stream_append`, which
//! pipelines its AppendEntries and answers them in order; every frame is checked (its MAC, its
//! place in the stream, its group) before it is decoded.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use futures::Stream;
use futures::StreamExt;

use openraft::async_runtime::WatchReceiver;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::StreamAppendResult;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::storage::RaftStateMachine;
use raftmq_proto::auth::ClusterKey;
use raftmq_proto::raft::AppendFrame;
use raftmq_proto::raft::RaftReply;
use raftmq_proto::raft::RaftRequest;
use raftmq_proto::raft::SnapshotChunk;
use raftmq_proto::raft::raft_service_server::RaftService;
use raftmq_proto::raft::raft_service_server::RaftServiceServer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::Streaming;

use crate::fence::Fence;
use crate::fence::ProbeReply;
use crate::network::method;
use crate::seed::SeedReply;
use crate::seed::SeedRequest;
use crate::seed::SeedSource;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::TypeConfig;
use crate::types::Vote;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;
type Reply<T> = Result<T, String>;

/// The Raft RPCs a replica answers, with its state machine type erased.
pub trait RaftRpc: Send + Sync + 'static {
    /// Handles append-entries.
    fn append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<Reply<AppendEntriesResponse<TypeConfig>>>;
    /// Handles a replication stream: its AppendEntries pipelined, answered in order. The
    /// answers end when the input does, at the first error, or when the replica stops
    /// admitting Raft requests.
    fn stream_append(
        &self,
        input: BoxStream<AppendEntriesRequest<TypeConfig>>,
    ) -> Reply<BoxStream<Reply<StreamAppendResult<TypeConfig>>>>;
    /// Handles a vote request.
    fn vote(&self, req: VoteRequest<TypeConfig>) -> BoxFuture<Reply<VoteResponse<TypeConfig>>>;
    /// Handles a pre-vote request.
    fn pre_vote(&self, req: VoteRequest<TypeConfig>) -> BoxFuture<Reply<VoteResponse<TypeConfig>>>;
    /// Installs a full snapshot.
    fn install_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<Reply<SnapshotResponse<TypeConfig>>>;
    /// Handles a leadership transfer to this replica.
    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<Reply<TransferLeaderResponse<TypeConfig>>>;
    /// Answers node `from`'s probe (it started with an empty log; see [`crate::fence`]).
    fn probe(&self, from: NodeId) -> Reply<ProbeReply>;
    /// `Ok` if Raft requests may reach the replica (checked before a snapshot stream is
    /// buffered, too).
    fn admit(&self) -> Reply<()>;
    /// Answers node `from`'s request for part of a copy ([`crate::seed`]).
    fn seed(&self, from: NodeId, req: SeedRequest) -> BoxFuture<Reply<SeedReply>>;
}

/// A replica as the transport sees it: its Raft, behind its [`Fence`].
pub struct Hosted<SM: RaftStateMachine<TypeConfig>> {
    /// The replica's Raft.
    pub raft: Raft<SM>,
    /// Its gate and record of acknowledging members.
    pub fence: Arc<Fence>,
    /// Its group.
    pub group: GroupId,
    /// This node.
    pub node: NodeId,
    /// Its log and files, for a replica that rejoins empty.
    pub seed: Arc<SeedSource>,
}

impl<SM> Hosted<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>,
{
    fn admitted(&self) -> Result<Raft<SM>, String> {
        self.fence.admit(self.group, self.node)?;
        Ok(self.raft.clone())
    }
}

impl<SM> RaftRpc for Hosted<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>,
{
    fn append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<Reply<AppendEntriesResponse<TypeConfig>>> {
        let r = self.admitted();
        Box::pin(async move { r?.append_entries(req).await.map_err(|e| e.to_string()) })
    }

    fn stream_append(
        &self,
        input: BoxStream<AppendEntriesRequest<TypeConfig>>,
    ) -> Reply<BoxStream<Reply<StreamAppendResult<TypeConfig>>>> {
        let raft = self.admitted()?;
        let (fence, group, node) = (self.fence.clone(), self.group, self.node);
        // The gate is looked at for every request, as for unary ones: a replica fenced while
        // the stream is open takes nothing more from it.
        let input =
            input.take_while(move |_| futures::future::ready(fence.admit(group, node).is_ok()));
        Ok(Box::pin(
            raft.stream_append(input)
                .map(|r| r.map_err(|fatal| fatal.to_string())),
        ))
    }

    fn vote(&self, req: VoteRequest<TypeConfig>) -> BoxFuture<Reply<VoteResponse<TypeConfig>>> {
        let r = self.admitted();
        Box::pin(async move { r?.vote(req).await.map_err(|e| e.to_string()) })
    }

    fn pre_vote(&self, req: VoteRequest<TypeConfig>) -> BoxFuture<Reply<VoteResponse<TypeConfig>>> {
        let r = self.admitted();
        Box::pin(async move { r?.pre_vote(req).await.map_err(|e| e.to_string()) })
    }

    fn admit(&self) -> Reply<()> {
        self.fence.admit(self.group, self.node)
    }

    fn seed(&self, from: NodeId, req: SeedRequest) -> BoxFuture<Reply<SeedReply>> {
        let source = self.seed.clone();
        // A new replica (Begin) must not be counted as a voter, by a membership this replica
        // has applied. A member repairing its state (State) keeps its log and vote and copies
        // no log: any persisted snapshot serves it, whatever the membership (it may be needed
        // for a majority: sim cluster_chaos 32009, one node down and another repairing).
        let (new_replica, at_least) = match req {
            SeedRequest::Begin => (true, None),
            SeedRequest::State { at_least } => (false, Some(at_least)),
            _ => (false, None),
        };
        if new_replica || at_least.is_some() {
            let m = self.raft.metrics().borrow_watched().clone();
            let refuse = if let Err(e) = self.fence.admit(self.group, self.node) {
                Some(e)
            } else if self.fence.had_log && m.last_log_index.is_none() {
                Some(format!(
                    "the replica of group {} on node {} is still loading its log",
                    self.group, self.node
                ))
            } else if new_replica
                && m.membership_config
                    .log_id()
                    .as_ref()
                    .is_some_and(|l| m.last_applied.as_ref().is_none_or(|a| a.index < l.index))
            {
                Some("a membership change is not applied here yet: retry".into())
            } else if new_replica
                && m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == from)
            {
                Some(format!(
                    "node {from} is still a voter of group {} here: remove it from the group \
                     first (raftmq admin replica remove)",
                    self.group
                ))
            } else {
                None
            };
            let raft = self.raft.clone();
            return Box::pin(async move {
                if let Some(why) = refuse {
                    return Err(why);
                }
                let applied = m.last_applied;
                let begin = {
                    // No snapshot build between reading the snapshot and listing the files.
                    let lock = source.snapshots.clone();
                    let _no_build = lock.lock().await;
                    crate::rt::spawn_blocking(move || source.begin(applied))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))?
                };
                // A repairing member needs a snapshot at or after its purge point: one this
                // replica has applied past is built now, for the member's next round.
                if let Some(want) = at_least
                    && begin.snapshot_last.is_none_or(|s| s.index < want)
                    && applied.is_some_and(|a| a.index >= want)
                {
                    let _ = raft.trigger().snapshot().await;
                }
                Ok(SeedReply::Begin(begin))
            });
        }
        // Reads files and log segments: off the runtime's worker threads.
        Box::pin(async move {
            crate::rt::spawn_blocking(move || source.answer(req))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        })
    }

    fn probe(&self, from: NodeId) -> Reply<ProbeReply> {
        let m = self.raft.metrics().borrow_watched().clone();
        // Until openraft has loaded the log, its metrics look like an empty replica's: a
        // replica that had a log must not be taken for one (found in review).
        if self.fence.had_log && m.last_log_index.is_none() {
            return Err(format!(
                "the replica of group {} on node {} is still loading its log",
                self.group, self.node
            ));
        }
        Ok(ProbeReply {
            last_log_index: m.last_log_index,
            voter: m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == from),
            membership_index: m.membership_config.log_id().as_ref().map(|l| l.index),
            acked: self.fence.acked.contains(from),
        })
    }

    fn install_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<Reply<SnapshotResponse<TypeConfig>>> {
        let r = self.admitted();
        Box::pin(async move {
            let r = r?;
            r.install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<Reply<TransferLeaderResponse<TypeConfig>>> {
        let r = self.admitted();
        Box::pin(async move {
            r?.handle_transfer_leader(req)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The replicas a process hosts, by group, and the cluster key requests must be signed with.
#[derive(Clone)]
pub struct Registry {
    groups: Arc<RwLock<BTreeMap<GroupId, Hosting>>>,
    key: ClusterKey,
    max_snapshot_bytes: usize,
}

/// A registered replica, and what its open replication streams wait on: the sender is dropped
/// when the replica is unregistered or replaced, which ends them. (An idle stream would
/// otherwise outlive its replica: a stopped node's graceful server shutdown waited for its
/// peers' streams, found by `group_real::forged_raft_requests_are_refused_and_change_nothing`.)
struct Hosting {
    rpc: Arc<dyn RaftRpc>,
    gone: tokio::sync::watch::Sender<()>,
}

/// The tonic service type of the Raft transport.
#[cfg(not(madsim))]
pub type RaftSvc = RaftServiceServer<RaftServer>;
/// The tonic service type of the Raft transport (the simulator's generated code names its
/// interceptor).
#[cfg(madsim)]
pub type RaftSvc = RaftServiceServer<RaftServer, tonic::codegen::IdentityInterceptor>;

/// Largest snapshot a peer may stream by default (snapshots are buffered in memory before
/// install).
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 30;

impl Registry {
    /// An empty registry that accepts only requests signed with `key`.
    pub fn new(key: ClusterKey) -> Self {
        Self {
            groups: Arc::default(),
            key,
            max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
        }
    }

    /// The same registry refusing streamed snapshots larger than `bytes`.
    pub fn with_max_snapshot_bytes(mut self, bytes: usize) -> Self {
        self.max_snapshot_bytes = bytes;
        self
    }

    /// Routes `group`'s requests to `rpc` (replacing any previous replica of the group).
    pub fn register(&self, group: GroupId, rpc: Arc<dyn RaftRpc>) {
        let (gone, _) = tokio::sync::watch::channel(());
        self.groups
            .write()
            .unwrap()
            .insert(group, Hosting { rpc, gone });
    }

    /// Stops routing `group`'s requests.
    pub fn unregister(&self, group: GroupId) {
        self.groups.write().unwrap().remove(&group);
    }

    fn get(&self, group: u64) -> Result<Arc<dyn RaftRpc>, String> {
        self.hosting(group).map(|(rpc, _)| rpc)
    }

    /// The replica of `group`, and a future that completes when it is unregistered or replaced.
    fn hosting(
        &self,
        group: u64,
    ) -> Result<(Arc<dyn RaftRpc>, tokio::sync::watch::Receiver<()>), String> {
        let groups = self.groups.read().unwrap();
        let h = groups
            .get(&GroupId(group))
            .ok_or_else(|| format!("no replica of group {group} here"))?;
        Ok((h.rpc.clone(), h.gone.subscribe()))
    }

    /// The Raft transport for the registered groups, as a tonic service.
    pub fn service(&self, max_message_bytes: usize) -> RaftSvc {
        RaftServiceServer::new(RaftServer {
            registry: self.clone(),
        })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
    }

    /// Adds the Raft transport for the registered groups to a tonic server.
    pub fn add_to(
        &self,
        server: &mut tonic::transport::Server,
        max_message_bytes: usize,
    ) -> tonic::transport::server::Router {
        server.add_service(self.service(max_message_bytes))
    }
}

/// The tonic service; see [`Registry::add_to`].
pub struct RaftServer {
    registry: Registry,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("raft message encodes")
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    crate::codec::decode(b).map_err(|e| format!("undecodable raft message: {e}"))
}

fn reply<T: Serialize>(result: Result<Reply<T>, String>) -> tonic::Response<RaftReply> {
    tonic::Response::new(reply_message(result))
}

fn reply_message<T: Serialize>(result: Result<Reply<T>, String>) -> RaftReply {
    match result {
        Ok(r) => RaftReply {
            payload: encode(&r).into(),
            error: String::new(),
        },
        Err(error) => RaftReply {
            payload: Default::default(),
            error,
        },
    }
}

/// The frames of one replication stream, each checked before it is decoded: its MAC (bound
/// to the stream's credential), its place (no frame dropped, repeated or reordered) and its
/// group (the first frame's, for the whole stream).
struct Frames {
    frames: Streaming<AppendFrame>,
    key: ClusterKey,
    sender: NodeId,
    ts_ms: u64,
    group: Option<u64>,
    seq: u64,
}

impl Frames {
    async fn next(&mut self) -> Result<Option<AppendEntriesRequest<TypeConfig>>, Status> {
        let Some(f) = self.frames.message().await? else {
            return Ok(None);
        };
        if f.seq != self.seq {
            return Err(Status::invalid_argument(format!(
                "frame {} where {} was expected",
                f.seq, self.seq
            )));
        }
        self.key
            .verify_frame(
                method::APPEND_STREAM,
                self.sender,
                self.ts_ms,
                f.seq,
                f.group,
                &f.payload,
                &f.mac,
            )
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if *self.group.get_or_insert(f.group) != f.group {
            return Err(Status::invalid_argument("a stream carries one group"));
        }
        self.seq += 1;
        decode(&f.payload)
            .map(Some)
            .map_err(Status::invalid_argument)
    }
}

/// Completes when the replica `gone` watches is unregistered or replaced (its sender dropped;
/// nothing is ever sent).
async fn gone(mut gone: tokio::sync::watch::Receiver<()>) {
    while gone.changed().await.is_ok() {}
}

/// The answers to one replication stream: waits for its first frame (which names the group),
/// then hands the checked frames to the replica. A bad frame ends the input, and the answers
/// end with its error after the frames before it are answered.
async fn serve_append_stream(
    registry: Registry,
    mut frames: Frames,
) -> BoxStream<Result<RaftReply, Status>> {
    let one = |item: Result<RaftReply, Status>| -> BoxStream<Result<RaftReply, Status>> {
        Box::pin(futures::stream::once(futures::future::ready(item)))
    };
    let first = match frames.next().await {
        Ok(Some(first)) => first,
        Ok(None) => return Box::pin(futures::stream::empty()),
        Err(status) => return one(Err(status)),
    };
    let group = frames.group.unwrap_or_default();
    let (target, gone_rx) = match registry.hosting(group) {
        Ok(t) => t,
        Err(e) => return one(Ok(reply_message::<StreamAppendResult<TypeConfig>>(Err(e)))),
    };
    let bad: Arc<Mutex<Option<Status>>> = Arc::default();
    let bad_in = bad.clone();
    let rest = futures::stream::unfold(Some(frames), move |state| {
        let bad = bad_in.clone();
        async move {
            let mut frames = state?;
            match frames.next().await {
                Ok(Some(req)) => Some((req, Some(frames))),
                Ok(None) => None,
                Err(status) => {
                    tracing::warn!(group, %status, "replication stream refused");
                    *bad.lock().unwrap() = Some(status);
                    None
                }
            }
        }
    });
    // Input and answers both end with the replica: openraft's task reading the input would
    // otherwise hold the peer's HTTP/2 stream (and so this node's graceful server shutdown)
    // open until the leader's next frame.
    let rest = rest.take_until(Box::pin(gone(gone_rx.clone())));
    let input = Box::pin(futures::stream::once(futures::future::ready(first)).chain(rest));
    let answers = match target.stream_append(input) {
        Ok(a) => a,
        Err(e) => return one(Ok(reply_message::<StreamAppendResult<TypeConfig>>(Err(e)))),
    };
    let answers = answers
        .take_until(Box::pin(gone(gone_rx)))
        .map(|r| Ok(reply_message(Ok(r))));
    let refusal = futures::stream::once(async move { bad.lock().unwrap().take() })
        .filter_map(|s| futures::future::ready(s.map(Err)));
    Box::pin(answers.chain(refusal))
}

impl RaftServer {
    /// Authenticates, decodes and runs one request. Nothing is decoded before the credential
    /// verifies: a stranger's bytes never reach bincode or openraft.
    async fn dispatch<Req, Resp, F>(
        &self,
        method: &str,
        req: tonic::Request<RaftRequest>,
        call: F,
    ) -> Result<tonic::Response<RaftReply>, Status>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        F: FnOnce(Arc<dyn RaftRpc>, Req, NodeId) -> BoxFuture<Reply<Resp>>,
    {
        let (meta, _, req) = req.into_parts();
        let body = raftmq_proto::auth::group_body(req.group, &req.payload);
        let sender = self
            .registry
            .key
            .check(&meta, method, &body, crate::rt::wall_ms())?;
        Ok(self.run(req, sender, call).await)
    }

    async fn run<Req, Resp, F>(
        &self,
        req: RaftRequest,
        sender: NodeId,
        call: F,
    ) -> tonic::Response<RaftReply>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        F: FnOnce(Arc<dyn RaftRpc>, Req, NodeId) -> BoxFuture<Reply<Resp>>,
    {
        let target = match self.registry.get(req.group) {
            Ok(t) => t,
            Err(e) => return reply::<Resp>(Err(e)),
        };
        let parsed: Req = match decode(&req.payload) {
            Ok(p) => p,
            Err(e) => return reply::<Resp>(Err(e)),
        };
        reply(Ok(call(target, parsed, sender).await))
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    type AppendStreamStream = BoxStream<Result<RaftReply, Status>>;

    async fn append_stream(
        &self,
        req: tonic::Request<Streaming<AppendFrame>>,
    ) -> Result<tonic::Response<Self::AppendStreamStream>, Status> {
        let (meta, _, frames) = req.into_parts();
        let key = self.registry.key.clone();
        let (sender, ts_ms) =
            key.check_stream(&meta, method::APPEND_STREAM, crate::rt::wall_ms())?;
        let frames = Frames {
            frames,
            key,
            sender,
            ts_ms,
            group: None,
            seq: 0,
        };
        // Answered at once (the response headers), so the opener's deadline covers only the
        // opening; the first frame is awaited inside the stream.
        let answers =
            futures::stream::once(serve_append_stream(self.registry.clone(), frames)).flatten();
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn append_entries(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(
            method::APPEND,
            req,
            |t, r: AppendEntriesRequest<TypeConfig>, _| t.append_entries(r),
        )
        .await
    }

    async fn vote(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(method::VOTE, req, |t, r: VoteRequest<TypeConfig>, _| {
            t.vote(r)
        })
        .await
    }

    async fn pre_vote(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(method::PRE_VOTE, req, |t, r: VoteRequest<TypeConfig>, _| {
            t.pre_vote(r)
        })
        .await
    }

    async fn probe(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(method::PROBE, req, |t, (): (), from| {
            let r = t.probe(from);
            Box::pin(async move { r })
        })
        .await
    }

    async fn seed(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(method::SEED, req, |t, r: SeedRequest, from| t.seed(from, r))
            .await
    }

    async fn transfer_leader(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        self.dispatch(
            method::TRANSFER,
            req,
            |t, r: TransferLeaderRequest<TypeConfig>, _| t.transfer_leader(r),
        )
        .await
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<Streaming<SnapshotChunk>>,
    ) -> Result<tonic::Response<RaftReply>, Status> {
        let (meta, _, mut stream) = req.into_parts();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        // The stream's credential covers its group and header (the first chunk); the later
        // chunks ride the same authenticated HTTP/2 stream.
        let body = raftmq_proto::auth::group_body(first.group, &first.header);
        self.registry
            .key
            .check(&meta, method::SNAPSHOT, &body, crate::rt::wall_ms())?;
        // A replica behind its fence takes no snapshot: refuse before buffering one.
        if let Ok(target) = self.registry.get(first.group)
            && let Err(e) = target.admit()
        {
            return Ok(reply::<SnapshotResponse<TypeConfig>>(Err(e)));
        }
        // Buffer the stream (bounded) before anything is decoded.
        let max = self.registry.max_snapshot_bytes;
        if first.data.len() > max {
            return Err(Status::resource_exhausted(format!(
                "snapshot larger than {max} bytes"
            )));
        }
        let mut data = first.data.to_vec();
        while let Some(chunk) = stream.message().await? {
            if data.len().saturating_add(chunk.data.len()) > max {
                return Err(Status::resource_exhausted(format!(
                    "snapshot larger than {max} bytes"
                )));
            }
            data.extend_from_slice(&chunk.data);
        }
        let target = match self.registry.get(first.group) {
            Ok(t) => t,
            Err(e) => return Ok(reply::<SnapshotResponse<TypeConfig>>(Err(e))),
        };
        let (vote, meta): (Vote, SnapshotMeta) = match decode(&first.header) {
            Ok(h) => h,
            Err(e) => return Ok(reply::<SnapshotResponse<TypeConfig>>(Err(e))),
        };
        let result = target
            .install_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await;
        Ok(reply(Ok(result)))
    }
}

/// Serves the Raft transport for `registry` on `addr` until `shutdown` completes.
pub async fn serve(
    addr: std::net::SocketAddr,
    registry: Registry,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    registry
        .add_to(&mut tonic::transport::Server::builder(), max_message_bytes)
        .serve_with_shutdown(addr, shutdown)
        .await
        .map_err(|e| crate::Error::Io {
            path: std::path::PathBuf::from(addr.to_string()),
            source: std::io::Error::other(e.to_string()),
        })
}
