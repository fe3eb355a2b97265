//! Telemetry: the bidirectional settings stream. Every `Settings` a client sends is answered
//! with `{status OK, settings}` merged with the server's values (backoff policy, body size
//! limit, receive batch size, long polling timeout): Java and Python clients fail to start
//! without it. The response stream is returned at once so its headers go out immediately
//! (the Rust 5.0.0 client blocks until they arrive).

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::Response;

use super::BoxStream;
use super::client_id;
use super::convert::to_pb_duration;
use super::status::ok;
use crate::core::BrokerCore;

fn exponential(max_attempts: i32) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts,
        strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
            pb::ExponentialBackoff {
                initial: Some(to_pb_duration(Duration::from_millis(10))),
                max: Some(to_pb_duration(Duration::from_secs(1))),
                multiplier: 2.0,
            },
        )),
    }
}

/// The server's answer to a client's settings.
pub async fn settings_reply(core: &BrokerCore, s: pb::Settings) -> pb::TelemetryCommand {
    let mut out = s.clone();
    out.metric = Some(pb::Metric {
        on: false,
        endpoints: None,
    });
    match s.pub_sub {
        Some(pb::settings::PubSub::Publishing(p)) => {
            out.backoff_policy = Some(exponential(3));
            out.pub_sub = Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: p.topics,
                max_body_size: core.settings.max_body_bytes as i32,
                validate_message_type: true,
            }));
        }
        Some(pb::settings::PubSub::Subscription(sub)) => {
            let group = sub
                .group
                .as_ref()
                .map(|g| g.name.clone())
                .unwrap_or_default();
            let cfg = match core.ensure_group(&group).await {
                Ok(g) => g,
                Err(_) => crate::model::GroupConfig::with_defaults(group),
            };
            out.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: cfg.max_delivery_attempts as i32,
                strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(
                    pb::CustomizedBackoff {
                        next: cfg
                            .retry_backoff_ms
                            .iter()
                            .map(|ms| to_pb_duration(Duration::from_millis(*ms)))
                            .collect(),
                    },
                )),
            });
            out.pub_sub = Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: sub.group,
                subscriptions: sub.subscriptions,
                fifo: Some(cfg.fifo),
                receive_batch_size: Some(32),
                long_polling_timeout: Some(to_pb_duration(Duration::from_secs(20))),
            }));
        }
        None => {
            out.backoff_policy = Some(exponential(3));
        }
    }
    pb::TelemetryCommand {
        status: Some(ok()),
        command: Some(pb::telemetry_command::Command::Settings(out)),
    }
}

pub async fn telemetry(
    core: Arc<BrokerCore>,
    req: Request<tonic::Streaming<pb::TelemetryCommand>>,
) -> Result<Response<BoxStream<pb::TelemetryCommand>>, tonic::Status> {
    let client = client_id(&req).map_err(|s| tonic::Status::invalid_argument(s.message))?;
    let mut inbound = req.into_inner();
    let (tx, rx) = mpsc::channel(64);
    core.set_telemetry(&client, Some(tx.clone()));
    tokio::spawn(async move {
        while let Ok(Some(cmd)) = inbound.message().await {
            core.touch_client(&client);
            if let Some(pb::telemetry_command::Command::Settings(s)) = cmd.command {
                let reply = settings_reply(&core, s).await;
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        }
        core.set_telemetry(&client, None);
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}
