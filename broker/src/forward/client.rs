//! The sending side of forwarding: one lazily connected channel per target node, every request
//! signed with this node's cluster credential, one error classification for every call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use raftmq_proto::auth::ClusterKey;
use raftmq_proto::forward as pb;
use raftmq_proto::forward::forward_client::ForwardClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use super::lane::Lanes;
use super::wire::BatchAnswer;
use super::wire::ForwardError;
use super::wire::Forwarded;
use super::wire::PopCall;
use super::wire::Popped;
use super::wire::Read;
use super::wire::ReadAnswer;
use super::wire::dec;
use super::wire::enc;
use super::wire::method;
use crate::command::Command;
use crate::command::Pop;
use crate::error::BrokerError;
use crate::state::Outcome;

/// Largest forwarded message either way (a receive reply is bounded by `max_reply_bytes`).
pub const MAX_MESSAGE: usize = 256 << 20;

/// Sends forwarded requests; see the module docs.
#[derive(Clone)]
pub struct Forwarder {
    calls: Calls,
    lanes: Lanes,
}

/// The calls themselves: one channel per target node, signed with this node's credential.
/// (Apart from [`Forwarder`] so the lanes' tasks can hold them without holding the lanes.)
#[derive(Clone)]
pub struct Calls {
    clients: Arc<Mutex<BTreeMap<String, ForwardClient<Channel>>>>,
    key: ClusterKey,
    node_id: u64,
}

impl Forwarder {
    /// A forwarder for node `node_id` signing with `key`.
    pub fn new(key: ClusterKey, node_id: u64) -> Self {
        Self {
            calls: Calls {
                clients: Arc::default(),
                key,
                node_id,
            },
            lanes: Lanes::default(),
        }
    }

    /// Runs `command` on the leader at `addr`, in one call with whatever else this node
    /// forwards to that group at the same time ([`super::lane`]).
    pub async fn submit(
        &self,
        addr: &str,
        group: u64,
        command: &Command,
        timeout: Duration,
    ) -> Result<Outcome, BrokerError> {
        self.lanes
            .submit(&self.calls, addr, group, command, timeout)
            .await
    }

    /// Runs a receive on the leader at `addr`.
    pub async fn pop(
        &self,
        addr: &str,
        group: u64,
        pop: &Pop,
        timeout: Duration,
    ) -> Result<Popped, BrokerError> {
        let Some(sql) = &pop.sql else {
            return self
                .calls
                .call(addr, method::POP, group, pop, timeout)
                .await;
        };
        let call = PopCall {
            pop: pop.clone(),
            sql: sql.clone(),
        };
        self.calls
            .call(addr, method::POP, group, &call, timeout)
            .await
    }

    /// Asks the node at `addr` to hand a transaction check-back to a producer connected
    /// there (only to one known to use transactions if `transactional_only`): true if one
    /// took it. The call's group field carries the choice (1: transactional only); a node
    /// that predates it reads any producer.
    pub async fn deliver(
        &self,
        addr: &str,
        check: &crate::checkback::CheckBack,
        transactional_only: bool,
        timeout: Duration,
    ) -> Result<bool, BrokerError> {
        let mode = u64::from(transactional_only);
        self.calls
            .call(addr, method::DELIVER, mode, check, timeout)
            .await
    }

    /// Runs a read on the leader at `addr`.
    pub async fn read(
        &self,
        addr: &str,
        group: u64,
        read: &Read,
        timeout: Duration,
    ) -> Result<ReadAnswer, BrokerError> {
        self.calls
            .call(addr, method::READ, group, read, timeout)
            .await
    }
}

impl Calls {
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
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn request(
        &self,
        method: &str,
        group: u64,
        payload: Vec<u8>,
        timeout: Duration,
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
        req.set_timeout(timeout);
        req
    }

    /// Runs one `command` on the leader at `addr`, in a call of its own.
    pub async fn submit_one(
        &self,
        addr: &str,
        group: u64,
        command: &Command,
        timeout: Duration,
    ) -> Result<Outcome, BrokerError> {
        self.call(addr, method::SUBMIT, group, command, timeout)
            .await
    }

    /// Runs `commands` on the leader at `addr` in one call: a result per command, or `None`
    /// if the leader does not know the call (an older version; nothing ran).
    pub async fn submit_batch(
        &self,
        addr: &str,
        group: u64,
        commands: &[Forwarded],
        timeout: Duration,
    ) -> Result<Option<BatchAnswer>, BrokerError> {
        let mut c = self.client(addr)?;
        let req = self.request(method::SUBMIT_BATCH, group, enc(&commands), timeout);
        let r = tokio::time::timeout(timeout, c.submit_batch(req)).await;
        if let Ok(Err(s)) = &r
            && s.code() == tonic::Code::Unimplemented
        {
            return Ok(None);
        }
        classify(addr, r).map(Some)
    }

    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        method: &'static str,
        group: u64,
        q: &Q,
        timeout: Duration,
    ) -> Result<A, BrokerError> {
        let mut c = self.client(addr)?;
        let req = self.request(method, group, enc(q), timeout);
        let r = tokio::time::timeout(timeout, async move {
            match method {
                method::SUBMIT => c.submit(req).await,
                method::POP => c.pop(req).await,
                method::DELIVER => c.deliver(req).await,
                _ => c.read(req).await,
            }
        })
        .await;
        classify(addr, r)
    }
}

/// The one classification of a forwarded call's result.
fn classify<A: DeserializeOwned>(
    addr: &str,
    r: Result<
        Result<tonic::Response<pb::ForwardReply>, tonic::Status>,
        tokio::time::error::Elapsed,
    >,
) -> Result<A, BrokerError> {
    match r {
        Err(_) => Err(BrokerError::Unknown(format!("forward to {addr} timed out"))),
        // No connection could be made: the request reached nobody, so the caller may wait
        // for the next leader and retry (a dead leader is the common case during failover).
        Ok(Err(status)) if raftmq_proto::v2util::is_connect_failure(&status) => {
            Err(BrokerError::NotLeader { leader: None })
        }
        // Refused before anything ran (a misconfigured secret): nothing happened.
        Ok(Err(status))
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) =>
        {
            Err(BrokerError::Unavailable(format!(
                "{addr} refused this node's credential: {}",
                status.message()
            )))
        }
        // The request may have reached the leader before the connection failed.
        Ok(Err(status)) => Err(BrokerError::Unknown(format!(
            "forward to {addr} failed: {status}"
        ))),
        Ok(Ok(reply)) => {
            let v: Result<A, ForwardError> =
                dec(&reply.into_inner().payload).map_err(BrokerError::Corrupt)?;
            v.map_err(BrokerError::from)
        }
    }
}
