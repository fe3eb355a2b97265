//! One-hop forwarding between broker nodes: a node that does not lead a group hands the
//! command (or the receive) to the node that does, over the Raft transport listener (every
//! member knows every other member's Raft address from the group membership). The receiving
//! node only runs it locally: if it does not lead either, it says so and the sender retries
//! after the election, so a request never bounces around.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::time::Duration;

use raftmq_proto::auth::ClusterKey;
use raftmq_proto::forward as pb;
use raftmq_proto::forward::forward_client::ForwardClient;
use raftmq_proto::forward::forward_server::Forward;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::command::Command;
use crate::command::Pop;
use crate::core::BrokerCore;
use crate::error::BrokerError;
use crate::model::StoredMessage;
use crate::state::Delivery;
use crate::state::Outcome;
use crate::state::Reject;

/// A broker error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardError {
    /// The target does not lead the group either.
    NotLeader(Option<u64>),
    /// Applied and refused.
    Rejected(Reject),
    /// May or may not have been committed.
    Unknown(String),
    /// The target cannot take requests.
    Unavailable(String),
    /// Stored data could not be read back.
    Corrupt(String),
}

impl From<BrokerError> for ForwardError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotLeader { leader } => ForwardError::NotLeader(leader),
            BrokerError::Rejected(r) => ForwardError::Rejected(r),
            BrokerError::Unknown(s) => ForwardError::Unknown(s),
            BrokerError::Unavailable(s) => ForwardError::Unavailable(s),
            BrokerError::Corrupt(s) => ForwardError::Corrupt(s),
            other => ForwardError::Unknown(other.to_string()),
        }
    }
}

impl From<ForwardError> for BrokerError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader(leader) => BrokerError::NotLeader { leader },
            ForwardError::Rejected(r) => BrokerError::Rejected(r),
            ForwardError::Unknown(s) => BrokerError::Unknown(s),
            ForwardError::Unavailable(s) => BrokerError::Unavailable(s),
            ForwardError::Corrupt(s) => BrokerError::Corrupt(s),
        }
    }
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("forwarded value encodes")
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    crate::command::decode_bounded(b).map_err(|e| format!("undecodable forwarded value: {e}"))
}

/// Received messages as they cross the wire.
pub type Popped = Vec<(Delivery, StoredMessage)>;

/// Names forwarded RPCs are signed under.
mod method {
    pub const SUBMIT: &str = "forward.Submit";
    pub const POP: &str = "forward.Pop";
}

/// Sends forwarded requests; one lazily connected channel per target address. Every request
/// carries the cluster credential of this node.
#[derive(Clone)]
pub struct Forwarder {
    clients: Arc<Mutex<BTreeMap<String, ForwardClient<Channel>>>>,
    key: ClusterKey,
    node_id: u64,
}

impl Forwarder {
    /// A forwarder for node `node_id` signing with `key`.
    pub fn new(key: ClusterKey, node_id: u64) -> Self {
        Self {
            clients: Arc::default(),
            key,
            node_id,
        }
    }

    fn request(
        &self,
        method: &str,
        group: u64,
        payload: Vec<u8>,
    ) -> tonic::Request<pb::ForwardRequest> {
        let body = raftmq_proto::auth::group_body(group, &payload);
        let mut req = tonic::Request::new(pb::ForwardRequest { group, payload });
        self.key.attach(
            &mut req,
            method,
            self.node_id,
            raft_store::rt::wall_ms(),
            &body,
        );
        req
    }

    fn client(&self, addr: &str) -> Result<ForwardClient<Channel>, BrokerError> {
        let mut m = self.clients.lock().unwrap();
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| BrokerError::Config(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .connect_lazy();
        let c = ForwardClient::new(ch)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Runs `command` on the leader at `addr`.
    pub async fn submit(
        &self,
        addr: &str,
        group: u64,
        command: &Command,
        timeout: Duration,
    ) -> Result<Outcome, BrokerError> {
        let mut c = self.client(addr)?;
        let req = self.request(method::SUBMIT, group, enc(command));
        let r = tokio::time::timeout(timeout, c.submit(req)).await;
        Self::decode(addr, r)
    }

    /// Runs a receive on the leader at `addr`.
    pub async fn pop(
        &self,
        addr: &str,
        group: u64,
        pop: &Pop,
        timeout: Duration,
    ) -> Result<Popped, BrokerError> {
        let mut c = self.client(addr)?;
        let req = self.request(method::POP, group, enc(pop));
        let r = tokio::time::timeout(timeout, c.pop(req)).await;
        Self::decode(addr, r)
    }

    fn decode<T: DeserializeOwned>(
        addr: &str,
        r: Result<
            Result<tonic::Response<pb::ForwardReply>, tonic::Status>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T, BrokerError> {
        match r {
            Err(_) => Err(BrokerError::Unknown(format!("forward to {addr} timed out"))),
            // No connection could be made: the request reached nobody, so the caller may wait
            // for the next leader and retry (a dead leader is the common case during failover).
            Ok(Err(status)) if raftmq_proto::v2util::is_connect_failure(&status) => {
                Err(BrokerError::NotLeader { leader: None })
            }
            // The request may have reached the leader before the connection failed.
            Ok(Err(status)) => Err(BrokerError::Unknown(format!(
                "forward to {addr} failed: {status}"
            ))),
            Ok(Ok(reply)) => {
                let v: Result<T, ForwardError> =
                    dec(&reply.into_inner().payload).map_err(BrokerError::Corrupt)?;
                v.map_err(BrokerError::from)
            }
        }
    }
}

/// Serves forwarded requests by running them on the local leader replica only.
pub struct ForwardServer {
    core: Arc<std::sync::OnceLock<Weak<BrokerCore>>>,
    key: ClusterKey,
}

impl ForwardServer {
    /// A server whose core is set later through `slot` (the core needs the replicas, which
    /// need the listener running); it accepts only requests signed with `key`.
    pub fn new(slot: Arc<std::sync::OnceLock<Weak<BrokerCore>>>, key: ClusterKey) -> Self {
        Self { core: slot, key }
    }

    /// The request, once its credential verifies (before anything is decoded).
    fn authenticated(
        &self,
        method: &str,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<pb::ForwardRequest, tonic::Status> {
        let (meta, _, req) = req.into_parts();
        let body = raftmq_proto::auth::group_body(req.group, &req.payload);
        self.key
            .check(&meta, method, &body, raft_store::rt::wall_ms())?;
        Ok(req)
    }

    fn core(&self) -> Result<Arc<BrokerCore>, ForwardError> {
        self.core
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ForwardError::Unavailable("node is starting or stopping".into()))
    }
}

fn reply<T: Serialize>(
    v: Result<T, ForwardError>,
) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
    Ok(tonic::Response::new(pb::ForwardReply { payload: enc(&v) }))
}

#[tonic::async_trait]
impl Forward for ForwardServer {
    async fn submit(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        let req = self.authenticated(method::SUBMIT, req)?;
        let run = async {
            let core = self.core()?;
            let cmd: Command = dec(&req.payload).map_err(ForwardError::Corrupt)?;
            core.submit_local(req.group, cmd)
                .await
                .map_err(ForwardError::from)
        };
        reply(run.await)
    }

    async fn pop(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        let req = self.authenticated(method::POP, req)?;
        let run = async {
            let core = self.core()?;
            let pop: Pop = dec(&req.payload).map_err(ForwardError::Corrupt)?;
            core.pop_local(req.group, pop)
                .await
                .map_err(ForwardError::from)
        };
        reply(run.await)
    }
}
