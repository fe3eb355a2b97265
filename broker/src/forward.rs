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

/// Sends forwarded requests; one lazily connected channel per target address.
#[derive(Clone, Default)]
pub struct Forwarder {
    clients: Arc<Mutex<BTreeMap<String, ForwardClient<Channel>>>>,
}

impl Forwarder {
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
        let req = pb::ForwardRequest {
            group,
            payload: enc(command),
        };
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
        let req = pb::ForwardRequest {
            group,
            payload: enc(pop),
        };
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
}

impl ForwardServer {
    /// A server whose core is set later with [`ForwardServer::slot`] (the core needs the
    /// replicas, which need the listener running).
    pub fn new(slot: Arc<std::sync::OnceLock<Weak<BrokerCore>>>) -> Self {
        Self { core: slot }
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
        let req = req.into_inner();
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
        let req = req.into_inner();
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
