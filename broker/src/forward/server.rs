//! The receiving side of forwarding: authenticates a request before decoding it, then runs it
//! on the local replica only if that replica leads the group (so a request moves one hop at
//! most; otherwise the sender retries after the election).

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::Weak;

use raftmq_proto::auth::ClusterKey;
use raftmq_proto::forward as pb;
use raftmq_proto::forward::forward_server::Forward;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::lane::serve_batch;
use super::wire::ForwardError;
use super::wire::Forwarded;
use super::wire::PopCall;
use super::wire::dec;
use super::wire::enc;
use super::wire::method;
use crate::core::BrokerCore;

/// Serves forwarded requests; see the module docs.
pub struct ForwardServer {
    core: Arc<OnceLock<Weak<BrokerCore>>>,
    key: ClusterKey,
}

impl ForwardServer {
    /// A server whose core is set later through `slot` (the core needs the replicas, which
    /// need the listener running); it accepts only requests signed with `key`.
    pub fn new(slot: Arc<OnceLock<Weak<BrokerCore>>>, key: ClusterKey) -> Self {
        Self { core: slot, key }
    }

    fn core(&self) -> Result<Arc<BrokerCore>, ForwardError> {
        self.core
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ForwardError::Unavailable("node is starting or stopping".into()))
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
}

fn reply<T: Serialize>(
    v: Result<T, ForwardError>,
) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
    Ok(tonic::Response::new(pb::ForwardReply { payload: enc(&v) }))
}

impl ForwardServer {
    /// The one shape of every forwarded call: authenticate, decode the payload (bounded), run
    /// it on the local leader, encode the answer or the error.
    async fn serve<Q, A, F, Fut>(
        &self,
        method: &str,
        req: tonic::Request<pb::ForwardRequest>,
        run: F,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status>
    where
        Q: DeserializeOwned,
        A: Serialize,
        F: FnOnce(Arc<BrokerCore>, u64, Q) -> Fut,
        Fut: Future<Output = crate::error::Result<A>>,
    {
        self.serve_decoded(method, req, dec, run).await
    }

    /// [`ForwardServer::serve`] with its own decoder (a receive comes in two forms,
    /// [`PopCall::decode`]).
    async fn serve_decoded<Q, A, F, Fut>(
        &self,
        method: &str,
        req: tonic::Request<pb::ForwardRequest>,
        decode: fn(&[u8]) -> Result<Q, String>,
        run: F,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status>
    where
        A: Serialize,
        F: FnOnce(Arc<BrokerCore>, u64, Q) -> Fut,
        Fut: Future<Output = crate::error::Result<A>>,
    {
        let req = self.authenticated(method, req)?;
        let result = async {
            let core = self.core()?;
            let q = decode(&req.payload).map_err(ForwardError::Corrupt)?;
            run(core, req.group, q).await.map_err(ForwardError::from)
        };
        reply(result.await)
    }
}

#[tonic::async_trait]
impl Forward for ForwardServer {
    async fn submit(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        self.serve(method::SUBMIT, req, |core, group, cmd| async move {
            core.submit_local(group, cmd).await
        })
        .await
    }

    async fn pop(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        self.serve_decoded(
            method::POP,
            req,
            PopCall::decode,
            |core, group, pop| async move { core.pop_local(group, pop).await },
        )
        .await
    }

    async fn read(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        self.serve(method::READ, req, |core, group, read| async move {
            core.leader_read_local(group, read).await
        })
        .await
    }

    async fn deliver(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        // The group field carries the choice (see `Forwarder::deliver`).
        self.serve(method::DELIVER, req, |core, mode, check| async move {
            Ok(crate::checkback::deliver_local(&core, check, mode == 1).await)
        })
        .await
    }

    async fn submit_batch(
        &self,
        req: tonic::Request<pb::ForwardRequest>,
    ) -> Result<tonic::Response<pb::ForwardReply>, tonic::Status> {
        self.serve(
            method::SUBMIT_BATCH,
            req,
            |core, group, commands: Vec<Forwarded>| async move {
                let core = &core;
                Ok(serve_batch(commands, |cmd| core.submit_local(group, cmd)).await)
            },
        )
        .await
    }
}
