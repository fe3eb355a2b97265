//! The connection layer: one lazily connected channel per endpoint, the request metadata every
//! v2 call carries, and one-attempt calls with a deadline whose failures are classified.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::error::Failure;

/// A v2 stub over one endpoint's channel.
pub(crate) type Stub = MessagingServiceClient<Channel>;

/// Shared by everything one producer or consumer does.
pub(crate) struct Rpc {
    pub(crate) config: ClientConfig,
    pub(crate) client_id: String,
    channels: Mutex<BTreeMap<String, Stub>>,
    request_seq: AtomicU64,
}

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Rpc {
    /// Validates `config` and sets up (connections are opened on first use).
    pub(crate) fn new(config: ClientConfig) -> Result<Arc<Rpc>, ClientError> {
        config.validate()?;
        let client_id = config.client_id.clone().unwrap_or_else(|| {
            format!(
                "raftmq-rust@{}@{}@{:x}",
                std::process::id(),
                CLIENT_SEQ.fetch_add(1, Ordering::Relaxed),
                crate::rt::random_u64() & 0xffff_ffff
            )
        });
        Ok(Arc::new(Rpc {
            config,
            client_id,
            channels: Mutex::new(BTreeMap::new()),
            request_seq: AtomicU64::new(0),
        }))
    }

    /// The stub for `addr` (`host:port`), created on first use.
    pub(crate) fn stub(&self, addr: &str) -> Result<Stub, Failure> {
        let mut channels = self.channels.lock().unwrap();
        if let Some(s) = channels.get(addr) {
            return Ok(s.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Failure::Refused {
                code: pb::Code::IllegalAccessPoint as i32,
                message: format!("bad endpoint {addr}: {e}"),
            })?
            .connect_timeout(self.config.request_timeout);
        let stub = MessagingServiceClient::new(ep.connect_lazy());
        channels.insert(addr.to_string(), stub.clone());
        Ok(stub)
    }

    /// Every endpoint this client has talked to.
    pub(crate) fn known_endpoints(&self) -> Vec<String> {
        self.channels.lock().unwrap().keys().cloned().collect()
    }

    /// `msg` wrapped with the metadata brokers expect (`x-mq-client-id` and friends).
    pub(crate) fn request<T>(&self, msg: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        let seq = self.request_seq.fetch_add(1, Ordering::Relaxed);
        let m = r.metadata_mut();
        let put = |m: &mut tonic::metadata::MetadataMap, k: &'static str, v: &str| {
            if let Ok(v) = v.parse() {
                m.insert(k, v);
            }
        };
        put(m, "x-mq-client-id", &self.client_id);
        // RUST: the broker then lists every member of a group, leader first, per queue.
        put(m, "x-mq-language", "RUST");
        put(m, "x-mq-protocol", "v2");
        put(m, "x-mq-client-version", env!("CARGO_PKG_VERSION"));
        put(m, "x-mq-request-id", &format!("{}-{seq}", self.client_id));
        if !self.config.namespace.is_empty() {
            put(m, "x-mq-namespace", &self.config.namespace);
        }
        if let Some(t) = timeout {
            r.set_timeout(t);
        }
        r
    }

    /// A resource in this client's namespace.
    pub(crate) fn resource(&self, name: &str) -> Option<pb::Resource> {
        Some(pb::Resource {
            resource_namespace: self.config.namespace.clone(),
            name: name.to_string(),
        })
    }

    /// One unary attempt at `addr` within `timeout`; gRPC failures and the deadline are
    /// classified, v2 statuses are left to the caller.
    pub(crate) async fn unary<R, F, Fut>(
        &self,
        addr: &str,
        timeout: Duration,
        f: F,
    ) -> Result<R, Failure>
    where
        F: FnOnce(Stub) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let stub = self.stub(addr)?;
        match tokio::time::timeout(timeout, f(stub)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => {
                let f = Failure::from_grpc(&s);
                tracing::debug!(addr, status = %s, ?f, "rpc failed");
                Err(f)
            }
            Err(_) => Err(Failure::Ambiguous(format!(
                "no answer from {addr} within {timeout:?}"
            ))),
        }
    }
}

/// OK, or the classified failure for a v2 status.
pub(crate) fn check(status: &Option<pb::Status>) -> Result<(), Failure> {
    match status {
        Some(s) if s.code == pb::Code::Ok as i32 => Ok(()),
        Some(s) => Err(Failure::from_status(s.code, &s.message)),
        None => Err(Failure::Ambiguous("the answer has no status".into())),
    }
}
