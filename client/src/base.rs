//! What every producer and consumer shares: the connection layer, the route cache, the
//! Telemetry sessions (settings handshake, server-pushed commands such as transaction
//! checks), the heartbeat loop, and graceful shutdown (NotifyClientTermination).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::telemetry_command::Command as Cmd;
use raftmq_proto::v2util;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::checker::TransactionChecker;
use crate::checker::TransactionResolution;
use crate::error::ClientError;
use crate::message::ReceivedMessage;
use crate::route::Routes;
use crate::rpc::Rpc;

/// What the client announces in its Settings.
#[derive(Clone)]
pub(crate) enum Role {
    Producer {
        topics: Vec<String>,
    },
    Consumer {
        kind: pb::ClientType,
        group: String,
        subscriptions: Vec<(String, pb::FilterExpression)>,
    },
}

/// Server values learnt from Settings replies.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSettings {
    /// The consumer group consumes in order (`subscription.fifo`).
    pub fifo: Option<bool>,
    /// A Settings reply has arrived.
    pub answered: bool,
}

pub(crate) struct Base {
    pub rpc: Arc<Rpc>,
    pub routes: Routes,
    role: Role,
    checker: Option<Arc<dyn TransactionChecker>>,
    sessions: Mutex<BTreeMap<String, JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    pub server: Mutex<ServerSettings>,
}

impl Base {
    /// Starts the heartbeat loop and a Telemetry session on the first access point.
    pub(crate) fn start(
        rpc: Arc<Rpc>,
        role: Role,
        checker: Option<Arc<dyn TransactionChecker>>,
    ) -> Arc<Base> {
        let base = Arc::new(Base {
            routes: Routes::new(rpc.clone()),
            rpc,
            role,
            checker,
            sessions: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            server: Mutex::new(ServerSettings::default()),
        });
        let ap = base.rpc.config.endpoints[0].clone();
        base.ensure_session(&ap);
        let weak = Arc::downgrade(&base);
        let period = base.rpc.config.heartbeat_interval;
        let hb = tokio::spawn(async move {
            loop {
                let Some(b) = weak.upgrade() else { return };
                b.heartbeat_all().await;
                drop(b);
                tokio::time::sleep(period).await;
            }
        });
        base.tasks.lock().unwrap().push(hb);
        base
    }

