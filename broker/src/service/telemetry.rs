//! Telemetry: the bidirectional settings stream. Every `Settings` a client sends is answered
//! with `{status OK, settings}` merged with the server's values (backoff policy, body size
//! limit, receive batch size, long polling timeout): Java and Python clients fail to start
//! without it. The response stream is returned at once so its headers go out immediately
//! (the Rust 5.0.0 client blocks until they arrive). The official Rust client gets no Settings
//! reply: it has no handler for one and would log an error for each (issue 13); it uses the
//! stream only for transaction checks. A producer's settings name the topics it publishes to:
//! a transaction check-back of one of them may be sent on its stream (`crate::checkback`).

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::Response;

use super::BoxStream;
use super::client_id;
use crate::core::BrokerCore;
use raftmq_proto::v2util;

/// The server's answer to a client's settings.
pub async fn settings_reply(core: &BrokerCore, s: pb::Settings) -> pb::TelemetryCommand {
    let policy = async {
        match &s.pub_sub {
            // By the group's stored name (in its namespace). An invalid name gets the defaults
            // and creates nothing (before namespaces, an empty one created group "").
            Some(pb::settings::PubSub::Subscription(sub)) => {
                let group = super::validate::group(sub.group.as_ref()).ok()?;
                let cfg = core
                    .ensure_group(&group)
                    .await
                    .unwrap_or_else(|_| crate::model::GroupConfig::with_defaults(group));
                Some(v2util::GroupPolicy {
                    max_delivery_attempts: cfg.max_delivery_attempts,
                    fifo: cfg.fifo,
                    retry_backoff: cfg
                        .retry_backoff_ms
                        .iter()
                        .map(|ms| Duration::from_millis(*ms))
                        .collect(),
                })
            }
            _ => None,
        }
    }
    .await;
    v2util::settings_reply(s, policy, core.settings.limits.max_body_bytes)
}

pub async fn telemetry(
    core: Arc<BrokerCore>,
    req: Request<tonic::Streaming<pb::TelemetryCommand>>,
) -> Result<Response<BoxStream<pb::TelemetryCommand>>, tonic::Status> {
    let client = client_id(&req).map_err(|s| tonic::Status::invalid_argument(s.message))?;
    let answer_settings = !raftmq_proto::v2util::is_official_rust_client(req.metadata());
    let Some(permit) = core.telemetry_permit() else {
        return Err(tonic::Status::resource_exhausted(format!(
            "this node holds {} Telemetry sessions already",
            core.settings.limits.max_telemetry_sessions
        )));
    };
    let mut inbound = req.into_inner();
    let (tx, rx) = mpsc::channel(64);
    let stream = core.clients().open_telemetry(&client, tx.clone());
    tokio::spawn(async move {
        while let Ok(Some(cmd)) = inbound.message().await {
            core.clients().touch(&client);
            if let Some(pb::telemetry_command::Command::Settings(s)) = cmd.command {
                // A producer's topics: where its transactions' check-backs may go.
                if let Some(pb::settings::PubSub::Publishing(p)) = &s.pub_sub {
                    // By stored name (a namespaced producer's `ns%topic`); an invalid one
                    // names no topic, so it is left out.
                    let topics = p.topics.iter().filter_map(|t| {
                        raftmq_proto::names::topic(&t.resource_namespace, &t.name).ok()
                    });
                    core.clients().set_publishing(&client, topics);
                }
                if !answer_settings {
                    continue;
                }
                let reply = settings_reply(&core, s).await;
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        }
        core.clients().close_telemetry(&client, stream);
        drop(permit);
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}