    /// Waits (up to the request timeout) for the first Settings reply, which carries the
    /// group's FIFO flag; false if none came.
    pub(crate) async fn settings_answered(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.rpc.config.request_timeout;
        loop {
            if self.server.lock().unwrap().answered {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn check_open(&self) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            Err(ClientError::Shutdown)
        } else {
            Ok(())
        }
    }

    /// The consumer group, for consumers.
    pub(crate) fn group(&self) -> Option<&str> {
        match &self.role {
            Role::Consumer { group, .. } => Some(group),
            Role::Producer { .. } => None,
        }
    }

    fn client_type(&self) -> pb::ClientType {
        match &self.role {
            Role::Producer { .. } => pb::ClientType::Producer,
            Role::Consumer { kind, .. } => *kind,
        }
    }

    fn settings(&self, addr: &str) -> pb::Settings {
        let rpc = &self.rpc;
        let pub_sub = match &self.role {
            Role::Producer { topics } => pb::settings::PubSub::Publishing(pb::Publishing {
                topics: topics.iter().filter_map(|t| rpc.resource(t)).collect(),
                max_body_size: 4 * 1024 * 1024,
                validate_message_type: true,
            }),
            Role::Consumer {
                group,
                subscriptions,
                ..
            } => pb::settings::PubSub::Subscription(pb::Subscription {
                group: rpc.resource(group),
                subscriptions: subscriptions
                    .iter()
                    .map(|(t, f)| pb::SubscriptionEntry {
                        topic: rpc.resource(t),
                        expression: Some(f.clone()),
                    })
                    .collect(),
                fifo: None,
                receive_batch_size: Some(32),
                long_polling_timeout: Some(v2util::to_pb_duration(rpc.config.long_polling_timeout)),
            }),
        };
        pb::Settings {
            client_type: Some(self.client_type() as i32),
            access_point: Some(crate::route::endpoints(&[addr.to_string()])),
            backoff_policy: None,
            request_timeout: Some(v2util::to_pb_duration(rpc.config.request_timeout)),
            user_agent: Some(pb::Ua {
                // Informational only; our proto names just LANGUAGE_UNSPECIFIED.
                language: 0,
                version: env!("CARGO_PKG_VERSION").into(),
                platform: std::env::consts::OS.into(),
                hostname: "raftmq-client".into(),
            }),
            metric: None,
            pub_sub: Some(pub_sub),
        }
    }

    /// Opens a Telemetry session to `addr` unless one is open (Java and Python do this for
    /// every endpoint they use; the broker pushes transaction checks over it).
    pub(crate) fn ensure_session(self: &Arc<Self>, addr: &str) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut sessions = self.sessions.lock().unwrap();
        if sessions.contains_key(addr) {
            return;
        }
        let weak = Arc::downgrade(self);
        let a = addr.to_string();
        let h = tokio::spawn(async move {
            loop {
                let Some(b) = weak.upgrade() else { return };
                if let Err(e) = b.session(&a).await {
                    tracing::debug!(addr = a, error = e, "telemetry session ended");
                }
                drop(b);
                // Re-open after a pause, as the Java client does.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        sessions.insert(addr.to_string(), h);
    }

    /// One Telemetry session: send Settings, then serve what the server sends.
    async fn session(self: &Arc<Self>, addr: &str) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<pb::TelemetryCommand>(16);
        let settings = pb::TelemetryCommand {
            status: None,
            command: Some(Cmd::Settings(self.settings(addr))),
        };
        tx.send(settings).await.map_err(|e| e.to_string())?;
        let mut stub = self.rpc.stub(addr).map_err(|f| format!("{f:?}"))?;
        let req = self
            .rpc
            .request(tokio_stream::wrappers::ReceiverStream::new(rx), None);
        let mut inbound = stub
            .telemetry(req)
            .await
            .map_err(|s| s.to_string())?
            .into_inner();
        while let Some(cmd) = inbound.message().await.map_err(|s| s.to_string())? {
            match cmd.command {
                Some(Cmd::Settings(s)) => {
                    if cmd
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == pb::Code::Ok as i32)
                        && let Some(pb::settings::PubSub::Subscription(sub)) = s.pub_sub
                    {
                        self.server.lock().unwrap().fifo = sub.fifo;
                    }
                }
                Some(Cmd::RecoverOrphanedTransactionCommand(c)) => {
                    let b = self.clone();
                    let a = addr.to_string();
                    tokio::spawn(async move { b.answer_check(&a, c).await });
                }
                Some(Cmd::PrintThreadStackTraceCommand(c)) => {
                    let reply = pb::TelemetryCommand {
                        status: Some(v2util::ok()),
                        command: Some(Cmd::ThreadStackTrace(pb::ThreadStackTrace {
                            nonce: c.nonce,
                            thread_stack_trace: Some("not available in raftmq-client".into()),
                        })),
                    };
                    let _ = tx.send(reply).await;
                }
                Some(Cmd::VerifyMessageCommand(c)) => {
                    let reply = pb::TelemetryCommand {
                        status: Some(v2util::status(
                            pb::Code::NotImplemented,
                            "message verification is not implemented",
                        )),
                        command: Some(Cmd::VerifyMessageResult(pb::VerifyMessageResult {
                            nonce: c.nonce,
                        })),
                    };
                    let _ = tx.send(reply).await;
                }
                other => tracing::debug!(?other, "telemetry command ignored"),
            }
        }
        Err("the server closed the stream".into())
    }

    /// Runs the transaction checker for an orphaned transaction and reports its verdict to
    /// the endpoint that asked (no answer for "unknown": the broker asks again later).
    async fn answer_check(self: Arc<Self>, addr: &str, c: pb::RecoverOrphanedTransactionCommand) {
        let Some(checker) = self.checker.clone() else {
            tracing::warn!("transaction check received but no checker is installed");
            return;
        };
        let Some(m) = c.message else { return };
        let msg = match ReceivedMessage::from_pb(m, "", addr) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "transaction check for a corrupted message");
                return;
            }
        };
        let resolution = match checker.check(&msg) {
            TransactionResolution::Commit => pb::TransactionResolution::Commit,
            TransactionResolution::Rollback => pb::TransactionResolution::Rollback,
            TransactionResolution::Unknown => return,
        };
        let span = tracing::info_span!("transaction_check", message_id = msg.message_id);
        let req = pb::EndTransactionRequest {
            topic: self.rpc.resource(&msg.topic),
            message_id: msg.message_id.clone(),
            transaction_id: c.transaction_id,
            resolution: resolution as i32,
            source: pb::TransactionSource::SourceServerCheck as i32,
            trace_context: String::new(),
        };
        let t = self.rpc.config.request_timeout;
        let r = self.rpc.request(req, Some(t));
        match self
            .rpc
            .unary(addr, t, |mut s| async move { s.end_transaction(r).await })
            .instrument(span)
            .await
            .and_then(|resp| crate::rpc::check(&resp.status))
        {
            Ok(()) => tracing::debug!(?resolution, "transaction check answered"),
            Err(f) => tracing::warn!(?f, "answering a transaction check failed"),
        }
    }

    /// Heartbeats every endpoint of every cached route, and the access points.
    async fn heartbeat_all(&self) {
        let mut addrs = self.routes.addresses();
        addrs.extend(self.rpc.config.endpoints.iter().cloned());
        addrs.sort();
        addrs.dedup();
        let t = self.rpc.config.request_timeout;
        let group = self.group().map(|g| g.to_string());
        let calls = addrs.iter().map(|a| {
            let req = self.rpc.request(
                pb::HeartbeatRequest {
                    group: group.as_deref().and_then(|g| self.rpc.resource(g)),
                    client_type: self.client_type() as i32,
                },
                Some(t),
            );
            self.rpc
                .unary(a, t, |mut s| async move { s.heartbeat(req).await })
        });
        for r in futures::future::join_all(calls).await {
            if let Err(f) = r {
                tracing::trace!(?f, "heartbeat failed");
            }
        }
    }

    /// Stops background work and tells every endpoint this client used that it is gone.
    pub(crate) async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for (_, h) in std::mem::take(&mut *self.sessions.lock().unwrap()) {
            h.abort();
        }
        for h in std::mem::take(&mut *self.tasks.lock().unwrap()) {
            h.abort();
        }
        let t = self.rpc.config.request_timeout.min(Duration::from_secs(1));
        let group = self.group().map(|g| g.to_string());
        let addrs = self.rpc.known_endpoints();
        let calls = addrs.iter().map(|a| {
            let req = self.rpc.request(
                pb::NotifyClientTerminationRequest {
                    group: group.as_deref().and_then(|g| self.rpc.resource(g)),
                },
                Some(t),
            );
            self.rpc.unary(a, t, |mut s| async move {
                s.notify_client_termination(req).await
            })
        });
        futures::future::join_all(calls).await;
        tracing::debug!(endpoints = addrs.len(), "client terminated");
    }

    /// Adds a background task that shutdown stops.
    pub(crate) fn track(&self, h: JoinHandle<()>) {
        self.tasks.lock().unwrap().push(h);
    }
}

impl Base {
    /// Stops background tasks without telling the brokers (for `Drop` of the public handles,
    /// which cannot wait); brokers expire the client after missed heartbeats.
    pub(crate) fn abort_background(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, h) in std::mem::take(&mut *self.sessions.lock().unwrap()) {
            h.abort();
        }
        for h in std::mem::take(&mut *self.tasks.lock().unwrap()) {
            h.abort();
        }
    }
}
